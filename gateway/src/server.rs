//! Wiring: gRPC server with health and reflection, the Milvus connection
//! kept alive in the background, graceful shutdown.
//!
//! The port opens at once with health NOT_SERVING; a background task
//! connects to Milvus (retrying until it answers) and flips health to SERVING
//! while both Milvus and an embedder answer, back to NOT_SERVING when either
//! stops answering.

use std::{future::Future, time::Duration};

use imgsearch_common::{admission::CallLimits, serve::serve, telemetry::Telemetry};
use imgsearch_proto::{limits::MILVUS_PROBE_TIMEOUT, v1::image_search_server::ImageSearchServer};
use tokio::sync::watch;
use tonic::server::NamedService;
use tracing::{info, warn};

use crate::{
    admission::{Admission, SEARCH_REQUEST_COPIES},
    auth::{guard::Guard, keys::ApiKeys},
    config::Config,
    embedders::Embedders,
    error::GatewayError,
    http,
    ingest::{Ingest, IngestConfig},
    metrics::Metrics,
    milvus::{MilvusConfig, MilvusStore},
    search::stream::SearchStreams,
    service::ImageSearchService,
};

const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] GatewayError),
    #[error("embedder TLS: {0}")]
    EmbedderTls(#[from] imgsearch_common::tls::TlsError),
    #[error(transparent)]
    Serve(#[from] imgsearch_common::serve::ServeError),
    #[error(transparent)]
    HttpListen(#[from] imgsearch_common::grpc::ListenError),
}

/// Runs the gateway until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    cfg.check()?;
    let milvus_cfg = cfg.milvus()?;
    let keys = cfg
        .api_keys_file
        .as_deref()
        .map(ApiKeys::load)
        .transpose()?;
    let metrics = Metrics::new();
    let embedders = Embedders::new(
        &cfg.embedders,
        cfg.embedder_dns,
        cfg.embedder_tls()?,
        cfg.max_message_bytes,
        Duration::from_secs(5),
        Duration::from_secs(cfg.embed_timeout_secs),
    )?;
    let (store_tx, store_rx) = watch::channel(None);
    let (service, limits) = data_path(&cfg, store_rx, &embedders, &metrics);
    let grpc = ImageSearchServer::new(service)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let keys_watch = keys.as_ref().map(ApiKeys::watch);
    announce_access(&cfg, keys.as_ref());
    let registry = metrics.registry();
    let guard = Guard::new(keys);
    let telemetry = Telemetry::new("gateway", &registry)
        .gate(guard.clone())
        .limits(limits);
    // The HTTP API calls the service through the same layer (shared
    // counters, gate and limits) as the gRPC port.
    let through_telemetry = tower::Layer::layer(
        &telemetry
            .clone()
            .for_service(ImageSearchServer::<ImageSearchService>::NAME),
        grpc.clone(),
    );
    let serving = serve(&cfg.serve_options(), telemetry, registry, grpc).await?;
    let http = match cfg.http_options()? {
        Some(options) => Some(http::serve(&options, through_telemetry, guard).await?),
        None => None,
    };

    let discovery = tokio::spawn(discover_embedders(embedders.clone(), metrics.clone()));
    let watcher = tokio::spawn(watch_dependencies(
        cfg.clone(),
        milvus_cfg,
        embedders,
        store_tx,
        serving.health(),
        metrics,
    ));
    shutdown.await;
    info!("shutting down");
    watcher.abort();
    discovery.abort();
    let (stopped, ()) = tokio::join!(serving.stop(), async {
        if let Some(http) = http {
            http.stop().await;
        }
    });
    keys_watch.inspect(|k| k.abort());
    info!("stopped");
    Ok(stopped?)
}

/// The service behind the API (ingest, searches, their admission) and the
/// per-call limits the telemetry layer enforces before it.
fn data_path(
    cfg: &Config,
    store: watch::Receiver<Option<MilvusStore>>,
    embedders: &Embedders,
    metrics: &Metrics,
) -> (ImageSearchService, CallLimits) {
    let ingest = Ingest::new(
        IngestConfig {
            batch_size: cfg.batch_size as usize,
            idle_timeout: Duration::from_secs(cfg.insert_idle_timeout_secs),
            check_filepaths: cfg.check_filepaths(),
        },
        Admission::new(cfg.insert_limits()),
        embedders.clone(),
        metrics.clone(),
    );
    let search_admission = Admission::new(cfg.search_limits());
    let limits = CallLimits::default()
        .max_calls(cfg.max_calls, "max-calls")
        .charge(
            "Search",
            search_admission.unary_budget(SEARCH_REQUEST_COPIES, cfg.max_message_bytes),
        );
    let search_streams = SearchStreams::new(
        search_admission,
        Duration::from_secs(cfg.search_idle_timeout_secs),
        metrics.clone(),
    );
    let service = ImageSearchService::new(
        store,
        embedders.clone(),
        ingest,
        search_streams,
        metrics.clone(),
        Duration::from_secs(cfg.search_idle_timeout_secs),
    );
    (service, limits)
}

/// Re-resolves the embedders' names (DNS discovery) every health interval,
/// apart from the health probes, so a slow resolver delays neither.
async fn discover_embedders(embedders: Embedders, metrics: Metrics) {
    loop {
        embedders.refresh().await;
        metrics
            .embedder_replicas
            .set(embedders.replica_count() as i64);
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

/// Connects to Milvus (retrying) and keeps health in step with Milvus and
/// the embedders, probing both at once.
async fn watch_dependencies(
    cfg: Config,
    milvus_cfg: MilvusConfig,
    embedders: Embedders,
    store_tx: watch::Sender<Option<MilvusStore>>,
    health: imgsearch_common::grpc::Health,
    metrics: Metrics,
) {
    info!(milvus = ?milvus_cfg, embedders = ?cfg.embedders, "connecting");
    let mut last = None;
    loop {
        if store_tx.borrow().is_none() {
            match MilvusStore::connect(&milvus_cfg).await {
                Ok(store) => {
                    let store = store.counting_throttles(metrics.milvus_throttled.clone());
                    info!(uri = %milvus_cfg.uri, "connected to Milvus");
                    let _ = store_tx.send(Some(store));
                }
                Err(e) => warn!(error = %e, "Milvus not reachable yet"),
            }
        }
        let store = store_tx.borrow().clone();
        let milvus = async {
            match store {
                Some(s) => match tokio::time::timeout(MILVUS_PROBE_TIMEOUT, s.ping()).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        warn!(error = %e, "Milvus check failed");
                        false
                    }
                    Err(_) => {
                        warn!(
                            timeout_s = MILVUS_PROBE_TIMEOUT.as_secs(),
                            "Milvus did not answer its health check in time"
                        );
                        false
                    }
                },
                None => false,
            }
        };
        let embedder = async {
            embedders
                .info()
                .await
                .map_err(|e| warn!(error = %e, "embedder check failed"))
                .is_ok()
        };
        let (milvus_ok, embedder_ok) = tokio::join!(milvus, embedder);
        metrics.milvus_up.set(i64::from(milvus_ok));
        metrics.embedder_up.set(i64::from(embedder_ok));
        metrics
            .embedder_replicas_ready
            .set(embedders.ready_count() as i64);
        let serving = milvus_ok && embedder_ok;
        if last != Some(serving) {
            info!(serving, milvus_ok, embedder_ok, "health");
            health.set(serving).await;
            last = Some(serving);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

/// Says at start who may call, and warns where keys would cross the
/// network in plaintext.
fn announce_access(cfg: &Config, keys: Option<&ApiKeys>) {
    match keys {
        None if cfg.listen.ip().is_loopback() => {
            info!("no API keys: callers on this host may do everything")
        }
        None => warn!(
            listen = %cfg.listen,
            "no API keys: every caller may do everything, dropping collections included"
        ),
        Some(keys) => {
            info!(keys = keys.len(), "API keys required");
            if cfg.tls.cert.is_none() && !cfg.listen.ip().is_loopback() {
                warn!("API keys are checked but TLS is off: keys cross the network in plaintext");
            }
        }
    }
}
