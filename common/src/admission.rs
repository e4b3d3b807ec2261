//! Admission for every call, before its handler runs and before its request
//! is buffered, applied by the telemetry layer (so a refusal is counted and
//! logged like any outcome):
//! - a cap on calls in progress across the whole server: beyond it a call is
//!   RESOURCE_EXHAUSTED at once, with a `grpc-retry-pushback-ms` hint;
//! - byte budgets for the requests of chosen unary methods: a request's
//!   gRPC length prefix, read from its first bytes, is charged (times the
//!   copies the handler makes) to a budget it shares with other calls, all
//!   or nothing, before the message is read; it stays charged until the
//!   answer has left. A request the budget cannot hold now is refused at
//!   once; none waits holding part of it, so parallel large requests
//!   cannot starve each other by each holding a share.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{body::Body, codegen::Bytes, Status};

use crate::grpc::retry_pushback;

/// Budgets are counted in KiB: tokio's semaphores take `u32` permits.
pub const BUDGET_UNIT: usize = 1024;

/// `bytes` in budget units, rounded up.
pub fn budget_units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(BUDGET_UNIT)).unwrap_or(u32::MAX)
}

/// A unary method's share of a byte budget.
#[derive(Clone)]
pub struct BodyBudget {
    /// Units of [`BUDGET_UNIT`] bytes, shared with whatever else charges it.
    pub units: Arc<Semaphore>,
    /// The budget's size in bytes, for messages.
    pub total_bytes: usize,
    /// How many times the handler may hold the request's bytes at once.
    pub copies: usize,
    /// Requests over this are refused by the codec (OUT_OF_RANGE): not
    /// charged here.
    pub max_message_bytes: usize,
    /// The flags' word, for messages: `search` for --search-memory-bytes.
    pub flag: &'static str,
}

/// The server's admission rules.
#[derive(Clone, Default)]
pub struct CallLimits {
    calls: Option<(Arc<Semaphore>, usize, &'static str)>,
    budgets: Arc<HashMap<String, BodyBudget>>,
}

/// What an admitted call holds until its answer has left.
#[derive(Default)]
pub struct Held {
    _call: Option<OwnedSemaphorePermit>,
    body: Option<Arc<Mutex<Option<OwnedSemaphorePermit>>>>,
}

impl CallLimits {
    /// At most `max` calls in progress; `flag` names the setting.
    pub fn max_calls(mut self, max: usize, flag: &'static str) -> Self {
        self.calls = Some((Arc::new(Semaphore::new(max)), max, flag));
        self
    }

    /// Requests of `method` (its bare name, as `Search`) are charged to
    /// `budget`.
    pub fn charge(mut self, method: &str, budget: BodyBudget) -> Self {
        Arc::make_mut(&mut self.budgets).insert(method.to_string(), budget);
        self
    }

    /// Calls in progress now (0 without a cap).
    pub fn in_progress(&self) -> usize {
        self.calls
            .as_ref()
            .map_or(0, |(s, max, _)| max - s.available_permits())
    }

    /// Admits a call to `method`, wrapping its body where it is charged, or
    /// refuses it.
    pub(crate) fn admit(&self, method: &str, body: Body) -> Result<(Held, Body), Status> {
        let call = match &self.calls {
            None => None,
            Some((calls, max, flag)) => Some(calls.clone().try_acquire_owned().map_err(|_| {
                refusal(format!(
                    "{max} calls are in progress, the most this server takes (--{flag}); \
                     retry shortly"
                ))
            })?),
        };
        let Some(budget) = self.budgets.get(method) else {
            return Ok((
                Held {
                    _call: call,
                    body: None,
                },
                body,
            ));
        };
        let charge = Arc::new(Mutex::new(None));
        let charged = Charged {
            body,
            budget: budget.clone(),
            prefix: Vec::with_capacity(5),
            charge: charge.clone(),
        };
        Ok((
            Held {
                _call: call,
                body: Some(charge),
            },
            Body::new(charged),
        ))
    }
}

impl Held {
    /// Whether a request charge is held (for tests).
    pub fn charged(&self) -> bool {
        self.body
            .as_ref()
            .is_some_and(|c| c.lock().expect("charge lock").is_some())
    }
}

fn refusal(message: String) -> Status {
    let mut s = Status::resource_exhausted(message);
    retry_pushback(&mut s);
    s
}

/// A request body charged to a budget once its length prefix is known.
struct Charged {
    body: Body,
    budget: BodyBudget,
    /// The first five bytes: the compression flag and the length.
    prefix: Vec<u8>,
    charge: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl Charged {
    /// Charges the message the prefix declares, once it is whole.
    fn charge(&mut self, data: &Bytes) -> Result<(), Status> {
        if self.prefix.len() >= 5 {
            return Ok(());
        }
        let take = (5 - self.prefix.len()).min(data.len());
        self.prefix.extend_from_slice(&data[..take]);
        if self.prefix.len() < 5 {
            return Ok(());
        }
        let len = u32::from_be_bytes(self.prefix[1..5].try_into().expect("4 bytes")) as usize;
        let b = &self.budget;
        if len > b.max_message_bytes {
            return Ok(());
        }
        let need = len.saturating_mul(b.copies);
        let permit = b
            .units
            .clone()
            .try_acquire_many_owned(budget_units(need))
            .map_err(|_| {
                refusal(format!(
                    "a request of {} MiB would hold {} MiB while it is served, more than \
                     this server's budget of {} MiB (--{}-memory-bytes) has free now; retry shortly",
                    len >> 20,
                    need >> 20,
                    b.total_bytes >> 20,
                    b.flag
                ))
            })?;
        *self.charge.lock().expect("charge lock") = Some(permit);
        Ok(())
    }
}

impl HttpBody for Charged {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let data = data.clone();
                if let Err(refused) = self.charge(&data) {
                    return Poll::Ready(Some(Err(refused)));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget_kib: usize) -> (CallLimits, Arc<Semaphore>) {
        let units = Arc::new(Semaphore::new(budget_kib));
        let l = CallLimits::default().max_calls(2, "max-calls").charge(
            "Search",
            BodyBudget {
                units: units.clone(),
                total_bytes: budget_kib * BUDGET_UNIT,
                copies: 3,
                max_message_bytes: 64 << 20,
                flag: "search",
            },
        );
        (l, units)
    }

    fn message(len: u32) -> Body {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.resize(5 + len as usize, 7);
        Body::new(http_body_util_full(bytes))
    }

    /// A body of one data frame.
    fn http_body_util_full(bytes: Vec<u8>) -> impl HttpBody<Data = Bytes, Error = Status> {
        struct One(Option<Bytes>);
        impl HttpBody for One {
            type Data = Bytes;
            type Error = Status;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
                Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
            }
        }
        One(Some(Bytes::from(bytes)))
    }

    async fn read(body: Body) -> Result<(), Status> {
        let mut body = std::pin::pin!(body);
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            frame?;
        }
        Ok(())
    }

    #[test]
    fn calls_over_the_cap_are_refused_with_a_retry_hint() {
        let (l, _) = limits(1024);
        let a = l.admit("Info", Body::empty()).unwrap();
        let _b = l.admit("Info", Body::empty()).unwrap();
        let refused = l.admit("Info", Body::empty()).err().expect("third refused");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(crate::grpc::pushback_of(&refused).is_some());
        assert_eq!(l.in_progress(), 2);
        drop(a);
        assert!(l.admit("Info", Body::empty()).is_ok(), "a place frees");
    }

    #[tokio::test]
    async fn a_request_is_charged_its_copies_until_its_answer_leaves() {
        let (l, units) = limits(100);
        let (held, body) = l.admit("Search", message(20 * 1024)).unwrap();
        read(body).await.unwrap();
        assert!(held.charged());
        assert_eq!(units.available_permits(), 100 - 60);
        drop(held);
        assert_eq!(units.available_permits(), 100);
    }

    #[tokio::test]
    async fn a_request_the_budget_cannot_hold_is_refused_whole() {
        let (l, units) = limits(100);
        let (held, body) = l.admit("Search", message(40 * 1024)).unwrap();
        let refused = read(body).await.expect_err("120 KiB of 100");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("--search-memory-bytes"),
            "{refused:?}"
        );
        assert!(!held.charged());
        assert_eq!(units.available_permits(), 100, "nothing held by a refusal");
    }
}
