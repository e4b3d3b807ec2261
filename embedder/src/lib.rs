//! The embedder: image bytes in, ResNet50 feature vectors out.
//!
//! The core (preprocessing, model, batching) knows nothing of gRPC; the
//! service module wires it to the `imgsearch.v1.Embedder` API.

pub mod model;
pub mod preprocess;

pub use model::{DeviceChoice, ModelError, Precision, Resnet50};
