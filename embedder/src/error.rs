//! The embedder's one error type, and how it reaches callers: as a per-item
//! `ItemError` inside a stream, or as a `tonic::Status` for a whole call.

use imgsearch_proto::v1::{ErrorKind, ItemError};

use crate::preprocess::DecodeError;

/// Why one image got no vector.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("embedder queue is full; retry later")]
    Overloaded,
    #[error("embedder is not ready yet (loading or warming up the model)")]
    NotReady,
    #[error("embedder is shutting down")]
    ShuttingDown,
    #[error("inference failed: {0}")]
    Inference(String),
}

impl EmbedError {
    /// The class of failure for the wire. Exhaustive on purpose: a new
    /// variant must choose its kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EmbedError::Decode(DecodeError::Empty | DecodeError::Invalid(_)) => {
                ErrorKind::InvalidImage
            }
            EmbedError::Decode(
                DecodeError::TooManyBytes { .. } | DecodeError::TooManyPixels { .. },
            ) => ErrorKind::ImageTooLarge,
            EmbedError::Overloaded => ErrorKind::Overloaded,
            EmbedError::NotReady | EmbedError::ShuttingDown => ErrorKind::Unavailable,
            EmbedError::Inference(_) => ErrorKind::Internal,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self.kind() {
            ErrorKind::InvalidImage => "invalid_image",
            ErrorKind::ImageTooLarge => "image_too_large",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Internal | ErrorKind::Unspecified => "internal",
        }
    }

    /// The per-item form.
    pub fn to_item(&self) -> ItemError {
        ItemError {
            kind: self.kind() as i32,
            message: self.to_string(),
        }
    }
}

impl From<EmbedError> for tonic::Status {
    fn from(e: EmbedError) -> Self {
        let msg = e.to_string();
        match e {
            EmbedError::Decode(_) => tonic::Status::invalid_argument(msg),
            EmbedError::Overloaded => tonic::Status::resource_exhausted(msg),
            EmbedError::NotReady | EmbedError::ShuttingDown => tonic::Status::unavailable(msg),
            EmbedError::Inference(_) => tonic::Status::internal(msg),
        }
    }
}
