//! Fast preprocessing (JPEGs decoded at a reduced DCT scale): its vectors stay
//! within the cosine the README states of the tutorial's, and an image too
//! small to scale gets the tutorial's tensor exactly.

use imgsearch_embedder::{
    model::DIMENSION,
    preprocess::{preprocess, Limits, Mode, TENSOR_LEN},
    Precision, Resnet50,
};
use imgsearch_tests::{deps, pyref};
use tch::Device;

/// The README's bound. Measured: 0.9956 at worst, on a 512×512 fixture
/// (decoded at 256×256, where exact mode resizes 512 to 256).
const MIN_COSINE: f64 = 0.99;

fn tensors(files: &[std::path::PathBuf], mode: Mode) -> Vec<Vec<f32>> {
    files
        .iter()
        .map(|f| preprocess(&std::fs::read(f).unwrap(), &Limits::DEFAULT, mode).unwrap())
        .collect()
}

fn embed(model: &Resnet50, tensors: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let out = model.embed_flat(&tensors.concat()).unwrap();
    out.chunks_exact(DIMENSION as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

#[test]
fn fast_vectors_stay_within_the_stated_cosine_of_exact_ones() {
    let files = [deps::fixture_images(), deps::photos()].concat();
    let (exact, fast) = (tensors(&files, Mode::Exact), tensors(&files, Mode::Fast));
    let scaled = exact.iter().zip(&fast).filter(|(a, b)| a != b).count();
    // Every photo and the 512-pixel fixtures are scaled: the test measures something.
    assert!(
        scaled >= 40,
        "only {scaled} of {} images scaled",
        files.len()
    );

    let model = Resnet50::load(&deps::seeded_weights(), Device::Cpu, Precision::Fp32).unwrap();
    let (exact, fast) = (embed(&model, &exact), embed(&model, &fast));
    let worst = files
        .iter()
        .zip(exact.iter().zip(&fast))
        .map(|(f, (a, b))| (pyref::cosine(a, b), f))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    println!(
        "{scaled} of {} images scaled; lowest cosine {:.6} ({})",
        files.len(),
        worst.0,
        worst.1.display()
    );
    assert!(
        worst.0 >= MIN_COSINE,
        "cosine {} for {}",
        worst.0,
        worst.1.display()
    );
}

#[test]
fn an_image_too_small_to_halve_gets_the_exact_tensor() {
    // 720x360: half of the short side would be under 256.
    let file = &deps::corpus()[..1];
    let (exact, fast) = (tensors(file, Mode::Exact), tensors(file, Mode::Fast));
    assert_eq!(exact[0].len(), TENSOR_LEN);
    assert!(exact == fast, "{} differs in fast mode", file[0].display());
}
