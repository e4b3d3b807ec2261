//! The embedder: image bytes in, ResNet50 feature vectors out.
//!
//! The model code here knows nothing of gRPC; the service wires it to the
//! `imgsearch.v1.Embedder` API.

pub mod model;

pub use model::{ModelError, Resnet50};
