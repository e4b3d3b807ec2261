//! The Embed stream: images read only while the stream has a free slot
//! (its backpressure), each then waiting for a bulk place in the shared
//! queue before the next is read (so a busy replica slows the stream down
//! through HTTP/2 flow control instead of failing its images), answered as
//! soon as its vector is ready, and every admitted image answered before
//! the stream ends.

use std::sync::Arc;

use imgsearch_proto::v1::{EmbedRequest, EmbedResponse};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{info, Instrument, Span};

use super::{wire::response, Ready};
use crate::{batcher::Priority, error::EmbedError};

/// Answers `incoming` with at most `limit` images in flight, until it ends,
/// fails or `shutdown` is cancelled.
pub(super) fn answer<S>(
    ready: Ready,
    mut incoming: S,
    limit: usize,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<EmbedResponse, Status>>
where
    S: Stream<Item = Result<EmbedRequest, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<EmbedResponse, Status>>(limit);
    let task = async move {
        let in_flight = Arc::new(Semaphore::new(limit));
        let mut received = 0u64;
        let end: Option<Status> = loop {
            let permit = tokio::select! {
                p = in_flight.clone().acquire_owned() => p.expect("semaphore open"),
                _ = shutdown.cancelled() => break Some(EmbedError::ShuttingDown.into()),
            };
            let next = tokio::select! {
                m = incoming.next() => m,
                _ = shutdown.cancelled() => break Some(EmbedError::ShuttingDown.into()),
            };
            match next {
                None => break None,
                Some(Err(status)) => break Some(status),
                Some(Ok(EmbedRequest { id, image })) => {
                    received += 1;
                    let admitted = tokio::select! {
                        a = ready.batcher.admit(Priority::Bulk, image, None) => a,
                        _ = shutdown.cancelled() => {
                            let _ = tx.send(Ok(response(id, Err(EmbedError::ShuttingDown)))).await;
                            break Some(EmbedError::ShuttingDown.into());
                        }
                    };
                    let (batcher, tx) = (ready.batcher.clone(), tx.clone());
                    tokio::spawn(async move {
                        let result = match admitted {
                            Ok(a) => batcher.embed(a).await,
                            Err(e) => Err(e),
                        };
                        let _ = tx.send(Ok(response(id, result))).await;
                        drop(permit);
                    });
                }
            }
        };
        let _all = in_flight.acquire_many(limit as u32).await;
        info!(received, "embed stream done");
        if let Some(status) = end {
            let _ = tx.send(Err(status)).await;
        }
    };
    // In the call's span, which carries the trace id.
    tokio::spawn(task.instrument(Span::current()));
    ReceiverStream::new(rx)
}
