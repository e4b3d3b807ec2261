//! What the bench's workers record: every call's outcome and the moment it
//! ended, so one record gives both the whole run's summary and the per
//! interval series a long run needs (a leak or a stall shows as a trend,
//! which a whole-run quantile hides).

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;

/// The kinds of call the bench makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// One Insert item, from its message being sent to its acknowledgement.
    Insert,
    /// One Search call.
    Search,
}

#[derive(Default)]
struct Outcomes {
    /// When each success ended (seconds from the start) and its latency.
    ok: Vec<(f64, Duration)>,
    /// When each failure was seen, and its gRPC code or item error kind.
    failed: Vec<(f64, String)>,
}

/// Shared by every worker of one run.
pub struct Recorder {
    started: Instant,
    calls: Mutex<[Outcomes; 2]>,
}

/// One kind of call over a span of the run.
#[derive(Debug, Serialize, Default, Clone)]
pub struct KindReport {
    /// Items acknowledged as stored (insert) or calls answered (search).
    pub ok: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Failures by gRPC code or item error kind.
    pub errors: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            started: Instant::now(),
            calls: Mutex::default(),
        }
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn ok(&self, call: Call, latency: Duration) {
        let at = self.now();
        self.calls.lock().expect("record lock")[call as usize]
            .ok
            .push((at, latency));
    }

    pub fn failed(&self, call: Call, what: impl Into<String>) {
        let at = self.now();
        self.calls.lock().expect("record lock")[call as usize]
            .failed
            .push((at, what.into()));
    }

    /// `call`'s outcomes that ended in `from..to` (seconds from the start).
    pub fn summary(&self, call: Call, from: f64, to: f64) -> KindReport {
        let calls = self.calls.lock().expect("record lock");
        let within = |at: f64| at >= from && at < to;
        let outcomes = &calls[call as usize];
        let latencies = outcomes
            .ok
            .iter()
            .filter(|(at, _)| within(*at))
            .map(|(_, l)| *l)
            .collect();
        let mut errors = BTreeMap::new();
        for (_, what) in outcomes.failed.iter().filter(|(at, _)| within(*at)) {
            *errors.entry(what.clone()).or_default() += 1;
        }
        summarize(latencies, errors, to - from)
    }
}

fn summarize(
    mut latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    seconds: f64,
) -> KindReport {
    latencies.sort();
    let q = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
        latencies[i - 1].as_secs_f64() * 1e3
    };
    KindReport {
        ok: latencies.len() as u64,
        per_second: latencies.len() as f64 / seconds.max(1e-9),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_sorted_latencies() {
        let latencies = (1..=1000).rev().map(Duration::from_millis).collect();
        let r = summarize(latencies, BTreeMap::new(), 10.0);
        assert_eq!((r.ok, r.per_second), (1000, 100.0));
        assert_eq!((r.p50_ms, r.p99_ms, r.p999_ms), (500.0, 990.0, 999.0));
    }

    #[test]
    fn a_span_counts_only_the_calls_that_ended_within_it() {
        let r = Recorder::new();
        r.ok(Call::Search, Duration::from_millis(5));
        r.failed(Call::Search, "Unavailable");
        r.ok(Call::Insert, Duration::from_millis(7));
        let now = r.now() + 1e-6;
        let search = r.summary(Call::Search, 0.0, now);
        assert_eq!((search.ok, search.errors["Unavailable"]), (1, 1));
        assert_eq!(r.summary(Call::Insert, 0.0, now).p50_ms, 7.0);
        let later = r.summary(Call::Search, now, now + 1.0);
        assert_eq!((later.ok, later.errors.len()), (0, 0));
    }
}
