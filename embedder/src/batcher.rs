//! Dynamic batching across every concurrent call, with bounded memory, where
//! busy means wait and searches go first.
//!
//! The shape follows text-embeddings-inference's queue:
//! - admission through two semaphores, one per [`Priority`]: `queue_capacity`
//!   places for bulk images (Embed streams), `interactive_capacity` for
//!   interactive ones (EmbedBatch, which the gateway uses for searches). A
//!   place is held by an image until its answer is sent. An image waits for
//!   its place, first come first served (tokio's semaphores are fair), so
//!   streams sharing a replica share its queue in turn; an interactive call
//!   waits at most as long as its deadline allows, then is
//!   [`EmbedError::Overloaded`] saying so;
//! - decoding and preprocessing on a rayon pool (not the async runtime's
//!   threads), in parallel with inference; bulk images also take one of
//!   `preprocess_workers` decoder permits, interactive ones do not, so a
//!   search's decode waits behind at most one bulk decode per worker;
//! - one batcher task forming a batch only when the model is free, from the
//!   interactive queue first, waiting at most `max_wait` after its first
//!   image was ready, skipping images whose caller left; a batch that starts
//!   with an interactive image takes only interactive ones. So an
//!   interactive image waits for at most the batch in progress, whatever
//!   bulk work is queued, and its own batch costs what it would idle;
//! - the model on its own OS thread.
//!
//! Memory is bounded by bytes as well as by images ([`MemoryBudget`]):
//! - an image's encoded bytes are charged to the budget's waiting part once
//!   it has a place, waiting for room if need be; an image that could never
//!   fit is refused at once;
//! - its header, read on the pool, tells what the decode will take; the image
//!   then waits for that much of the decoding part;
//! - every charge travels with the work, not with the caller: a caller who
//!   leaves abandons the result, but memory stays counted until the decode
//!   really ends. Work whose caller left before it started is skipped.
//!
//! Decoding runs under `catch_unwind`: a panic is that image's `INTERNAL`
//! error and the worker lives. The model thread's death (a panic or a failed
//! forward pass) is reported through [`Batcher::failure`]: the server turns
//! NOT_SERVING and exits, and no image is answered as if embedded.

use std::{
    panic::{self, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use imgsearch_proto::{limits::MAX_BULK_WAIT_BEHIND_SEARCHES, Bytes};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{error, info_span};

use crate::{
    error::EmbedError,
    fault,
    metrics::Metrics,
    model::{self, Resnet50},
    preprocess::{self, Limit, Limits, TENSOR_LEN},
};

/// How images are batched and bounded.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most images per model call.
    pub max_batch: usize,
    /// Longest wait for a batch to fill once its first image is ready.
    pub max_wait: Duration,
    /// Bulk images admitted at once (preprocessing, queued or running).
    pub queue_capacity: usize,
    /// Interactive images admitted at once, beside the bulk ones.
    pub interactive_capacity: usize,
    /// Threads decoding and preprocessing.
    pub preprocess_workers: usize,
    /// Size limits per image.
    pub limits: Limits,
    /// Exact (the tutorial's) or fast.
    pub preprocess: preprocess::Mode,
    /// Bytes that images being received, waiting and decoded may hold.
    pub memory_budget: u64,
}

/// The memory budget, split in two so that neither part can starve the other:
/// a quarter for the encoded bytes of admitted images (charged at once),
/// three quarters for decodes (waited for). Waiting images hold only the
/// first part; decodes in progress always finish and free the second, so
/// a decode's wait always ends.
struct MemoryBudget {
    waiting: Arc<Semaphore>,
    decoding: Arc<Semaphore>,
    waiting_kib: u64,
    decoding_kib: u64,
    total_kib: u64,
}

/// Budget permits count KiB: a u32 of them covers any single image.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl MemoryBudget {
    fn new(bytes: u64) -> Self {
        let total_kib = bytes / 1024;
        let waiting_kib = total_kib / 4;
        let decoding_kib = total_kib - waiting_kib;
        MemoryBudget {
            waiting: Arc::new(Semaphore::new(waiting_kib as usize)),
            decoding: Arc::new(Semaphore::new(decoding_kib as usize)),
            waiting_kib,
            decoding_kib,
            total_kib,
        }
    }

    /// Refuses an image whose `bytes` could never fit the part of size
    /// `part_kib`: waiting would be forever, and "overloaded" a lie.
    fn check_fits(bytes: u64, part_kib: u64) -> Result<(), EmbedError> {
        if u64::from(kib(bytes)) > part_kib {
            return Err(preprocess::ImageError::OverLimit {
                limit: Limit::MemoryBudget,
                value: bytes,
                max: part_kib * 1024,
            }
            .into());
        }
        Ok(())
    }

    fn used_bytes(&self) -> i64 {
        let free = (self.waiting.available_permits() + self.decoding.available_permits()) as u64;
        (self.total_kib.saturating_sub(free) * 1024) as i64
    }
}

type Reply = oneshot::Sender<Result<Vec<f32>, EmbedError>>;

struct Pending {
    tensor: Vec<f32>,
    reply: Reply,
    ready_at: Instant,
    priority: Priority,
    _slot: OwnedSemaphorePermit,
}

/// Whose image it is. Interactive images (a person or a service waiting on
/// a search) are batched before any bulk image (an ingest) that waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Bulk,
}

/// An image with a place in the queue and its bytes charged to the budget,
/// ready for [`Batcher::embed`].
pub struct Admitted {
    image: Bytes,
    priority: Priority,
    slot: OwnedSemaphorePermit,
    received: OwnedSemaphorePermit,
}

/// A batch for the model, and the model's "free" mark: the batcher forms
/// the next batch once this one's mark is dropped.
struct Batch {
    items: Vec<Pending>,
    _model_busy: OwnedSemaphorePermit,
}

/// Counters also reported through `Info`.
#[derive(Debug, Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub images: AtomicU64,
    /// When the model last showed it is not stuck (a batch finished, or it
    /// had nothing to do), in ms since the Unix epoch; 0 before any check.
    last_progress_ms: AtomicU64,
}

impl Stats {
    fn progressed(&self) {
        self.last_progress_ms.store(epoch_ms(), Ordering::Relaxed);
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Inner {
    bulk: Arc<Semaphore>,
    interactive: Arc<Semaphore>,
    /// Both kinds' places.
    capacity: usize,
    budget: MemoryBudget,
    /// One permit per pool thread: only images about to decode hold
    /// decoding budget, not every image queued behind them.
    decoders: Arc<Semaphore>,
    pool: rayon::ThreadPool,
    bulk_queue: mpsc::Sender<Pending>,
    interactive_queue: mpsc::Sender<Pending>,
    limits: Limits,
    mode: preprocess::Mode,
    metrics: Metrics,
    stats: Arc<Stats>,
    failure: watch::Receiver<Option<String>>,
}

/// A handle to the batching queue in front of the model; clone freely.
#[derive(Clone)]
pub struct Batcher {
    inner: Arc<Inner>,
}

/// Joins the model thread when the last [`Batcher`] handle is gone.
pub struct ModelThread(Option<JoinHandle<()>>);

impl ModelThread {
    /// Waits for the model thread to finish its last batch. Call after every
    /// `Batcher` handle has been dropped.
    pub fn join(mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl Batcher {
    /// Starts the batcher task (on the current tokio runtime) and the model
    /// thread.
    pub fn start(model: Resnet50, cfg: &BatchConfig, metrics: Metrics) -> (Batcher, ModelThread) {
        let stats = Arc::new(Stats::default());
        let (bulk_tx, bulk_rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (interactive_tx, interactive_rx) = mpsc::channel(cfg.interactive_capacity.max(1));
        let (model_tx, model_rx) = mpsc::channel::<Batch>(1);
        let (failure_tx, failure) = watch::channel(None);
        tokio::spawn(batch_loop(
            Queues::new(interactive_rx, bulk_rx),
            model_tx,
            cfg.max_batch.max(1),
            cfg.max_wait,
        ));
        let thread = {
            let (metrics, stats) = (metrics.clone(), stats.clone());
            std::thread::Builder::new()
                .name("model".into())
                .spawn(move || {
                    // The receiver outlives the loop, so that callers whose
                    // images were queued learn of the failure before they
                    // learn the queue is gone.
                    let mut batches = model_rx;
                    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                        model_loop(model, &mut batches, metrics, stats)
                    }));
                    let reason = match outcome {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e,
                        Err(p) => format!("model thread panicked: {}", panic_message(&*p)),
                    };
                    error!(%reason, "model failed; this embedder can no longer serve");
                    failure_tx.send_replace(Some(reason));
                    drop(batches);
                })
                .expect("spawn model thread")
        };
        let workers = cfg.preprocess_workers.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("preprocess-{i}"))
            .build()
            .expect("preprocess pool");
        let inner = Inner {
            bulk: Arc::new(Semaphore::new(cfg.queue_capacity)),
            interactive: Arc::new(Semaphore::new(cfg.interactive_capacity)),
            capacity: cfg.queue_capacity + cfg.interactive_capacity,
            budget: MemoryBudget::new(cfg.memory_budget),
            decoders: Arc::new(Semaphore::new(workers)),
            pool,
            bulk_queue: bulk_tx,
            interactive_queue: interactive_tx,
            limits: cfg.limits,
            mode: cfg.preprocess,
            metrics,
            stats,
            failure,
        };
        (
            Batcher {
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
        let free = self.inner.bulk.available_permits() + self.inner.interactive.available_permits();
        self.inner.capacity - free
    }

    /// How long images have waited with the model finishing no batch: zero
    /// while it has nothing to do or keeps finishing batches. A wedged GPU
    /// shows here, while the process still answers everything else.
    pub fn stalled_for(&self) -> Duration {
        let stats = &self.inner.stats;
        if self.queue_depth() == 0 {
            stats.progressed();
            return Duration::ZERO;
        }
        let last = stats.last_progress_ms.load(Ordering::Relaxed);
        if last == 0 {
            stats.progressed();
            return Duration::ZERO;
        }
        Duration::from_millis(epoch_ms().saturating_sub(last))
    }

    /// Why the model can no longer run, once it cannot.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.borrow().clone()
    }

    /// Resolves when the model thread dies, with the reason.
    pub async fn failed(&self) -> String {
        let mut failure = self.inner.failure.clone();
        let reason = match failure.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The model thread ended cleanly (shutdown): never a failure.
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Gives `image` a place in the queue of its `priority` and charges its
    /// bytes to the budget, waiting for both: at most `wait` when given,
    /// then [`EmbedError::Overloaded`] naming `deadline`. Dropping the
    /// future gives up the wait.
    pub async fn admit(
        &self,
        priority: Priority,
        image: Bytes,
        wait: Option<(Duration, &'static str)>,
    ) -> Result<Admitted, EmbedError> {
        let admitted = match wait {
            None => self.admit_now(priority, image).await,
            Some((wait, deadline)) => {
                match tokio::time::timeout(wait, self.admit_now(priority, image)).await {
                    Ok(admitted) => admitted,
                    Err(_) => Err(EmbedError::Overloaded {
                        waited: wait,
                        deadline,
                    }),
                }
            }
        };
        if let Err(e) = &admitted {
            self.record(Err(e));
        }
        admitted
    }

    async fn admit_now(&self, priority: Priority, image: Bytes) -> Result<Admitted, EmbedError> {
        let inner = &self.inner;
        if let Some(reason) = self.failure() {
            return Err(EmbedError::ModelFailed(reason));
        }
        MemoryBudget::check_fits(image.len() as u64, inner.budget.waiting_kib)?;
        let places = match priority {
            Priority::Interactive => &inner.interactive,
            Priority::Bulk => &inner.bulk,
        };
        // The semaphores are never closed: an error cannot happen.
        let slot = places
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EmbedError::ShuttingDown)?;
        inner.metrics.queue_depth.set(self.queue_depth() as i64);
        let received = inner
            .budget
            .waiting
            .clone()
            .acquire_many_owned(kib(image.len() as u64))
            .await
            .map_err(|_| EmbedError::ShuttingDown)?;
        inner
            .metrics
            .memory_reserved_bytes
            .set(inner.budget.used_bytes());
        Ok(Admitted {
            image,
            priority,
            slot,
            received,
        })
    }

    /// Embeds an admitted image. Dropping the future abandons the image:
    /// work not started is skipped, an image not yet batched is left out of
    /// the batch.
    pub async fn embed(&self, admitted: Admitted) -> Result<Vec<f32>, EmbedError> {
        let result = self.embed_admitted(admitted).await;
        self.record(result.as_ref().map(|_| ()));
        result
    }

    fn record(&self, result: Result<(), &EmbedError>) {
        let m = &self.inner.metrics;
        m.queue_depth.set(self.queue_depth() as i64);
        m.memory_reserved_bytes.set(self.inner.budget.used_bytes());
        match result {
            Ok(()) => m.images.inc(),
            Err(e) => m.errors.with_label_values(&[e.label()]).inc(),
        }
    }

    async fn embed_admitted(&self, admitted: Admitted) -> Result<Vec<f32>, EmbedError> {
        let inner = &self.inner;
        let Admitted {
            image,
            priority,
            slot,
            received,
        } = admitted;

        // The header: every limit, and what the decode will take.
        let (limits, mode) = (inner.limits, inner.mode);
        let (image, received, probe) = self
            .on_pool(move || {
                let probe = preprocess::probe(&image, &limits);
                (image, received, probe)
            })
            .await?;
        let probe = probe?;
        let need = probe.decode_bytes;
        MemoryBudget::check_fits(need, inner.budget.decoding_kib)?;
        let closed = |_| EmbedError::ShuttingDown;
        let decoder = match priority {
            Priority::Bulk => Some(
                inner
                    .decoders
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(closed)?,
            ),
            Priority::Interactive => None,
        };
        let decoding = inner
            .budget
            .decoding
            .clone()
            .acquire_many_owned(kib(need))
            .await
            .map_err(closed)?;
        inner
            .metrics
            .memory_reserved_bytes
            .set(inner.budget.used_bytes());

        let hist = inner.metrics.preprocess_seconds.clone();
        let tensor = self
            .on_pool(move || {
                // Held until this closure ends, whether or not anyone waits.
                let _charges = (received, decoder, decoding);
                fault::on_preprocess();
                let start = Instant::now();
                let tensor = preprocess::preprocess_probed(&image, &probe, &limits, mode);
                hist.observe(start.elapsed().as_secs_f64());
                tensor
            })
            .await??;

        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            tensor,
            reply,
            ready_at: Instant::now(),
            priority,
            _slot: slot,
        };
        let gone = || match self.failure() {
            Some(reason) => EmbedError::ModelFailed(reason),
            None => EmbedError::ShuttingDown,
        };
        let queue = match priority {
            Priority::Interactive => &inner.interactive_queue,
            Priority::Bulk => &inner.bulk_queue,
        };
        queue.send(pending).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Runs `work` on the preprocessing pool. `work` owns what it charges
    /// to the budget, so the charge ends with the work, not with the caller.
    async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, EmbedError> {
        let (tx, rx) = oneshot::channel();
        self.inner.pool.spawn(move || {
            // The caller left before the work started: dropping `work`
            // frees what it holds.
            if tx.is_closed() {
                return;
            }
            let out = panic::catch_unwind(AssertUnwindSafe(work))
                .map_err(|p| EmbedError::Panicked(panic_message(&*p)));
            let _ = tx.send(out);
        });
        rx.await.map_err(|_| EmbedError::ShuttingDown)?
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The two queues the batcher takes images from, interactive first; but
/// searches that never stop coming must not starve an ingest (its stream
/// would see no answers and be taken for stalled), so once bulk images have
/// been passed over for [`MAX_BULK_WAIT_BEHIND_SEARCHES`], the next batch
/// starts with a bulk one.
struct Queues {
    interactive: mpsc::Receiver<Pending>,
    bulk: mpsc::Receiver<Pending>,
    /// Since when batches have started with searches while bulk waited.
    passed_over_since: Option<Instant>,
}

impl Queues {
    fn new(interactive: mpsc::Receiver<Pending>, bulk: mpsc::Receiver<Pending>) -> Self {
        Queues {
            interactive,
            bulk,
            passed_over_since: None,
        }
    }

    /// The image a batch starts with, waiting for one; `None` once the
    /// queues closed.
    async fn first(&mut self) -> Option<Pending> {
        let starved = self
            .passed_over_since
            .is_some_and(|t| t.elapsed() >= MAX_BULK_WAIT_BEHIND_SEARCHES);
        if starved {
            if let Ok(p) = self.bulk.try_recv() {
                self.passed_over_since = None;
                return Some(p);
            }
        }
        let first = self.next(false).await?;
        if first.priority == Priority::Bulk || self.bulk.is_empty() {
            self.passed_over_since = None;
        } else {
            self.passed_over_since.get_or_insert_with(Instant::now);
        }
        Some(first)
    }

    /// The next image, waiting for one (an interactive one only, when
    /// `interactive_only`); `None` once the queues closed.
    async fn next(&mut self, interactive_only: bool) -> Option<Pending> {
        tokio::select! {
            biased;
            Some(p) = self.interactive.recv() => Some(p),
            Some(p) = self.bulk.recv(), if !interactive_only => Some(p),
            else => None,
        }
    }

    /// The next image already queued (an interactive one only, when
    /// `interactive_only`).
    fn ready(&mut self, interactive_only: bool) -> Option<Pending> {
        let urgent = self.interactive.try_recv().ok();
        if urgent.is_some() || interactive_only {
            return urgent;
        }
        self.bulk.try_recv().ok()
    }
}

async fn batch_loop(
    mut queues: Queues,
    model: mpsc::Sender<Batch>,
    max_batch: usize,
    max_wait: Duration,
) {
    // One permit: held by the batch the model runs. A batch formed while
    // another runs would make a search that arrives meanwhile wait for two.
    let free = Arc::new(Semaphore::new(1));
    loop {
        let Ok(busy) = free.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = queues.first().await else {
            break;
        };
        // The wait counts from when the first image was ready: one that
        // waited through the previous batch does not wait again.
        let deadline = tokio::time::Instant::from_std(first.ready_at + max_wait);
        // A batch that starts with an interactive image carries only
        // interactive images: topped up with bulk ones it would cost, on a
        // CPU, a whole batch's time more.
        let interactive = first.priority == Priority::Interactive;
        let mut items = vec![first];
        while items.len() < max_batch {
            if let Some(p) = queues.ready(interactive) {
                items.push(p);
                continue;
            }
            match tokio::time::timeout_at(deadline, queues.next(interactive)).await {
                Ok(Some(p)) => items.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        items.retain(|p| !p.reply.is_closed());
        if items.is_empty() {
            continue;
        }
        let batch = Batch {
            items,
            _model_busy: busy,
        };
        if model.send(batch).await.is_err() {
            break;
        }
    }
}

/// Runs batches until the channel closes (shutdown: `Ok`). A failed forward
/// pass ends it with `Err`: on a GPU such errors are sticky, so the replica
/// is restarted rather than trusted with the next batch.
fn model_loop(
    model: Resnet50,
    batches: &mut mpsc::Receiver<Batch>,
    metrics: Metrics,
    stats: Arc<Stats>,
) -> Result<(), String> {
    let device = model::device_name(model.device());
    let inference = metrics
        .inference_seconds
        .with_label_values(&[device.as_str()]);
    while let Some(Batch {
        items: batch,
        _model_busy: busy,
    }) = batches.blocking_recv()
    {
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
        fault::on_batch();
        let result = model.embed_flat(&data);
        inference.observe(now.elapsed().as_secs_f64());
        metrics.batch_size.observe(n as f64);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.progressed();
        let values = match result {
            Ok(values) => values,
            Err(e) => {
                let reason = format!("inference failed: {e}");
                for p in batch {
                    let _ = p.reply.send(Err(EmbedError::ModelFailed(reason.clone())));
                }
                return Err(reason);
            }
        };
        stats.images.fetch_add(n as u64, Ordering::Relaxed);
        let dim = values.len() / n;
        for (p, v) in batch.into_iter().zip(values.chunks_exact(dim)) {
            let _ = p.reply.send(Ok(v.to_vec()));
        }
        // The model is free: the batcher may form the next batch.
        drop(busy);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(priority: Priority, slots: &Arc<Semaphore>) -> Pending {
        Pending {
            tensor: Vec::new(),
            reply: oneshot::channel().0,
            ready_at: Instant::now(),
            priority,
            _slot: slots.clone().try_acquire_owned().unwrap(),
        }
    }

    /// Empty queues, their senders (interactive, bulk), and queue places.
    fn queues() -> (
        Arc<Semaphore>,
        mpsc::Sender<Pending>,
        mpsc::Sender<Pending>,
        Queues,
    ) {
        let (itx, interactive) = mpsc::channel(32);
        let (btx, bulk) = mpsc::channel(32);
        let slots = Arc::new(Semaphore::new(64));
        (slots, itx, btx, Queues::new(interactive, bulk))
    }

    #[tokio::test]
    async fn bulk_passed_over_by_searches_for_its_longest_wait_starts_the_next_batch() {
        let (slots, itx, btx, mut queues) = queues();
        btx.try_send(pending(Priority::Bulk, &slots)).ok().unwrap();
        // A search is always waiting when a batch starts.
        let mut next = async || {
            itx.try_send(pending(Priority::Interactive, &slots))
                .ok()
                .unwrap();
            queues.first().await.unwrap().priority
        };
        assert_eq!(next().await, Priority::Interactive);
        assert_eq!(next().await, Priority::Interactive);
        std::thread::sleep(MAX_BULK_WAIT_BEHIND_SEARCHES);
        assert_eq!(next().await, Priority::Bulk);
        assert_eq!(next().await, Priority::Interactive);
    }

    #[tokio::test]
    async fn with_no_bulk_waiting_searches_always_go_first() {
        let (slots, itx, _btx, mut queues) = queues();
        for _ in 0..5 {
            itx.try_send(pending(Priority::Interactive, &slots))
                .ok()
                .unwrap();
            assert_eq!(
                queues.first().await.unwrap().priority,
                Priority::Interactive
            );
        }
    }
}
