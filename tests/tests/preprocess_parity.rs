//! Our preprocessing against PIL + torchvision on every fixture and on
//! odd-format copies PIL makes of some: the 224×224 crops must be identical,
//! pixel for pixel (compared as the normalised floats).

use imgsearch_embedder::preprocess::{preprocess, Limits, TENSOR_LEN};
use imgsearch_tests::{deps, pyref};
use tch::{Kind, Tensor};

const LIMITS: Limits = Limits {
    max_bytes: 64 << 20,
    max_pixels: 100_000_000,
};

#[test]
fn crops_match_pil_and_torchvision_exactly() {
    let fixtures = deps::fixture_images();
    let dir = tempfile::tempdir().unwrap();
    let mut files = fixtures.clone();
    files.extend(pyref::variants(dir.path(), &fixtures[..3]));
    let (reference, _) = pyref::pipeline(&deps::seeded_weights(), &files);

    let mut mismatched = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let ours = preprocess(&std::fs::read(f).unwrap(), &LIMITS)
            .unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!(ours.len(), TENSOR_LEN);
        let ours = Tensor::from_slice(&ours).view([3, 224, 224]);
        let diff = (&ours - reference.get(i as i64))
            .abs()
            .max()
            .double_value(&[]);
        if diff != 0.0 {
            let px = (&ours - reference.get(i as i64))
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
