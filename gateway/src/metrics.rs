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
    /// Inserts and searches Milvus turned away as throttled (each then
    /// waited and sent again).
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
        let r = Register(&registry);
        let histogram = |name: &str, help: &str| {
            r.add(
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(seconds_buckets()))
                    .unwrap(),
            )
        };
        Self {
            inserted_rows: r.counter("gateway_inserted_rows_total", "Rows inserted into Milvus"),
            item_failures: r.add(
                IntCounterVec::new(
                    Opts::new(
                        "gateway_item_failures_total",
                        "Insert items that failed, by kind",
                    ),
                    &["kind"],
                )
                .unwrap(),
            ),
            skipped_items: r.counter(
                "gateway_skipped_items_total",
                "Insert items skipped as already stored",
            ),
            milvus_throttled: r.counter(
                "gateway_milvus_throttled_total",
                "Inserts and searches Milvus turned away as throttled (rate limit, quota)",
            ),
            insert_streams: r.gauge("gateway_insert_streams", "Insert streams open now"),
            search_streams: r.gauge("gateway_search_streams", "SearchStreams open now"),
            search_seconds: histogram(
                "gateway_search_seconds",
                "Milvus search time per Search call or SearchStream batch",
            ),
            embed_seconds: histogram(
                "gateway_embed_seconds",
                "Embedding time per Search call or SearchStream batch",
            ),
            milvus_up: r.gauge("gateway_milvus_up", "1 while Milvus answers"),
            embedder_up: r.gauge("gateway_embedder_up", "1 while an embedder answers"),
            embedder_replicas: r.gauge(
                "gateway_embedder_replicas",
                "Embedder replicas calls are spread over",
            ),
            embedder_replicas_ready: r.gauge(
                "gateway_embedder_replicas_ready",
                "Embedder replicas whose probe answers and whose last real call succeeded",
            ),
            registry,
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

/// Registers each metric as it is made.
struct Register<'a>(&'a Registry);

impl Register<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("unique metric names");
        c
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).unwrap())
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).unwrap())
    }
}
