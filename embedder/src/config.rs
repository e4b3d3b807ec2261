//! Command-line flags, each with an environment-variable twin.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use imgsearch_common::{serve::ServeOptions, tls::ServerTlsArgs};
use imgsearch_proto::limits::MAX_MESSAGE_BYTES;

use crate::{
    batcher::BatchConfig,
    model::{DeviceChoice, Precision},
    preprocess::{Limits, Mode},
};

/// The imgsearch embedder: image bytes in, ResNet50 vectors out, over gRPC.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// gRPC listen address (imgsearch.v1.Embedder, health, reflection).
    /// Loopback unless told otherwise: the embedder checks no caller, so
    /// reaching it beyond this host is a deployment's choice (mTLS, network
    /// policies).
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub tls: ServerTlsArgs,

    /// Plaintext gRPC health only (for the kubelet's probes, which speak no
    /// TLS); off when unset.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,

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

    /// libtorch intra-op threads. Default (or 0): one per core on CPU, where
    /// the model is the bottleneck; 1 on CUDA, where the GPU computes.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_THREADS")]
    pub threads: Option<usize>,

    /// exact (the tutorial's preprocessing, to the bit) or fast (JPEGs
    /// decoded at a reduced DCT scale: about 1.5× exact's speed on large
    /// photos, vectors within the README's stated cosine of exact ones). A
    /// collection records which, and refuses the other.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_PREPROCESS", default_value = "exact")]
    pub preprocess: Mode,

    /// Most images per model call. Default 8 on CPU (larger batches leave the
    /// cache and cost more per image), 128 on GPU.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_BATCH")]
    pub max_batch: Option<usize>,

    /// Longest wait, in milliseconds, for a batch to fill after its first image.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_WAIT_MS", default_value_t = 5)]
    pub max_wait_ms: u64,

    /// Bulk images (Embed streams) admitted at once across all streams; a
    /// stream's next image waits for a place, and the streams take the places
    /// in turn. Each holds its encoded bytes (see memory-budget-bytes), then a
    /// 602 KB tensor.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,

    /// Interactive images (EmbedBatch: the gateway's searches) admitted at
    /// once, beside the bulk ones; they are batched before any bulk image.
    /// Beyond it a call waits for a place within its deadline, then is
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_INTERACTIVE_CAPACITY",
        default_value_t = 64
    )]
    pub interactive_capacity: usize,

    /// Images of one Embed stream in flight at once (the stream's
    /// backpressure); default 2 × max batch.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_STREAM_IN_FLIGHT")]
    pub stream_in_flight: Option<usize>,

    /// Threads decoding and preprocessing images. Default: one per core on
    /// CPU, beside the model's, as they idle while no image waits (measured
    /// on 2 cores: 3–8% more images/s than one worker); every core but one
    /// on CUDA, where decoding is what the GPU waits for.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_PREPROCESS_WORKERS")]
    pub preprocess_workers: Option<usize>,

    /// Largest accepted image file, in bytes.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_IMAGE_BYTES", default_value_t = Limits::DEFAULT.max_bytes)]
    pub max_image_bytes: usize,

    /// Largest accepted image, in pixels (width × height, as declared in its
    /// header). The default is PIL's own decompression-bomb threshold (89.5
    /// MP): any real photo passes.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_MAX_IMAGE_PIXELS",
        default_value_t = Limits::DEFAULT.max_pixels
    )]
    pub max_image_pixels: u64,

    /// Longest accepted side, in pixels.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_MAX_IMAGE_SIDE",
        default_value_t = Limits::DEFAULT.max_side
    )]
    pub max_image_side: u64,

    /// Most memory the decode of one image may take, in bytes: the decoder's
    /// output in its own pixel type (up to 8 bytes a pixel for 16-bit RGBA),
    /// the RGB copy, and a progressive JPEG's coefficients.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_MAX_IMAGE_DECODED_BYTES",
        default_value_t = Limits::DEFAULT.max_decoded_bytes
    )]
    pub max_image_decoded_bytes: u64,

    /// Most scans in one JPEG. Progressive files have about 10; each scan is
    /// a pass over the whole image, so thousands are a CPU bomb.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_MAX_JPEG_SCANS",
        default_value_t = Limits::DEFAULT.max_jpeg_scans
    )]
    pub max_jpeg_scans: u32,

    /// Bytes that admitted images may hold at once: a quarter for the
    /// encoded bytes of images waiting (beyond it, RESOURCE_EXHAUSTED), three
    /// quarters for decodes in progress (beyond it, images wait). Charges
    /// last until the work really ends, also for callers who left. The
    /// default keeps the CPU overlay's 4 GiB limit: about 1 GiB for the
    /// model, 1.5 GiB here, queue-capacity × 602 KB of tensors.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_MEMORY_BUDGET_BYTES",
        default_value_t = 1536 << 20
    )]
    pub memory_budget_bytes: u64,

    /// Largest gRPC message. Above max-image-bytes on purpose, so an
    /// oversized image fails only its own item; a bigger message fails the call.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_MAX_MESSAGE_BYTES", default_value_t = MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Seconds images may wait with the model finishing no batch before the
    /// embedder counts it as stalled (a wedged GPU): health turns
    /// NOT_SERVING and `Info` says so until a batch finishes.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_STALL_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub stall_timeout_secs: u64,

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
    /// The flags the shared server code reads. Reflection is always on: the
    /// embedder has no callers to hide its schema from that could not read
    /// the protos.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            listen: self.listen,
            tls: self.tls.clone(),
            probe_listen: self.probe_listen,
            metrics_listen: self.metrics_listen,
            reflection: true,
            // Gateways call it; browsers do not.
            grpc_web: false,
            cors: None,
            keepalive: None,
            grace: Duration::from_secs(self.shutdown_grace_secs),
            // The embedder's callers are gateways: their streams are bounded
            // there, and its queue bounds the images.
            max_connection_streams: None,
        }
    }

    /// Batching settings for a model on a CPU (`gpu = false`) or GPU.
    pub fn batch_config(&self, gpu: bool) -> BatchConfig {
        let cores = cores();
        let workers = if gpu { cores - 1 } else { cores };
        BatchConfig {
            max_batch: self.max_batch.unwrap_or(if gpu { 128 } else { 8 }),
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue_capacity: self.queue_capacity,
            interactive_capacity: self.interactive_capacity,
            preprocess_workers: self.preprocess_workers.unwrap_or(workers.max(1)),
            limits: Limits {
                max_bytes: self.max_image_bytes,
                max_pixels: self.max_image_pixels,
                max_side: self.max_image_side,
                max_decoded_bytes: self.max_image_decoded_bytes,
                max_jpeg_scans: self.max_jpeg_scans,
            },
            preprocess: self.preprocess,
            memory_budget: self.memory_budget_bytes,
        }
    }

    /// libtorch's intra-op threads for a model on a CPU (`gpu = false`) or GPU.
    pub fn model_threads(&self, gpu: bool) -> usize {
        // 0 meant "libtorch's default" once; it still means the default.
        self.threads
            .filter(|&n| n > 0)
            .unwrap_or(if gpu { 1 } else { cores() })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
