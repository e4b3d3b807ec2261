//! The tutorial's PyTorch pipeline (`scripts/torch_reference.py`), run in the
//! reference Python environment to produce the vectors ours must match.

use std::{path::Path, process::Command};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::deps;

/// What the tutorial's pipeline made of some images, one row per image.
pub struct Reference {
    /// The preprocessed inputs, `3 × 224 × 224` floats each.
    pub inputs: Vec<Vec<f32>>,
    /// The 2048-float vectors.
    pub vectors: Vec<Vec<f32>>,
}

/// ResNet50 minus fc in PyTorch on `input` (`n` images of `3 × 224 × 224`
/// floats, one after the other), with `weights`: one vector per image.
pub fn model_output(weights: &Path, input: &[f32], n: usize) -> Vec<Vec<f32>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inp, out) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    let bytes: Vec<u8> = input.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![n, 3, 224, 224], &bytes).expect("input shape");
    safetensors::serialize_to_file([("input", view)], &None, &inp).expect("write input");
    run(Command::new(deps::reference_python())
        .arg(deps::script("torch_reference.py"))
        .args(["tensor", "--weights"])
        .arg(weights)
        .arg("--input")
        .arg(&inp)
        .arg("--output")
        .arg(&out));
    rows(&out, "output")
}

fn run(cmd: &mut Command) {
    let result = cmd.output().expect("run the reference python");
    assert!(
        result.status.success(),
        "reference pipeline failed: {}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The f32 tensor `name` of a safetensors file, a row per first index.
fn rows(file: &Path, name: &str) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(file).expect("read reference output");
    let tensors = SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let t = tensors
        .tensor(name)
        .unwrap_or_else(|_| panic!("{name} missing from {}", file.display()));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let floats: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let per_row = t.shape()[1..].iter().product::<usize>().max(1);
    floats.chunks(per_row).map(<[f32]>::to_vec).collect()
}

/// The tutorial end to end on image files (PIL + torchvision + PyTorch).
pub fn pipeline(weights: &Path, files: &[std::path::PathBuf]) -> Reference {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.safetensors");
    run(Command::new(deps::reference_python())
        .arg(deps::script("torch_reference.py"))
        .args(["images", "--weights"])
        .arg(weights)
        .arg("--output")
        .arg(&out)
        .args(files));
    Reference {
        inputs: rows(&out, "input"),
        vectors: rows(&out, "output"),
    }
}

/// Odd-format copies of `files` written by PIL into `dir` (RGBA, gray,
/// CMYK, palette, 16-bit, gray+alpha, 1x1): the paths written.
pub fn variants(dir: &Path, files: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let result = Command::new(deps::reference_python())
        .arg(deps::script("torch_reference.py"))
        .args(["variants", "--out"])
        .arg(dir)
        .args(files)
        .output()
        .expect("run the reference python");
    assert!(
        result.status.success(),
        "variants: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8(result.stdout)
        .expect("utf8")
        .lines()
        .map(Into::into)
        .collect()
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
