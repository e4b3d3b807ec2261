//! The batch Milvus is taking now, committed in a task of its own so that
//! the stream goes on reading the embedder's answers (and acknowledging
//! failures) while Milvus is slow. At most one batch is in flight and one
//! fills behind it; once that one is full too, the stream stops taking
//! answers until the first lands, so memory stays at two batches and rows
//! reach Milvus in the order their batches filled.
//!
//! Each row is settled exactly once: by the commit's outcome, or, should
//! the task fail (panic), as INTERNAL from the filepaths kept here.

use std::time::{Duration, Instant};

use imgsearch_proto::v1::ErrorKind;
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use super::{
    item::{failure, ItemIndex},
    rows::{self, Committed, Row},
};
use crate::{
    error::GatewayError,
    milvus::{CollectionSpec, MilvusStore},
};

/// A batch on its way into Milvus.
pub struct InFlight {
    task: JoinHandle<Committed>,
    /// Its rows, to settle them should the task fail.
    rows: Vec<(ItemIndex, String)>,
    started: Instant,
}

/// What became of a batch, and how long Milvus took with it.
pub struct Landed {
    pub committed: Committed,
    pub took: Duration,
}

impl InFlight {
    /// Starts committing `rows` beside the stream.
    pub fn start(store: &MilvusStore, spec: &CollectionSpec, rows: Vec<Row>) -> Self {
        let kept = rows.iter().map(|r| (r.index, r.filepath.clone())).collect();
        let (store, spec) = (store.clone(), spec.clone());
        let task = tokio::spawn(
            async move {
                crate::fault::commit_started();
                rows::commit(&store, &spec, rows).await
            }
            .in_current_span(),
        );
        Self {
            task,
            rows: kept,
            started: Instant::now(),
        }
    }

    /// Waits for the batch to land.
    pub async fn landed_now(mut self) -> Landed {
        let ended = (&mut self.task).await;
        self.landed(ended)
    }

    /// What the task's end means for the batch: its commit, or (the task
    /// failed) every row failed INTERNAL and the stream stopped.
    fn landed(self, ended: Result<Committed, JoinError>) -> Landed {
        let committed = ended.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the commit task failed");
            let reason = "not stored: the gateway's commit task failed";
            Committed {
                failures: self
                    .rows
                    .into_iter()
                    .map(|(index, filepath)| failure(index, filepath, ErrorKind::Internal, reason))
                    .collect(),
                stop: Some(GatewayError::Internal(format!(
                    "the commit task failed: {e}"
                ))),
                ..Committed::default()
            }
        });
        Landed {
            committed,
            took: self.started.elapsed(),
        }
    }
}

/// The landing of the batch in `slot`, which it then empties; never, while
/// the slot is empty (for a `select!` branch that is off then). Safe to
/// drop unfinished: the batch stays in the slot.
pub async fn landing(slot: &mut Option<InFlight>) -> Landed {
    let Some(batch) = slot.as_mut() else {
        return std::future::pending().await;
    };
    let ended = (&mut batch.task).await;
    slot.take().expect("polled above").landed(ended)
}
