//! ResNet50 minus its fc layer, on tch, with weights from a safetensors file
//! holding a torchvision `state_dict`.
//!
//! One loading path for every weights file: the tutorial's IMAGENET1K_V1
//! converted by `scripts/export_weights.py --imagenet`, and the seeded random
//! weights tests use, are read by the same [`Resnet50::load`].

use std::path::{Path, PathBuf};

use tch::{nn, nn::ModuleT, Device, Tensor};

/// Length of the vectors this model returns.
pub const DIMENSION: i64 = 2048;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("weights file {0} does not exist")]
    WeightsMissing(PathBuf),
    #[error("weights file {path} is not a usable torchvision ResNet50 state_dict: {source}")]
    WeightsInvalid {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
    #[error("inference failed: {0}")]
    Inference(#[from] tch::TchError),
}

/// A loaded ResNet50 feature extractor.
pub struct Resnet50 {
    // Owns the parameters `net` reads.
    _vs: nn::VarStore,
    net: Box<dyn ModuleT + Send>,
    device: Device,
}

impl Resnet50 {
    /// Loads torchvision-named weights onto `device`. Extra entries (the `fc.*`
    /// head, `num_batches_tracked`) are ignored; a missing or misshapen
    /// parameter is an error naming it.
    pub fn load(weights: &Path, device: Device) -> Result<Self, ModelError> {
        if !weights.is_file() {
            return Err(ModelError::WeightsMissing(weights.to_path_buf()));
        }
        let mut vs = nn::VarStore::new(device);
        let net = Box::new(tch::vision::resnet::resnet50_no_final_layer(&vs.root()));
        vs.load(weights).map_err(|source| ModelError::WeightsInvalid {
            path: weights.to_path_buf(),
            source,
        })?;
        vs.freeze();
        Ok(Self { _vs: vs, net, device })
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs a normalised `[N, 3, 224, 224]` batch and returns `[N, 2048]`.
    pub fn forward(&self, batch: &Tensor) -> Result<Tensor, ModelError> {
        let _guard = tch::no_grad_guard();
        let out = self.net.forward_t(&batch.to_device(self.device), false);
        Ok(out.f_reshape([-1, DIMENSION])?)
    }
}
