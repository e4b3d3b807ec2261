//! SearchStream: queries in, results out in request order. The rules:
//!
//! - **Admission** ([`crate::admission`]): at most `--max-search-streams`,
//!   each reserving `--search-stream-bytes` of `--search-memory-bytes`.
//! - **Bounded memory**: a query holds the stream's byte budget from the
//!   moment it is read until its answer is sent; when the budget is spent
//!   the stream stops reading. A query that could never fit fails alone.
//! - **Dynamic batches**: the worker answers whatever has arrived, up to
//!   [`MAX_QUERIES`] at a time, without waiting to fill a batch: one
//!   EmbedBatch and one Milvus search serve the lot, so a busy stream gets
//!   large batches and a sparse one gets low latency.
//! - **Per-query failures**: a bad image, a vector of the wrong length, an
//!   unknown `like` row, a message without a query fail alone. So does a
//!   batch that meets an unavailable or overloaded embedder or Milvus: its
//!   queries fail with that kind, and the stream goes on. Only the
//!   collection vanishing or changing model ends it.
//! - **Deadlines**: no message for `--search-idle-timeout-secs` ends the
//!   stream DEADLINE_EXCEEDED once the answers so far are sent; a caller
//!   that reads no answer for as long is cut off, and told so
//!   (DEADLINE_EXCEEDED) once it reads on ([`crate::answers`]).

use std::time::Duration;

use futures::{Stream, StreamExt};
use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    search_stream_request, ErrorKind, Hit, ItemError, QueryResult, SearchStreamRequest,
    SearchStreamResponse,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::{info, Instrument};

use super::{item_error, row_ref, Options, Query, RawOptions, Searcher, MAX_QUERIES};
use crate::{
    admission::{Admission, StreamTicket},
    answers::{self, AnswerSender, AnswerStream},
    error::GatewayError,
    metrics::Metrics,
    milvus::CollectionSpec,
};

/// Answers queued for the caller; beyond, the stream waits for it to read.
const ANSWER_WINDOW: usize = 8;

/// Every SearchStream of one gateway.
#[derive(Clone)]
pub struct SearchStreams {
    admission: Admission,
    idle_timeout: Duration,
    metrics: Metrics,
}

/// One query as read: its position, the query or why it has none, and the
/// budget it holds until answered.
struct Arrived {
    index: u64,
    query: Result<Query, ItemError>,
    _held: Option<OwnedSemaphorePermit>,
}

/// Why the reader stopped.
enum ReadEnd {
    Done,
    Idle,
    Broken(GatewayError),
}

type Answers = AnswerSender<SearchStreamResponse>;

/// Whether every query read was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    Yes,
    No,
}

impl SearchStreams {
    pub fn new(admission: Admission, idle_timeout: Duration, metrics: Metrics) -> Self {
        Self {
            admission,
            idle_timeout,
            metrics,
        }
    }

    /// Admits a stream and runs it in the background.
    pub fn start<S>(
        &self,
        searcher: Searcher,
        trace: TraceContext,
        requests: S,
    ) -> Result<AnswerStream<SearchStreamResponse>, GatewayError>
    where
        S: Stream<Item = Result<SearchStreamRequest, GatewayError>> + Send + Unpin + 'static,
    {
        let ticket = self.admission.admit()?;
        self.metrics
            .search_streams
            .set(self.admission.open_streams() as i64);
        let (mut answers, rx) = answers::channel(ANSWER_WINDOW, self.idle_timeout);
        let this = self.clone();
        // A child of the call's span, which carries the trace id and caller.
        let span = tracing::info_span!("search_stream", collection = tracing::field::Empty);
        tokio::spawn(
            async move {
                let outcome = this
                    .run(searcher, &trace, ticket, requests, &mut answers)
                    .await;
                answers.end(outcome.err(), || "the stream was ended".into());
                this.metrics
                    .search_streams
                    .set(this.admission.open_streams() as i64);
            }
            .instrument(span),
        );
        Ok(rx)
    }

    async fn run<S>(
        &self,
        searcher: Searcher,
        trace: &TraceContext,
        ticket: StreamTicket,
        mut requests: S,
        answers: &mut Answers,
    ) -> Result<(), GatewayError>
    where
        S: Stream<Item = Result<SearchStreamRequest, GatewayError>> + Send + Unpin + 'static,
    {
        let first = match tokio::time::timeout(self.idle_timeout, requests.next()).await {
            Err(_) => return Err(self.idle_error()),
            Ok(None) => return Ok(()),
            Ok(Some(Err(error))) => {
                info!(%error, "the caller's stream broke before a query");
                return Ok(());
            }
            Ok(Some(Ok(m))) => m,
        };
        crate::fault::streaming_call_started("search-stream");
        if first.collection.is_empty() {
            return Err(GatewayError::InvalidArgument(
                "the first SearchStream message must name the collection".into(),
            ));
        }
        tracing::Span::current().record("collection", first.collection.as_str());
        let options = Options::parse(RawOptions {
            top_k: first.top_k,
            offset: first.offset,
            max_distance: first.max_distance,
            include_self: first.include_self,
            consistency: first.consistency,
            write_token: first.write_token,
            filter: first.filter.clone(),
            with_attributes: first.with_attributes,
            search_level: first.search_level,
        })?;
        let spec = searcher.store.collection_spec(&first.collection).await?;
        // A filter the collection cannot take ends the call before any query.
        spec.expression(&options.filter, searcher.tenant.as_deref())?;

        let (arrivals, mut arrived) = mpsc::channel(MAX_QUERIES);
        let reader = tokio::spawn(read(
            first,
            requests,
            spec.clone(),
            ticket,
            arrivals,
            self.idle_timeout,
        ));
        let abort = reader.abort_handle();
        let answered = self
            .answer_all(&searcher, &spec, &options, trace, &mut arrived, answers)
            .await;
        drop(arrived);
        if !matches!(answered, Ok(Drained::Yes)) {
            // The stream ends early: the reader stops wherever it waits.
            abort.abort();
        }
        if answered? == Drained::No {
            return Ok(());
        }
        match reader.await {
            Ok(ReadEnd::Done) => Ok(()),
            Ok(ReadEnd::Idle) => Err(self.idle_error()),
            Ok(ReadEnd::Broken(error)) => {
                info!(%error, "the caller's stream broke");
                Ok(())
            }
            Err(e) if e.is_panic() => Err(GatewayError::Internal(
                "the SearchStream reader failed (see the gateway's log)".into(),
            )),
            Err(_) => Ok(()),
        }
    }

    fn idle_error(&self) -> GatewayError {
        GatewayError::Deadline(format!(
            "no SearchStream message for {} s (--search-idle-timeout-secs)",
            self.idle_timeout.as_secs()
        ))
    }

    /// Answers batches of whatever has arrived until the reader is done
    /// (`Drained::Yes`) or the caller stops reading (`Drained::No`).
    async fn answer_all(
        &self,
        searcher: &Searcher,
        spec: &CollectionSpec,
        options: &Options,
        trace: &TraceContext,
        arrived: &mut mpsc::Receiver<Arrived>,
        answers: &mut Answers,
    ) -> Result<Drained, GatewayError> {
        let mut batch = Vec::with_capacity(MAX_QUERIES);
        while arrived.recv_many(&mut batch, MAX_QUERIES).await > 0 {
            let mut results: Vec<Option<Result<Vec<Hit>, ItemError>>> = Vec::new();
            let mut queries = Vec::new();
            let mut asked = Vec::new();
            for (slot, a) in batch.iter_mut().enumerate() {
                match std::mem::replace(&mut a.query, Err(ItemError::default())) {
                    Ok(q) => {
                        queries.push(q);
                        asked.push(slot);
                        results.push(None);
                    }
                    Err(e) => results.push(Some(Err(e))),
                }
            }
            let (mut embed_seconds, mut search_seconds) = (0.0, 0.0);
            if !queries.is_empty() {
                match searcher.answer(spec, options, trace, queries).await {
                    Ok(a) => {
                        embed_seconds = a.embed_seconds;
                        search_seconds = a.search_seconds;
                        for (slot, r) in asked.into_iter().zip(a.results) {
                            results[slot] = Some(r);
                        }
                    }
                    Err(e) if ends_stream(&e) => return Err(e),
                    Err(e) => {
                        let failed = item_error(kind_of(&e), e.to_string());
                        for slot in asked {
                            results[slot] = Some(Err(failed.clone()));
                        }
                    }
                }
            }
            for (a, r) in batch.drain(..).zip(results) {
                let result = match r.unwrap_or_else(|| Ok(Vec::new())) {
                    Ok(hits) => QueryResult { hits, error: None },
                    Err(e) => QueryResult {
                        hits: Vec::new(),
                        error: Some(e),
                    },
                };
                let answer = SearchStreamResponse {
                    index: a.index,
                    result: Some(result),
                    embed_seconds,
                    search_seconds,
                };
                if !answers.send(answer).await {
                    return Ok(Drained::No);
                }
            }
        }
        Ok(Drained::Yes)
    }
}

/// Whether a batch's failure is about the whole stream rather than the
/// moment: the collection is gone or holds another model's vectors.
fn ends_stream(e: &GatewayError) -> bool {
    match e {
        GatewayError::CollectionNotFound(_)
        | GatewayError::ModelMismatch { .. }
        | GatewayError::NeedsExtended { .. }
        | GatewayError::FingerprintMismatch { .. }
        | GatewayError::CollectionExists(_) => true,
        GatewayError::InvalidArgument(_)
        | GatewayError::MilvusUnavailable(_)
        | GatewayError::Milvus(_)
        | GatewayError::MilvusThrottled(_)
        | GatewayError::MilvusRefused(_)
        | GatewayError::EmbedderUnavailable(_)
        | GatewayError::Overloaded(_)
        | GatewayError::Embedder(_)
        | GatewayError::Deadline(_)
        | GatewayError::RowNotFound(_)
        | GatewayError::Internal(_)
        | GatewayError::Config(_) => false,
    }
}

fn kind_of(e: &GatewayError) -> ErrorKind {
    match e {
        GatewayError::InvalidArgument(_)
        | GatewayError::MilvusRefused(_)
        | GatewayError::NeedsExtended { .. }
        | GatewayError::FingerprintMismatch { .. } => ErrorKind::InvalidArgument,
        GatewayError::Overloaded(_) | GatewayError::MilvusThrottled(_) => ErrorKind::Overloaded,
        GatewayError::RowNotFound(_) | GatewayError::CollectionNotFound(_) => ErrorKind::NotFound,
        GatewayError::MilvusUnavailable(_)
        | GatewayError::EmbedderUnavailable(_)
        | GatewayError::Deadline(_) => ErrorKind::Unavailable,
        GatewayError::Milvus(_)
        | GatewayError::Embedder(_)
        | GatewayError::ModelMismatch { .. }
        | GatewayError::CollectionExists(_)
        | GatewayError::Internal(_)
        | GatewayError::Config(_) => ErrorKind::Internal,
    }
}

/// Reads messages, turning each into an [`Arrived`] query that holds its
/// share of the stream's budget.
async fn read<S>(
    first: SearchStreamRequest,
    mut requests: S,
    spec: CollectionSpec,
    ticket: StreamTicket,
    arrivals: mpsc::Sender<Arrived>,
    idle_timeout: Duration,
) -> ReadEnd
where
    S: Stream<Item = Result<SearchStreamRequest, GatewayError>> + Unpin,
{
    let mut next = Some(first);
    let mut index = 0u64;
    loop {
        let message = match next.take() {
            Some(m) => m,
            None => match tokio::time::timeout(idle_timeout, requests.next()).await {
                Err(_) => return ReadEnd::Idle,
                Ok(None) => return ReadEnd::Done,
                Ok(Some(Err(error))) => return ReadEnd::Broken(error),
                Ok(Some(Ok(m))) => m,
            },
        };
        let (query, held) = admit(message, &spec, &ticket).await;
        let arrived = Arrived {
            index,
            query,
            _held: held,
        };
        if arrivals.send(arrived).await.is_err() {
            return ReadEnd::Done;
        }
        index += 1;
    }
}

/// One message's query, and the budget it holds while it waits.
async fn admit(
    m: SearchStreamRequest,
    spec: &CollectionSpec,
    ticket: &StreamTicket,
) -> (Result<Query, ItemError>, Option<OwnedSemaphorePermit>) {
    let invalid = |m: String| (Err(item_error(ErrorKind::InvalidArgument, m)), None);
    if !m.collection.is_empty() && m.collection != spec.name {
        return invalid(format!(
            "this stream searches collection {}, not {}",
            spec.name, m.collection
        ));
    }
    let query = match m.query {
        None => return invalid("the message carries no query (image, vector or like)".into()),
        Some(search_stream_request::Query::Image(bytes)) => Query::Image(bytes),
        Some(search_stream_request::Query::Vector(v)) => Query::Vector(v.values),
        Some(search_stream_request::Query::Like(r)) => match row_ref(r) {
            Ok(row) => Query::Like(row),
            Err(e) => return invalid(e.to_string()),
        },
    };
    let bytes = match &query {
        Query::Image(b) => b.len(),
        Query::Vector(v) => v.len() * 4,
        Query::Like(_) => 0,
    };
    if !ticket.fits(bytes) {
        let e = item_error(
            ErrorKind::ImageTooLarge,
            format!("{bytes} bytes is over this stream's budget (--search-stream-bytes)"),
        );
        return (Err(e), None);
    }
    let held = ticket.reserve(bytes).await;
    (Ok(query), Some(held))
}
