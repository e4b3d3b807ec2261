//! One embedder replica as the gateway judges it: from what its real calls
//! did (failures, busy answers, latency, calls in flight), not only from
//! whether `Info` answers. A probe that answers only says the process is
//! there; a replica a real call failed on stays out of the order until a
//! real call succeeds on it again, and it is given one such call at a time
//! (a trial) once its cool-down has passed and its probe answers.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use imgsearch_proto::v1::{embedder_client::EmbedderClient, InfoResponse};
use tonic::transport::Channel;

/// Latency a replica is credited with before its first answer.
const UNKNOWN_LATENCY_US: u64 = 10_000;

pub(super) struct Replica {
    pub uri: String,
    /// Index of the configured endpoint it came from.
    pub target: usize,
    /// For Embed streams (bulk).
    pub client: EmbedderClient<Channel>,
    /// For EmbedBatch (searches) and Info, on a connection of its own: bulk
    /// images waiting in the streams' HTTP/2 windows would otherwise hold
    /// the shared connection's window, and a search's bytes would queue
    /// behind them on the wire.
    pub unary: EmbedderClient<Channel>,
    /// Its last `Info` answer.
    pub info: RwLock<Option<InfoResponse>>,
    /// Milliseconds since the embedders' epoch until which it is skipped
    /// (a cool-down after a failure, a pause after a busy answer).
    down_until_ms: AtomicU64,
    /// Its last probe answered and its model was finishing batches. Until
    /// the first probe, assumed.
    probe_ok: AtomicBool,
    /// A real call failed on it and none has succeeded since.
    suspect: AtomicBool,
    /// A suspect's trial call is in flight.
    trial: AtomicBool,
    /// EmbedBatch calls in flight on it.
    calls: AtomicU32,
    /// Embed streams open on it.
    streams: AtomicU32,
    /// Smoothed EmbedBatch latency; failures and busy answers raise it.
    latency_us: AtomicU64,
}

/// Where a replica stands in a call's order, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Standing {
    /// Suspect, cooled down, probe answering, no trial in flight: the next
    /// call is its trial.
    Trial,
    Ready,
    /// Skipped while any other can serve; tried last, it may be back.
    Out,
}

/// What a call needs to weigh: unary calls or streams.
#[derive(Debug, Clone, Copy)]
pub(super) enum Work {
    Call,
    Stream,
}

impl Replica {
    pub fn new(
        uri: String,
        target: usize,
        client: EmbedderClient<Channel>,
        unary: EmbedderClient<Channel>,
    ) -> Self {
        Self {
            uri,
            target,
            client,
            unary,
            info: RwLock::new(None),
            down_until_ms: AtomicU64::new(0),
            probe_ok: AtomicBool::new(true),
            suspect: AtomicBool::new(false),
            trial: AtomicBool::new(false),
            calls: AtomicU32::new(0),
            streams: AtomicU32::new(0),
            latency_us: AtomicU64::new(UNKNOWN_LATENCY_US),
        }
    }

    pub fn standing(&self, now_ms: u64) -> Standing {
        let cooled = self.down_until_ms.load(Ordering::Relaxed) <= now_ms;
        if !cooled || !self.probe_ok.load(Ordering::Relaxed) {
            return Standing::Out;
        }
        match (
            self.suspect.load(Ordering::Relaxed),
            self.trial.load(Ordering::Relaxed),
        ) {
            (false, _) => Standing::Ready,
            (true, false) => Standing::Trial,
            (true, true) => Standing::Out,
        }
    }

    /// What sending it one more piece of `work` is expected to cost: the
    /// work already on it times its latency, so a replica that is slow or
    /// holds calls it does not answer (a frozen process) gets fewer.
    pub fn cost(&self, work: Work) -> u64 {
        let held = match work {
            Work::Call => self.calls.load(Ordering::Relaxed),
            Work::Stream => self.streams.load(Ordering::Relaxed),
        };
        (u64::from(held) + 1) * self.latency_us.load(Ordering::Relaxed).max(1)
    }

    /// Starts a call or stream on it. The first on a suspect is its trial,
    /// which moves it to the back of the order until the trial ends.
    pub fn begin(self: &Arc<Self>, work: Work) -> Attempt {
        let trial = self.suspect.load(Ordering::Relaxed)
            && self
                .trial
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        self.counter(work).fetch_add(1, Ordering::Relaxed);
        Attempt {
            replica: self.clone(),
            work,
            trial,
        }
    }

    fn counter(&self, work: Work) -> &AtomicU32 {
        match work {
            Work::Call => &self.calls,
            Work::Stream => &self.streams,
        }
    }

    /// A real call succeeded: whatever made it suspect is over.
    /// After a failure the smoothed latency starts again from this call's,
    /// so a replica back from a hang is not weighed by the hang.
    pub fn succeeded(&self, took: Option<Duration>) {
        let was_suspect = self.suspect.swap(false, Ordering::Relaxed);
        self.down_until_ms.store(0, Ordering::Relaxed);
        if let Some(took) = took {
            let sample = took.as_micros() as u64;
            let old = self.latency_us.load(Ordering::Relaxed);
            let next = if was_suspect {
                sample
            } else {
                (old * 7 + sample * 3) / 10
            };
            self.latency_us.store(next, Ordering::Relaxed);
        }
    }

    /// A real call failed on it: out until `until_ms`, then on trial.
    pub fn failed(&self, until_ms: u64, took: Duration) {
        self.suspect.store(true, Ordering::Relaxed);
        self.down_until_ms.store(until_ms, Ordering::Relaxed);
        let floor = (took.as_micros() as u64).max(UNKNOWN_LATENCY_US);
        self.latency_us.fetch_max(floor * 2, Ordering::Relaxed);
    }

    /// It answered busy: skipped until `until_ms` and weighed as slower,
    /// but not suspect (it answered).
    pub fn busy(&self, until_ms: u64) {
        self.down_until_ms.fetch_max(until_ms, Ordering::Relaxed);
        let old = self.latency_us.load(Ordering::Relaxed);
        self.latency_us
            .store(old.saturating_mul(3) / 2, Ordering::Relaxed);
    }

    /// What its probe found.
    pub fn probed(&self, ok: bool) {
        self.probe_ok.store(ok, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }
}

/// One call or stream in flight on a replica; its end gives back its place.
pub(super) struct Attempt {
    replica: Arc<Replica>,
    work: Work,
    trial: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.replica
            .counter(self.work)
            .fetch_sub(1, Ordering::Relaxed);
        if self.trial {
            self.replica.trial.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> Arc<Replica> {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        Arc::new(Replica::new(
            "http://127.0.0.1:1".into(),
            0,
            EmbedderClient::new(channel.clone()),
            EmbedderClient::new(channel),
        ))
    }

    #[tokio::test]
    async fn a_replica_a_call_failed_on_is_out_until_cooled_then_gets_one_trial() {
        let r = replica();
        r.failed(100, Duration::from_millis(5));
        assert_eq!(r.standing(50), Standing::Out);
        assert_eq!(r.standing(100), Standing::Trial);
        let first = r.begin(Work::Call);
        assert_eq!(r.standing(100), Standing::Out, "one trial at a time");
        let second = r.begin(Work::Call);
        drop(first);
        assert_eq!(r.standing(100), Standing::Trial, "the trial ended");
        drop(second);
        r.succeeded(None);
        assert_eq!(r.standing(100), Standing::Ready);
    }

    #[tokio::test]
    async fn a_probe_that_answers_does_not_clear_a_failed_call() {
        let r = replica();
        r.failed(0, Duration::ZERO);
        r.probed(false);
        assert_eq!(r.standing(10), Standing::Out);
        r.probed(true);
        assert!(r.is_suspect());
        assert_eq!(r.standing(10), Standing::Trial);
    }

    #[tokio::test]
    async fn calls_in_flight_and_slowness_raise_the_cost() {
        let (idle, held) = (replica(), replica());
        let _a = held.begin(Work::Call);
        assert!(held.cost(Work::Call) > idle.cost(Work::Call));
        assert_eq!(held.cost(Work::Stream), idle.cost(Work::Stream));
        let slow = replica();
        slow.succeeded(Some(Duration::from_secs(1)));
        assert!(slow.cost(Work::Call) > idle.cost(Work::Call));
        let busy = replica();
        busy.busy(0);
        assert!(busy.cost(Work::Call) > idle.cost(Work::Call));
    }
}
