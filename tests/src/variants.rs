//! Many distinct images made from a few photos, reproducibly: each a
//! seeded crop of a photo, flipped or not, re-encoded as JPEG at a seeded
//! quality. A long ingest benchmark needs thousands of images that are not
//! byte-for-byte repeats (a repeat would hit every cache a real ingest
//! misses), yet look like the corpus's photos to the decoder and the model.

use std::path::{Path, PathBuf};

use image::{codecs::jpeg::JpegEncoder, imageops::FilterType, DynamicImage};

use crate::synthetic::uniforms;

/// Sources are scaled down to this longest side first: held decoded in
/// memory for every variant, a 12-megapixel photo would cost 36 MB.
const MAX_SOURCE_SIDE: u32 = 1280;

/// A crop keeps at least this share of each side of its photo.
const MIN_CROP: f32 = 0.6;

/// The photos at `paths`, decoded and scaled down to [`MAX_SOURCE_SIDE`].
pub fn sources(paths: &[PathBuf]) -> Vec<DynamicImage> {
    paths
        .iter()
        .map(|p| {
            let img = image::open(p).unwrap_or_else(|e| panic!("decode {}: {e}", p.display()));
            if img.width().max(img.height()) > MAX_SOURCE_SIDE {
                img.resize(MAX_SOURCE_SIDE, MAX_SOURCE_SIDE, FilterType::Triangle)
            } else {
                img
            }
        })
        .collect()
}

/// Variant `seed` of one of `sources` (the `seed mod n`th), as JPEG bytes.
pub fn variant(sources: &[DynamicImage], seed: u64) -> Vec<u8> {
    let source = &sources[(seed % sources.len() as u64) as usize];
    let mut uniform = uniforms(seed ^ 0x1A6E_5EED);
    let (w, h) = (source.width(), source.height());
    let share = |u: f32, side: u32| ((MIN_CROP + (1.0 - MIN_CROP) * u) * side as f32) as u32;
    let (cw, ch) = (share(uniform(), w).max(1), share(uniform(), h).max(1));
    let (x, y) = (
        ((w - cw) as f32 * uniform()) as u32,
        ((h - ch) as f32 * uniform()) as u32,
    );
    let mut img = source.crop_imm(x, y, cw, ch);
    if uniform() < 0.5 {
        img = img.fliph();
    }
    let quality = 70 + (uniform() * 26.0) as u8;
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img.to_rgb8())
        .expect("encode a JPEG in memory");
    out
}

/// Writes variants `0..count` into `dir` as `v00000.jpg`…, on `threads`
/// threads.
pub fn write(sources: &[DynamicImage], dir: &Path, count: u64, threads: u64) {
    std::fs::create_dir_all(dir).expect("create the variants folder");
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in (t..count).step_by(threads as usize) {
                    let path = dir.join(format!("v{i:05}.jpg"));
                    std::fs::write(&path, variant(sources, i))
                        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> Vec<DynamicImage> {
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        vec![DynamicImage::ImageRgb8(img)]
    }

    #[test]
    fn the_same_seed_makes_the_same_image_and_others_differ() {
        let sources = photo();
        assert_eq!(variant(&sources, 7), variant(&sources, 7));
        let distinct: std::collections::HashSet<Vec<u8>> =
            (0..50).map(|i| variant(&sources, i)).collect();
        assert_eq!(distinct.len(), 50);
    }

    #[test]
    fn a_variant_keeps_most_of_its_photo() {
        let v = image::load_from_memory(&variant(&photo(), 3)).unwrap();
        assert!(v.width() >= 38 && v.width() <= 64 && v.height() >= 28 && v.height() <= 48);
    }
}
