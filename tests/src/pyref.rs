//! The tutorial's PyTorch pipeline (`scripts/torch_reference.py`), run in the
//! reference Python environment to produce the vectors ours must match.

use std::{path::Path, process::Command};

use tch::Tensor;

use crate::deps;

/// ResNet50 minus fc in PyTorch on `input` (`[N,3,224,224]`), with `weights`.
pub fn model_output(weights: &Path, input: &Tensor) -> Tensor {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inp, out) = (dir.path().join("in.safetensors"), dir.path().join("out.safetensors"));
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
