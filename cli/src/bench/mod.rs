//! `imgsearch bench`: a load generator against a running gateway. N Insert
//! streams and M search clients, each at a target rate or flat out, for a
//! set time or a set number of images, over a directory of images (reused
//! under generated filepaths when small, each sent once when large). It
//! reports throughput, latency quantiles per call kind (an insert item's
//! latency is from its message being sent to its acknowledgement), every
//! error by code, and the RSS, open files and CPU time of the processes it
//! is told to watch (read from `/proc`), over the whole run and per
//! interval (`--interval`), so a long run shows its trend.

mod images;
mod record;
mod watch;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use imgsearch_proto::v1::{
    insert_response, CreateCollectionRequest, ErrorKind, InsertRequest, SearchRequest,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{error::CliError, gateway::Client};
use images::Images;
use record::{Call, KindReport, Recorder};
pub use watch::parse_watch;
use watch::{ProcessAt, ProcessReport, Sampler};

/// How often the watched processes are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

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
    /// The span of each point of the report's timeline.
    pub interval: Duration,
}

/// The report, for people and for `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub streams: usize,
    pub searchers: usize,
    pub seconds: f64,
    /// Distinct images the inserts cycled through.
    pub distinct_images: usize,
    pub insert: KindReport,
    pub search: KindReport,
    pub processes: Vec<ProcessReport>,
    pub interval_seconds: f64,
    pub timeline: Vec<Interval>,
}

/// One interval of the run: what ended within it.
#[derive(Debug, Serialize)]
pub struct Interval {
    /// Seconds from the start to the interval's end.
    pub end_s: f64,
    pub insert: KindReport,
    pub search: KindReport,
    pub processes: Vec<ProcessAt>,
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = format!(
            "imgsearch bench: {} insert streams, {} searchers, {:.1} s, {} distinct images\n",
            self.streams, self.searchers, self.seconds, self.distinct_images
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
        if self.timeline.len() > 1 {
            out += &self.render_timeline();
        }
        out
    }

    fn render_timeline(&self) -> String {
        let mut out = String::from("\n   until  images/s  search/s  search p99  errors  RSS MiB\n");
        for i in &self.timeline {
            let errors: u64 = [&i.insert, &i.search]
                .iter()
                .flat_map(|k| k.errors.values())
                .sum();
            let rss: Vec<String> = i
                .processes
                .iter()
                .map(|p| format!("{} {:.0}", p.name, p.rss_mib))
                .collect();
            out += &format!(
                "{:>7.0} s  {:>8.1}  {:>8.1}  {:>7.1} ms  {:>6}  {}\n",
                i.end_s,
                i.insert.per_second,
                i.search.per_second,
                i.search.p99_ms,
                errors,
                rss.join(", ")
            );
        }
        out
    }
}

pub async fn run(client: &Client, opts: Options) -> Result<Report, CliError> {
    let paths = opts.images.clone();
    let images = Arc::new(
        tokio::task::spawn_blocking(move || Images::discover(&paths))
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
    let record = Arc::new(Recorder::new());
    let end = Instant::now() + opts.duration;
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
        sampler.sample(record.now());
        tokio::select! {
            _ = &mut streams_done => break,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
    let _ = done_tx.send(true);
    for s in searchers {
        let _ = s.await;
    }
    let seconds = record.now();
    sampler.sample(seconds);
    let step = opts.interval.as_secs_f64().max(1.0);
    let timeline = (0..(seconds / step).ceil() as usize)
        .map(|i| {
            let (from, to) = (i as f64 * step, ((i + 1) as f64 * step).min(seconds + 1e-9));
            Interval {
                end_s: to,
                insert: record.summary(Call::Insert, from, to),
                search: record.summary(Call::Search, from, to),
                processes: sampler.within(from, to),
            }
        })
        .collect();
    Ok(Report {
        streams: opts.streams,
        searchers: opts.searchers,
        seconds,
        distinct_images: images.distinct(),
        insert: record.summary(Call::Insert, 0.0, seconds + 1e-9),
        search: record.summary(Call::Search, 0.0, seconds + 1e-9),
        processes: sampler.report(seconds),
        interval_seconds: step,
        timeline,
    })
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
    images: Arc<Images>,
    record: Arc<Recorder>,
) {
    let (tx, rx) = mpsc::channel::<InsertRequest>(8);
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let sender = {
        let (sent_at, collection, rate, record) = (
            sent_at.clone(),
            opts.collection.clone(),
            opts.insert_rate,
            record.clone(),
        );
        let streams = opts.streams as u64;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut n = 0u64;
            while share.is_none_or(|s| n < s) && (share.is_some() || Instant::now() < end) {
                if let Some(at) = pace(rate, n, started) {
                    tokio::time::sleep_until(at.into()).await;
                }
                // The streams take turns through the images, so that a
                // large set is sent once before any image repeats.
                let (name, image) = match images.insert(n * streams + stream as u64).await {
                    Ok(read) => read,
                    Err(why) => {
                        record.failed(Call::Insert, format!("unreadable: {why}"));
                        n += 1;
                        continue;
                    }
                };
                let request = InsertRequest {
                    collection: if n == 0 {
                        collection.clone()
                    } else {
                        String::new()
                    },
                    filepath: format!("bench/{stream}/{n}/{name}"),
                    image,
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
    let mut answers = match client.insert(ReceiverStream::new(rx)).await {
        Ok(a) => a.into_inner(),
        Err(s) => {
            sender.abort();
            record.failed(Call::Insert, format!("{:?}", s.code()));
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
                    for item in ack.stored {
                        if let Some(t) = sent.remove(&item.index) {
                            record.ok(Call::Insert, now - t);
                        }
                    }
                    for f in ack.failures {
                        sent.remove(&f.index);
                        let kind = f.error.map_or(0, |e| e.kind);
                        record.failed(Call::Insert, error_kind_name(kind));
                    }
                }
                Some(insert_response::Event::Summary(_)) => summary = true,
                None => {}
            },
            Ok(None) => break,
            Err(s) => {
                record.failed(Call::Insert, format!("{:?}", s.code()));
                break;
            }
        }
    }
    if !summary {
        record.failed(Call::Insert, "no summary");
    }
    let _ = sender.await;
}

async fn searcher(
    mut client: Client,
    opts: &Options,
    end: Instant,
    images: Arc<Images>,
    record: Arc<Recorder>,
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
        let t = Instant::now();
        let mut request = tonic::Request::new(SearchRequest {
            collection: opts.collection.clone(),
            images: vec![images.query(n * 7919).clone()],
            top_k: 3,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(60));
        match client.search(request).await {
            Ok(_) => record.ok(Call::Search, t.elapsed()),
            Err(s) => record.failed(Call::Search, format!("{:?}", s.code())),
        }
        n += 1;
    }
}
