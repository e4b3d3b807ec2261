//! Our preprocessing against PIL + torchvision on every fixture, on the 24
//! larger photos (up to 5120×2880, six progressive), on odd-format copies
//! PIL makes of some, and on 1×20,000 and 20,000×1 strips
//! (which `Resize(256)` makes 5,120,000 pixels long; we compute only the
//! crop): the 224×224 crops must be identical, pixel for pixel (compared as
//! the normalised floats). One thread runs them all in turn, so its reused
//! decode buffer goes from large images to small and back.

use imgsearch_embedder::preprocess::{preprocess, Limits, Mode, TENSOR_LEN};
use imgsearch_tests::{deps, hostile, pyref};
use tch::{Kind, Tensor};

const LIMITS: Limits = Limits {
    max_bytes: 64 << 20,
    max_pixels: 100_000_000,
    ..Limits::DEFAULT
};

#[test]
fn crops_match_pil_and_torchvision_exactly() {
    let fixtures = deps::fixture_images();
    let dir = tempfile::tempdir().unwrap();
    let mut files = fixtures.clone();
    files.extend(deps::photos());
    files.extend(pyref::variants(dir.path(), &fixtures[..3]));
    for (w, h) in [(1, 20_000), (20_000, 1)] {
        let path = dir.path().join(format!("strip-{w}x{h}.png"));
        std::fs::write(&path, hostile::png(&hostile::noise(w, h, u64::from(w)))).unwrap();
        files.push(path);
    }
    let reference = pyref::pipeline(&deps::seeded_weights(), &files).inputs;

    let mut mismatched = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let ours = preprocess(&std::fs::read(f).unwrap(), &LIMITS, Mode::Exact)
            .unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!(ours.len(), TENSOR_LEN);
        let ours = Tensor::from_slice(&ours);
        let theirs = Tensor::from_slice(&reference[i]);
        let diff = (&ours - &theirs).abs().max().double_value(&[]);
        if diff != 0.0 {
            let px = (&ours - &theirs)
                .abs()
                .gt(1e-6)
                .sum(Kind::Int64)
                .int64_value(&[]);
            mismatched.push(format!("{} (max diff {diff:e}, {px} values)", f.display()));
        }
    }
    println!(
        "{} files compared, {} mismatched",
        files.len(),
        mismatched.len()
    );
    assert!(
        mismatched.is_empty(),
        "differs from PIL/torchvision: {mismatched:#?}"
    );
}
