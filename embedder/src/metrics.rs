//! Prometheus metrics, served as text on their own HTTP port.
//!
//! A registry per server (not the global one) so several servers can live in
//! one process. Buckets are explicit: batch sizes in powers of two, durations
//! geometric from 1 ms to about 16 s.

use std::net::SocketAddr;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// The embedder's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub images: IntCounter,
    pub errors: IntCounterVec,
    pub batch_size: Histogram,
    pub queue_depth: IntGauge,
    pub preprocess_seconds: Histogram,
    pub inference_seconds: HistogramVec,
    pub queue_wait_seconds: Histogram,
}

fn seconds_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let images = IntCounter::new("embedder_images_total", "Images embedded").unwrap();
        let errors = IntCounterVec::new(
            Opts::new(
                "embedder_errors_total",
                "Images that got an error instead of a vector, by kind",
            ),
            &["kind"],
        )
        .unwrap();
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("embedder_batch_size", "Images per model batch")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 9).unwrap()),
        )
        .unwrap();
        let queue_depth = IntGauge::new(
            "embedder_queue_depth",
            "Images admitted and not yet answered",
        )
        .unwrap();
        let preprocess_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "embedder_preprocess_seconds",
                "Decode + resize + crop + normalise, per image",
            )
            .buckets(seconds_buckets()),
        )
        .unwrap();
        let inference_seconds = HistogramVec::new(
            HistogramOpts::new("embedder_inference_seconds", "Model time per batch")
                .buckets(seconds_buckets()),
            &["device"],
        )
        .unwrap();
        let queue_wait_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "embedder_queue_wait_seconds",
                "Time from preprocessed to batched",
            )
            .buckets(seconds_buckets()),
        )
        .unwrap();
        for c in [
            Box::new(images.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(batch_size.clone()),
            Box::new(queue_depth.clone()),
            Box::new(preprocess_seconds.clone()),
            Box::new(inference_seconds.clone()),
            Box::new(queue_wait_seconds.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            images,
            errors,
            batch_size,
            queue_depth,
            preprocess_seconds,
            inference_seconds,
            queue_wait_seconds,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("utf8 metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped. A minimal
/// HTTP/1.0 responder: Prometheus needs nothing more, and it keeps a web
/// framework out of the build.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let response = if req.starts_with("GET /metrics") {
                let body = metrics.render();
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = sock.write_all(response.as_bytes()).await;
        });
    }
}

/// Binds the metrics port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
