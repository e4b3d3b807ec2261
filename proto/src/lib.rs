//! The imgsearch gRPC contract, generated from `proto/imgsearch/v1/*.proto`.
//!
//! Both services (`imgsearch.v1.Embedder`, `imgsearch.v1.ImageSearch`) and
//! their messages live in [`v1`]; [`FILE_DESCRIPTOR_SET`] feeds server
//! reflection so `grpcurl list/describe` work with no proto files at hand.

pub mod api_key;

/// Version 1 of the API (`package imgsearch.v1`).
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("imgsearch.v1");
}

/// Encoded `FileDescriptorSet` of every imgsearch proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("imgsearch_descriptor");

/// Length of a ResNet50 (minus fc) embedding, the tutorial's `DIMENSION`.
pub const RESNET50_DIMENSION: u32 = 2048;
