//! The embedder: image bytes in, ResNet50 feature vectors out.
//!
//! The core (`preprocess`, `model`, `batcher`) knows nothing of gRPC;
//! `service` and `server` wire it to the `imgsearch.v1.Embedder` API.

pub mod batcher;
pub mod config;
mod cuda;
pub mod error;
mod fault;
pub mod fingerprint;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod server;
pub mod service;

pub use model::{DeviceChoice, ModelError, Precision, Resnet50};
