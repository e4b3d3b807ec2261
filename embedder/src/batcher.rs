//! Dynamic batching across every concurrent call, with bounded memory.
//!
//! The shape follows text-embeddings-inference's queue:
//! - admission through a semaphore of `queue_capacity` permits, held by an
//!   image until its answer is sent: a full queue is an immediate
//!   [`EmbedError::Overloaded`], never unbounded buffering;
//! - decoding and preprocessing on a rayon pool (not the async runtime's
//!   threads), in parallel with inference;
//! - one batcher task gathering up to `max_batch` preprocessed images, waiting
//!   at most `max_wait` after the first, skipping images whose caller left;
//! - the model on its own OS thread, fed through a channel of capacity 1 so
//!   the next batch is formed while the current one runs.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tch::Tensor;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{info_span, warn};

use crate::{
    error::EmbedError,
    metrics::Metrics,
    model::{self, Resnet50},
    preprocess::{self, Limits, CROP, TENSOR_LEN},
};

/// How images are batched and bounded.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most images per model call.
    pub max_batch: usize,
    /// Longest wait for a batch to fill once its first image is ready.
    pub max_wait: Duration,
    /// Images admitted at once (preprocessing, queued or running).
    pub queue_capacity: usize,
    /// Threads decoding and preprocessing.
    pub preprocess_workers: usize,
    /// Size limits per image.
    pub limits: Limits,
}

type Reply = oneshot::Sender<Result<Vec<f32>, EmbedError>>;

struct Pending {
    tensor: Vec<f32>,
    reply: Reply,
    ready_at: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Counters also reported through `Info`.
#[derive(Debug, Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub images: AtomicU64,
}

struct Inner {
    admission: Arc<Semaphore>,
    capacity: usize,
    pool: rayon::ThreadPool,
    queue: mpsc::Sender<Pending>,
    limits: Limits,
    metrics: Metrics,
    stats: Arc<Stats>,
}

/// A handle to the batching embedder; clone freely.
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<Inner>,
}

/// Joins the model thread when the last [`Embedder`] handle is gone.
pub struct ModelThread(Option<JoinHandle<()>>);

impl ModelThread {
    /// Waits for the model thread to finish its last batch. Call after every
    /// `Embedder` handle has been dropped.
    pub fn join(mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl Embedder {
    /// Starts the batcher task (on the current tokio runtime) and the model
    /// thread.
    pub fn start(model: Resnet50, cfg: &BatchConfig, metrics: Metrics) -> (Embedder, ModelThread) {
        let stats = Arc::new(Stats::default());
        let (queue_tx, queue_rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (model_tx, model_rx) = mpsc::channel::<Vec<Pending>>(1);
        tokio::spawn(batch_loop(
            queue_rx,
            model_tx,
            cfg.max_batch.max(1),
            cfg.max_wait,
        ));
        let thread = {
            let (metrics, stats) = (metrics.clone(), stats.clone());
            std::thread::Builder::new()
                .name("model".into())
                .spawn(move || model_loop(model, model_rx, metrics, stats))
                .expect("spawn model thread")
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.preprocess_workers.max(1))
            .thread_name(|i| format!("preprocess-{i}"))
            .build()
            .expect("preprocess pool");
        let inner = Inner {
            admission: Arc::new(Semaphore::new(cfg.queue_capacity)),
            capacity: cfg.queue_capacity,
            pool,
            queue: queue_tx,
            limits: cfg.limits,
            metrics,
            stats,
        };
        (
            Embedder {
                inner: Arc::new(inner),
            },
            ModelThread(Some(thread)),
        )
    }

    /// Batches run and images embedded since start.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Images admitted and not yet answered.
    pub fn queue_depth(&self) -> usize {
        self.inner.capacity - self.inner.admission.available_permits()
    }

    /// Embeds one encoded image. Fails at once with `Overloaded` when the
    /// queue is full. Dropping the future abandons the image: it is skipped
    /// before inference.
    pub async fn embed(&self, image: Vec<u8>) -> Result<Vec<f32>, EmbedError> {
        let inner = &self.inner;
        let result = async {
            let permit = inner
                .admission
                .clone()
                .try_acquire_owned()
                .map_err(|_| EmbedError::Overloaded)?;
            inner.metrics.queue_depth.set(self.queue_depth() as i64);
            let (tx, rx) = oneshot::channel();
            let (limits, hist) = (inner.limits, inner.metrics.preprocess_seconds.clone());
            inner.pool.spawn(move || {
                let start = Instant::now();
                let out = preprocess::preprocess(&image, &limits);
                drop(image);
                hist.observe(start.elapsed().as_secs_f64());
                let _ = tx.send(out);
            });
            let tensor = rx.await.map_err(|_| EmbedError::ShuttingDown)??;
            let (reply, answer) = oneshot::channel();
            let pending = Pending {
                tensor,
                reply,
                ready_at: Instant::now(),
                _permit: permit,
            };
            inner
                .queue
                .send(pending)
                .await
                .map_err(|_| EmbedError::ShuttingDown)?;
            answer.await.map_err(|_| EmbedError::ShuttingDown)?
        }
        .await;
        inner.metrics.queue_depth.set(self.queue_depth() as i64);
        match &result {
            Ok(_) => inner.metrics.images.inc(),
            Err(e) => inner.metrics.errors.with_label_values(&[e.label()]).inc(),
        }
        result
    }
}

async fn batch_loop(
    mut queue: mpsc::Receiver<Pending>,
    model: mpsc::Sender<Vec<Pending>>,
    max_batch: usize,
    max_wait: Duration,
) {
    while let Some(first) = queue.recv().await {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        if model.send(batch).await.is_err() {
            break;
        }
    }
}

fn model_loop(
    model: Resnet50,
    mut batches: mpsc::Receiver<Vec<Pending>>,
    metrics: Metrics,
    stats: Arc<Stats>,
) {
    let device = model::device_name(model.device());
    let inference = metrics
        .inference_seconds
        .with_label_values(&[device.as_str()]);
    while let Some(batch) = batches.blocking_recv() {
        let n = batch.len();
        let _span = info_span!("batch", size = n, device = %device).entered();
        let now = Instant::now();
        let mut data = Vec::with_capacity(n * TENSOR_LEN);
        for p in &batch {
            metrics
                .queue_wait_seconds
                .observe((now - p.ready_at).as_secs_f64());
            data.extend_from_slice(&p.tensor);
        }
        let input = Tensor::from_slice(&data).view([n as i64, 3, CROP as i64, CROP as i64]);
        let result = model
            .forward(&input)
            .and_then(|out| Ok(Vec::<f32>::try_from(out.flatten(0, -1))?));
        inference.observe(now.elapsed().as_secs_f64());
        metrics.batch_size.observe(n as f64);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(values) => {
                stats.images.fetch_add(n as u64, Ordering::Relaxed);
                let dim = values.len() / n;
                for (p, v) in batch.into_iter().zip(values.chunks_exact(dim)) {
                    let _ = p.reply.send(Ok(v.to_vec()));
                }
            }
            Err(e) => {
                warn!(error = %e, "batch failed");
                for p in batch {
                    let _ = p.reply.send(Err(EmbedError::Inference(e.to_string())));
                }
            }
        }
    }
}
