//! The gateway's Prometheus metrics (served by `imgsearch_common::metrics_http`);
//! calls by method and code are counted by `imgsearch_common::telemetry`.

use imgsearch_common::metrics_http::seconds_buckets;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters, histograms and gauges of one gateway.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Rows inserted into Milvus.
    pub inserted_rows: IntCounter,
    /// Insert items that failed, by error kind.
    pub item_failures: IntCounterVec,
    /// Insert items skipped as already stored (`skip_existing`).
    pub skipped_items: IntCounter,
    /// Inserts Milvus turned away as throttled (each then waited and sent again).
    pub milvus_throttled: IntCounter,
    /// Insert streams open now.
    pub insert_streams: IntGauge,
    /// SearchStreams open now.
    pub search_streams: IntGauge,
    /// Milvus search time per Search call.
    pub search_seconds: Histogram,
    /// Embedding time per Search call.
    pub embed_seconds: Histogram,
    /// 1 while Milvus answers health checks.
    pub milvus_up: IntGauge,
    /// 1 while an embedder answers health checks.
    pub embedder_up: IntGauge,
    /// Embedder replicas calls are spread over (addresses, with DNS discovery).
    pub embedder_replicas: IntGauge,
    /// Replicas calls go to now: their probe answers and no real call has
    /// failed on them since their last success.
    pub embedder_replicas_ready: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let inserted_rows =
            IntCounter::new("gateway_inserted_rows_total", "Rows inserted into Milvus").unwrap();
        let item_failures = IntCounterVec::new(
            Opts::new(
                "gateway_item_failures_total",
                "Insert items that failed, by kind",
            ),
            &["kind"],
        )
        .unwrap();
        let search_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_search_seconds",
                "Milvus search time per Search call or SearchStream batch",
            )
            .buckets(seconds_buckets()),
        )
        .unwrap();
        let embed_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_embed_seconds",
                "Embedding time per Search call or SearchStream batch",
            )
            .buckets(seconds_buckets()),
        )
        .unwrap();
        let skipped_items = IntCounter::new(
            "gateway_skipped_items_total",
            "Insert items skipped as already stored",
        )
        .unwrap();
        let milvus_throttled = IntCounter::new(
            "gateway_milvus_throttled_total",
            "Inserts Milvus turned away as throttled (rate limit, quota)",
        )
        .unwrap();
        let insert_streams =
            IntGauge::new("gateway_insert_streams", "Insert streams open now").unwrap();
        let search_streams =
            IntGauge::new("gateway_search_streams", "SearchStreams open now").unwrap();
        let milvus_up = IntGauge::new("gateway_milvus_up", "1 while Milvus answers").unwrap();
        let embedder_up =
            IntGauge::new("gateway_embedder_up", "1 while an embedder answers").unwrap();
        let embedder_replicas = IntGauge::new(
            "gateway_embedder_replicas",
            "Embedder replicas calls are spread over",
        )
        .unwrap();
        let embedder_replicas_ready = IntGauge::new(
            "gateway_embedder_replicas_ready",
            "Embedder replicas whose probe answers and whose last real call succeeded",
        )
        .unwrap();
        for c in [
            Box::new(inserted_rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(item_failures.clone()),
            Box::new(skipped_items.clone()),
            Box::new(milvus_throttled.clone()),
            Box::new(insert_streams.clone()),
            Box::new(search_streams.clone()),
            Box::new(search_seconds.clone()),
            Box::new(embed_seconds.clone()),
            Box::new(milvus_up.clone()),
            Box::new(embedder_up.clone()),
            Box::new(embedder_replicas.clone()),
            Box::new(embedder_replicas_ready.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            inserted_rows,
            item_failures,
            skipped_items,
            milvus_throttled,
            insert_streams,
            search_streams,
            search_seconds,
            embed_seconds,
            milvus_up,
            embedder_up,
            embedder_replicas,
            embedder_replicas_ready,
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
