//! `imgsearch.v1.Embedder` over gRPC: thin handlers over the [`Batcher`];
//! the Embed stream's reading and answering in [`stream`], the wire forms
//! of errors and answers in [`wire`].

mod stream;
mod wire;

use std::{pin::Pin, sync::atomic::Ordering, sync::Arc, time::Duration};

use futures::Stream;
use imgsearch_proto::{
    limits::{MAX_EMBED_BATCH_IMAGES, MAX_QUEUE_WAIT_MS},
    v1::{
        embedder_server, EmbedBatchRequest, EmbedBatchResponse, EmbedRequest, EmbedResponse,
        InfoRequest, InfoResponse,
    },
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use self::wire::response;

use crate::{
    batcher::{Batcher, Priority},
    error::EmbedError,
};

/// What `Info` reports, fixed once the model is loaded.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub device: String,
    pub precision: String,
    pub preprocess: crate::preprocess::Mode,
    pub max_batch: usize,
    pub max_image_bytes: u64,
    pub max_image_pixels: u64,
    /// See [`crate::fingerprint`].
    pub fingerprint: String,
    /// How long images may wait with no batch finished before the model
    /// counts as stalled.
    pub stall_timeout: std::time::Duration,
}

impl ModelInfo {
    /// How long the model has been stalled, once past the timeout; zero
    /// before.
    pub fn stalled_for(&self, batcher: &Batcher) -> std::time::Duration {
        let quiet = batcher.stalled_for();
        if quiet > self.stall_timeout {
            quiet
        } else {
            std::time::Duration::ZERO
        }
    }
}

/// The embedder once the model is warm.
#[derive(Clone)]
pub struct Ready {
    pub batcher: Batcher,
    pub info: Arc<ModelInfo>,
}

/// The gRPC service. Before the model is warm every call is UNAVAILABLE.
#[derive(Clone)]
pub struct EmbedderService {
    ready: watch::Receiver<Option<Ready>>,
    shutdown: CancellationToken,
    /// Images of one stream in flight at once: the stream's backpressure.
    per_stream_in_flight: usize,
}

impl EmbedderService {
    pub fn new(
        ready: watch::Receiver<Option<Ready>>,
        shutdown: CancellationToken,
        per_stream_in_flight: usize,
    ) -> Self {
        Self {
            ready,
            shutdown,
            per_stream_in_flight: per_stream_in_flight.max(1),
        }
    }

    fn ready(&self) -> Result<Ready, Status> {
        if self.shutdown.is_cancelled() {
            return Err(EmbedError::ShuttingDown.into());
        }
        let ready = self.ready.borrow().clone().ok_or(EmbedError::NotReady)?;
        if let Some(reason) = ready.batcher.failure() {
            return Err(EmbedError::ModelFailed(reason).into());
        }
        Ok(ready)
    }
}

/// How long an EmbedBatch image may wait for a queue place: what the
/// caller's deadline leaves, less a tenth so that the refusal reaches the
/// caller before it gives up, or [`MAX_QUEUE_WAIT_MS`] without a deadline.
fn queue_wait(metadata: &tonic::metadata::MetadataMap) -> (Duration, &'static str) {
    match imgsearch_common::grpc::timeout_of(metadata) {
        Some(t) => (t.mul_f64(0.9), "the call's deadline"),
        None => (
            Duration::from_millis(MAX_QUEUE_WAIT_MS),
            "the embedder's longest queue wait for calls without a deadline",
        ),
    }
}

type EmbedStream = Pin<Box<dyn Stream<Item = Result<EmbedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl embedder_server::Embedder for EmbedderService {
    type EmbedStream = EmbedStream;

    async fn embed(
        &self,
        request: Request<Streaming<EmbedRequest>>,
    ) -> Result<Response<EmbedStream>, Status> {
        let ready = self.ready()?;
        let answers = stream::answer(
            ready,
            request.into_inner(),
            self.per_stream_in_flight,
            self.shutdown.clone(),
        );
        Ok(Response::new(Box::pin(answers)))
    }

    async fn embed_batch(
        &self,
        request: Request<EmbedBatchRequest>,
    ) -> Result<Response<EmbedBatchResponse>, Status> {
        let ready = self.ready()?;
        let wait = queue_wait(request.metadata());
        let images = request.into_inner().images;
        if images.len() > MAX_EMBED_BATCH_IMAGES {
            return Err(Status::invalid_argument(format!(
                "{} images in one EmbedBatch call; at most {MAX_EMBED_BATCH_IMAGES} (use the Embed stream for more)",
                images.len()
            )));
        }
        let batcher = &ready.batcher;
        let mut results = futures::future::join_all(images.into_iter().map(|image| async move {
            let admitted = batcher
                .admit(Priority::Interactive, image, Some(wait))
                .await?;
            batcher.embed(admitted).await
        }))
        .await;
        // On the unary path overload fails the call, so the caller retries
        // it whole.
        if let Some(i) = results
            .iter()
            .position(|r| matches!(r, Err(EmbedError::Overloaded { .. })))
        {
            if let Err(e) = results.swap_remove(i) {
                return Err(e.into());
            }
        }
        let results: Vec<_> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| response(i.to_string(), r))
            .collect();
        info!(images = results.len(), "embed batch done");
        Ok(Response::new(EmbedBatchResponse { results }))
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let ready = self.ready()?;
        let (info, stats) = (&ready.info, ready.batcher.stats());
        Ok(Response::new(InfoResponse {
            model: crate::model::MODEL_NAME.into(),
            dimension: crate::model::DIMENSION as u32,
            device: info.device.clone(),
            precision: info.precision.clone(),
            max_batch_size: info.max_batch as u32,
            max_image_bytes: info.max_image_bytes,
            max_image_pixels: info.max_image_pixels,
            version: env!("CARGO_PKG_VERSION").into(),
            batches_run: stats.batches.load(Ordering::Relaxed),
            images_embedded: stats.images.load(Ordering::Relaxed),
            fingerprint: info.fingerprint.clone(),
            preprocess: info.preprocess.to_string(),
            stalled_for_ms: info.stalled_for(&ready.batcher).as_millis() as u64,
        }))
    }
}
