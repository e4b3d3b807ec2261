//! Wiring: gRPC server with health and reflection, the Milvus connection
//! kept alive in the background, graceful shutdown.
//!
//! The port opens at once with health NOT_SERVING; a background task
//! connects to Milvus (retrying until it answers) and flips health to SERVING
//! while both Milvus and an embedder answer, back to NOT_SERVING when either
//! stops answering.

use std::{future::Future, time::Duration};

use imgsearch_proto::v1::image_search_server::ImageSearchServer;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    admission::Admission,
    auth::{guard::Guard, keys::ApiKeys},
    config::Config,
    embedders::Embedders,
    error::GatewayError,
    ingest::{Ingest, IngestConfig},
    metrics::Metrics,
    milvus::{MilvusConfig, MilvusStore},
    search::stream::SearchStreams,
    service::ImageSearchService,
};

const SERVICE_NAME: &str = "imgsearch.v1.ImageSearch";
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] GatewayError),
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Listen(#[from] imgsearch_common::grpc::ListenError),
    #[error("embedder TLS: {0}")]
    EmbedderTls(#[from] imgsearch_common::tls::TlsError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection descriptors: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Runs the gateway until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    cfg.check().map_err(GatewayError::InvalidArgument)?;
    let milvus_cfg = cfg.milvus().map_err(GatewayError::InvalidArgument)?;
    let keys = cfg
        .api_keys_file
        .as_deref()
        .map(ApiKeys::load)
        .transpose()?;
    let metrics = Metrics::new();
    let metrics_listener = tokio::net::TcpListener::bind(cfg.metrics_listen)
        .await
        .map_err(ServeError::Bind)?;
    info!(addr = %metrics_listener.local_addr().map_err(ServeError::Bind)?, "metrics listening");
    tokio::spawn(imgsearch_common::metrics_http::serve(
        metrics_listener,
        metrics.registry(),
    ));
    let embedders = Embedders::new(
        &cfg.embedders,
        cfg.embedder_dns,
        cfg.embedder_tls()?,
        cfg.max_message_bytes,
        Duration::from_secs(5),
        Duration::from_secs(cfg.embed_timeout_secs),
    )?;
    let (store_tx, store_rx) = watch::channel(None);
    let (health, health_service) = imgsearch_common::grpc::Health::new(SERVICE_NAME).await;

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
    let search_streams = SearchStreams::new(
        Admission::new(cfg.search_limits()),
        Duration::from_secs(cfg.search_idle_timeout_secs),
        metrics.clone(),
    );
    let service = ImageSearchService::new(
        store_rx,
        embedders.clone(),
        ingest,
        search_streams,
        metrics.clone(),
    );
    let grpc = ImageSearchServer::new(service)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let keys_watch = keys.as_ref().map(ApiKeys::watch);
    announce_access(&cfg, keys.as_ref());
    let grpc = Guard::new(keys, metrics.clone()).wrap(grpc);

    let incoming = imgsearch_common::grpc::listen(cfg.listen, &cfg.tls).await?;
    let probes =
        imgsearch_common::grpc::serve_probes(cfg.probe_listen, health_service.clone()).await?;

    let watcher = tokio::spawn(watch_dependencies(
        cfg.clone(),
        milvus_cfg,
        embedders,
        store_tx,
        health.clone(),
        metrics,
    ));
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    let (stopping_tx, mut stopping_rx) = watch::channel(false);
    let reflection = if cfg.reflection {
        Some((
            imgsearch_common::grpc::reflection_v1()?,
            imgsearch_common::grpc::reflection_v1alpha()?,
        ))
    } else {
        None
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(cfg.keepalive_secs)))
            .http2_keepalive_timeout(Some(Duration::from_secs(cfg.keepalive_timeout_secs)))
            .add_service(health_service)
            .add_optional_service(reflection.as_ref().map(|r| r.0.clone()))
            .add_optional_service(reflection.map(|r| r.1))
            .add_service(grpc)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopping_rx.wait_for(|s| *s).await;
            }),
    );
    shutdown.await;
    info!("shutting down");
    watcher.abort();
    health.set(false).await;
    let _ = stopping_tx.send(true);
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.expect("server task")?,
        Err(_) => warn!("calls still open after the grace period; exiting"),
    }
    probes.inspect(|p| p.abort());
    keys_watch.inspect(|k| k.abort());
    info!("stopped");
    Ok(())
}

/// Connects to Milvus (retrying) and keeps health in step with Milvus and
/// the embedders.
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
                    info!(uri = %milvus_cfg.uri, "connected to Milvus");
                    let _ = store_tx.send(Some(store));
                }
                Err(e) => warn!(error = %e, "Milvus not reachable yet"),
            }
        }
        let store = store_tx.borrow().clone();
        let milvus_ok = match store {
            Some(s) => s
                .ping()
                .await
                .map_err(|e| warn!(error = %e, "Milvus check failed"))
                .is_ok(),
            None => false,
        };
        embedders.refresh().await;
        metrics
            .embedder_replicas
            .set(embedders.replica_count() as i64);
        let embedder_ok = embedders
            .info()
            .await
            .map_err(|e| warn!(error = %e, "embedder check failed"))
            .is_ok();
        metrics.milvus_up.set(i64::from(milvus_ok));
        metrics.embedder_up.set(i64::from(embedder_ok));
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
