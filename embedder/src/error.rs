//! The embedder's one error type. How it reaches callers (a per-item
//! `ItemError`, or a `tonic::Status` for a whole call) is the service's
//! business: `service/wire.rs`.

use crate::preprocess::ImageError;

/// Why one image got no vector.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Image(#[from] ImageError),
    /// No queue place came free within the wait the call allowed.
    #[error("no place in the embedder's queue came free within {} ms ({}); retry later", waited.as_millis(), deadline)]
    Overloaded {
        waited: std::time::Duration,
        /// Which deadline ran out, for the caller.
        deadline: &'static str,
    },
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
    /// A short label for metrics. Exhaustive on purpose: a new variant must
    /// choose its label.
    pub fn label(&self) -> &'static str {
        match self {
            EmbedError::Image(ImageError::Empty | ImageError::Invalid(_)) => "invalid_image",
            EmbedError::Image(ImageError::OverLimit { .. } | ImageError::Resize(_)) => {
                "image_too_large"
            }
            EmbedError::Overloaded { .. } => "overloaded",
            EmbedError::NotReady | EmbedError::ShuttingDown | EmbedError::ModelFailed(_) => {
                "unavailable"
            }
            EmbedError::Panicked(_) => "internal",
        }
    }
}
