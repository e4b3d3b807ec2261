//! The core's errors and streams in gRPC's terms, at the edge: each
//! [`GatewayError`] maps to one status code (exhaustively: a new variant
//! must choose), and the caller's message streams and the answer streams
//! are converted here, so ingest and search know nothing of tonic.

use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::{answers::AnswerStream, error::GatewayError};

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        let msg = e.to_string();
        match e {
            GatewayError::CollectionNotFound(_) | GatewayError::RowNotFound(_) => {
                Status::not_found(msg)
            }
            GatewayError::CollectionExists(_) => Status::already_exists(msg),
            GatewayError::InvalidArgument(_) | GatewayError::MilvusRefused(_) => {
                Status::invalid_argument(msg)
            }
            GatewayError::MilvusUnavailable(_) | GatewayError::EmbedderUnavailable(_) => {
                Status::unavailable(msg)
            }
            GatewayError::Overloaded(_) | GatewayError::MilvusThrottled(_) => {
                let mut s = Status::resource_exhausted(msg);
                imgsearch_common::grpc::retry_pushback(&mut s);
                s
            }
            GatewayError::Milvus(_) | GatewayError::Embedder(_) => Status::internal(msg),
            GatewayError::ModelMismatch { .. }
            | GatewayError::FingerprintMismatch { .. }
            | GatewayError::NeedsExtended { .. } => Status::failed_precondition(msg),
            GatewayError::Deadline(_) => Status::deadline_exceeded(msg),
            GatewayError::Internal(_) => Status::internal(msg),
            // Never a caller's doing, and never met while serving.
            GatewayError::Config(_) => Status::internal(msg),
        }
    }
}

/// An answer stream of the core, as the transport sends it.
pub type Answers<T> =
    tokio_stream::adapters::Map<AnswerStream<T>, fn(Result<T, GatewayError>) -> Result<T, Status>>;

fn to_status<T>(result: Result<T, GatewayError>) -> Result<T, Status> {
    result.map_err(Status::from)
}

/// The core's answers with each error as its status.
pub fn answers<T>(stream: AnswerStream<T>) -> Answers<T> {
    stream.map(to_status::<T> as fn(_) -> _)
}

/// A caller's messages in the core's terms: a stream the transport broke
/// (a reset, a malformed frame) is an invalid request.
pub fn requests<T>(
    stream: Streaming<T>,
    rpc: &'static str,
) -> impl Stream<Item = Result<T, GatewayError>> + Send + Unpin + 'static
where
    T: Send + 'static,
{
    stream.map(move |r| {
        r.map_err(|s| {
            GatewayError::InvalidArgument(format!("the {rpc} stream failed: {}", s.message()))
        })
    })
}
