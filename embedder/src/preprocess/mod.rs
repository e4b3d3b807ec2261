//! The tutorial's preprocessing, to the bit: `Image.open(f).convert('RGB')`,
//! then torchvision `Resize(256)`, `CenterCrop(224)`, `ToTensor()`,
//! `Normalize(ImageNet mean, std)`.

pub mod decode;
pub mod resize;

pub use decode::{decode_rgb, DecodeError, Limits};
pub use resize::{resize_bilinear, Image8};

/// Side of the square the model sees.
pub const CROP: usize = 224;
/// Shorter side after `Resize(256)`.
pub const RESIZE: usize = 256;
/// Floats in one preprocessed image (`3 × 224 × 224`).
pub const TENSOR_LEN: usize = 3 * CROP * CROP;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Bytes of an image file to the normalised CHW floats the model takes.
pub fn preprocess(bytes: &[u8], limits: &Limits) -> Result<Vec<f32>, DecodeError> {
    let rgb = decode_rgb(bytes, limits)?;
    Ok(to_tensor(&center_crop(&resize_shorter(&rgb, RESIZE), CROP)))
}

/// `Resize(256)` on a PIL image: shorter side to `size`, longer side
/// `int(size * long / short)` (truncated, as Python's `int` does), no
/// resampling when the shorter side already matches.
pub fn resize_shorter(img: &Image8, size: usize) -> Image8 {
    let (w, h) = (img.width, img.height);
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    if short == size {
        return img.clone();
    }
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    let (nw, nh) = if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    };
    resize_bilinear(img, nw, nh)
}

/// `CenterCrop(size)`: offsets `int(round((dim - size) / 2))` with Python's
/// round-half-to-even. Inputs here are never smaller than `size` (after
/// `Resize(256)`), so torchvision's padding branch cannot occur.
pub fn center_crop(img: &Image8, size: usize) -> Image8 {
    debug_assert!(img.width >= size && img.height >= size);
    let top = ((img.height - size) as f64 / 2.0).round_ties_even() as usize;
    let left = ((img.width - size) as f64 / 2.0).round_ties_even() as usize;
    let ch = img.channels;
    let mut data = Vec::with_capacity(size * size * ch);
    for y in top..top + size {
        data.extend_from_slice(&img.data[(y * img.width + left) * ch..][..size * ch]);
    }
    Image8 {
        width: size,
        height: size,
        channels: ch,
        data,
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

    fn image(w: usize, h: usize) -> Image8 {
        Image8 {
            width: w,
            height: h,
            channels: 3,
            data: vec![128; w * h * 3],
        }
    }

    #[test]
    fn resize_sizes_follow_torchvision() {
        let r = resize_shorter(&image(720, 360), 256);
        assert_eq!((r.width, r.height), (512, 256));
        // 256 * 333 / 250 = 340.99 -> 340
        let r = resize_shorter(&image(250, 333), 256);
        assert_eq!((r.width, r.height), (256, 340));
        let r = resize_shorter(&image(1, 1), 256);
        assert_eq!((r.width, r.height), (256, 256));
    }

    #[test]
    fn crop_rounds_half_to_even() {
        // (257 - 224) / 2 = 16.5 -> 16 in Python; (259 - 224) / 2 = 17.5 -> 18
        let mut img = image(257, 259);
        for y in 0..259 {
            for x in 0..257 {
                img.data[(y * 257 + x) * 3] = (x % 251) as u8;
                img.data[(y * 257 + x) * 3 + 1] = (y % 251) as u8;
            }
        }
        let c = center_crop(&img, 224);
        assert_eq!((c.data[0], c.data[1]), (16, 18));
    }
}
