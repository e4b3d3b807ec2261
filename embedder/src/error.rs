//! The embedder's one error type, and how it reaches callers: as a per-item
//! `ItemError` inside a stream, or as a `tonic::Status` for a whole call.

use imgsearch_proto::v1::{ErrorKind, ItemError};

use crate::preprocess::ImageError;

/// Why one image got no vector.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("embedder queue is full; retry later")]
    Overloaded,
    #[error("embedder is not ready yet (loading or warming up the model)")]
    NotReady,
    #[error("embedder is shutting down")]
    ShuttingDown,
    /// The model thread died; this replica is draining and will exit.
    #[error("embedder model failed ({0}); retry on another replica")]
    ModelFailed(String),
    #[error("preprocessing panicked: {0}")]
    Panicked(String),
}

impl EmbedError {
    /// The class of failure for the wire. Exhaustive on purpose: a new
    /// variant must choose its kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EmbedError::Image(ImageError::Empty | ImageError::Invalid(_)) => {
                ErrorKind::InvalidImage
            }
            EmbedError::Image(ImageError::OverLimit { .. } | ImageError::Resize(_)) => {
                ErrorKind::ImageTooLarge
            }
            EmbedError::Overloaded => ErrorKind::Overloaded,
            EmbedError::NotReady | EmbedError::ShuttingDown | EmbedError::ModelFailed(_) => {
                ErrorKind::Unavailable
            }
            EmbedError::Panicked(_) => ErrorKind::Internal,
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
            ErrorKind::NotFound => "not_found",
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
            EmbedError::Image(_) => tonic::Status::invalid_argument(msg),
            EmbedError::Overloaded => tonic::Status::resource_exhausted(msg),
            EmbedError::NotReady | EmbedError::ShuttingDown | EmbedError::ModelFailed(_) => {
                tonic::Status::unavailable(msg)
            }
            EmbedError::Panicked(_) => tonic::Status::internal(msg),
        }
    }
}
