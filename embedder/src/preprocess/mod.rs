//! The tutorial's preprocessing, to the bit: `Image.open(f).convert('RGB')`,
//! then torchvision `Resize(256)`, `CenterCrop(224)`, `ToTensor()`,
//! `Normalize(ImageNet mean, std)`. Or, opted into, a faster variant whose
//! JPEG decode is scaled down in the DCT domain ([`Mode::Fast`]).

pub mod decode;
mod jpeg_layout;
pub mod limits;
mod mode;
pub mod resize;

pub use decode::{decode_rgb, probe, Probe};
pub use limits::{Limit, Limits};
pub use mode::Mode;
pub use resize::{resize_bilinear, resize_window, Image8, ResizeTooLarge, Window};

/// Side of the square the model sees.
pub const CROP: usize = 224;
/// Bumped whenever a change to decoding or preprocessing could change a
/// vector, so collections filled before it refuse the new vectors.
pub const PREPROCESS_VERSION: u32 = 1;
/// Shorter side after `Resize(256)`.
pub const RESIZE: usize = 256;
/// Floats in one preprocessed image (`3 × 224 × 224`).
pub const TENSOR_LEN: usize = 3 * CROP * CROP;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why bytes did not become a tensor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("empty image")]
    Empty,
    #[error("image has {value} {}, over the limit of {max} ({})", limit.measure(), limit.flag())]
    OverLimit { limit: Limit, value: u64, max: u64 },
    #[error(transparent)]
    Resize(#[from] ResizeTooLarge),
    #[error("not a decodable image: {0}")]
    Invalid(String),
}

/// Bytes of an image file to the normalised CHW floats the model takes.
pub fn preprocess(bytes: &[u8], limits: &Limits, mode: Mode) -> Result<Vec<f32>, ImageError> {
    let probe = probe(bytes, limits)?;
    preprocess_probed(bytes, &probe, limits, mode)
}

/// [`preprocess`] after [`probe`] accepted the file.
pub fn preprocess_probed(
    bytes: &[u8],
    probe: &Probe,
    limits: &Limits,
    mode: Mode,
) -> Result<Vec<f32>, ImageError> {
    let rgb = decode_rgb(bytes, probe, limits, mode)?;
    let crop = resize_and_crop(&rgb);
    decode::retain(rgb.data);
    Ok(to_tensor(&crop?))
}

/// Whether `Resize(256)` of a `width` × `height` image exists in Pillow: an
/// extreme aspect ratio asks for more output than its resampler addresses.
pub fn check_resizable(width: usize, height: usize) -> Result<(), ResizeTooLarge> {
    let (nw, nh) = resized_size(width, height, RESIZE);
    resize::check_resize(width, height, nw, nh)
}

/// `Resize(256)` then `CenterCrop(224)`, computing only the crop.
pub fn resize_and_crop(img: &Image8) -> Result<Image8, ResizeTooLarge> {
    let (nw, nh) = resized_size(img.width, img.height, RESIZE);
    resize_window(img, nw, nh, center_window(nw, nh, CROP))
}

/// `Resize(size)` on a PIL image: shorter side to `size`, longer side
/// `int(size * long / short)` (truncated, as Python's `int` does).
pub fn resized_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// `CenterCrop(size)`: offsets `int(round((dim - size) / 2))` with Python's
/// round-half-to-even. Inputs here are never smaller than `size` (after
/// `Resize(256)`), so torchvision's padding branch cannot occur.
pub fn center_window(width: usize, height: usize, size: usize) -> Window {
    debug_assert!(width >= size && height >= size);
    let offset = |dim: usize| ((dim - size) as f64 / 2.0).round_ties_even() as usize;
    Window {
        x: offset(width),
        y: offset(height),
        width: size,
        height: size,
    }
}

/// `ToTensor()` then `Normalize`: HWC u8 to CHW f32, `(v / 255 - mean) / std`
/// in f32, the operations and order torchvision uses.
pub fn to_tensor(img: &Image8) -> Vec<f32> {
    let plane = img.width * img.height;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_sizes_follow_torchvision() {
        assert_eq!(resized_size(720, 360, 256), (512, 256));
        // 256 * 333 / 250 = 340.99 -> 340
        assert_eq!(resized_size(250, 333, 256), (256, 340));
        assert_eq!(resized_size(1, 1, 256), (256, 256));
        assert_eq!(resized_size(1, 20_000, 256), (256, 5_120_000));
    }

    #[test]
    fn crop_rounds_half_to_even() {
        // (257 - 224) / 2 = 16.5 -> 16 in Python; (259 - 224) / 2 = 17.5 -> 18
        let w = center_window(257, 259, 224);
        assert_eq!((w.x, w.y), (16, 18));
    }

    #[test]
    fn an_aspect_ratio_pillow_cannot_resize_is_refused_before_decoding() {
        assert!(check_resizable(1, 20_000).is_ok());
        assert!(check_resizable(20_000, 1).is_ok());
        let err = check_resizable(1, 1_000_000).unwrap_err();
        assert_eq!((err.output, err.max), (256_000_000, 89_478_485));
        assert!(check_resizable(1_000_000, 1).is_err());
    }
}
