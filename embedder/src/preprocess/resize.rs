//! Pillow's antialiased bilinear resize (`Resample.c`), ported exactly and
//! evaluated on a window of the output only.
//!
//! torchvision's `Resize` on a PIL image calls `Image.resize(size, BILINEAR)`.
//! To match its output pixel for pixel we reproduce Pillow's arithmetic, not
//! just its filter: a triangle filter whose support widens with the downscale
//! factor, weights normalised in f64 then fixed-point with 22 fractional bits
//! (rounded half away from zero), an accumulator starting at one half, the
//! horizontal pass first over only the rows the vertical pass reads, and an
//! 8-bit intermediate image. Other resizers (fast_image_resize, `image`'s)
//! differ by ±1 on many pixels.
//!
//! Why a window: `Resize(256)` then `CenterCrop(224)` keeps 224² pixels of an
//! image whose size the input's aspect ratio decides (a 1×20,000 PNG becomes
//! 256×5,120,000, 3.9 GB). Every output pixel of Pillow's two passes depends
//! only on its own row's and column's coefficients, so computing just the
//! window gives the same bytes in O(input + window) memory.

use std::ops::Range;

/// Fixed-point precision of Pillow's 8-bit path: 32 - 8 - 2.
const PRECISION_BITS: u32 = 22;

/// An 8-bit image with `channels` interleaved samples per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image8 {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// The part of a resized image to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// Pillow refuses (MemoryError) to build a coefficient table of more than
/// `i32::MAX` bytes: past that no output exists to match, so neither do we.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "resizing {input} pixels to {output} along one side is beyond Pillow's resampler \
     (at most {max} there; the tutorial's pipeline raises MemoryError too)"
)]
pub struct ResizeTooLarge {
    pub input: usize,
    pub output: usize,
    pub max: usize,
}

/// Coefficients of a range of output indices: per output index, its first
/// input index, number of inputs, and their weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl Coeffs {
    /// `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter,
    /// for the output indices in `range` only.
    fn new(in_size: usize, out_size: usize, range: Range<usize>) -> Result<Self, ResizeTooLarge> {
        // Pillow passes the box edges as C floats.
        let scale = f64::from(in_size as f32) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 1.0 * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let max = i32::MAX as usize / (ksize * std::mem::size_of::<f64>());
        if out_size > max {
            return Err(ResizeTooLarge {
                input: in_size,
                output: out_size,
                max,
            });
        }
        let mut bounds = Vec::with_capacity(range.len());
        let mut weights = vec![0i32; range.len() * ksize];
        let mut k = vec![0f64; ksize];
        let ss = 1.0 / filterscale;
        for (i, xx) in range.clone().enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; the +0.5 makes it round.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(xmax) {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                let w = (1.0 - t.abs()).max(0.0);
                *kx = w;
                ww += w;
            }
            for (x, &kx) in k.iter().enumerate().take(xmax) {
                let w = if ww != 0.0 { kx / ww } else { kx };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                weights[i * ksize + x] = if w < 0.0 {
                    (-0.5 + fixed) as i32
                } else {
                    (0.5 + fixed) as i32
                };
            }
            bounds.push((xmin, xmax));
        }
        Ok(Coeffs {
            ksize,
            bounds,
            weights,
        })
    }

    /// The inputs read by the computed outputs (bounds grow with the index).
    fn inputs(&self) -> Range<usize> {
        match (self.bounds.first(), self.bounds.last()) {
            (Some(&(first, _)), Some(&(last, n))) => first..last + n,
            _ => 0..0,
        }
    }

    fn kernel(&self, i: usize) -> (usize, &[i32]) {
        let (min, n) = self.bounds[i];
        (min, &self.weights[i * self.ksize..][..n])
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The horizontal pass over one row of `ch` channels, as Pillow loops.
fn horizontal(in_row: &[u8], out_row: &mut [u8], horiz: &Coeffs, ch: usize) {
    for (i, out_px) in out_row.chunks_exact_mut(ch).enumerate() {
        let (xmin, k) = horiz.kernel(i);
        for (c, o) in out_px.iter_mut().enumerate() {
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for (x, &w) in k.iter().enumerate() {
                acc += i32::from(in_row[(x + xmin) * ch + c]) * w;
            }
            *o = clip8(acc);
        }
    }
}

/// The horizontal pass over one RGB row: the same sums as [`horizontal`],
/// the three channels of a tap read together, and compiled for AVX2 as well
/// (chosen at run time), where it takes two thirds of the generic loop's time.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1"))]
fn horizontal_rgb(in_row: &[u8], out_row: &mut [u8], horiz: &Coeffs) {
    for (i, out_px) in out_row.chunks_exact_mut(3).enumerate() {
        let (xmin, k) = horiz.kernel(i);
        let taps = &in_row[xmin * 3..][..k.len() * 3];
        let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
        for (px, &w) in taps.chunks_exact(3).zip(k) {
            acc[0] += i32::from(px[0]) * w;
            acc[1] += i32::from(px[1]) * w;
            acc[2] += i32::from(px[2]) * w;
        }
        out_px.copy_from_slice(&acc.map(clip8));
    }
}

/// One output row of the vertical pass from the rows starting at `rows`.
/// Row-major accumulation: the same sums as Pillow's per-pixel loop (integer
/// addition is exact), but cache-friendly and vectorisable, for AVX2 too.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1"))]
fn vertical_row(rows: &[u8], row_len: usize, k: &[i32], acc: &mut [i32], out_row: &mut [u8]) {
    for (row, &w) in rows.chunks_exact(row_len).zip(k) {
        for (a, &p) in acc.iter_mut().zip(row) {
            *a += i32::from(p) * w;
        }
    }
    for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}

/// Pillow's `Image.resize((width, height), BILINEAR)` of `src`, computed on
/// `window` only: the result is that window of Pillow's output, byte for
/// byte. Same size in is a plain cut (Pillow copies).
pub fn resize_window(
    src: &Image8,
    width: usize,
    height: usize,
    window: Window,
) -> Result<Image8, ResizeTooLarge> {
    assert!(
        window.x + window.width <= width && window.y + window.height <= height,
        "window {window:?} outside {width}x{height}"
    );
    // Pillow computes both tables whether or not it resamples that axis.
    let horiz = Coeffs::new(src.width, width, window.x..window.x + window.width)?;
    let vert = Coeffs::new(src.height, height, window.y..window.y + window.height)?;
    let need_h = width != src.width;
    let need_v = height != src.height;
    let ch = src.channels;
    let row_len = window.width * ch;

    // Horizontal pass (or a column cut) over the rows the vertical pass reads.
    let rows = if need_v {
        vert.inputs()
    } else {
        window.y..window.y + window.height
    };
    let mut tmp = vec![0u8; rows.len() * row_len];
    for (y, out_row) in rows.clone().zip(tmp.chunks_exact_mut(row_len)) {
        let in_row = &src.data[y * src.width * ch..][..src.width * ch];
        if !need_h {
            out_row.copy_from_slice(&in_row[window.x * ch..][..row_len]);
            continue;
        }
        if ch == 3 {
            horizontal_rgb(in_row, out_row, &horiz);
        } else {
            horizontal(in_row, out_row, &horiz, ch);
        }
    }
    if !need_v {
        return Ok(Image8 {
            width: window.width,
            height: window.height,
            channels: ch,
            data: tmp,
        });
    }

    let mut out = vec![0u8; window.height * row_len];
    let mut acc = vec![0i32; row_len];
    for (i, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (ymin, k) = vert.kernel(i);
        acc.fill(1 << (PRECISION_BITS - 1));
        let first = &tmp[(ymin - rows.start) * row_len..];
        vertical_row(first, row_len, k, &mut acc, out_row);
    }
    Ok(Image8 {
        width: window.width,
        height: window.height,
        channels: ch,
        data: out,
    })
}

/// Whether Pillow can resize `in_w` × `in_h` to `out_w` × `out_h` at all.
pub fn check_resize(
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
) -> Result<(), ResizeTooLarge> {
    Coeffs::new(in_w, out_w, 0..0)?;
    Coeffs::new(in_h, out_h, 0..0)?;
    Ok(())
}

/// The whole of Pillow's `Image.resize((width, height), BILINEAR)`.
pub fn resize_bilinear(
    src: &Image8,
    width: usize,
    height: usize,
) -> Result<Image8, ResizeTooLarge> {
    let all = Window {
        x: 0,
        y: 0,
        width,
        height,
    };
    resize_window(src, width, height, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random image (xorshift), so resampling sees
    /// edges everywhere.
    fn noise(width: usize, height: usize, seed: u64) -> Image8 {
        let mut s = seed | 1;
        let data = (0..width * height * 3)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect();
        Image8 {
            width,
            height,
            channels: 3,
            data,
        }
    }

    fn cut(img: &Image8, w: Window) -> Image8 {
        let ch = img.channels;
        let mut data = Vec::new();
        for y in w.y..w.y + w.height {
            data.extend_from_slice(&img.data[(y * img.width + w.x) * ch..][..w.width * ch]);
        }
        Image8 {
            width: w.width,
            height: w.height,
            channels: ch,
            data,
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = noise(3, 2, 1);
        assert_eq!(resize_bilinear(&img, 3, 2).unwrap(), img);
    }

    #[test]
    fn a_window_equals_the_same_cut_of_the_whole_resize() {
        let cases = [
            ((97, 61), (256, 161), (11, 40, 224, 100)),
            ((1000, 37), (300, 256), (38, 16, 224, 224)),
            ((5, 900), (256, 46080), (16, 22928, 224, 224)),
            ((64, 64), (64, 300), (3, 7, 50, 200)),
            ((300, 64), (256, 64), (0, 0, 256, 64)),
        ];
        for (i, ((w, h), (ow, oh), (x, y, ww, wh))) in cases.into_iter().enumerate() {
            let src = noise(w, h, i as u64 + 7);
            let window = Window {
                x,
                y,
                width: ww,
                height: wh,
            };
            let whole = resize_bilinear(&src, ow, oh).unwrap();
            assert_eq!(
                resize_window(&src, ow, oh, window).unwrap(),
                cut(&whole, window),
                "{w}x{h} -> {ow}x{oh} at {window:?}"
            );
        }
    }

    #[test]
    fn the_rgb_pass_gives_the_generic_loops_bytes() {
        for (w, ow, seed) in [(5000, 341, 1), (1000, 256, 2), (300, 299, 3), (7, 256, 4)] {
            let row = noise(w, 1, seed).data;
            let horiz = Coeffs::new(w, ow, 0..ow).unwrap();
            let (mut rgb, mut generic) = (vec![0; ow * 3], vec![0; ow * 3]);
            horizontal_rgb(&row, &mut rgb, &horiz);
            horizontal(&row, &mut generic, &horiz, 3);
            assert_eq!(rgb, generic, "{w} -> {ow}");
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = Image8 {
            width: 37,
            height: 23,
            channels: 3,
            data: vec![77; 37 * 23 * 3],
        };
        for (w, h) in [(10, 7), (100, 61), (37, 5), (3, 23)] {
            let out = resize_bilinear(&img, w, h).unwrap();
            assert_eq!((out.width, out.height), (w, h));
            assert!(out.data.iter().all(|&v| v == 77), "{w}x{h}");
        }
    }

    #[test]
    fn outputs_past_pillows_coefficient_table_are_refused() {
        // Upscaling: 3 taps of 8 bytes, so i32::MAX / 24 outputs at most.
        assert_eq!(
            Coeffs::new(1_000_000, 256_000_000, 0..1).err(),
            Some(ResizeTooLarge {
                input: 1_000_000,
                output: 256_000_000,
                max: 89_478_485
            })
        );
        assert!(Coeffs::new(20_000, 5_120_000, 0..224).is_ok());
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(1000, 256), (256, 1000), (7, 3), (300, 299)] {
            let c = Coeffs::new(i, o, 0..o).unwrap();
            for xx in 0..o {
                let s: i64 = c.kernel(xx).1.iter().map(|&w| i64::from(w)).sum();
                let n = c.bounds[xx].1 as i64;
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= n,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }
}
