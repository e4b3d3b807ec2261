//! Waiting out a Milvus that throttles: busy is not failure, so a call
//! Milvus turns away for a rate limit or a quota pauses and is sent again,
//! for at most `--milvus-throttle-wait-secs` in a row, writes and reads
//! alike. The pause doubles per refusal (jittered) from
//! [`MILVUS_THROTTLE_FIRST_PAUSE`] to [`MILVUS_THROTTLE_MAX_PAUSE`].

use std::time::{Duration, Instant};

use imgsearch_common::backoff::jittered;
use imgsearch_proto::limits::{MILVUS_THROTTLE_FIRST_PAUSE, MILVUS_THROTTLE_MAX_PAUSE};

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

    #[test]
    fn pauses_grow_and_stop_at_the_limit() {
        let mut wait = ThrottleWait::new(Duration::from_millis(150));
        assert_eq!(
            wait.refused(),
            None,
            "a first pause of up to 200 ms passes 150 ms"
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
