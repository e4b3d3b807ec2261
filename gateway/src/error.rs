//! The gateway's one error type. Its mapping to gRPC status codes, exhaustive,
//! is the service's: `service/status.rs`.

use milvus::v2::error::Error as MilvusError;

/// Why a gateway call failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("collection {0:?} does not exist")]
    CollectionNotFound(String),
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("Milvus is unavailable: {0}")]
    MilvusUnavailable(String),
    #[error("Milvus failed: {0}")]
    Milvus(String),
    #[error("no embedder is available: {0}")]
    EmbedderUnavailable(String),
    #[error("embedders are overloaded: {0}")]
    Overloaded(String),
    #[error("embedder failed: {0}")]
    Embedder(String),
    #[error(
        "collection {collection:?} holds vectors of model {recorded:?}, but the embedder runs \
         {found:?}; vectors of different models cannot be compared (point the gateway at \
         embedders with the collection's weights, or create a new collection)"
    )]
    ModelMismatch {
        collection: String,
        recorded: String,
        found: String,
    },
    #[error("{0}")]
    Deadline(String),
    #[error("{0}")]
    RowNotFound(String),
    /// The gateway's own fault: a task that failed (panicked) mid-call.
    #[error("internal error: {0}")]
    Internal(String),
    /// Flags, secrets or files the gateway cannot start (or reload) with.
    #[error("{0}")]
    Config(String),
}

impl From<MilvusError> for GatewayError {
    fn from(e: MilvusError) -> Self {
        match &e {
            MilvusError::Grpc(_) | MilvusError::Timeout(_) => {
                GatewayError::MilvusUnavailable(e.to_string())
            }
            MilvusError::RetryExhausted { source, .. }
                if matches!(**source, MilvusError::Grpc(_) | MilvusError::Timeout(_)) =>
            {
                GatewayError::MilvusUnavailable(e.to_string())
            }
            MilvusError::Validation(_) => GatewayError::InvalidArgument(e.to_string()),
            _ => GatewayError::Milvus(e.to_string()),
        }
    }
}
