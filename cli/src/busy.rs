//! Waiting out a busy gateway. A call the gateway refuses before reading
//! it (too many calls or streams in progress, no room in a memory budget)
//! is `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`; nothing of it was
//! done, so the command may send it again. Each wait is the hint, doubled
//! per refusal and jittered so that refused clients do not come back
//! together, for at most `--busy-wait-secs` in all. A refusal without the
//! hint (a message too large for any budget) is final at once.

use std::{future::Future, time::Duration};

use imgsearch_common::{backoff::jittered, grpc::pushback_of};
use tonic::{Code, Status};

/// Longest single wait, however many refusals came before.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// How long a command may still wait for a busy gateway.
#[derive(Debug, Clone)]
pub struct Patience {
    limit: Duration,
    waited: Duration,
    refusals: u32,
}

impl Patience {
    pub fn new(limit: Duration) -> Self {
        Patience {
            limit,
            waited: Duration::ZERO,
            refusals: 0,
        }
    }

    /// The wait before sending again what `status` refused, or `None` when
    /// the refusal is final: not a busy one, or the patience is spent.
    pub fn delay(&mut self, status: &Status) -> Option<Duration> {
        if status.code() != Code::ResourceExhausted {
            return None;
        }
        let hint = pushback_of(status)?;
        let delay = jittered(hint, self.refusals, MAX_DELAY);
        if self.waited + delay > self.limit {
            return None;
        }
        self.refusals += 1;
        self.waited += delay;
        Some(delay)
    }

    /// Waits for `status`'s delay, telling the person why; `false` when the
    /// refusal is final.
    pub async fn wait(&mut self, status: &Status) -> bool {
        let Some(delay) = self.delay(status) else {
            return false;
        };
        eprintln!(
            "the gateway is busy ({}); trying again in {:.1} s",
            status.message(),
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        true
    }

    /// Calls `call` until it is answered or refused for good.
    pub async fn retry<T, F, Fut>(&mut self, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        loop {
            match call().await {
                Err(s) if self.wait(&s).await => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Status {
        let mut s = Status::resource_exhausted("too many calls");
        imgsearch_common::grpc::retry_pushback(&mut s);
        s
    }

    #[test]
    fn a_busy_refusal_waits_between_half_and_all_of_the_doubled_hint() {
        let mut p = Patience::new(Duration::from_secs(60));
        let hint = pushback_of(&busy()).unwrap();
        let first = p.delay(&busy()).unwrap();
        assert!(first >= hint / 2 && first <= hint, "{first:?}");
        let second = p.delay(&busy()).unwrap();
        assert!(second >= hint && second <= hint * 2, "{second:?}");
    }

    #[test]
    fn a_refusal_without_a_hint_or_another_code_is_final() {
        let mut p = Patience::new(Duration::from_secs(60));
        assert_eq!(
            p.delay(&Status::resource_exhausted("message too large")),
            None
        );
        assert_eq!(p.delay(&Status::unavailable("down")), None);
    }

    #[test]
    fn the_waits_never_add_up_to_more_than_the_patience() {
        let mut p = Patience::new(Duration::from_secs(3));
        let mut total = Duration::ZERO;
        while let Some(d) = p.delay(&busy()) {
            total += d;
        }
        assert!(total <= Duration::from_secs(3) && total > Duration::ZERO);
    }
}
