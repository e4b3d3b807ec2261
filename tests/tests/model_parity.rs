//! Seeded torchvision weights load into tch's ResNet50 (minus fc) through the
//! embedder's loader and give the same numbers as PyTorch on the same input.

use imgsearch_embedder::Resnet50;
use imgsearch_tests::{deps, pyref};
use tch::{Device, Kind, Tensor};

#[test]
fn seeded_weights_match_pytorch() {
    let weights = deps::seeded_weights();
    let model = Resnet50::load(&weights, Device::Cpu).expect("load weights");
    tch::manual_seed(7);
    let input = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));

    let ours = model.forward(&input).expect("forward");
    let reference = pyref::model_output(&weights, &input);

    assert_eq!(ours.size(), vec![2, 2048]);
    assert_eq!(reference.size(), vec![2, 2048]);
    let max_abs = (&ours - &reference).abs().max().double_value(&[]);
    let scale = reference.abs().max().double_value(&[]);
    println!("max abs diff {max_abs:e} (largest value {scale:.3})");
    assert!(scale > 1e-2, "reference output is degenerate: max |x| = {scale}");
    assert!(max_abs <= 1e-4, "max abs diff {max_abs} > 1e-4");
}

#[test]
fn missing_weights_are_a_clear_error() {
    let err = Resnet50::load("/nonexistent/w.safetensors".as_ref(), Device::Cpu).err().expect("error");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn wrong_weights_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    Tensor::write_safetensors(&[("conv1.weight", &Tensor::zeros([1], (Kind::Float, Device::Cpu)))], &bad)
        .unwrap();
    let err = Resnet50::load(&bad, Device::Cpu).err().expect("error");
    assert!(err.to_string().contains("not a usable torchvision ResNet50"), "{err}");
}
