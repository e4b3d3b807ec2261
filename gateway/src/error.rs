//! The gateway's one error type. Its mapping to gRPC status codes, exhaustive,
//! is the service's: `service/status.rs`.

use milvus::v2::error::{Error as MilvusError, ServerError};

use crate::milvus::refusal::{classify, Refusal};

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
    /// A refusal Milvus gave for no row's fault and no throttling.
    #[error("Milvus failed: {0}")]
    Milvus(String),
    /// Rate limits, "deny to write", memory or disk quotas: a busy Milvus,
    /// not a failed one.
    #[error("Milvus is throttling: {0}")]
    MilvusThrottled(String),
    /// Milvus refused what the request holds (a value it will not store).
    #[error("Milvus refused the request: {0}")]
    MilvusRefused(String),
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
    /// An Insert stream states vectors of another model than the
    /// collection's.
    #[error(
        "collection {collection:?} holds vectors of model {recorded:?}, but the stream states \
         {stated:?}; vectors of different models cannot be compared"
    )]
    FingerprintMismatch {
        collection: String,
        recorded: String,
        stated: String,
    },
    /// The collection has the tutorial's schema, and the call needs a field
    /// only an extended one holds.
    #[error(
        "collection {collection:?} has the tutorial's three fields; {what} needs a collection \
         created with --extended (CreateCollection extended: true)"
    )]
    NeedsExtended { collection: String, what: String },
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
            MilvusError::RetryExhausted { source, .. } => match &**source {
                MilvusError::Server(s) => Self::refused(s),
                _ => GatewayError::Milvus(e.to_string()),
            },
            MilvusError::Server(s) => Self::refused(s),
            MilvusError::Validation(_) => GatewayError::InvalidArgument(e.to_string()),
            _ => GatewayError::Milvus(e.to_string()),
        }
    }
}

impl GatewayError {
    /// A refusal Milvus sent in its reply, classified from its codes.
    pub fn from_milvus_status(code: i32, legacy_code: i32, reason: &str) -> Self {
        let text = format!("Milvus server error (code={code}, message={reason})");
        match classify(code, legacy_code, reason) {
            Refusal::Throttled => GatewayError::MilvusThrottled(text),
            Refusal::Rows => GatewayError::MilvusRefused(text),
            Refusal::Other => GatewayError::Milvus(text),
        }
    }

    fn refused(s: &ServerError) -> Self {
        Self::from_milvus_status(s.code(), s.legacy_code(), s.reason())
    }
}
