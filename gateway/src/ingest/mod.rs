//! Streaming ingest: images in, acknowledgements out. The rules, in one
//! place:
//!
//! - **Admission** ([`crate::admission`]): at most `--max-insert-streams` streams,
//!   each reserving `--insert-stream-bytes` of the gateway's
//!   `--insert-memory-bytes`; beyond either, RESOURCE_EXHAUSTED at once.
//! - **Checks before cost** ([`reader`], [`item`]): a filepath is 1 to 200
//!   bytes of UTF-8; an item naming another collection, or too large for the
//!   stream's budget, fails alone. None of these touches another item.
//! - **Bounded memory**: images read and not yet answered by the embedder
//!   hold the stream's budget; when it is spent the stream stops reading.
//!   At most `EMBED_WINDOW` images are on their way to the embedder, one
//!   batch of vectors waits for Milvus, and settlements are acknowledged at
//!   least every batch's worth ([`ledger`]).
//! - **Resume** ([`claims`]): under `skip_existing` every filepath is claimed
//!   and looked up in Milvus before its image is embedded; an item whose
//!   filepath another in-flight item holds waits for that item's outcome
//!   (stored: skipped; failed: embedded itself); a partial batch whose
//!   claims are awaited is committed once nothing is left at the embedder.
//! - **Commit** ([`rows`], [`inflight`]): a full batch is inserted in a task
//!   of its own while the stream goes on taking answers, then
//!   acknowledged; one batch at a time is in flight and one fills behind
//!   it. A batch Milvus refuses for its rows is split until its bad rows
//!   stand alone; a throttled one waits and is sent again.
//! - **Deadlines**: no message for `--insert-idle-timeout-secs` ends the
//!   stream after committing what was received; an image unanswered for
//!   `--embed-timeout-secs` stops it (the embedder is taken as gone), time
//!   the gateway spends on its own (a full batch behind a slow Milvus, a
//!   slow reader) not counted; Milvus calls have the store's deadlines
//!   ([`crate::milvus`]), the flush its own.
//! - **Ending**: whatever stops a stream, the rows already embedded are
//!   committed, every item received is settled (stored, failed or skipped)
//!   and acknowledged, the summary is sent, and only then the error, if
//!   any. A stream refused at the start ends with the error alone.
//! - **The model**: a stream goes only to an embedder whose fingerprint is
//!   the collection's.

pub mod claims;
mod inflight;
mod item;
mod ledger;
mod reader;
mod rows;
mod waiting;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    embed_response, EmbedRequest, EmbedResponse, ErrorKind, InsertRequest, InsertResponse,
    ItemFailure,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use self::{
    claims::Claims,
    inflight::{InFlight, Landed},
    item::{echoed, failure, ItemIndex, ItemRules, Skip},
    ledger::Ledger,
    reader::{Pending, ReadEnd, ReadEvent, Reader},
    rows::Row,
    waiting::Waiting,
};
use crate::{
    admission::{Admission, StreamTicket},
    answers::{self, AnswerStream},
    embedders::{EmbedAnswers, Embedders, ReplicaHandle},
    error::GatewayError,
    metrics::Metrics,
    milvus::{CollectionSpec, MilvusStore},
};

/// Images on their way to the embedder and not yet answered, at most.
const EMBED_WINDOW: usize = 64;
/// Settlements the reader may queue ahead of the stream.
const EVENT_WINDOW: usize = 256;
/// Answers queued for the caller; beyond, the stream waits for it to read.
const ANSWER_WINDOW: usize = 4;
/// How often the embedder's answer deadline is checked.
const DEADLINE_TICK: Duration = Duration::from_millis(500);

use imgsearch_proto::limits::MAX_BATCH_SIZE;

/// The ingest settings, from the flags.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Rows per Milvus insert unless the stream asks otherwise.
    pub batch_size: usize,
    pub idle_timeout: Duration,
    /// Test-only switch: off lets over-long filepaths reach Milvus.
    pub check_filepaths: bool,
}

/// Everything Insert streams share on one gateway.
#[derive(Clone)]
pub struct Ingest {
    config: IngestConfig,
    admission: Admission,
    claims: Claims,
    embedders: Embedders,
    metrics: Metrics,
}

/// What the first message set up.
struct Setup {
    spec: CollectionSpec,
    batch_size: usize,
    skip: Skip,
    /// What each item is checked against.
    rules: ItemRules,
}

impl Ingest {
    pub fn new(
        config: IngestConfig,
        admission: Admission,
        embedders: Embedders,
        metrics: Metrics,
    ) -> Self {
        Self {
            config,
            admission,
            claims: Claims::default(),
            embedders,
            metrics,
        }
    }

    /// Admits a stream and runs it in the background; its answers come out
    /// of the returned stream.
    pub fn start<S>(
        &self,
        store: MilvusStore,
        trace: TraceContext,
        tenant: Option<String>,
        requests: S,
    ) -> Result<AnswerStream<InsertResponse>, GatewayError>
    where
        S: Stream<Item = Result<InsertRequest, GatewayError>> + Send + Unpin + 'static,
    {
        let ticket = self.admission.admit()?;
        self.metrics
            .insert_streams
            .set(self.admission.open_streams() as i64);
        let (answers, rx) = answers::channel(ANSWER_WINDOW, self.config.idle_timeout);
        let this = self.clone();
        // A child of the call's span, which carries the trace id and caller.
        let span = tracing::info_span!("insert", collection = tracing::field::Empty);
        tokio::spawn(
            async move {
                let mut ledger = Ledger::new(answers, this.metrics.clone());
                // How the stream ends is counted by the telemetry layer,
                // from the status the ledger sends last.
                match this
                    .run(&store, (&trace, tenant), ticket, requests, &mut ledger)
                    .await
                {
                    Ok(error) => ledger.finish(error).await,
                    // Refused at the start: nothing was received.
                    Err(refused) => ledger.refuse(refused),
                }
                this.metrics
                    .insert_streams
                    .set(this.admission.open_streams() as i64);
            }
            .instrument(span),
        );
        Ok(rx)
    }

    /// Reads the first message: which collection, what batch size.
    async fn setup(
        &self,
        store: &MilvusStore,
        first: &InsertRequest,
        tenant: Option<String>,
    ) -> Result<Setup, GatewayError> {
        if first.collection.is_empty() {
            return Err(GatewayError::InvalidArgument(
                "the first Insert message must name the collection".into(),
            ));
        }
        tracing::Span::current().record("collection", first.collection.as_str());
        let batch_size = match first.batch_size {
            0 => self.config.batch_size,
            n if n <= MAX_BATCH_SIZE => n as usize,
            n => {
                return Err(GatewayError::InvalidArgument(format!(
                    "batch_size {n} is over {MAX_BATCH_SIZE}"
                )))
            }
        };
        let spec = store.collection_spec(&first.collection).await?;
        let vectors_stated = match (first.fingerprint.as_str(), &spec.fingerprint) {
            ("", _) => false,
            (stated, Some(recorded)) if stated != recorded => {
                return Err(GatewayError::FingerprintMismatch {
                    collection: spec.name.clone(),
                    recorded: recorded.clone(),
                    stated: stated.to_string(),
                })
            }
            _ => true,
        };
        let rules = ItemRules {
            spec: spec.clone(),
            vectors_stated,
            scope: spec.scope(tenant.as_deref())?,
            tenant,
        };
        let skip = match (first.skip_existing, first.skip_same_content) {
            (false, false) => Skip::Nothing,
            (true, false) => Skip::SameFilepath,
            (false, true) => {
                spec.require_extended("skip_same_content")?;
                Skip::SameContent
            }
            (true, true) => {
                return Err(GatewayError::InvalidArgument(
                    "skip_existing and skip_same_content: choose one".into(),
                ))
            }
        };
        Ok(Setup {
            spec,
            batch_size,
            skip,
            rules,
        })
    }

    /// Runs one stream. `Err` when it is refused at the start; otherwise the
    /// error (if any) that ends it after everything is acknowledged.
    async fn run<S>(
        &self,
        store: &MilvusStore,
        (trace, tenant): (&TraceContext, Option<String>),
        ticket: StreamTicket,
        mut requests: S,
        ledger: &mut Ledger,
    ) -> Result<Option<GatewayError>, GatewayError>
    where
        S: Stream<Item = Result<InsertRequest, GatewayError>> + Send + Unpin + 'static,
    {
        let first = self.first_message(&mut requests).await?;
        crate::fault::streaming_call_started("insert");
        let setup = self.setup(store, &first, tenant).await?;
        let (embed_tx, embed_rx) = mpsc::channel::<EmbedRequest>(EMBED_WINDOW);
        let (mut answers, replica) = self
            .embedders
            .open_stream(&setup.spec, trace, embed_rx)
            .await?;

        let started = Instant::now();
        let pending = Pending::default();
        let received = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let (events_tx, mut events) = mpsc::channel(EVENT_WINDOW);
        let reader = tokio::spawn(
            Reader {
                requests,
                first: Some(first),
                rules: setup.rules,
                skip: setup.skip,
                group_size: setup.batch_size,
                idle_timeout: self.config.idle_timeout,
                store: store.clone(),
                claims: self.claims.clone(),
                ticket: Arc::new(ticket),
                pending: pending.clone(),
                embed_tx,
                events: events_tx,
                cancel: cancel.clone(),
                received: received.clone(),
                check_filepaths: self.config.check_filepaths,
                waiting: Waiting::default(),
            }
            .run()
            .in_current_span(),
        );

        let mut stream = Flow {
            store,
            spec: &setup.spec,
            pending: &pending,
            ledger,
            batch: Vec::with_capacity(setup.batch_size),
            batch_size: setup.batch_size,
            committing: None,
            backed_up_since: None,
            insert_seconds: 0.0,
            waited_on_milvus: Duration::ZERO,
            last_answer: Instant::now(),
        };
        let stop = stream
            .pump(
                &mut answers,
                &mut events,
                &reader,
                &replica,
                (&cancel, self.embedders.call_timeout()),
            )
            .await;
        // Wind down: stop the reader, settle what it held and what it sent.
        cancel.cancel();
        drop(answers);
        let (end, stop) = stream.wind_down(reader, events, stop).await;
        stream.summarize(received.load(Ordering::Relaxed), started, &end);
        Ok(stop.or_else(|| end.into_error()))
    }

    /// The stream's first message, within the idle timeout.
    async fn first_message<S>(&self, requests: &mut S) -> Result<InsertRequest, GatewayError>
    where
        S: Stream<Item = Result<InsertRequest, GatewayError>> + Unpin,
    {
        match tokio::time::timeout(self.config.idle_timeout, requests.next()).await {
            Err(_) => Err(GatewayError::Deadline("no Insert message arrived".into())),
            Ok(None) => Err(GatewayError::InvalidArgument("empty Insert stream".into())),
            Ok(Some(result)) => result,
        }
    }
}

impl ReadEnd {
    /// What the reader's end means for the call, when nothing else stopped it.
    fn into_error(self) -> Option<GatewayError> {
        match self {
            ReadEnd::Finished | ReadEnd::Cancelled => None,
            ReadEnd::CallerFailed(e) => Some(e),
            ReadEnd::Idle(after) => Some(GatewayError::Deadline(format!(
                "no Insert message for {} s (--insert-idle-timeout-secs); what was received \
                 is stored and acknowledged",
                after.as_secs()
            ))),
            ReadEnd::EmbedderGone => Some(GatewayError::EmbedderUnavailable(
                "the embedder stream closed".into(),
            )),
            ReadEnd::Store(e) => Some(e),
        }
    }
}

/// The reader's task: how it ended, and the items it held unsettled.
type ReaderTask = tokio::task::JoinHandle<(ReadEnd, Vec<(ItemIndex, String)>)>;

/// The embedder ended its answers: after the reader closed its side (give
/// the reader's task a moment to be marked finished) that is the normal
/// end; before it, the embedder left early.
async fn ended_early(reader: &ReaderTask, replica: &ReplicaHandle) -> Option<GatewayError> {
    let mut waited = 0;
    while !reader.is_finished() && waited < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    if reader.is_finished() {
        return None;
    }
    replica.mark_down();
    Some(GatewayError::EmbedderUnavailable(
        "the embedder ended the stream early".into(),
    ))
}

/// Stages two and three of a stream: the embedder's answers into a batch,
/// the batch into Milvus, settlements into the ledger.
struct Flow<'a> {
    store: &'a MilvusStore,
    spec: &'a CollectionSpec,
    pending: &'a Pending,
    ledger: &'a mut Ledger,
    /// The batch filling up.
    batch: Vec<Row>,
    batch_size: usize,
    /// The batch Milvus is taking now.
    committing: Option<InFlight>,
    /// Since when a full batch has waited behind the one in flight.
    backed_up_since: Option<Instant>,
    /// Seconds inside Milvus calls (overlapping the embedder's work).
    insert_seconds: f64,
    /// Time the stream did nothing but wait for Milvus.
    waited_on_milvus: Duration,
    /// When the embedder last answered anything.
    last_answer: Instant,
}

impl Flow<'_> {
    /// Takes the reader's settlements and the embedder's answers, commits
    /// full batches beside them and acknowledges, until both have ended or
    /// the stream must stop; what stops it.
    async fn pump(
        &mut self,
        answers: &mut EmbedAnswers,
        events: &mut mpsc::Receiver<ReadEvent>,
        reader: &ReaderTask,
        replica: &ReplicaHandle,
        (cancel, embed_timeout): (&CancellationToken, Duration),
    ) -> Option<GatewayError> {
        let mut tick = tokio::time::interval(DEADLINE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut reading, mut embedding) = (true, true);
        let mut stop: Option<GatewayError> = None;
        while (reading || embedding) && stop.is_none() {
            let taking_answers = embedding && !self.backed_up();
            // Biased: a landed batch is acknowledged first, and answers
            // that queued up while the gateway paused are taken before the
            // deadline's tick, which would otherwise see an embedder that
            // answered as one that did not.
            tokio::select! {
                biased;
                landed = inflight::landing(&mut self.committing) => {
                    stop = self.land(landed);
                    self.acknowledge().await;
                }
                // A full batch behind the one in flight takes no more rows,
                // from the embedder or (vectors) from the reader.
                event = events.recv(), if reading && !self.backed_up() => match event {
                    Some(e) => self.settle(e),
                    None => reading = false,
                },
                answer = answers.next(), if taking_answers => match answer {
                    Some(Ok(a)) => {
                        self.last_answer = Instant::now();
                        self.answer(a);
                    }
                    None => {
                        embedding = false;
                        stop = ended_early(reader, replica).await;
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "embedder stream failed");
                        replica.mark_down();
                        stop = Some(e);
                    }
                },
                _ = tick.tick(), if taking_answers => {
                    if self.stalled(embed_timeout) {
                        replica.mark_down();
                        stop = Some(GatewayError::EmbedderUnavailable(format!(
                            "the embedder answered nothing for {} s while images waited \
                             (--embed-timeout-secs)",
                            embed_timeout.as_secs()
                        )));
                    }
                }
            }
            if stop.is_none() {
                self.commit_or_acknowledge().await;
            }
            self.watch_backlog();
            if self.ledger.caller_gone() {
                // Nobody reads the answers: stop reading, finish the rest.
                cancel.cancel();
            }
        }
        stop
    }

    /// Starts committing a full batch (or one whose claims others await)
    /// when none is in flight, or acknowledges a batch's worth of
    /// settlements. Time spent on a slow reader is the gateway's own
    /// pause, not the embedder's silence: the stall timer skips it.
    async fn commit_or_acknowledge(&mut self) {
        let ready = self.batch.len() >= self.batch_size || self.claims_awaited();
        if ready && self.committing.is_none() {
            let rows = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
            self.committing = Some(InFlight::start(self.store, self.spec, rows));
        } else if self.ledger.unacked_at_least(self.batch_size) {
            self.acknowledge().await;
        }
    }

    /// Whether a full batch waits behind the one in flight: the stream
    /// then takes no answers (memory stays at two batches).
    fn backed_up(&self) -> bool {
        self.committing.is_some() && self.batch.len() >= self.batch_size
    }

    /// Leaves the time the stream was backed up behind Milvus out of the
    /// embedder's silence, and counts it as waiting on Milvus.
    fn watch_backlog(&mut self) {
        match (self.backed_up(), self.backed_up_since) {
            (true, None) => self.backed_up_since = Some(Instant::now()),
            (false, Some(since)) => {
                self.backed_up_since = None;
                self.excuse(since.elapsed());
                self.waited_on_milvus += since.elapsed();
            }
            _ => {}
        }
    }

    /// Sends what was settled, keeping the wait for a slow reader out of
    /// the embedder's silence.
    async fn acknowledge(&mut self) {
        let paused = Instant::now();
        self.ledger.acknowledge().await;
        self.excuse(paused.elapsed());
    }

    /// After the loop: settles what the reader held and what it sent,
    /// commits the last rows (unless Milvus is down), fails every item still
    /// without an outcome, acknowledges all, and flushes. How the reader
    /// ended, and what stops the stream.
    async fn wind_down(
        &mut self,
        reader: ReaderTask,
        mut events: mpsc::Receiver<ReadEvent>,
        mut stop: Option<GatewayError>,
    ) -> (ReadEnd, Option<GatewayError>) {
        let (end, unsettled) = reader.await.unwrap_or_else(|e| {
            warn!(error = %e, "the reader task failed");
            (ReadEnd::Cancelled, Vec::new())
        });
        while let Ok(e) = events.try_recv() {
            self.settle(e);
        }
        let waited = Instant::now();
        if let Some(batch) = self.committing.take() {
            let landed = batch.landed_now().await;
            if let Some(e) = self.land(landed) {
                stop.get_or_insert(e);
            }
            self.ledger.acknowledge().await;
        }
        let milvus_down = matches!(
            stop,
            Some(GatewayError::MilvusUnavailable(_)) | Some(GatewayError::CollectionNotFound(_))
        );
        if milvus_down {
            self.fail_batch("not inserted: Milvus stopped answering");
        } else {
            // Rows the reader sent after the loop may have overfilled it.
            while !self.batch.is_empty() {
                let rest = self.batch.split_off(self.batch.len().min(self.batch_size));
                let rows = std::mem::replace(&mut self.batch, rest);
                let batch = InFlight::start(self.store, self.spec, rows);
                if let Some(e) = self.land(batch.landed_now().await) {
                    stop.get_or_insert(e);
                    self.fail_batch(&format!("not inserted: {}", stop.as_ref().expect("set")));
                }
            }
        }
        let why = match &stop {
            Some(e) => format!("not stored: the stream stopped ({e})"),
            None => "not stored: the embedder never answered".to_string(),
        };
        let drained: Vec<_> = self.pending.lock().expect("pending lock").drain().collect();
        let left = drained
            .into_iter()
            .map(|(index, item)| (index, item.filepath))
            .chain(unsettled);
        for (index, filepath) in left {
            self.ledger
                .failed(failure(index, filepath, ErrorKind::Unavailable, &why));
        }
        self.ledger.acknowledge().await;

        let t = Instant::now();
        if self.ledger.summary.inserted > 0 && !milvus_down {
            match self.store.flush(&self.spec.name).await {
                Ok(()) => self.ledger.summary.flushed = true,
                Err(e) => {
                    stop.get_or_insert(e);
                }
            }
        }
        self.insert_seconds += t.elapsed().as_secs_f64();
        self.waited_on_milvus += waited.elapsed();
        (end, stop)
    }

    /// Fills in the summary's counts and times, and logs the stream's end.
    fn summarize(&mut self, received: u64, started: Instant, end: &ReadEnd) {
        let summary = &mut self.ledger.summary;
        summary.received = received;
        summary.insert_seconds = self.insert_seconds;
        summary.embed_seconds = started
            .elapsed()
            .saturating_sub(self.waited_on_milvus)
            .as_secs_f64();
        let settled = self.ledger.settled();
        let s = &self.ledger.summary;
        if settled != s.received {
            warn!(settled, received = s.received, "items left unsettled");
        }
        info!(
            received = s.received,
            inserted = s.inserted,
            failed = s.failed,
            skipped = s.skipped,
            flushed = s.flushed,
            ?end,
            "insert done"
        );
    }

    fn settle(&mut self, event: ReadEvent) {
        match event {
            ReadEvent::Failed(f) => self.ledger.failed(f),
            ReadEvent::Skipped(i, holder) => self.ledger.skipped(i, holder),
            ReadEvent::Row(row) => self.batch.push(row),
        }
    }

    /// One embedder answer: a row for the batch, or the item's failure.
    fn answer(&mut self, answer: EmbedResponse) {
        let item = ItemIndex::parse(&answer.id)
            .and_then(|i| Some((i, self.pending.lock().expect("pending lock").remove(&i)?)));
        let Some((index, item)) = item else {
            warn!(id = %answer.id, "the embedder answered an id that is not in flight; ignored");
            return;
        };
        let dimension = self.spec.dimension as usize;
        match answer.result {
            Some(embed_response::Result::Vector(v)) if v.values.len() == dimension => {
                self.batch.push(Row {
                    index,
                    filepath: item.filepath,
                    vector: v.values,
                    facts: item.facts,
                    claim: item.claim,
                })
            }
            Some(embed_response::Result::Vector(v)) => self.ledger.failed(failure(
                index,
                item.filepath,
                ErrorKind::Internal,
                format!(
                    "the embedder returned {} values; the collection holds {dimension}",
                    v.values.len()
                ),
            )),
            Some(embed_response::Result::Error(e)) => self.ledger.failed(ItemFailure {
                index: index.0,
                filepath: echoed(item.filepath),
                error: Some(e),
            }),
            None => self.ledger.failed(failure(
                index,
                item.filepath,
                ErrorKind::Internal,
                "the embedder sent an empty answer",
            )),
        }
    }

    /// Whether the batch should go now though not full: other items (of this
    /// stream or another) wait for claims its rows hold, and nothing more is
    /// at the embedder to fill it. A trickling stream would otherwise keep
    /// them waiting until its batch fills or it ends; the same stream, for a
    /// batch that fills only with what they hold back.
    fn claims_awaited(&self) -> bool {
        !self.batch.is_empty()
            && self.pending.lock().expect("pending lock").is_empty()
            && self
                .batch
                .iter()
                .any(|r| r.claim.as_ref().is_some_and(|c| c.awaited()))
    }

    /// Leaves `pause`, time the gateway spent on its own work, out of the
    /// embedder's silence.
    fn excuse(&mut self, pause: Duration) {
        self.last_answer = (self.last_answer + pause).min(Instant::now());
    }

    /// Whether the embedder is stuck: images have waited longer than
    /// `timeout` and it has answered nothing for as long. (A single image's
    /// wait is no measure: under load an image may queue behind hundreds.)
    fn stalled(&self, timeout: Duration) -> bool {
        if self.last_answer.elapsed() <= timeout {
            return false;
        }
        let pending = self.pending.lock().expect("pending lock");
        pending.values().any(|p| p.sent_at.elapsed() > timeout)
    }

    /// Settles every row of a landed batch; the error that must stop the
    /// stream, if Milvus itself failed.
    fn land(&mut self, landed: Landed) -> Option<GatewayError> {
        let done = landed.committed;
        self.insert_seconds += landed.took.as_secs_f64();
        self.ledger.stored(done.stored, done.write_token);
        for f in done.failures {
            self.ledger.failed(f);
        }
        done.stop
    }

    fn fail_batch(&mut self, reason: &str) {
        for r in std::mem::take(&mut self.batch) {
            self.ledger
                .failed(failure(r.index, r.filepath, ErrorKind::Unavailable, reason));
        }
    }
}
