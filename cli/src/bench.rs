//! `imgsearch bench`: a load generator against a running gateway. N Insert
//! streams and M search clients, each at a target rate or flat out, for a
//! set time or a set number of images, over a directory of images reused
//! under generated filepaths. It reports throughput, latency quantiles per
//! call kind (an insert item's latency is from its message being sent to
//! its acknowledgement), every error by code, and the peak RSS and CPU time
//! of the processes it is told to watch (read from `/proc`).

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use imgsearch_proto::v1::{
    insert_response, CreateCollectionRequest, ErrorKind, InsertRequest, SearchRequest,
};
use imgsearch_proto::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    error::CliError,
    gateway::{Client, MAX_MESSAGE_BYTES},
    sources::{self, Reader},
};

/// Images read into memory at most: the bench reuses them.
const MAX_IMAGES: usize = 512;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub collection: String,
    pub images: Vec<PathBuf>,
    pub streams: usize,
    pub searchers: usize,
    /// Images per second per stream; 0 is flat out.
    pub insert_rate: f64,
    /// Searches per second per searcher; 0 is flat out.
    pub search_rate: f64,
    pub duration: Duration,
    /// Images to insert across all streams; then the run ends.
    pub total_images: Option<u64>,
    /// Processes to sample: a name and a pid.
    pub watch: Vec<(String, u32)>,
    /// Keep the collection's rows instead of creating it afresh.
    pub reuse: bool,
}

/// Latencies and errors of one kind of call.
#[derive(Default)]
struct Kind {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

/// What every worker records into.
#[derive(Default)]
struct Record {
    insert: Kind,
    search: Kind,
}

type Shared = Arc<Mutex<Record>>;

/// The report, for people and for `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub streams: usize,
    pub searchers: usize,
    pub seconds: f64,
    pub insert: KindReport,
    pub search: KindReport,
    pub processes: Vec<ProcessReport>,
}

#[derive(Debug, Serialize, Default)]
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

#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub name: String,
    pub pid: u32,
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
    /// CPU time over wall time: 2.0 is two cores busy.
    pub cores: f64,
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = format!(
            "imgsearch bench: {} insert streams, {} searchers, {:.1} s\n",
            self.streams, self.searchers, self.seconds
        );
        for (name, k) in [("insert", &self.insert), ("search", &self.search)] {
            out += &format!(
                "{name:<7} {:>7} ok  {:>8.1}/s  p50 {:>8.1} ms  p99 {:>8.1} ms  p99.9 {:>8.1} ms\n",
                k.ok, k.per_second, k.p50_ms, k.p99_ms, k.p999_ms
            );
            for (code, n) in &k.errors {
                out += &format!("        error {code}: {n}\n");
            }
        }
        for p in &self.processes {
            out += &format!(
                "process {:<10} peak RSS {:>7.1} MiB  CPU {:>7.1} s ({:.2} cores)\n",
                p.name, p.peak_rss_mib, p.cpu_seconds, p.cores
            );
        }
        out
    }
}

/// Reads up to [`MAX_IMAGES`] images from `paths`.
fn load(paths: &[PathBuf]) -> Result<Vec<(String, Bytes)>, CliError> {
    let (candidates, _) = sources::discover(paths)?;
    let mut reader = Reader::default();
    let images: Vec<_> = candidates
        .into_iter()
        .take(MAX_IMAGES)
        .filter_map(|c| {
            let bytes = reader
                .read(&c.location, (MAX_MESSAGE_BYTES - (64 << 10)) as u64)
                .ok()?;
            let name = c.filepath.rsplit('/').next().unwrap_or("image").to_string();
            Some((name, Bytes::from(bytes)))
        })
        .collect();
    if images.is_empty() {
        return Err(CliError::Usage("no readable images to bench with".into()));
    }
    Ok(images)
}

pub async fn run(client: &Client, opts: Options) -> Result<Report, CliError> {
    let paths = opts.images.clone();
    let images = Arc::new(
        tokio::task::spawn_blocking(move || load(&paths))
            .await
            .expect("reader thread")?,
    );
    if !opts.reuse {
        client
            .clone()
            .create_collection(CreateCollectionRequest {
                extended: false,
                name: opts.collection.clone(),
                drop_if_exists: Some(true),
            })
            .await?;
    }
    let record: Shared = Arc::default();
    let started = Instant::now();
    let end = started + opts.duration;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut sampler = Sampler::new(&opts.watch);

    let share = opts
        .total_images
        .map(|n| n.div_ceil(opts.streams.max(1) as u64));
    let mut streams = Vec::new();
    for s in 0..opts.streams {
        let (client, images, record, opts) =
            (client.clone(), images.clone(), record.clone(), opts.clone());
        streams.push(tokio::spawn(async move {
            insert_stream(client, &opts, s, share, end, images, record).await
        }));
    }
    let mut searchers = Vec::new();
    for _ in 0..opts.searchers {
        let (client, images, record, opts) =
            (client.clone(), images.clone(), record.clone(), opts.clone());
        let done = done_rx.clone();
        searchers.push(tokio::spawn(async move {
            searcher(client, &opts, end, images, record, done).await
        }));
    }
    // Sample while the streams run (or, without streams, until the end).
    let streams_done = async {
        for s in streams {
            let _ = s.await;
        }
        if opts.streams == 0 {
            tokio::time::sleep_until(end.into()).await;
        }
    };
    tokio::pin!(streams_done);
    loop {
        tokio::select! {
            _ = &mut streams_done => break,
            _ = tokio::time::sleep(Duration::from_millis(250)) => sampler.sample(),
        }
    }
    let _ = done_tx.send(true);
    for s in searchers {
        let _ = s.await;
    }
    sampler.sample();
    let seconds = started.elapsed().as_secs_f64();
    let record = std::mem::take(&mut *record.lock().expect("record lock"));
    Ok(Report {
        streams: opts.streams,
        searchers: opts.searchers,
        seconds,
        insert: summarize(record.insert, seconds),
        search: summarize(record.search, seconds),
        processes: sampler.report(seconds),
    })
}

fn summarize(mut kind: Kind, seconds: f64) -> KindReport {
    kind.latencies.sort();
    let q = |p: f64| -> f64 {
        if kind.latencies.is_empty() {
            return 0.0;
        }
        let i = ((kind.latencies.len() as f64 * p).ceil() as usize).clamp(1, kind.latencies.len());
        kind.latencies[i - 1].as_secs_f64() * 1e3
    };
    KindReport {
        ok: kind.latencies.len() as u64,
        per_second: kind.latencies.len() as f64 / seconds.max(1e-9),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        errors: kind.errors,
    }
}

fn error_kind_name(kind: i32) -> String {
    ErrorKind::try_from(kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("ERROR_KIND_")
                .to_string()
        })
        .unwrap_or_else(|_| format!("kind {kind}"))
}

/// A pause that keeps a worker at `rate` per second (none when 0).
fn pace(rate: f64, sent: u64, started: Instant) -> Option<Instant> {
    (rate > 0.0).then(|| started + Duration::from_secs_f64(sent as f64 / rate))
}

async fn insert_stream(
    mut client: Client,
    opts: &Options,
    stream: usize,
    share: Option<u64>,
    end: Instant,
    images: Arc<Vec<(String, Bytes)>>,
    record: Shared,
) {
    let (tx, rx) = mpsc::channel::<InsertRequest>(8);
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let sender = {
        let (sent_at, collection, rate) =
            (sent_at.clone(), opts.collection.clone(), opts.insert_rate);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut n = 0u64;
            while share.is_none_or(|s| n < s) && (share.is_some() || Instant::now() < end) {
                if let Some(at) = pace(rate, n, started) {
                    tokio::time::sleep_until(at.into()).await;
                }
                let (name, bytes) = &images[n as usize % images.len()];
                let request = InsertRequest {
                    collection: if n == 0 {
                        collection.clone()
                    } else {
                        String::new()
                    },
                    filepath: format!("bench/{stream}/{n}/{name}"),
                    image: bytes.clone(),
                    ..Default::default()
                };
                sent_at.lock().expect("sent lock").insert(n, Instant::now());
                if tx.send(request).await.is_err() {
                    break;
                }
                n += 1;
            }
        })
    };
    let answers = client.insert(ReceiverStream::new(rx)).await;
    let mut answers = match answers {
        Ok(a) => a.into_inner(),
        Err(s) => {
            sender.abort();
            let mut r = record.lock().expect("record lock");
            *r.insert
                .errors
                .entry(format!("{:?}", s.code()))
                .or_default() += 1;
            return;
        }
    };
    let mut summary = false;
    loop {
        match answers.message().await {
            Ok(Some(m)) => match m.event {
                Some(insert_response::Event::Ack(ack)) => {
                    let now = Instant::now();
                    let mut sent = sent_at.lock().expect("sent lock");
                    let mut r = record.lock().expect("record lock");
                    for item in ack.stored {
                        if let Some(t) = sent.remove(&item.index) {
                            r.insert.latencies.push(now - t);
                        }
                    }
                    for f in ack.failures {
                        sent.remove(&f.index);
                        let kind = f.error.map_or(0, |e| e.kind);
                        *r.insert.errors.entry(error_kind_name(kind)).or_default() += 1;
                    }
                }
                Some(insert_response::Event::Summary(_)) => summary = true,
                None => {}
            },
            Ok(None) => break,
            Err(s) => {
                let mut r = record.lock().expect("record lock");
                *r.insert
                    .errors
                    .entry(format!("{:?}", s.code()))
                    .or_default() += 1;
                break;
            }
        }
    }
    if !summary {
        let mut r = record.lock().expect("record lock");
        *r.insert.errors.entry("no summary".into()).or_default() += 1;
    }
    let _ = sender.await;
}

async fn searcher(
    mut client: Client,
    opts: &Options,
    end: Instant,
    images: Arc<Vec<(String, Bytes)>>,
    record: Shared,
    done: tokio::sync::watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut n = 0u64;
    // With streams, search while they run; without, until the end.
    let running = || {
        if opts.streams > 0 {
            !*done.borrow()
        } else {
            Instant::now() < end
        }
    };
    while running() {
        if let Some(at) = pace(opts.search_rate, n, started) {
            tokio::time::sleep_until(at.into()).await;
        }
        let (_, bytes) = &images[(n as usize * 7919) % images.len()];
        let t = Instant::now();
        let mut request = tonic::Request::new(SearchRequest {
            collection: opts.collection.clone(),
            images: vec![bytes.clone()],
            top_k: 3,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(60));
        let answer = client.search(request).await;
        let elapsed = t.elapsed();
        let mut r = record.lock().expect("record lock");
        match answer {
            Ok(_) => r.search.latencies.push(elapsed),
            Err(s) => {
                *r.search
                    .errors
                    .entry(format!("{:?}", s.code()))
                    .or_default() += 1
            }
        }
        n += 1;
    }
}

/// Peak RSS and CPU time of watched processes, from `/proc`.
struct Sampler {
    watched: Vec<Watched>,
}

struct Watched {
    name: String,
    pid: u32,
    peak_rss: u64,
    cpu_at_start: f64,
    cpu_now: f64,
}

/// Clock ticks per second of `/proc/PID/stat`'s CPU times: 100 on Linux.
const CLOCK_TICKS: f64 = 100.0;

impl Sampler {
    fn new(watch: &[(String, u32)]) -> Self {
        let watched = watch
            .iter()
            .map(|(name, pid)| {
                let cpu = cpu_seconds(*pid).unwrap_or(0.0);
                Watched {
                    name: name.clone(),
                    pid: *pid,
                    peak_rss: 0,
                    cpu_at_start: cpu,
                    cpu_now: cpu,
                }
            })
            .collect();
        Sampler { watched }
    }

    fn sample(&mut self) {
        for w in &mut self.watched {
            if let Some(rss) = rss_bytes(w.pid) {
                w.peak_rss = w.peak_rss.max(rss);
            }
            if let Some(cpu) = cpu_seconds(w.pid) {
                w.cpu_now = cpu;
            }
        }
    }

    fn report(&self, seconds: f64) -> Vec<ProcessReport> {
        self.watched
            .iter()
            .map(|w| {
                let cpu = (w.cpu_now - w.cpu_at_start).max(0.0);
                ProcessReport {
                    name: w.name.clone(),
                    pid: w.pid,
                    peak_rss_mib: w.peak_rss as f64 / (1 << 20) as f64,
                    cpu_seconds: cpu,
                    cores: cpu / seconds.max(1e-9),
                }
            })
            .collect()
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: its ')' ends it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((utime + stime) / CLOCK_TICKS)
}

/// `NAME=PID`, for `--watch`.
pub fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=PID"))?;
    let pid = pid.parse().map_err(|_| format!("{pid:?} is not a pid"))?;
    Ok((name.to_string(), pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_sorted_latencies() {
        let kind = Kind {
            latencies: (1..=1000).rev().map(Duration::from_millis).collect(),
            errors: BTreeMap::new(),
        };
        let r = summarize(kind, 10.0);
        assert_eq!((r.ok, r.per_second), (1000, 100.0));
        assert_eq!((r.p50_ms, r.p99_ms, r.p999_ms), (500.0, 990.0, 999.0));
    }

    #[test]
    fn this_process_can_be_watched() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
        assert_eq!(parse_watch("gateway=12").unwrap(), ("gateway".into(), 12));
        assert!(parse_watch("gateway").is_err());
    }
}
