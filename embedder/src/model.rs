//! ResNet50 minus its fc layer on tch, with weights from a safetensors file
//! holding a torchvision `state_dict`.
//!
//! One loading path for every weights file: the tutorial's IMAGENET1K_V1
//! (converted by `scripts/export_weights.py --imagenet`) and the seeded random
//! weights tests use are read by the same [`Resnet50::load`], which checks
//! names and shapes through tch's own ResNet50 definition (torchvision's
//! names), then folds each batch-norm into the convolution before it. Folding
//! is what makes a frozen TorchScript graph fast; doing it at load time gets
//! the gain without TorchScript. In eval mode batch-norm is an affine map per
//! channel, so `bn(conv(x, w)) = conv(x, w * s) + (beta - mean * s)` with
//! `s = gamma / sqrt(var + eps)`, computed in f64.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use tch::{nn, Device, Kind, Tensor};

use crate::preprocess::{CROP, TENSOR_LEN};

/// Length of the vectors this model returns.
pub const DIMENSION: i64 = 2048;
/// The model's name, the first part of its fingerprint.
pub const MODEL_NAME: &str = "resnet50-no-fc";
/// torchvision's BatchNorm2d epsilon.
const BN_EPS: f64 = 1e-5;
/// (blocks, stride) of layer1..layer4.
const LAYERS: [(usize, i64); 4] = [(3, 1), (4, 2), (6, 2), (3, 2)];

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("weights file {0} does not exist")]
    WeightsMissing(PathBuf),
    #[error("weights file {0} cannot be read: {1}")]
    WeightsUnreadable(PathBuf, #[source] std::io::Error),
    #[error("weights file {path} is not a usable torchvision ResNet50 state_dict: {source}")]
    WeightsInvalid {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
    #[error("device {device} is not available: {why}")]
    DeviceUnavailable { device: String, why: String },
    #[error("precision {precision} is not supported on {device}")]
    PrecisionUnsupported {
        precision: Precision,
        device: String,
    },
    #[error("inference failed: {0}")]
    Inference(#[from] tch::TchError),
}

/// Numeric precision of inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "fp16" => Ok(Precision::Fp16),
            _ => Err(format!("unknown precision {s:?} (fp32, bf16 or fp16)")),
        }
    }
}

/// Where to run: `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("unknown device {s:?} (auto, cpu, cuda or cuda:N)")),
        }
    }
}

impl DeviceChoice {
    /// The tch device. `cuda` without that device is an error saying what is
    /// missing; `auto` then runs on the CPU and says why in the log.
    pub fn resolve(self) -> Result<Device, ModelError> {
        let n = match self {
            DeviceChoice::Cpu => return Ok(Device::Cpu),
            DeviceChoice::Auto => 0,
            DeviceChoice::Cuda(n) => n,
        };
        let why = match crate::cuda::probe() {
            Ok(count) if n < count => return Ok(Device::Cuda(n)),
            Ok(count) => format!("this machine has {count} CUDA device(s)"),
            Err(why) => why,
        };
        if self == DeviceChoice::Auto {
            tracing::info!(reason = %why, "device auto: no usable GPU, running on the CPU");
            return Ok(Device::Cpu);
        }
        Err(ModelError::DeviceUnavailable {
            device: format!("cuda:{n}"),
            why,
        })
    }
}

/// Human name of a device: `cpu` or `cuda:N`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_string(),
    }
}

/// A convolution with its batch-norm folded in.
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            Some(&self.bias),
            [self.stride; 2],
            [self.padding; 2],
            [1, 1],
            1,
        )
    }
}

struct Bottleneck {
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
    downsample: Option<Conv>,
}

/// A loaded ResNet50 feature extractor.
pub struct Resnet50 {
    stem: Conv,
    blocks: Vec<Bottleneck>,
    device: Device,
    precision: Precision,
    channels_last: bool,
}

/// Strides that make libtorch pick its channels-last convolution kernels
/// (faster on CPU); tch has no memory-format API, so a permute round trip
/// produces them.
fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

impl Resnet50 {
    /// Loads torchvision-named weights onto `device` in `precision`. Extra
    /// entries (the `fc.*` head, `num_batches_tracked`) are ignored; a
    /// missing or misshapen parameter is an error naming it.
    pub fn load(weights: &Path, device: Device, precision: Precision) -> Result<Self, ModelError> {
        if precision == Precision::Fp16 && device == Device::Cpu {
            return Err(ModelError::PrecisionUnsupported {
                precision,
                device: device_name(device),
            });
        }
        if !weights.is_file() {
            return Err(ModelError::WeightsMissing(weights.to_path_buf()));
        }
        let invalid = |source| ModelError::WeightsInvalid {
            path: weights.to_path_buf(),
            source,
        };
        // tch's ResNet50 declares every parameter with torchvision's name and
        // shape; loading into it validates the file.
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _ = tch::vision::resnet::resnet50_no_final_layer(&vs.root());
        vs.load(weights).map_err(invalid)?;
        let vars = vs.variables();
        let channels_last = device == Device::Cpu;
        let fold = |conv: &str, bn: &str, stride: i64, padding: i64| -> Result<Conv, ModelError> {
            fold_bn(
                &vars,
                conv,
                bn,
                stride,
                padding,
                device,
                precision,
                channels_last,
            )
            .map_err(invalid)
        };
        let stem = fold("conv1", "bn1", 2, 3)?;
        let mut blocks = Vec::new();
        for (l, &(n, stride)) in LAYERS.iter().enumerate() {
            for b in 0..n {
                let p = format!("layer{}.{b}", l + 1);
                let s = if b == 0 { stride } else { 1 };
                blocks.push(Bottleneck {
                    conv1: fold(&format!("{p}.conv1"), &format!("{p}.bn1"), 1, 0)?,
                    conv2: fold(&format!("{p}.conv2"), &format!("{p}.bn2"), s, 1)?,
                    conv3: fold(&format!("{p}.conv3"), &format!("{p}.bn3"), 1, 0)?,
                    downsample: if b == 0 {
                        Some(fold(
                            &format!("{p}.downsample.0"),
                            &format!("{p}.downsample.1"),
                            s,
                            0,
                        )?)
                    } else {
                        None
                    },
                });
            }
        }
        Ok(Self {
            stem,
            blocks,
            device,
            precision,
            channels_last,
        })
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The precision inference runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs preprocessed images laid end to end (`N × TENSOR_LEN` floats, as
    /// `preprocess` makes them) and returns their vectors end to end
    /// (`N × DIMENSION`).
    pub fn embed_flat(&self, images: &[f32]) -> Result<Vec<f32>, ModelError> {
        let n = (images.len() / TENSOR_LEN) as i64;
        let side = CROP as i64;
        let input = Tensor::from_slice(images).view([n, 3, side, side]);
        Ok(Vec::<f32>::try_from(self.forward(&input)?.flatten(0, -1))?)
    }

    /// Runs a normalised `[N, 3, 224, 224]` f32 batch and returns `[N, 2048]`
    /// f32 on the CPU.
    pub fn forward(&self, batch: &Tensor) -> Result<Tensor, ModelError> {
        let _guard = tch::no_grad_guard();
        let mut x = batch
            .f_to_device(self.device)?
            .f_to_kind(self.precision.kind())?;
        if self.channels_last {
            x = to_channels_last(&x);
        }
        let mut x =
            self.stem
                .forward(&x)
                .relu_()
                .f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        for b in &self.blocks {
            let mut y = b.conv1.forward(&x).relu_();
            y = b.conv2.forward(&y).relu_();
            y = b.conv3.forward(&y);
            let identity = match &b.downsample {
                Some(d) => d.forward(&x),
                None => x,
            };
            x = (y + identity).relu_();
        }
        let out = x.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)?;
        Ok(out.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?)
    }
}

#[allow(clippy::too_many_arguments)]
fn fold_bn(
    vars: &HashMap<String, Tensor>,
    conv: &str,
    bn: &str,
    stride: i64,
    padding: i64,
    device: Device,
    precision: Precision,
    channels_last: bool,
) -> Result<Conv, tch::TchError> {
    let get = |name: String| {
        vars.get(&name)
            .map(|t| t.to_kind(Kind::Double))
            .ok_or_else(|| tch::TchError::Kind(format!("missing parameter {name}")))
    };
    let w = get(format!("{conv}.weight"))?;
    let gamma = get(format!("{bn}.weight"))?;
    let beta = get(format!("{bn}.bias"))?;
    let mean = get(format!("{bn}.running_mean"))?;
    let var = get(format!("{bn}.running_var"))?;
    let scale = gamma / (var + BN_EPS).sqrt();
    let weight = (w * scale.view([-1, 1, 1, 1]))
        .to_kind(precision.kind())
        .to_device(device);
    let bias = (beta - mean * scale)
        .to_kind(precision.kind())
        .to_device(device);
    let weight = if channels_last {
        to_channels_last(&weight)
    } else {
        weight
    };
    Ok(Conv {
        weight,
        bias,
        stride,
        padding,
    })
}
