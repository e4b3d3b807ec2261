//! The embedder's Prometheus metrics (served by `imgsearch_common::metrics_http`).
//!
//! Buckets are explicit: batch sizes in powers of two, durations geometric
//! from 1 ms to about 16 s.

use imgsearch_common::metrics_http::seconds_buckets;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// The embedder's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub images: IntCounter,
    pub errors: IntCounterVec,
    pub batch_size: Histogram,
    pub queue_depth: IntGauge,
    pub memory_reserved_bytes: IntGauge,
    pub preprocess_seconds: Histogram,
    pub inference_seconds: HistogramVec,
    pub queue_wait_seconds: Histogram,
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
        let memory_reserved_bytes = IntGauge::new(
            "embedder_memory_reserved_bytes",
            "Memory budget held by images being decoded or waiting (--memory-budget-bytes)",
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
            Box::new(memory_reserved_bytes.clone()),
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
            memory_reserved_bytes,
            preprocess_seconds,
            inference_seconds,
            queue_wait_seconds,
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
