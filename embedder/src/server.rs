//! Wiring: gRPC server with health and reflection, metrics, model start-up
//! and graceful shutdown.
//!
//! Start-up order: the gRPC port opens at once with health NOT_SERVING (so
//! Kubernetes probes get answers during the model load), the model loads and
//! warms up on a blocking thread, then health flips to SERVING.
//! Shutdown: health NOT_SERVING, streams stop reading and answer what they
//! admitted, then end with UNAVAILABLE; the server drains within the grace
//! period; the model thread finishes its batch.

use std::{future::Future, sync::Arc, time::Duration};

use imgsearch_common::{grpc::Health, serve::serve, telemetry::Telemetry};
use imgsearch_proto::v1::embedder_server::EmbedderServer;
use tch::{Device, Kind, Tensor};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    batcher::Batcher,
    config::Config,
    metrics::Metrics,
    model::{self, Resnet50},
    service::{EmbedderService, ModelInfo, Ready},
};

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Serve(#[from] imgsearch_common::serve::ServeError),
    /// Exits non-zero so that Kubernetes restarts the replica.
    #[error("the model failed: {0}")]
    ModelFailed(String),
}

/// Runs the embedder until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Metrics::new();
    let stop = CancellationToken::new();
    let (ready_tx, ready_rx) = watch::channel(None);
    let device = cfg.device.resolve()?;
    let batch = cfg.batch_config(device != Device::Cpu);
    let in_flight = cfg.stream_in_flight.unwrap_or(2 * batch.max_batch);
    let service = EmbedderService::new(ready_rx, stop.clone(), in_flight);
    let grpc = EmbedderServer::new(service)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let registry = metrics.registry();
    // Gateways poll Info for health every few seconds.
    let telemetry = Telemetry::new("embedder", &registry).polled(&["Info"]);
    let serving = serve(&cfg.serve_options(), telemetry, registry, grpc).await?;

    // Load and warm up while the port already answers health checks.
    tch::set_num_threads(cfg.model_threads(device != Device::Cpu) as i32);
    let (weights, precision, max_batch) = (cfg.weights.clone(), cfg.precision, batch.max_batch);
    let mode = batch.preprocess;
    let (model, fingerprint) =
        tokio::task::spawn_blocking(move || -> Result<_, model::ModelError> {
            let model = Resnet50::load(&weights, device, precision)?;
            let fingerprint = crate::fingerprint::fingerprint(model::MODEL_NAME, &weights, mode)
                .map_err(|e| model::ModelError::WeightsUnreadable(weights.clone(), e))?;
            let start = std::time::Instant::now();
            for n in [1, max_batch as i64] {
                let _ =
                    model.forward(&Tensor::zeros([n, 3, 224, 224], (Kind::Float, Device::Cpu)))?;
            }
            info!(
                elapsed_ms = start.elapsed().as_millis() as u64,
                "model warmed up"
            );
            Ok((model, fingerprint))
        })
        .await
        .expect("model load task")?;
    let info = ModelInfo {
        device: model::device_name(device),
        precision: precision.to_string(),
        preprocess: mode,
        max_batch: batch.max_batch,
        max_image_bytes: batch.limits.max_bytes as u64,
        max_image_pixels: batch.limits.max_pixels,
        fingerprint,
        stall_timeout: Duration::from_secs(cfg.stall_timeout_secs),
    };
    info!(
        ?info,
        threads = tch::get_num_threads(),
        preprocess_workers = batch.preprocess_workers,
        "serving"
    );
    let info = Arc::new(info);
    let (batcher, model_thread) = Batcher::start(model, &batch, metrics.clone());
    let _ = ready_tx.send(Some(Ready {
        batcher: batcher.clone(),
        info: info.clone(),
    }));
    serving.health().set(true).await;
    let watchdog = tokio::spawn(watch_progress(batcher.clone(), info, serving.health()));

    let failure = tokio::select! {
        _ = shutdown => None,
        reason = batcher.failed() => Some(reason),
    };
    match &failure {
        None => info!("shutting down"),
        Some(reason) => error!(%reason, "model failed: draining, then exiting non-zero"),
    }
    watchdog.abort();
    serving.health().set(false).await;
    stop.cancel();
    // Images already admitted finish (streams wait for them) while the
    // transport still takes frames, then the server drains.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cfg.shutdown_grace_secs);
    while batcher.queue_depth() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // send_replace: the server may already have dropped every receiver, and
    // a plain send would then keep the last Batcher handle alive forever.
    ready_tx.send_replace(None);
    drop(batcher);
    serving.stop().await?;
    tokio::task::spawn_blocking(move || model_thread.join())
        .await
        .ok();
    info!("stopped");
    failure.map_or(Ok(()), |reason| Err(ServeError::ModelFailed(reason)))
}

/// Health that follows the model's progress: NOT_SERVING while images wait
/// past `--stall-timeout-secs` with no batch finished (a wedged GPU still
/// answers everything else), SERVING again once one finishes.
async fn watch_progress(batcher: Batcher, info: Arc<ModelInfo>, health: Health) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stalled = false;
    loop {
        tick.tick().await;
        let quiet = info.stalled_for(&batcher);
        let now_stalled = !quiet.is_zero();
        if now_stalled == stalled {
            continue;
        }
        stalled = now_stalled;
        if stalled {
            warn!(
                quiet_s = quiet.as_secs(),
                waiting = batcher.queue_depth(),
                "the model finished no batch while images waited (--stall-timeout-secs): \
                 NOT_SERVING until it does"
            );
        } else {
            info!("the model finishes batches again: SERVING");
        }
        health.set(!stalled).await;
    }
}
