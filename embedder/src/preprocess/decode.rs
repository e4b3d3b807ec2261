//! Image bytes to 8-bit RGB with PIL's `Image.open(f).convert('RGB')`
//! semantics, within size limits.
//!
//! JPEG goes through libjpeg-turbo as in PIL (islow IDCT, fancy upsampling):
//! `image`'s own JPEG decoder differs by up to 4 levels and returns partial
//! data for truncated files, where PIL raises. Other formats go through
//! `image`, with PIL's conversion rules written out below.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

use super::resize::Image8;

/// What a caller may send. Checked before any pixel is decoded, so a
/// decompression bomb costs a header parse, not gigabytes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest encoded file.
    pub max_bytes: usize,
    /// Largest decoded width × height.
    pub max_pixels: u64,
}

/// Why bytes did not become an RGB image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty image")]
    Empty,
    #[error("image is {bytes} bytes, over the {limit}-byte limit")]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("image is {width}x{height} pixels, over the {limit}-pixel limit")]
    TooManyPixels { width: u64, height: u64, limit: u64 },
    #[error("not a decodable image: {0}")]
    Invalid(String),
}

const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Decodes `bytes` to packed RGB.
pub fn decode_rgb(bytes: &[u8], limits: &Limits) -> Result<Image8, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooManyBytes {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    if bytes.starts_with(&JPEG_MAGIC) {
        decode_jpeg(bytes, limits)
    } else {
        decode_other(bytes, limits)
    }
}

fn check_pixels(width: u64, height: u64, limits: &Limits) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Invalid(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    if width.saturating_mul(height) > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

fn invalid(e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Invalid(e.to_string())
}

fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<Image8, DecodeError> {
    use turbojpeg::{Colorspace, PixelFormat};
    let mut dec = turbojpeg::Decompressor::new().map_err(invalid)?;
    let header = dec.read_header(bytes).map_err(invalid)?;
    let (w, h) = (header.width, header.height);
    check_pixels(w as u64, h as u64, limits)?;
    let format = match header.colorspace {
        Colorspace::Gray => PixelFormat::GRAY,
        Colorspace::CMYK | Colorspace::YCCK => PixelFormat::CMYK,
        _ => PixelFormat::RGB,
    };
    let channels = format.size();
    let mut pixels = vec![0u8; w * h * channels];
    let image = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch: w * channels,
        height: h,
        format,
    };
    // libjpeg-turbo reports a truncated file as a warning and fills the rest;
    // the crate surfaces it as an error, which is what PIL does too.
    dec.decompress(bytes, image).map_err(invalid)?;
    let data = match channels {
        3 => pixels,
        1 => gray_to_rgb(pixels.into_iter()),
        // PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I"), then converts.
        _ => pixels
            .chunks_exact(4)
            .flat_map(|p| cmyk_to_rgb([255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]]))
            .collect(),
    };
    Ok(Image8 {
        width: w,
        height: h,
        channels: 3,
        data,
    })
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

fn gray_to_rgb(gray: impl Iterator<Item = u8>) -> Vec<u8> {
    gray.flat_map(|v| [v, v, v]).collect()
}

fn decode_other(bytes: &[u8], limits: &Limits) -> Result<Image8, DecodeError> {
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(invalid)
    };
    let format = reader()?
        .format()
        .ok_or_else(|| DecodeError::Invalid("unrecognised image format".into()))?;
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    ) {
        return Err(DecodeError::Invalid(format!(
            "unsupported image format {format:?}"
        )));
    }
    let (w, h) = reader()?.into_dimensions().map_err(invalid)?;
    check_pixels(u64::from(w), u64::from(h), limits)?;
    let mut r = reader()?;
    let mut lim = image::Limits::default();
    // Room for the widest pixel type (RGBA f32) of an image within limits.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    r.limits(lim);
    // `decode` yields the first frame of an animation, as PIL's open does.
    let img = r.decode().map_err(invalid)?;
    pil_convert_rgb(img).map(|data| Image8 {
        width: w as usize,
        height: h as usize,
        channels: 3,
        data,
    })
}

/// PIL's `convert('RGB')` for what `image` decodes: alpha dropped without
/// compositing, gray replicated, 16-bit gray clipped at 255 (PIL keeps it as
/// mode `I;16` and clips), other 16-bit data reduced to its high byte (PIL
/// unpacks them with `;16B` raw modes, which keep the high byte).
fn pil_convert_rgb(img: DynamicImage) -> Result<Vec<u8>, DecodeError> {
    let hi = |v: u16| (v >> 8) as u8;
    Ok(match img {
        DynamicImage::ImageRgb8(i) => i.into_raw(),
        DynamicImage::ImageRgba8(i) => i
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        DynamicImage::ImageLuma8(i) => gray_to_rgb(i.into_raw().into_iter()),
        DynamicImage::ImageLumaA8(i) => gray_to_rgb(i.into_raw().into_iter().step_by(2)),
        DynamicImage::ImageLuma16(i) => {
            gray_to_rgb(i.into_raw().into_iter().map(|v| v.min(255) as u8))
        }
        DynamicImage::ImageLumaA16(i) => gray_to_rgb(i.into_raw().into_iter().step_by(2).map(hi)),
        DynamicImage::ImageRgb16(i) => i.into_raw().into_iter().map(hi).collect(),
        DynamicImage::ImageRgba16(i) => i
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [hi(p[0]), hi(p[1]), hi(p[2])])
            .collect(),
        other => {
            return Err(DecodeError::Invalid(format!(
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
    fn empty_garbage_and_limits() {
        assert_eq!(decode_rgb(&[], &LIMITS), Err(DecodeError::Empty));
        assert!(matches!(
            decode_rgb(b"hello, world", &LIMITS),
            Err(DecodeError::Invalid(_))
        ));
        let big = vec![0u8; (1 << 20) + 1];
        assert!(matches!(
            decode_rgb(&big, &LIMITS),
            Err(DecodeError::TooManyBytes { .. })
        ));
    }
}
