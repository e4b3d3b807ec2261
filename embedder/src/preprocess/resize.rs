//! Pillow's antialiased bilinear resize (`Resample.c`), ported exactly.
//!
//! torchvision's `Resize` on a PIL image calls `Image.resize(size, BILINEAR)`.
//! To match its output pixel for pixel we reproduce Pillow's arithmetic, not
//! just its filter: a triangle filter whose support widens with the downscale
//! factor, weights normalised in f64 then fixed-point with 22 fractional bits
//! (rounded half away from zero), an accumulator starting at one half, the
//! horizontal pass first over only the rows the vertical pass reads, and an
//! 8-bit intermediate image. Other resizers (fast_image_resize, `image`'s)
//! differ by ±1 on many pixels.

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

/// Per output pixel: first input index, number of inputs, and their weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter.
fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 1.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
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
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `src` to `width` × `height` the way Pillow's `Image.resize(...,
/// BILINEAR)` does. Same size in, same image out (Pillow copies).
pub fn resize_bilinear(src: &Image8, width: usize, height: usize) -> Image8 {
    let need_h = width != src.width;
    let need_v = height != src.height;
    if !need_h && !need_v {
        return src.clone();
    }
    let ch = src.channels;
    let vert = coeffs(src.height, height);
    // Rows of the source the vertical pass reads.
    let first = vert.bounds[0].0;
    let last = vert.bounds[height - 1].0 + vert.bounds[height - 1].1;

    let (tmp, row_offset) = if need_h {
        let horiz = coeffs(src.width, width);
        let rows = last - first;
        let mut out = vec![0u8; rows * width * ch];
        for y in 0..rows {
            let in_row = &src.data[(y + first) * src.width * ch..][..src.width * ch];
            let out_row = &mut out[y * width * ch..][..width * ch];
            for (xx, &(xmin, xmax)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..][..xmax];
                for c in 0..ch {
                    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                    for (x, &w) in k.iter().enumerate() {
                        acc += i32::from(in_row[(x + xmin) * ch + c]) * w;
                    }
                    out_row[xx * ch + c] = clip8(acc);
                }
            }
        }
        (
            Image8 {
                width,
                height: rows,
                channels: ch,
                data: out,
            },
            first,
        )
    } else {
        (src.clone(), 0)
    };
    if !need_v {
        return tmp;
    }

    let stride = tmp.width * ch;
    let mut out = vec![0u8; height * stride];
    let mut acc = vec![0i32; stride];
    for (yy, &(ymin, ymax)) in vert.bounds.iter().enumerate() {
        let k = &vert.weights[yy * vert.ksize..][..ymax];
        acc.fill(1 << (PRECISION_BITS - 1));
        // Row-major accumulation: same sums as Pillow's per-pixel loop
        // (integer addition is exact), but cache-friendly and vectorisable.
        for (y, &w) in k.iter().enumerate() {
            let row = &tmp.data[(y + ymin - row_offset) * stride..][..stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out[yy * stride..][..stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    Image8 {
        width: tmp.width,
        height,
        channels: ch,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy() {
        let img = Image8 {
            width: 3,
            height: 2,
            channels: 3,
            data: (0..18).collect(),
        };
        assert_eq!(resize_bilinear(&img, 3, 2), img);
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
            let out = resize_bilinear(&img, w, h);
            assert_eq!((out.width, out.height), (w, h));
            assert!(out.data.iter().all(|&v| v == 77), "{w}x{h}");
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(1000, 256), (256, 1000), (7, 3), (300, 299)] {
            let c = coeffs(i, o);
            for (xx, &(_, n)) in c.bounds.iter().enumerate() {
                let s: i64 = c.weights[xx * c.ksize..][..n]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= n as i64,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }
}
