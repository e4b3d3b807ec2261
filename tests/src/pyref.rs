//! The tutorial's PyTorch pipeline (`scripts/torch_reference.py`), run in the
//! reference Python environment to produce the vectors ours must match.

use std::{path::Path, process::Command};

use tch::Tensor;

use crate::deps;

/// ResNet50 minus fc in PyTorch on `input` (`[N,3,224,224]`), with `weights`.
pub fn model_output(weights: &Path, input: &Tensor) -> Tensor {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inp, out) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    Tensor::write_safetensors(&[("input", input)], &inp).expect("write input");
    run(Command::new(deps::reference_python())
        .arg(deps::script("torch_reference.py"))
        .args(["tensor", "--weights"])
        .arg(weights)
        .arg("--input")
        .arg(&inp)
        .arg("--output")
        .arg(&out));
    named(&out, "output")
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

fn named(file: &Path, name: &str) -> Tensor {
    Tensor::read_safetensors(file)
        .expect("read reference output")
        .into_iter()
        .find_map(|(n, t)| (n == name).then_some(t))
        .unwrap_or_else(|| panic!("{name} missing from {}", file.display()))
}

/// The tutorial end to end on image files: `(preprocessed input [N,3,224,224],
/// vectors [N,2048])`, computed by PIL + torchvision + PyTorch.
pub fn pipeline(weights: &Path, files: &[std::path::PathBuf]) -> (Tensor, Tensor) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.safetensors");
    run(Command::new(deps::reference_python())
        .arg(deps::script("torch_reference.py"))
        .args(["images", "--weights"])
        .arg(weights)
        .arg("--output")
        .arg(&out)
        .args(files));
    (named(&out, "input"), named(&out, "output"))
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
