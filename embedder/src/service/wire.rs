//! The embedder's results in the API's terms: a failed image as a per-item
//! `ItemError` of some `ErrorKind`, a failed call as a `tonic::Status`.

use imgsearch_proto::v1::{embed_response, EmbedResponse, ErrorKind, ItemError, Vector};
use tonic::Status;

use crate::{error::EmbedError, preprocess::ImageError};

/// The class of failure for the wire. Exhaustive on purpose: a new variant
/// must choose its kind.
pub fn kind(e: &EmbedError) -> ErrorKind {
    match e {
        EmbedError::Image(ImageError::Empty | ImageError::Invalid(_)) => ErrorKind::InvalidImage,
        EmbedError::Image(ImageError::OverLimit { .. } | ImageError::Resize(_)) => {
            ErrorKind::ImageTooLarge
        }
        EmbedError::Overloaded { .. } => ErrorKind::Overloaded,
        EmbedError::NotReady | EmbedError::ShuttingDown | EmbedError::ModelFailed(_) => {
            ErrorKind::Unavailable
        }
        EmbedError::Panicked(_) => ErrorKind::Internal,
    }
}

/// One image's answer: its vector, or why it has none.
pub fn response(id: String, result: Result<Vec<f32>, EmbedError>) -> EmbedResponse {
    let result = match result {
        Ok(values) => embed_response::Result::Vector(Vector { values }),
        Err(e) => embed_response::Result::Error(ItemError {
            kind: kind(&e) as i32,
            message: e.to_string(),
        }),
    };
    EmbedResponse {
        id,
        result: Some(result),
    }
}

impl From<EmbedError> for Status {
    fn from(e: EmbedError) -> Self {
        let msg = e.to_string();
        match e {
            EmbedError::Image(_) => Status::invalid_argument(msg),
            EmbedError::Overloaded { .. } => {
                let mut s = Status::resource_exhausted(msg);
                imgsearch_common::grpc::retry_pushback(&mut s);
                s
            }
            EmbedError::NotReady | EmbedError::ShuttingDown | EmbedError::ModelFailed(_) => {
                Status::unavailable(msg)
            }
            EmbedError::Panicked(_) => Status::internal(msg),
        }
    }
}
