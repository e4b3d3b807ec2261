//! Seeded torchvision weights give PyTorch's numbers in tch: loaded as is into
//! tch's ResNet50 (minus fc), and through the embedder's batch-norm-folded
//! model.

use imgsearch_embedder::{Precision, Resnet50};
use imgsearch_tests::{deps, pyref};
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

fn input() -> Tensor {
    tch::manual_seed(7);
    Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu))
}

/// PyTorch's output for `input`, as a `[N, 2048]` tensor.
fn reference(weights: &std::path::Path, input: &Tensor) -> Tensor {
    let n = input.size()[0] as usize;
    let floats = Vec::<f32>::try_from(input.flatten(0, -1)).unwrap();
    let rows = pyref::model_output(weights, &floats, n);
    Tensor::from_slice(&rows.concat()).view([n as i64, -1])
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn seeded_weights_in_tch_resnet50_match_pytorch() {
    let weights = deps::seeded_weights();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = tch::vision::resnet::resnet50_no_final_layer(&vs.root());
    vs.load(&weights)
        .expect("load safetensors into tch's resnet50");
    let input = input();
    let ours = tch::no_grad(|| net.forward_t(&input, false));
    let reference = reference(&weights, &input);

    assert_eq!(ours.size(), vec![2, 2048]);
    assert_eq!(reference.size(), vec![2, 2048]);
    let scale = reference.abs().max().double_value(&[]);
    let diff = max_abs(&ours, &reference);
    println!("tch resnet50: max abs diff {diff:e} (largest value {scale:.3})");
    assert!(
        scale > 1e-2,
        "reference output is degenerate: max |x| = {scale}"
    );
    assert!(diff <= 1e-4, "max abs diff {diff} > 1e-4");
}

#[test]
fn folded_model_matches_pytorch() {
    let weights = deps::seeded_weights();
    let model = Resnet50::load(&weights, Device::Cpu, Precision::Fp32).expect("load weights");
    let input = input();
    let ours = model.forward(&input).expect("forward");
    let reference = reference(&weights, &input);
    assert_eq!(ours.size(), vec![2, 2048]);
    // Folding batch-norm reorders float arithmetic: not bit-exact, but close.
    let scale = reference.abs().max().double_value(&[]);
    let diff = max_abs(&ours, &reference);
    println!("folded model: max abs diff {diff:e} (largest value {scale:.3})");
    assert!(diff <= 1e-4 * scale.max(1.0) * 2.0, "max abs diff {diff}");
    for i in 0..2 {
        let a = Vec::<f32>::try_from(ours.get(i)).unwrap();
        let b = Vec::<f32>::try_from(reference.get(i)).unwrap();
        let c = pyref::cosine(&a, &b);
        assert!(c >= 0.99999, "cosine {c}");
    }
}

#[test]
fn missing_weights_are_a_clear_error() {
    let err = Resnet50::load(
        "/nonexistent/w.safetensors".as_ref(),
        Device::Cpu,
        Precision::Fp32,
    )
    .err()
    .expect("error");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn wrong_weights_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    let t = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("conv1.weight", &t)], &bad).unwrap();
    let err = Resnet50::load(&bad, Device::Cpu, Precision::Fp32)
        .err()
        .expect("error");
    assert!(
        err.to_string()
            .contains("not a usable torchvision ResNet50"),
        "{err}"
    );
}

#[test]
fn fp16_on_cpu_is_refused() {
    let err = Resnet50::load(&deps::seeded_weights(), Device::Cpu, Precision::Fp16)
        .err()
        .expect("error");
    assert!(err.to_string().contains("not supported"), "{err}");
}
