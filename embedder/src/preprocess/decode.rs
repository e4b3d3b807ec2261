//! Image bytes to 8-bit RGB with PIL's `Image.open(f).convert('RGB')`
//! semantics, in two steps: [`probe`] reads only the header and checks every
//! limit (and says what the decode will cost, for admission), then
//! [`decode_rgb`] decodes.
//!
//! JPEG goes through libjpeg-turbo as in PIL (islow IDCT, fancy upsampling):
//! `image`'s own JPEG decoder differs by up to 4 levels and returns partial
//! data for truncated files, where PIL raises. In [`Mode::Fast`] it decodes
//! at a reduced DCT scale instead. Other formats go through
//! `image`, with PIL's conversion rules written out below. Animations decode
//! their first frame only, as PIL's `open` does.

use std::{cell::RefCell, io::Cursor};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::{
    jpeg_layout::JpegLayout,
    limits::{Limit, Limits, RETAINED_DECODE_BYTES},
    resize::Image8,
    ImageError, Mode, RESIZE,
};

const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// What the header says, once every limit has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub width: usize,
    pub height: usize,
    /// Most memory the decode takes, in bytes.
    pub decode_bytes: u64,
    format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    Jpeg,
    Other(ImageFormat),
}

/// Reads the header of `bytes` and checks it against `limits`.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<Probe, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    check(Limit::Bytes, bytes.len() as u64, limits.max_bytes as u64)?;
    let probe = if bytes.starts_with(&JPEG_MAGIC) {
        probe_jpeg(bytes, limits)?
    } else {
        probe_other(bytes, limits)?
    };
    check(
        Limit::DecodedBytes,
        probe.decode_bytes,
        limits.max_decoded_bytes,
    )?;
    super::check_resizable(probe.width, probe.height)?;
    Ok(probe)
}

/// Decodes what [`probe`] accepted to packed RGB: full size, or in
/// [`Mode::Fast`] a JPEG at its reduced scale.
pub fn decode_rgb(
    bytes: &[u8],
    probe: &Probe,
    limits: &Limits,
    mode: Mode,
) -> Result<Image8, ImageError> {
    match probe.format {
        Format::Jpeg => decode_jpeg(bytes, probe, limits, mode),
        Format::Other(format) => Ok(Image8 {
            width: probe.width,
            height: probe.height,
            channels: 3,
            data: decode_other(bytes, format, limits)?,
        }),
    }
}

thread_local! {
    /// This thread's last decode buffer. A fresh one of tens of megabytes
    /// comes from `mmap` and pays a page fault per 4 KiB on first write:
    /// about a sixth of the decode of a 15-megapixel JPEG.
    static RETAINED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` bytes, this thread's retained one when it is big enough.
/// Its contents are whatever was there: the decoder writes every byte.
fn buffer(len: usize) -> Vec<u8> {
    let mut buf = RETAINED.with(|r| std::mem::take(&mut *r.borrow_mut()));
    if buf.capacity() < len {
        // Growing would copy the old contents first.
        return vec![0; len];
    }
    buf.truncate(len);
    buf.resize(len, 0);
    buf
}

/// Gives a decode buffer back to this thread for the next image, unless it
/// is past [`RETAINED_DECODE_BYTES`]: the rare huge image gives its memory
/// back to the system.
pub fn retain(buf: Vec<u8>) {
    if buf.capacity() <= RETAINED_DECODE_BYTES {
        RETAINED.with(|r| *r.borrow_mut() = buf);
    }
}

/// The DCT scale of [`Mode::Fast`]: the smallest of 1/8, 1/4 and 1/2 that
/// keeps the short side at least [`RESIZE`], so `Resize(256)` still only
/// shrinks; else none. libjpeg-turbo has SIMD code for these scales only:
/// the others (3/8, 5/8...) make the decode slower than a full one (6/8 of
/// a 720×360 photo takes 1.11× the full decode's time).
fn fast_scale(width: usize, height: usize) -> turbojpeg::ScalingFactor {
    let short = width.min(height);
    let m = [1, 2, 4]
        .into_iter()
        .find(|&m| (short * m).div_ceil(8) >= RESIZE)
        .unwrap_or(8);
    turbojpeg::ScalingFactor::new(m, 8)
}

fn check(limit: Limit, value: u64, max: u64) -> Result<(), ImageError> {
    if value > max {
        return Err(ImageError::OverLimit { limit, value, max });
    }
    Ok(())
}

fn check_size(width: u64, height: u64, limits: &Limits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Invalid(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    check(Limit::Side, width.max(height), limits.max_side)?;
    check(
        Limit::Pixels,
        width.saturating_mul(height),
        limits.max_pixels,
    )
}

fn invalid(e: impl std::fmt::Display) -> ImageError {
    ImageError::Invalid(e.to_string())
}

fn probe_jpeg(bytes: &[u8], limits: &Limits) -> Result<Probe, ImageError> {
    // Count scans before libjpeg-turbo sees the file: a "scan bomb" of
    // thousands of tiny progressive scans costs a pass over the image each.
    let layout = JpegLayout::read(bytes, limits.max_jpeg_scans + 1);
    check(
        Limit::JpegScans,
        u64::from(layout.scans),
        u64::from(limits.max_jpeg_scans),
    )?;
    let header = turbojpeg::read_header(bytes).map_err(invalid)?;
    let (w, h) = (header.width as u64, header.height as u64);
    check_size(w, h, limits)?;
    let pixels = w * h;
    let channels = output_format(header.colorspace).size() as u64;
    // Gray and CMYK are converted into a second, RGB buffer.
    let rgb_copy = if channels == 3 { 0 } else { 3 * pixels };
    Ok(Probe {
        width: w as usize,
        height: h as usize,
        decode_bytes: channels * pixels + rgb_copy + layout.coefficient_bytes(w, h),
        format: Format::Jpeg,
    })
}

fn output_format(colorspace: turbojpeg::Colorspace) -> turbojpeg::PixelFormat {
    use turbojpeg::{Colorspace, PixelFormat};
    match colorspace {
        Colorspace::Gray => PixelFormat::GRAY,
        Colorspace::CMYK | Colorspace::YCCK => PixelFormat::CMYK,
        _ => PixelFormat::RGB,
    }
}

fn decode_jpeg(
    bytes: &[u8],
    probe: &Probe,
    limits: &Limits,
    mode: Mode,
) -> Result<Image8, ImageError> {
    let mut dec = turbojpeg::Decompressor::new().map_err(invalid)?;
    // A second guard on scans, inside libjpeg-turbo itself.
    dec.set_scan_limit(limits.max_jpeg_scans).map_err(invalid)?;
    let header = dec.read_header(bytes).map_err(invalid)?;
    if (header.width, header.height) != (probe.width, probe.height) {
        return Err(ImageError::Invalid(
            "JPEG header changed between reads".into(),
        ));
    }
    let header = match mode {
        Mode::Exact => header,
        Mode::Fast => {
            let scale = fast_scale(header.width, header.height);
            dec.set_scaling_factor(scale).map_err(invalid)?;
            header.scaled(scale)
        }
    };
    let (w, h) = (header.width, header.height);
    let format = output_format(header.colorspace);
    let channels = format.size();
    let mut pixels = buffer(w * h * channels);
    let image = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch: w * channels,
        height: h,
        format,
    };
    // libjpeg-turbo reports a truncated file as a warning and fills the rest;
    // the crate surfaces it as an error, which is what PIL does too.
    let decoded = dec.decompress(bytes, image).map_err(invalid);
    let data = match (decoded, channels) {
        (Err(e), _) => {
            retain(pixels);
            return Err(e);
        }
        (Ok(()), 3) => pixels,
        (Ok(()), 1) => swap_retained(pixels, gray_to_rgb),
        // PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I"), then converts.
        (Ok(()), _) => swap_retained(pixels, |p| {
            map_pixels(p, 4, |p| {
                cmyk_to_rgb([255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]])
            })
        }),
    };
    Ok(Image8 {
        width: w,
        height: h,
        channels: 3,
        data,
    })
}

/// `convert(samples)`, keeping `samples`' buffer for the next decode.
fn swap_retained(samples: Vec<u8>, convert: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let rgb = convert(&samples);
    retain(samples);
    rgb
}

/// Pillow's `cmyk2rgb`: `nk = 255 - k; out = nk - c * nk / 255` in its
/// rounding integer form.
fn cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let nk = 255 - i32::from(k);
    let muldiv255 = |a: u8| {
        let t = i32::from(a) * nk + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| (nk - muldiv255(v)).clamp(0, 255) as u8)
}

/// Packed RGB from pixels of `stride` samples each, allocated once at its
/// final size (collecting a `flat_map` would grow it by doubling).
fn map_pixels<T: Copy>(samples: &[T], stride: usize, f: impl Fn(&[T]) -> [u8; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() / stride * 3);
    for p in samples.chunks_exact(stride) {
        out.extend_from_slice(&f(p));
    }
    out
}

/// Gray replicated to RGB.
fn gray_to_rgb(samples: &[u8]) -> Vec<u8> {
    gray_to_rgb_strided(samples, 1)
}

/// Gray (the first of every `stride` samples) replicated to RGB.
fn gray_to_rgb_strided(samples: &[u8], stride: usize) -> Vec<u8> {
    map_pixels(samples, stride, |p| [p[0]; 3])
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImageError> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(invalid)
}

fn probe_other(bytes: &[u8], limits: &Limits) -> Result<Probe, ImageError> {
    let format = reader(bytes)?
        .format()
        .ok_or_else(|| ImageError::Invalid("unrecognised image format".into()))?;
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    ) {
        return Err(ImageError::Invalid(format!(
            "unsupported image format {format:?}"
        )));
    }
    // Only the allocation cap here: sides are checked below, with our error.
    let mut r = reader(bytes)?;
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(limits.max_decoded_bytes);
    r.limits(lim);
    let decoder = r.into_decoder().map_err(invalid)?;
    let (w, h) = decoder.dimensions();
    let (w, h) = (u64::from(w), u64::from(h));
    check_size(w, h, limits)?;
    let native = u64::from(decoder.color_type().bytes_per_pixel());
    Ok(Probe {
        width: w as usize,
        height: h as usize,
        // The decoder's output in its own pixel type, then the RGB copy.
        decode_bytes: w * h * (native + 3),
        format: Format::Other(format),
    })
}

/// `image`'s own guard: no single allocation or side past ours.
fn limited<'a>(
    mut reader: ImageReader<Cursor<&'a [u8]>>,
    limits: &Limits,
) -> ImageReader<Cursor<&'a [u8]>> {
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(limits.max_decoded_bytes);
    let side = u32::try_from(limits.max_side).unwrap_or(u32::MAX);
    lim.max_image_width = Some(side);
    lim.max_image_height = Some(side);
    reader.limits(lim);
    reader
}

fn decode_other(bytes: &[u8], format: ImageFormat, limits: &Limits) -> Result<Vec<u8>, ImageError> {
    let mut r = limited(reader(bytes)?, limits);
    r.set_format(format);
    // `decode` yields the first frame of an animation, as PIL's open does,
    // and never reads the frames after it.
    pil_convert_rgb(r.decode().map_err(invalid)?)
}

/// PIL's `convert('RGB')` for what `image` decodes: alpha dropped without
/// compositing, gray replicated, 16-bit gray clipped at 255 (PIL keeps it as
/// mode `I;16` and clips), other 16-bit data reduced to its high byte (PIL
/// unpacks them with `;16B` raw modes, which keep the high byte).
fn pil_convert_rgb(img: DynamicImage) -> Result<Vec<u8>, ImageError> {
    let hi = |v: u16| (v >> 8) as u8;
    Ok(match img {
        DynamicImage::ImageRgb8(i) => i.into_raw(),
        DynamicImage::ImageRgba8(i) => map_pixels(i.as_raw(), 4, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma8(i) => gray_to_rgb(i.as_raw()),
        DynamicImage::ImageLumaA8(i) => gray_to_rgb_strided(i.as_raw(), 2),
        DynamicImage::ImageLuma16(i) => map_pixels(i.as_raw(), 1, |p| [p[0].min(255) as u8; 3]),
        DynamicImage::ImageLumaA16(i) => map_pixels(i.as_raw(), 2, |p| [hi(p[0]); 3]),
        DynamicImage::ImageRgb16(i) => {
            map_pixels(i.as_raw(), 3, |p| [hi(p[0]), hi(p[1]), hi(p[2])])
        }
        DynamicImage::ImageRgba16(i) => {
            map_pixels(i.as_raw(), 4, |p| [hi(p[0]), hi(p[1]), hi(p[2])])
        }
        other => {
            return Err(ImageError::Invalid(format!(
                "unsupported pixel type {:?}",
                other.color()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_pixels: 1 << 20,
        ..Limits::DEFAULT
    };

    #[test]
    fn cmyk_matches_pillow_formula() {
        assert_eq!(cmyk_to_rgb([0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb([255, 255, 255, 0]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb([0, 0, 0, 255]), [0, 0, 0]);
        // nk = 155; 100*155+128 = 15628; (61 + 15628) >> 8 = 61; 155 - 61 = 94
        assert_eq!(cmyk_to_rgb([100, 0, 255, 100]), [94, 155, 0]);
    }

    #[test]
    fn empty_and_garbage_are_refused() {
        assert_eq!(probe(&[], &LIMITS), Err(ImageError::Empty));
        assert!(matches!(
            probe(b"hello, world", &LIMITS),
            Err(ImageError::Invalid(_))
        ));
    }

    #[test]
    fn a_file_over_the_byte_limit_is_refused_by_its_length() {
        let big = vec![0u8; (1 << 20) + 1];
        assert_eq!(
            probe(&big, &LIMITS),
            Err(ImageError::OverLimit {
                limit: Limit::Bytes,
                value: (1 << 20) + 1,
                max: 1 << 20
            })
        );
    }
}
