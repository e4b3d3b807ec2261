//! Waiting out a Milvus that throttles, and giving up on one that answers
//! nothing. Busy is not failure: a call Milvus turns away for a rate limit
//! or a quota pauses and is sent again, for at most
//! `--milvus-throttle-wait-secs` in a row, writes and reads alike (an
//! insert's batch does its own waiting, `ingest::rows`, since it may also
//! split). The pause doubles per refusal (jittered) from
//! [`MILVUS_THROTTLE_FIRST_PAUSE`] to [`MILVUS_THROTTLE_MAX_PAUSE`]. Silence
//! is failure: every call, its retries included, ends within the gateway's
//! own deadline whatever the SDK does.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use imgsearch_common::backoff::jittered;
use imgsearch_proto::limits::{MILVUS_THROTTLE_FIRST_PAUSE, MILVUS_THROTTLE_MAX_PAUSE};
use prometheus::IntCounter;

use crate::error::GatewayError;

/// How long a call may take and wait, for every call of one store.
#[derive(Clone)]
pub struct Patience {
    /// One call, its retries included.
    pub deadline: Duration,
    /// Waiting out throttling, in a row.
    pub throttle_wait: Duration,
    /// Calls Milvus turned away as throttled.
    pub throttled: IntCounter,
}

impl Patience {
    /// `call` within the deadline: MilvusUnavailable naming the flag when
    /// Milvus says nothing in time.
    pub async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        tokio::time::timeout(self.deadline, call)
            .await
            .unwrap_or_else(|_| {
                Err(GatewayError::MilvusUnavailable(format!(
                    "no answer to the {what} within {} s (2 x --milvus-timeout-secs)",
                    self.deadline.as_secs_f64()
                )))
            })
    }

    /// `call`, each try within the deadline, sent again while Milvus
    /// throttles it; RESOURCE_EXHAUSTED naming the flag once the wait is
    /// spent. The caller's own deadline (kept by tonic) may end it sooner.
    pub async fn waiting<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, GatewayError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let mut wait = ThrottleWait::new(self.throttle_wait);
        loop {
            let reason = match self.bounded(what, call()).await {
                Err(GatewayError::MilvusThrottled(reason)) => reason,
                answered => return answered,
            };
            self.throttled.inc();
            let Some(pause) = wait.refused() else {
                return Err(GatewayError::MilvusThrottled(format!(
                    "Milvus throttled the {what} for over {} s (--milvus-throttle-wait-secs): {reason}",
                    wait.limit_secs()
                )));
            };
            tracing::info!(what, pause_ms = pause.as_millis() as u64, %reason,
                "Milvus is throttling; the call waits and is sent again");
            tokio::time::sleep(pause).await;
        }
    }
}

/// The refusals of one run of throttled calls.
#[derive(Debug)]
pub struct ThrottleWait {
    limit: Duration,
    since: Option<Instant>,
    /// Refusals since the last call Milvus took.
    refusals: u32,
}

impl ThrottleWait {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            since: None,
            refusals: 0,
        }
    }

    /// Milvus refused a call as throttled: the pause before sending it
    /// again, or `None` once waiting longer would pass the limit.
    pub fn refused(&mut self) -> Option<Duration> {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.refusals = self.refusals.saturating_add(1);
        let pause = jittered(
            MILVUS_THROTTLE_FIRST_PAUSE,
            self.refusals.min(16) - 1,
            MILVUS_THROTTLE_MAX_PAUSE,
        );
        (since.elapsed() + pause <= self.limit).then_some(pause)
    }

    /// Milvus took a call: the next refusal starts a new run.
    pub fn taken(&mut self) {
        self.since = None;
        self.refusals = 0;
    }

    /// The limit, in the words the caller's error uses.
    pub fn limit_secs(&self) -> u64 {
        self.limit.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patience(deadline_ms: u64, wait_ms: u64) -> Patience {
        Patience {
            deadline: Duration::from_millis(deadline_ms),
            throttle_wait: Duration::from_millis(wait_ms),
            throttled: IntCounter::new("t", "t").unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_ends_unavailable_at_the_deadline() {
        let p = patience(2_000, 60_000);
        let r: Result<(), _> = p.waiting("count", std::future::pending).await;
        assert!(
            matches!(&r, Err(GatewayError::MilvusUnavailable(m)) if m.contains("--milvus-timeout-secs")),
            "{r:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_sent_again_until_milvus_takes_it() {
        let p = patience(2_000, 60_000);
        let mut tries = 0;
        let r = p
            .waiting("delete", || {
                tries += 1;
                let answer = if tries < 4 {
                    Err(GatewayError::MilvusThrottled("rate".into()))
                } else {
                    Ok(tries)
                };
                async move { answer }
            })
            .await;
        assert_eq!(r.unwrap(), 4);
        assert_eq!(p.throttled.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_longer_than_the_wait_ends_throttled_naming_the_flag() {
        let p = patience(2_000, 3_000);
        let r: Result<(), _> = p
            .waiting("query", || async {
                Err(GatewayError::MilvusThrottled("rate".into()))
            })
            .await;
        assert!(
            matches!(&r, Err(GatewayError::MilvusThrottled(m)) if m.contains("--milvus-throttle-wait-secs")),
            "{r:?}"
        );
    }

    #[test]
    fn pauses_grow_and_stop_at_the_limit() {
        let mut wait = ThrottleWait::new(Duration::from_millis(90));
        assert_eq!(
            wait.refused(),
            None,
            "a first pause of 100 to 200 ms passes 90 ms"
        );
        let mut wait = ThrottleWait::new(Duration::from_secs(60));
        let first = wait.refused().unwrap();
        let pauses: Vec<_> = (0..8).map(|_| wait.refused().unwrap()).collect();
        assert!(pauses.last().unwrap() > &first);
        assert!(pauses.iter().all(|p| *p <= MILVUS_THROTTLE_MAX_PAUSE));
        wait.taken();
        assert!(wait.refused().unwrap() <= MILVUS_THROTTLE_FIRST_PAUSE);
    }
}
