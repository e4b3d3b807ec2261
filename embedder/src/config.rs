//! Command-line flags, each with an environment-variable twin.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

use crate::{
    batcher::BatchConfig,
    model::{DeviceChoice, Precision},
    preprocess::Limits,
};

/// The imgsearch embedder: image bytes in, ResNet50 vectors out, over gRPC.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// gRPC listen address (imgsearch.v1.Embedder, health, reflection).
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_LISTEN",
        default_value = "0.0.0.0:50052"
    )]
    pub listen: SocketAddr,

    /// Prometheus metrics listen address (GET /metrics).
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_METRICS_LISTEN",
        default_value = "0.0.0.0:9102"
    )]
    pub metrics_listen: SocketAddr,

    /// torchvision ResNet50 state_dict as safetensors (scripts/export_weights.py).
    #[arg(long, env = "IMGSEARCH_EMBEDDER_WEIGHTS")]
    pub weights: PathBuf,

    /// auto (CUDA when present), cpu, cuda or cuda:N.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_DEVICE", default_value = "auto")]
    pub device: DeviceChoice,

    /// fp32 (exact), bf16 (about 2x faster on CPUs with AVX-512 BF16 or AMX;
    /// cosine ≥ 0.999 to fp32) or fp16 (CUDA only).
    #[arg(long, env = "IMGSEARCH_EMBEDDER_PRECISION", default_value = "fp32")]
    pub precision: Precision,

    /// libtorch intra-op threads; 0 keeps libtorch's default (one per core).
    #[arg(long, env = "IMGSEARCH_EMBEDDER_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Most images per model call. Default 8 on CPU (larger batches leave the
    /// cache and cost more per image), 128 on GPU.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_BATCH")]
    pub max_batch: Option<usize>,

    /// Longest wait, in milliseconds, for a batch to fill after its first image.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,

    /// Images admitted at once across all calls; beyond it, RESOURCE_EXHAUSTED.
    /// Bounds memory: each holds its encoded bytes, then a 600 KB tensor.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,

    /// Images of one Embed stream in flight at once (the stream's
    /// backpressure); default 2 × max batch.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_STREAM_IN_FLIGHT")]
    pub stream_in_flight: Option<usize>,

    /// Threads decoding and preprocessing images; default one per core.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_PREPROCESS_WORKERS")]
    pub preprocess_workers: Option<usize>,

    /// Largest accepted image file, in bytes.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_IMAGE_BYTES", default_value_t = 32 << 20)]
    pub max_image_bytes: usize,

    /// Largest accepted decoded image, in pixels. The default is PIL's own
    /// decompression-bomb threshold (89.5 MP): any real photo passes.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_MAX_IMAGE_PIXELS",
        default_value_t = 89_478_485
    )]
    pub max_image_pixels: u64,

    /// Largest gRPC message. Above max-image-bytes on purpose, so an
    /// oversized image fails only its own item; a bigger message fails the call.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_MESSAGE_BYTES", default_value_t = 64 << 20)]
    pub max_message_bytes: usize,

    /// Seconds in-flight work gets after SIGTERM before the process exits.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,

    /// Log format: text or json.
    #[arg(long, env = "IMGSEARCH_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    /// Batching settings for a model on a CPU (`gpu = false`) or GPU.
    pub fn batch_config(&self, gpu: bool) -> BatchConfig {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        BatchConfig {
            max_batch: self.max_batch.unwrap_or(if gpu { 128 } else { 8 }),
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue_capacity: self.queue_capacity,
            preprocess_workers: self.preprocess_workers.unwrap_or(cores),
            limits: Limits {
                max_bytes: self.max_image_bytes,
                max_pixels: self.max_image_pixels,
            },
        }
    }
}
