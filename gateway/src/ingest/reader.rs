//! Stage one of an Insert stream: the caller's messages in, images out to
//! the embedder stream.
//!
//! Each item is checked before it costs anything: its collection, its
//! filepath (1 to 200 bytes), and whether its image can fit the stream's
//! budget; a bad item becomes a failure event and the next is read. A good
//! item waits for room in the budget (backpressure), then, under
//! `skip_existing`, joins a group that is claimed and looked up in Milvus
//! before any of it is embedded; an item whose filepath another item holds
//! waits for that holder's outcome without holding up the rest. An item goes into the shared pending map
//! before its image is sent, so the embedder's answer always finds it.
//!
//! Every wait can be cancelled; an item the reader holds when cancelled is
//! handed back as unsettled, so the stream still accounts for it.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, Stream, StreamExt};
use imgsearch_proto::v1::{EmbedRequest, ErrorKind, InsertRequest, ItemFailure};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::{
    claims::{Claim, Claimed, Claims, Outcome},
    item::{failure, filepath_problem, ItemIndex, ItemRules, Payload, RowFacts, Skip},
    rows::Row,
    waiting::Waiting,
};
use crate::{admission::StreamTicket, error::GatewayError, milvus::MilvusStore};

/// An item sent to the embedder and not yet answered.
pub struct PendingItem {
    pub filepath: String,
    pub facts: RowFacts,
    pub claim: Option<Claim>,
    /// When its image went out; the stream fails if no answer comes in time.
    pub sent_at: Instant,
    _budget: OwnedSemaphorePermit,
}

/// Items in flight to the embedder, shared with the stage that reads its
/// answers.
pub type Pending = Arc<Mutex<HashMap<ItemIndex, PendingItem>>>;

/// What the reader settles by itself, and the rows that need no embedder.
pub enum ReadEvent {
    Failed(ItemFailure),
    /// Skipped; under `skip_same_content`, with the row holding its bytes.
    Skipped(ItemIndex, Option<i64>),
    /// An item that brought its own vector, ready for a batch.
    Row(Row),
}

/// Why the reader stopped.
#[derive(Debug)]
pub enum ReadEnd {
    /// The caller closed its side.
    Finished,
    /// The caller's stream failed (it cancelled, or vanished).
    CallerFailed(GatewayError),
    /// No message for the idle timeout.
    Idle(Duration),
    /// The stream told it to stop.
    Cancelled,
    /// The embedder stream closed under it.
    EmbedderGone,
    /// Milvus could not say which filepaths are stored.
    Store(GatewayError),
}

/// A good item waiting to be sent.
pub struct Candidate {
    index: ItemIndex,
    filepath: String,
    payload: Payload,
    facts: RowFacts,
    budget: OwnedSemaphorePermit,
}

/// The reader's channels and settings.
pub struct Reader<S> {
    pub requests: S,
    pub first: Option<InsertRequest>,
    /// What each item is checked against.
    pub rules: ItemRules,
    pub skip: Skip,
    /// Items looked up in Milvus at once under a skip.
    pub group_size: usize,
    pub idle_timeout: Duration,
    pub store: MilvusStore,
    pub claims: Claims,
    pub ticket: Arc<StreamTicket>,
    pub pending: Pending,
    pub embed_tx: mpsc::Sender<EmbedRequest>,
    pub events: mpsc::Sender<ReadEvent>,
    pub cancel: CancellationToken,
    /// Items read so far.
    pub received: Arc<AtomicU64>,
    /// Test-only: let over-long filepaths through, so Milvus refuses them.
    pub check_filepaths: bool,
    /// Items waiting for another item's claim on their filepath.
    pub waiting: Waiting<Candidate>,
}

impl<S> Reader<S>
where
    S: Stream<Item = Result<InsertRequest, GatewayError>> + Send + Unpin + 'static,
{
    /// Reads until the caller is done or the stream stops; returns why, and
    /// the items it held and could not settle.
    pub async fn run(mut self) -> (ReadEnd, Vec<(ItemIndex, String)>) {
        let mut unsettled = Vec::new();
        let mut end = self.read_all(&mut unsettled).await;
        if matches!(end, ReadEnd::Finished | ReadEnd::Idle(_)) {
            // Everything received is still owed an outcome.
            if let Err(stopped) = self.await_claims(&mut unsettled).await {
                end = stopped;
            }
        }
        unsettled.extend(self.waiting.drain().map(|(i, c)| (i, c.filepath)));
        (end, unsettled)
    }

    /// Settles the items that wait for claims, until none is left.
    async fn await_claims(
        &mut self,
        unsettled: &mut Vec<(ItemIndex, String)>,
    ) -> Result<(), ReadEnd> {
        while !self.waiting.is_empty() {
            let resolved = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(ReadEnd::Cancelled),
                resolved = self.waiting.next() => resolved,
            };
            self.resolve(resolved, unsettled).await?;
        }
        Ok(())
    }

    /// A waiting item whose holder is done: skipped if the holder stored the
    /// row, otherwise claimed, looked up and sent as if it had just come.
    async fn resolve(
        &mut self,
        (c, outcome): (Candidate, Outcome),
        unsettled: &mut Vec<(ItemIndex, String)>,
    ) -> Result<(), ReadEnd> {
        match outcome {
            Outcome::Stored(id) => {
                let holder = (self.skip == Skip::SameContent).then_some(id);
                if !self.emit(ReadEvent::Skipped(c.index, holder)).await {
                    unsettled.push((c.index, c.filepath));
                    return Err(ReadEnd::Cancelled);
                }
                Ok(())
            }
            Outcome::Released => self.check_group(&mut vec![c], unsettled).await,
        }
    }

    /// The next message: the first one, one already at hand while items
    /// are grouped, or (after sending the group, so that no item waits on
    /// the caller) the next the caller sends.
    async fn next_request(
        &mut self,
        group: &mut Vec<Candidate>,
        unsettled: &mut Vec<(ItemIndex, String)>,
    ) -> Result<Option<Result<InsertRequest, GatewayError>>, ReadEnd> {
        if let Some(first) = self.first.take() {
            return Ok(Some(Ok(first)));
        }
        if !group.is_empty() {
            if let Some(next) = self.requests.next().now_or_never() {
                return Ok(next);
            }
        }
        self.check_group(group, unsettled).await?;
        self.wait_next(unsettled).await
    }

    async fn read_all(&mut self, unsettled: &mut Vec<(ItemIndex, String)>) -> ReadEnd {
        let mut group: Vec<Candidate> = Vec::new();
        loop {
            let next = match self.next_request(&mut group, unsettled).await {
                Ok(next) => next,
                Err(end) => return end,
            };
            let req = match next {
                Some(Ok(req)) => req,
                Some(Err(status)) => {
                    return self
                        .finish(&mut group, unsettled, ReadEnd::CallerFailed(status))
                        .await
                }
                None => return self.finish(&mut group, unsettled, ReadEnd::Finished).await,
            };
            let index = ItemIndex(self.received.fetch_add(1, Ordering::Relaxed));
            let (req, payload, facts) = match self.refusal(index, req) {
                Ok(checked) => checked,
                Err((failure, filepath)) => {
                    if !self.emit(ReadEvent::Failed(failure)).await {
                        unsettled.push((index, filepath));
                        unsettled.extend(group.drain(..).map(|c| (c.index, c.filepath)));
                        return ReadEnd::Cancelled;
                    }
                    continue;
                }
            };
            let cost = payload.cost();
            let budget = match self.ticket.try_reserve(cost) {
                Some(permit) => Some(permit),
                None => {
                    // The grouped items hold budget too: send them before
                    // waiting, or the wait could be for them.
                    if let Err(end) = self.check_group(&mut group, unsettled).await {
                        unsettled.push((index, req.filepath));
                        return end;
                    }
                    match self.reserve(cost, unsettled).await {
                        Ok(permit) => permit,
                        Err(end) => {
                            unsettled.push((index, req.filepath));
                            return end;
                        }
                    }
                }
            };
            let Some(budget) = budget else {
                unsettled.push((index, req.filepath));
                unsettled.extend(group.drain(..).map(|c| (c.index, c.filepath)));
                return ReadEnd::Cancelled;
            };
            let candidate = Candidate {
                index,
                filepath: req.filepath,
                payload,
                facts,
                budget,
            };
            // A vector has no bytes to compare.
            let skippable = match self.skip {
                Skip::Nothing => false,
                Skip::SameFilepath => true,
                Skip::SameContent => !candidate.facts.content_sha256.is_empty(),
            };
            if skippable {
                group.push(candidate);
                if group.len() >= self.group_size {
                    if let Err(end) = self.check_group(&mut group, unsettled).await {
                        return end;
                    }
                }
            } else if let Err(end) = self.forward(candidate, None, unsettled).await {
                return end;
            }
        }
    }

    /// Sends what is grouped, then ends with `end`.
    async fn finish(
        &mut self,
        group: &mut Vec<Candidate>,
        unsettled: &mut Vec<(ItemIndex, String)>,
        end: ReadEnd,
    ) -> ReadEnd {
        match self.check_group(group, unsettled).await {
            Ok(()) => end,
            Err(e) => e,
        }
    }

    /// The next message, or why there is none; items whose claims resolve
    /// meanwhile are settled.
    async fn wait_next(
        &mut self,
        unsettled: &mut Vec<(ItemIndex, String)>,
    ) -> Result<Option<Result<InsertRequest, GatewayError>>, ReadEnd> {
        let deadline = tokio::time::Instant::now() + self.idle_timeout;
        loop {
            let resolved = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(ReadEnd::Cancelled),
                resolved = self.waiting.next() => resolved,
                next = tokio::time::timeout_at(deadline, self.requests.next()) => {
                    return next.map_err(|_| ReadEnd::Idle(self.idle_timeout));
                }
            };
            self.resolve(resolved, unsettled).await?;
        }
    }

    /// Room for an image of `len` bytes in the stream's budget (`None`:
    /// cancelled first); items whose claims resolve meanwhile are settled,
    /// as they may hold the budget waited for.
    async fn reserve(
        &mut self,
        len: usize,
        unsettled: &mut Vec<(ItemIndex, String)>,
    ) -> Result<Option<OwnedSemaphorePermit>, ReadEnd> {
        loop {
            let resolved = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Ok(None),
                permit = self.ticket.reserve(len) => return Ok(Some(permit)),
                resolved = self.waiting.next() => resolved,
            };
            self.resolve(resolved, unsettled).await?;
        }
    }

    /// The item's checked payload and facts, or why it must fail before it
    /// costs anything (with its filepath, should the failure go unsent).
    #[allow(clippy::result_large_err)]
    fn refusal(
        &self,
        index: ItemIndex,
        mut req: InsertRequest,
    ) -> Result<(InsertRequest, Payload, RowFacts), (ItemFailure, String)> {
        let fail = |req: InsertRequest, kind, message: String| {
            Err((
                failure(index, req.filepath.clone(), kind, message),
                req.filepath,
            ))
        };
        let collection = &self.rules.spec.name;
        if !req.collection.is_empty() && &req.collection != collection {
            let m = format!(
                "message names collection {:?}, the stream is for {collection:?}",
                req.collection
            );
            return fail(req, ErrorKind::InvalidArgument, m);
        }
        if self.check_filepaths {
            if let Some(problem) = filepath_problem(&req.filepath) {
                return fail(req, ErrorKind::InvalidArgument, problem);
            }
        }
        if !self.ticket.fits(req.image.len()) {
            let m = format!(
                "an image of {} bytes does not fit this gateway's per-stream budget \
                 (--insert-stream-bytes)",
                req.image.len()
            );
            return fail(req, ErrorKind::ImageTooLarge, m);
        }
        match self.rules.check(&mut req) {
            Ok((payload, facts)) => Ok((req, payload, facts)),
            Err((kind, m)) => fail(req, kind, m),
        }
    }

    /// Sends a settlement to the stream; false when cancelled first.
    async fn emit(&mut self, event: ReadEvent) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = self.events.send(event) => sent.is_ok(),
        }
    }

    /// What a skip compares: the filepath, or the bytes' SHA-256.
    fn key_of<'c>(&self, c: &'c Candidate) -> &'c str {
        match self.skip {
            Skip::SameContent => &c.facts.content_sha256,
            Skip::Nothing | Skip::SameFilepath => &c.filepath,
        }
    }

    /// Which of `keys` (filepaths or content hashes) the stream's rows in
    /// Milvus hold, with a row holding each (0 for a filepath: unasked).
    /// (Apart from `self`, which is not `Sync`.)
    async fn stored_keys(
        (store, rules, skip): (&MilvusStore, &ItemRules, Skip),
        keys: Vec<String>,
    ) -> Result<HashMap<String, i64>, GatewayError> {
        let (collection, scope) = (&rules.spec.name, &rules.scope);
        let mut stored = HashMap::new();
        for chunk in keys.chunks(imgsearch_proto::limits::MAX_FILEPATHS) {
            match skip {
                Skip::SameContent => {
                    let found = store.stored_contents(collection, chunk, scope.clone());
                    stored.extend(found.await?);
                }
                Skip::Nothing | Skip::SameFilepath => {
                    let found = store.stored_filepaths(collection, chunk, scope.clone());
                    stored.extend(found.await?.into_iter().map(|p| (p, 0)));
                }
            }
        }
        Ok(stored)
    }

    /// Under a skip: claims the group's keys (an item whose key is held
    /// waits for its holder), asks Milvus which are stored, skips those,
    /// sends the rest.
    async fn check_group(
        &mut self,
        group: &mut Vec<Candidate>,
        unsettled: &mut Vec<(ItemIndex, String)>,
    ) -> Result<(), ReadEnd> {
        if group.is_empty() {
            return Ok(());
        }
        let mut claimed = Vec::with_capacity(group.len());
        let space = self.rules.claim_space(self.skip);
        for c in group.drain(..) {
            match self.claims.claim(&space, self.key_of(&c)) {
                Claimed::Mine(claim) => claimed.push((c, claim)),
                Claimed::Theirs(wait) => self.waiting.add(c.index, c, wait),
            }
        }
        let keys: Vec<String> = claimed.iter().map(|(c, _)| self.key_of(c).into()).collect();
        let stored = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            stored = Self::stored_keys((&self.store, &self.rules, self.skip), keys) => Some(stored),
        };
        let stored = match stored {
            Some(Ok(stored)) => stored,
            other => {
                unsettled.extend(claimed.into_iter().map(|(c, _)| (c.index, c.filepath)));
                return Err(match other {
                    Some(Err(e)) => ReadEnd::Store(e),
                    _ => ReadEnd::Cancelled,
                });
            }
        };
        let (mut send, mut skipped) = (Vec::with_capacity(claimed.len()), Vec::new());
        for (c, claim) in claimed {
            match stored.get(self.key_of(&c)) {
                Some(&id) => {
                    claim.stored(id);
                    skipped.push((c, id));
                }
                None => send.push((c, claim)),
            }
        }
        let mut skipped = skipped.into_iter();
        while let Some((c, id)) = skipped.next() {
            let holder = (self.skip == Skip::SameContent).then_some(id);
            if !self.emit(ReadEvent::Skipped(c.index, holder)).await {
                unsettled.push((c.index, c.filepath));
                unsettled.extend(skipped.map(|(c, _)| (c.index, c.filepath)));
                unsettled.extend(send.into_iter().map(|(c, _)| (c.index, c.filepath)));
                return Err(ReadEnd::Cancelled);
            }
        }
        let mut send = send.into_iter();
        while let Some((c, claim)) = send.next() {
            if let Err(end) = self.forward(c, Some(claim), unsettled).await {
                unsettled.extend(send.map(|(c, _)| (c.index, c.filepath)));
                return Err(end);
            }
        }
        Ok(())
    }

    /// A vector goes to the stream as a row; an image is recorded as
    /// pending, then sent to the embedder. Once recorded or sent, the
    /// stream settles it whatever happens here; an item neither is left in
    /// `unsettled`.
    async fn forward(
        &mut self,
        c: Candidate,
        claim: Option<Claim>,
        unsettled: &mut Vec<(ItemIndex, String)>,
    ) -> Result<(), ReadEnd> {
        let index = c.index;
        let image = match c.payload {
            Payload::Image(image) => image,
            Payload::Vector(vector) => {
                let row = Row {
                    index,
                    filepath: c.filepath,
                    vector,
                    facts: c.facts,
                    claim,
                };
                let sent = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => Err(row),
                    permit = self.events.reserve() => match permit {
                        Ok(permit) => {
                            permit.send(ReadEvent::Row(row));
                            Ok(())
                        }
                        Err(_) => Err(row),
                    },
                };
                return sent.map_err(|row| {
                    unsettled.push((row.index, row.filepath));
                    ReadEnd::Cancelled
                });
            }
        };
        self.pending.lock().expect("pending lock").insert(
            index,
            PendingItem {
                filepath: c.filepath,
                facts: c.facts,
                claim,
                sent_at: Instant::now(),
                _budget: c.budget,
            },
        );
        let request = EmbedRequest {
            id: index.embed_id(),
            image,
        };
        let sent = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(ReadEnd::Cancelled),
            sent = self.embed_tx.send(request) => sent,
        };
        if sent.is_err() {
            return Err(ReadEnd::EmbedderGone);
        }
        // The answer deadline counts from when the image left, not from
        // when it started waiting for room in the embedder window.
        if let Some(p) = self.pending.lock().expect("pending lock").get_mut(&index) {
            p.sent_at = Instant::now();
        }
        Ok(())
    }
}
