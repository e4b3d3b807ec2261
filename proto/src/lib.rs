//! The imgsearch gRPC contract, generated from `proto/imgsearch/v1/*.proto`.
//!
//! Both services (`imgsearch.v1.Embedder`, `imgsearch.v1.ImageSearch`) and
//! their messages live in [`v1`]; [`FILE_DESCRIPTOR_SET`] feeds server
//! reflection so `grpcurl list/describe` work with no proto files at hand;
//! [`limits`] holds the API's limits, for servers and clients alike.

pub mod api_key;
pub mod limits;

/// Version 1 of the API (`package imgsearch.v1`).
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("imgsearch.v1");
}

impl v1::ErrorKind {
    /// The value's name without the `ERROR_KIND_` every value carries (the
    /// proto style guide's prefix): `INVALID_IMAGE`, for people to read.
    pub fn short_name(self) -> &'static str {
        let name = self.as_str_name();
        name.strip_prefix("ERROR_KIND_").unwrap_or(name)
    }
}

/// Encoded `FileDescriptorSet` of every imgsearch proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("imgsearch_descriptor");
