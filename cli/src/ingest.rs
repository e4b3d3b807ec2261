//! `imgsearch ingest`: images from files, trees and archives into a
//! collection, through one Insert stream.
//!
//! Files are read on a thread of their own, a few ahead of the stream, so
//! memory stays bounded whatever the number of images: the gateway's
//! backpressure stops the stream, which stops the reader. The report counts
//! only what the gateway acknowledged, so after any interruption it says
//! exactly how many images are stored; `--skip-existing` asks the gateway to
//! skip stored filepaths before embedding them.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use imgsearch_proto::v1::{
    insert_response::Event, ErrorKind, InsertAck, InsertRequest, InsertResponse,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    attrs::IngestAttributes,
    busy::Patience,
    error::CliError,
    gateway::{Client, MAX_MESSAGE_BYTES},
    sources::{self, Candidate, Reader},
};

/// Images read ahead of the stream.
const READ_AHEAD: usize = 16;
/// Room left in a message for the filepath, the collection name and the
/// attributes (at most `MAX_ATTRIBUTES_BYTES` of JSON, about as much in
/// protobuf).
pub const MESSAGE_OVERHEAD: usize = 4 * imgsearch_proto::limits::MAX_ATTRIBUTES_BYTES;

/// What to ingest, and how.
#[derive(Debug)]
pub struct Options {
    pub collection: String,
    pub paths: Vec<PathBuf>,
    /// Rows per Milvus insert; `None` leaves the gateway's default.
    pub batch_size: Option<u32>,
    pub skip_existing: bool,
    pub skip_same_content: bool,
    /// What each file's row carries.
    pub attributes: Arc<IngestAttributes>,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// How long a stream the gateway refuses as busy is started again.
    pub patience: Patience,
}

/// One image that was not ingested, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub filepath: String,
    pub kind: FailureKind,
    pub reason: String,
}

/// Who turned an image away: this machine, which could not read it, or the
/// gateway, with its class of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Unreadable,
    Refused(ErrorKind),
}

impl FailureKind {
    /// `UNREADABLE`, or the gateway's `ErrorKind`: `INVALID_IMAGE`.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Unreadable => "UNREADABLE",
            FailureKind::Refused(kind) => kind.short_name(),
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for FailureKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What an ingest did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub collection: String,
    /// Images found under the given paths.
    pub found: u64,
    /// Found but already in the collection (`--skip-existing`, or
    /// `--skip-same-content`).
    pub skipped: u64,
    /// Of those, skipped because a stored row holds the same bytes.
    pub same_content: u64,
    /// Rows the gateway acknowledged as stored.
    pub inserted: u64,
    pub failures: Vec<Failure>,
    pub seconds: f64,
    /// Why the ingest stopped early, if it did; the counts above still hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// The human summary: one line, then one line per failure.
    pub fn render(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.inserted as f64 / self.seconds
        } else {
            0.0
        };
        let mut out = format!(
            "ingested {} of {} images into {:?} in {:.1} s ({rate:.1} images/s)",
            self.inserted, self.found, self.collection, self.seconds
        );
        let same_path = self.skipped - self.same_content;
        if same_path > 0 {
            out += &format!("; {same_path} already stored, skipped");
        }
        if self.same_content > 0 {
            out += &format!(
                "; {} with the bytes of a stored image, skipped",
                self.same_content
            );
        }
        if self.failures.is_empty() {
            out += "\n";
        } else {
            out += &format!("; {} failed:\n", self.failures.len());
            for f in &self.failures {
                out += &format!("  {}: {} {}\n", f.filepath, f.kind, f.reason);
            }
        }
        out
    }
}

/// Why a stream ended early.
enum Stopped {
    /// Refused before the gateway read a byte of it: nothing of it was
    /// done. With the files the reader could not read meanwhile.
    Refused(tonic::Status, Vec<Failure>),
    PartWay(CliError),
}

enum Item {
    Image(InsertRequest),
    Unreadable(String, String),
}

/// Runs an ingest to the end. An ingest that stopped part-way still has its
/// report (what was acknowledged), with the reason beside it.
pub async fn run(
    client: &mut Client,
    opts: Options,
) -> Result<(Report, Option<CliError>), CliError> {
    let started = Instant::now();
    let paths = opts.paths.clone();
    let (candidates, unreadable) = tokio::task::spawn_blocking(move || sources::discover(&paths))
        .await
        .expect("discovery thread")?;
    let mut report = Report {
        collection: opts.collection.clone(),
        found: candidates.len() as u64,
        ..Default::default()
    };
    report
        .failures
        .extend(unreadable.into_iter().map(|u| Failure {
            filepath: u.filepath,
            kind: FailureKind::Unreadable,
            reason: u.reason,
        }));
    let candidates = Arc::new(candidates);
    let mut patience = opts.patience.clone();
    let stopped = loop {
        if candidates.is_empty() {
            break None;
        }
        match stream(client, &opts, candidates.clone(), &mut report).await {
            Ok(()) => break None,
            Err(Stopped::Refused(status, _)) if patience.wait(&status).await => continue,
            Err(Stopped::Refused(status, unreadable)) => {
                report.failures.extend(unreadable);
                break Some(CliError::IngestStopped {
                    status,
                    inserted: 0,
                });
            }
            Err(Stopped::PartWay(e)) => break Some(e),
        }
    };
    if let Some(e) = &stopped {
        report.error = Some(e.to_string());
    }
    report.failures.sort_by(|a, b| a.filepath.cmp(&b.filepath));
    report.seconds = started.elapsed().as_secs_f64();
    Ok((report, stopped))
}

fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    // indicatif hides a stderr bar by itself when stderr is not a terminal.
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {wide_bar} {pos}/{len} images  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One Insert stream of every candidate. A stream refused at its start
/// leaves `report` as it was, so that it may be started again.
async fn stream(
    client: &mut Client,
    opts: &Options,
    candidates: Arc<Vec<Candidate>>,
    report: &mut Report,
) -> Result<(), Stopped> {
    let bar = progress_bar(candidates.len() as u64, opts.progress);
    let max_bytes = (MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD) as u64;
    let (tx, rx) = mpsc::channel::<Item>(READ_AHEAD);
    let collection = opts.collection.clone();
    let (batch_size, skip_existing) = (opts.batch_size.unwrap_or(0), opts.skip_existing);
    let skip_same_content = opts.skip_same_content;
    let attributes = opts.attributes.clone();
    let reader = std::thread::spawn(move || {
        let mut reader = Reader::default();
        for c in candidates.iter() {
            let item = match reader.read(&c.location, max_bytes) {
                Ok(image) => Item::Image(InsertRequest {
                    collection: collection.clone(),
                    filepath: c.filepath.clone(),
                    image: image.into(),
                    batch_size,
                    skip_existing,
                    skip_same_content,
                    attributes: attributes.of(&c.filepath),
                    ..Default::default()
                }),
                Err(reason) => Item::Unreadable(c.filepath.clone(), reason),
            };
            if tx.blocking_send(item).is_err() {
                return; // the stream ended early
            }
        }
    });

    // Unreadable files never go on the stream; they are reported here.
    let local: Arc<Mutex<Vec<Failure>>> = Arc::default();
    let requests = {
        let (local, bar) = (local.clone(), bar.clone());
        ReceiverStream::new(rx).filter_map(move |item| {
            let out = match item {
                Item::Image(r) => Some(r),
                Item::Unreadable(filepath, reason) => {
                    bar.inc(1);
                    local.lock().expect("failures lock").push(Failure {
                        filepath,
                        kind: FailureKind::Unreadable,
                        reason,
                    });
                    None
                }
            };
            std::future::ready(out)
        })
    };
    let outcome = match client.insert(requests).await {
        Ok(answers) => Ok(read_answers(answers.into_inner(), &bar, report).await),
        Err(refused) => Err(refused),
    };
    bar.finish_and_clear();
    let _ = reader.join();
    let unreadable = std::mem::take(&mut *local.lock().expect("failures lock"));
    match outcome {
        // The files are read again when the stream is started again.
        Err(refused) => Err(Stopped::Refused(refused, unreadable)),
        Ok(ended) => {
            report.failures.extend(unreadable);
            ended.map_err(|status| {
                Stopped::PartWay(CliError::IngestStopped {
                    status,
                    inserted: report.inserted,
                })
            })
        }
    }
}

/// Counts the gateway's acknowledgements into `report` until the stream
/// ends. A stream that ends OK must have said its summary, agreeing with the
/// acknowledgements: one that did not is an ingest that did not finish,
/// whatever its status said.
async fn read_answers(
    mut answers: tonic::Streaming<InsertResponse>,
    bar: &ProgressBar,
    report: &mut Report,
) -> Result<(), tonic::Status> {
    let mut summary = None;
    while let Some(answer) = answers.message().await? {
        match answer.event {
            Some(Event::Ack(ack)) => {
                bar.inc((ack.stored.len() + ack.failures.len() + ack.skipped.len()) as u64);
                add_ack(report, ack);
                bar.set_message(format!("{} stored", report.inserted));
            }
            Some(Event::Summary(s)) => summary = Some(s),
            None => {}
        }
    }
    match summary {
        None => Err(tonic::Status::unknown(
            "the gateway ended the Insert stream without its summary",
        )),
        Some(s) if s.inserted != report.inserted => Err(tonic::Status::unknown(format!(
            "the gateway's summary says {} rows were stored, its acknowledgements {}",
            s.inserted, report.inserted
        ))),
        Some(_) => Ok(()),
    }
}

/// Counts one acknowledgement into the report.
fn add_ack(report: &mut Report, ack: InsertAck) {
    report.inserted += ack.stored.len() as u64;
    report.skipped += ack.skipped.len() as u64;
    report.same_content += ack.same_content.len() as u64;
    report.failures.extend(ack.failures.into_iter().map(|f| {
        let error = f.error.unwrap_or_default();
        Failure {
            filepath: f.filepath,
            kind: FailureKind::Refused(error.kind()),
            reason: error.message,
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_every_failure() {
        let r = Report {
            collection: "c".into(),
            found: 5,
            skipped: 1,
            same_content: 0,
            inserted: 2,
            failures: vec![
                Failure {
                    filepath: "a.jpg".into(),
                    kind: FailureKind::Refused(ErrorKind::InvalidArgument),
                    reason: "cannot decode".into(),
                },
                Failure {
                    filepath: "b.jpg".into(),
                    kind: FailureKind::Unreadable,
                    reason: "permission denied".into(),
                },
            ],
            seconds: 2.0,
            error: None,
        };
        let text = r.render();
        assert!(text.starts_with("ingested 2 of 5 images into \"c\" in 2.0 s (1.0 images/s); 1 already stored, skipped; 2 failed:\n"));
        assert!(text.contains("  a.jpg: INVALID_ARGUMENT cannot decode\n"));
        assert!(text.contains("  b.jpg: UNREADABLE permission denied\n"));
    }
}
