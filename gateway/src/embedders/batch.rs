//! `EmbedBatch` (searches): one call goes to the replicas in order until one
//! answers, a busy round waits a jittered backoff within the call's
//! deadline, and what each answer says is recorded on its replica.

use std::time::{Duration, Instant};

use imgsearch_common::trace::TraceContext;
use imgsearch_proto::{
    v1::{EmbedBatchRequest, EmbedBatchResponse, EmbedResponse},
    Bytes,
};
use tracing::warn;

use super::{
    failure::{classify, status_error, Failure},
    replica::{Replica, Work},
    Embedders,
};
use crate::{error::GatewayError, milvus::CollectionSpec};

/// How one round of [`Embedders::embed_batch`] ended.
enum Round {
    Answered(Result<EmbedBatchResponse, GatewayError>),
    /// Every replica that could serve it was busy; the last one's words.
    Busy(String),
}

/// How one try on one replica ended.
enum Try {
    Done(Result<EmbedBatchResponse, GatewayError>),
    Busy(String),
    /// Another replica may take it.
    Next(GatewayError),
}

/// The pause before round `round + 1`: 50 ms doubling to 1 s, jittered.
fn backoff(round: u32) -> Duration {
    imgsearch_common::backoff::jittered(Duration::from_millis(50), round, Duration::from_secs(1))
}

impl Embedders {
    /// Embeds `images` with as few `EmbedBatch` calls as the message limit
    /// allows (a stream's batch may hold more bytes than one message), in
    /// order, each call tagged with `trace`.
    pub async fn embed_images(
        &self,
        spec: &CollectionSpec,
        trace: &TraceContext,
        images: Vec<Bytes>,
    ) -> Result<Vec<EmbedResponse>, GatewayError> {
        // Room for the framing of each image in the request.
        let room = self.max_message_bytes.saturating_sub(64 << 10).max(1);
        let mut results = Vec::with_capacity(images.len());
        let mut chunk: Vec<Bytes> = Vec::new();
        let mut bytes = 0;
        let mut images = images.into_iter().peekable();
        while let Some(image) = images.next() {
            bytes += image.len() + 16;
            chunk.push(image);
            let full = images
                .peek()
                .is_none_or(|next| bytes + next.len() + 16 > room);
            if full {
                let mut request = tonic::Request::new(EmbedBatchRequest {
                    images: std::mem::take(&mut chunk),
                });
                trace.inject(&mut request);
                results.extend(self.embed_batch(spec, request).await?.results);
                bytes = 0;
            }
        }
        Ok(results)
    }

    /// `EmbedBatch` on a replica whose model matches the collection's, in
    /// [`Embedders::order`]: a failed replica is recorded so, and the call
    /// goes to the next when it never reached the first's handler. A replica
    /// that answers RESOURCE_EXHAUSTED (its queue had no place within the
    /// wait the call allowed) is skipped for a moment; when every replica is
    /// busy the call waits a jittered, growing backoff and tries again,
    /// until `--embed-timeout-secs` has passed since it began.
    pub async fn embed_batch(
        &self,
        spec: &CollectionSpec,
        request: tonic::Request<EmbedBatchRequest>,
    ) -> Result<EmbedBatchResponse, GatewayError> {
        let deadline = Instant::now() + self.call_timeout;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let mut round = 0u32;
        loop {
            let busy = match self
                .embed_batch_round(spec, &metadata, &body, deadline)
                .await
            {
                Round::Answered(result) => return result,
                Round::Busy(busy) => busy,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let pause = backoff(round);
            if pause >= left {
                return Err(GatewayError::Overloaded(format!(
                    "every embedder stayed busy for {} s (--embed-timeout-secs): {busy}",
                    self.call_timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            round += 1;
        }
    }

    /// One try of every replica in turn.
    async fn embed_batch_round(
        &self,
        spec: &CollectionSpec,
        metadata: &tonic::metadata::MetadataMap,
        body: &EmbedBatchRequest,
        deadline: Instant,
    ) -> Round {
        let mut last = None;
        let mut refused = None;
        let mut busy = None;
        for replica in self.order(Work::Call) {
            match self.mismatch(&replica, spec).await {
                Ok(None) => {}
                Ok(Some(found)) => {
                    refused = Some(found);
                    continue;
                }
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            match self.try_replica(&replica, metadata, body, deadline).await {
                Try::Done(result) => return Round::Answered(result),
                Try::Busy(words) => busy = Some(words),
                Try::Next(e) => last = Some(e),
            }
        }
        Round::Answered(Err(match (busy, refused, last) {
            (Some(busy), _, _) => return Round::Busy(busy),
            (None, Some(found), _) => Self::mismatch_error(spec, found),
            (None, None, Some(e)) => e,
            (None, None, None) => GatewayError::EmbedderUnavailable("no embedder".into()),
        }))
    }

    /// One call on `replica`, recorded on it.
    async fn try_replica(
        &self,
        replica: &std::sync::Arc<Replica>,
        metadata: &tonic::metadata::MetadataMap,
        body: &EmbedBatchRequest,
        deadline: Instant,
    ) -> Try {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut req = tonic::Request::new(body.clone());
        *req.metadata_mut() = metadata.clone();
        // The embedder learns the deadline (grpc-timeout) and waits for a
        // queue place only within it; the local timeout, a second later,
        // speaks only for an embedder that does not answer.
        req.set_timeout(left);
        let _attempt = replica.begin(Work::Call);
        let began = Instant::now();
        let mut client = replica.unary.clone();
        let call = tokio::time::timeout(left + Duration::from_secs(1), client.embed_batch(req));
        let status = match call.await {
            Ok(Ok(answer)) => {
                replica.succeeded(Some(began.elapsed()));
                return Try::Done(Ok(answer.into_inner()));
            }
            Ok(Err(s)) => s,
            Err(_) => tonic::Status::deadline_exceeded("no answer"),
        };
        let silent = matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ) && Instant::now() >= deadline;
        if silent {
            warn!(embedder = %replica.uri, "embedder did not answer in time; not retried elsewhere");
            self.failed(replica, began.elapsed());
            return Try::Done(Err(GatewayError::EmbedderUnavailable(format!(
                "{} did not answer within {} s (--embed-timeout-secs)",
                replica.uri,
                self.call_timeout.as_secs()
            ))));
        }
        match classify(&status) {
            Failure::Busy => {
                self.mark_busy(replica);
                Try::Busy(status.message().to_string())
            }
            Failure::NeverReached => {
                warn!(embedder = %replica.uri, %status, "embedder unreachable; trying another");
                self.failed(replica, began.elapsed());
                Try::Next(status_error(status))
            }
            Failure::DiedHolding => {
                warn!(embedder = %replica.uri, %status,
                    "embedder failed while holding the call; not retried elsewhere");
                self.failed(replica, began.elapsed());
                Try::Done(Err(status_error(status)))
            }
            Failure::Answered => {
                // Its handler answered: the replica works, the request not.
                replica.succeeded(None);
                Try::Done(Err(status_error(status)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_second_with_jitter() {
        assert!((25..=50).contains(&backoff(0).as_millis()));
        assert!((500..=1000).contains(&backoff(9).as_millis()));
    }
}
