//! What one gateway lets the streams of one kind (Insert, SearchStream)
//! hold, each kind with its own flags. A stream is admitted only
//! while fewer than `max_streams` are open and the gateway-wide byte budget
//! has room for the stream's own budget; otherwise it is refused at once,
//! RESOURCE_EXHAUSTED, before a byte of it is read. Inside its budget a
//! stream holds the images it has read and the embedders have not yet
//! answered; when the budget is spent it stops reading (backpressure), so
//! its memory is bounded in bytes, not in messages.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GatewayError;

use imgsearch_common::admission::{budget_units as units, BodyBudget};

/// What an item holds besides its image: its filepath, its pending entry,
/// its request on the way to the embedder.
pub const ITEM_OVERHEAD_BYTES: usize = 1024;

/// How many times a unary Search holds its request's bytes at the peak:
/// the received message (the decoded images are slices of it, which every
/// embedder attempt shares rather than copies) and the message encoded for
/// the embedder attempt in progress (attempts are one after another).
pub const SEARCH_REQUEST_COPIES: usize = 2;

/// The gateway-wide limits of one kind of stream, from its flags.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// The RPC, for messages: "Insert".
    pub rpc: &'static str,
    /// The flags' word: `insert` for --max-insert-streams,
    /// --insert-stream-bytes and --insert-memory-bytes.
    pub flag: &'static str,
    pub max_streams: usize,
    pub stream_bytes: usize,
    pub total_bytes: usize,
}

impl StreamLimits {
    /// Settings that cannot work together, for the flags' check.
    pub fn check(&self, max_message_bytes: usize) -> Result<(), GatewayError> {
        let f = self.flag;
        let item = max_message_bytes + ITEM_OVERHEAD_BYTES;
        if self.stream_bytes < item {
            return Err(GatewayError::Config(format!(
                "--{f}-stream-bytes {} cannot hold one image of --max-message-bytes \
                 {max_message_bytes} (it needs {item})",
                self.stream_bytes
            )));
        }
        if self.total_bytes < self.stream_bytes {
            return Err(GatewayError::Config(format!(
                "--{f}-memory-bytes {} is less than one stream's --{f}-stream-bytes {}",
                self.total_bytes, self.stream_bytes
            )));
        }
        if self.max_streams == 0 {
            return Err(GatewayError::Config(format!(
                "--max-{f}-streams must be at least 1"
            )));
        }
        Ok(())
    }
}

/// Admission for every Insert stream of one gateway.
#[derive(Clone)]
pub struct Admission {
    limits: StreamLimits,
    streams: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// An admitted stream's place; dropping it frees the place and the budget.
pub struct StreamTicket {
    _stream: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
    budget: Arc<Semaphore>,
    stream_bytes: usize,
}

impl Admission {
    /// Unary calls charged to this kind's gateway-wide byte budget (the
    /// telemetry layer charges them before their request is read).
    pub fn unary_budget(&self, copies: usize, max_message_bytes: usize) -> BodyBudget {
        BodyBudget {
            units: self.bytes.clone(),
            total_bytes: self.limits.total_bytes,
            copies,
            max_message_bytes,
            flag: self.limits.flag,
        }
    }

    pub fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            bytes: Arc::new(Semaphore::new(units(limits.total_bytes) as usize)),
        }
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.limits.max_streams - self.streams.available_permits()
    }

    /// A place for one more stream, or RESOURCE_EXHAUSTED saying which
    /// limit is reached.
    pub fn admit(&self) -> Result<StreamTicket, GatewayError> {
        let l = self.limits;
        let stream = self.streams.clone().try_acquire_owned().map_err(|_| {
            GatewayError::Overloaded(format!(
                "{} {} streams are open, the most this gateway takes \
                 (--max-{}-streams); retry when one ends",
                l.max_streams, l.rpc, l.flag
            ))
        })?;
        let bytes = self
            .bytes
            .clone()
            .try_acquire_many_owned(units(l.stream_bytes))
            .map_err(|_| {
                GatewayError::Overloaded(format!(
                    "the open {rpc} streams hold this gateway's whole budget of {} MiB \
                     (--{flag}-memory-bytes; each stream reserves {} MiB, \
                     --{flag}-stream-bytes); retry when one ends",
                    l.total_bytes >> 20,
                    l.stream_bytes >> 20,
                    rpc = l.rpc,
                    flag = l.flag,
                ))
            })?;
        Ok(StreamTicket {
            _stream: stream,
            _bytes: bytes,
            budget: Arc::new(Semaphore::new(units(l.stream_bytes) as usize)),
            stream_bytes: l.stream_bytes,
        })
    }
}

impl StreamTicket {
    /// Whether an item of `bytes` can ever fit the stream's budget.
    pub fn fits(&self, bytes: usize) -> bool {
        bytes + ITEM_OVERHEAD_BYTES <= self.stream_bytes
    }

    /// Room for an item of `bytes` if the budget has it now.
    pub fn try_reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.budget
            .clone()
            .try_acquire_many_owned(units(bytes + ITEM_OVERHEAD_BYTES))
            .ok()
    }

    /// Waits until the stream's budget has room for an item of `bytes`; the
    /// permit returns the room when dropped. Call [`StreamTicket::fits`] first.
    pub async fn reserve(&self, bytes: usize) -> OwnedSemaphorePermit {
        self.budget
            .clone()
            .acquire_many_owned(units(bytes + ITEM_OVERHEAD_BYTES))
            .await
            .expect("the budget semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_streams: usize, stream_mib: usize, total_mib: usize) -> Admission {
        Admission::new(StreamLimits {
            rpc: "Insert",
            flag: "insert",
            max_streams,
            stream_bytes: stream_mib << 20,
            total_bytes: total_mib << 20,
        })
    }

    #[test]
    fn streams_over_the_count_are_refused() {
        let a = admission(2, 1, 100);
        let (_x, _y) = (a.admit().unwrap(), a.admit().unwrap());
        let e = a.admit().err().expect("third refused");
        assert!(e.to_string().contains("--max-insert-streams"), "{e}");
        drop(_x);
        assert!(a.admit().is_ok(), "a place frees when a stream ends");
    }

    #[test]
    fn streams_over_the_byte_budget_are_refused() {
        let a = admission(10, 64, 150);
        let (_x, _y) = (a.admit().unwrap(), a.admit().unwrap());
        let e = a.admit().err().expect("no room for a third 64 MiB budget");
        assert!(e.to_string().contains("--insert-memory-bytes"), "{e}");
        assert_eq!(a.open_streams(), 2);
    }

    #[tokio::test]
    async fn a_stream_waits_for_its_own_budget() {
        let a = admission(1, 1, 1);
        let t = a.admit().unwrap();
        assert!(!t.fits(1 << 20));
        let held = t.reserve(600 << 10).await;
        let second = t.reserve(600 << 10);
        tokio::pin!(second);
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(held);
        let _room = second.await;
    }
}
