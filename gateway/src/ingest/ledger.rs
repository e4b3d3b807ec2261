//! The account of one Insert stream: every item received is settled exactly
//! once, as stored, failed or skipped, and every settlement reaches the
//! caller in an acknowledgement. Stored rows are acknowledged as their batch
//! commits; failures and skips ride along, or go on their own once a batch's
//! worth has gathered, so they never pile up.

use std::time::Duration;

use imgsearch_proto::v1::{
    insert_response::Event, ErrorKind, InsertAck, InsertResponse, InsertSummary, ItemFailure,
    StoredItem,
};
use tokio::sync::mpsc;

use super::item::ItemIndex;
use crate::{error::GatewayError, metrics::Metrics};

/// The answer half of an Insert stream.
pub type Answers = mpsc::Sender<Result<InsertResponse, GatewayError>>;

pub struct Ledger {
    ack: InsertAck,
    pub summary: InsertSummary,
    metrics: Metrics,
    answers: Answers,
    /// How long a caller that stopped reading acknowledgements is waited for.
    patience: Duration,
    /// Set once the caller stopped reading (or left): later answers are
    /// dropped, the work still finishes.
    caller_gone: bool,
}

impl Ledger {
    pub fn new(answers: Answers, metrics: Metrics, patience: Duration) -> Self {
        Self {
            ack: InsertAck::default(),
            summary: InsertSummary::default(),
            metrics,
            answers,
            patience,
            caller_gone: false,
        }
    }

    /// Rows committed by an insert whose timestamp is `write_token`.
    pub fn stored(&mut self, rows: impl IntoIterator<Item = (ItemIndex, i64)>, write_token: u64) {
        self.summary.write_token = self.summary.write_token.max(write_token);
        for (index, id) in rows {
            self.ack.stored.push(StoredItem { index: index.0, id });
            self.summary.inserted += 1;
            self.metrics.inserted_rows.inc();
        }
    }

    pub fn failed(&mut self, failure: ItemFailure) {
        let kind = failure
            .error
            .as_ref()
            .map_or(ErrorKind::Unspecified, |e| e.kind());
        self.metrics
            .item_failures
            .with_label_values(&[kind.as_str_name()])
            .inc();
        self.ack.failures.push(failure);
        self.summary.failed += 1;
    }

    pub fn skipped(&mut self, index: ItemIndex) {
        self.ack.skipped.push(index.0);
        self.summary.skipped += 1;
        self.metrics.skipped_items.inc();
    }

    /// Items settled so far.
    pub fn settled(&self) -> u64 {
        self.summary.inserted + self.summary.failed + self.summary.skipped
    }

    /// Whether failures and skips alone make an acknowledgement worth sending.
    pub fn unacked_at_least(&self, n: usize) -> bool {
        self.ack.failures.len() + self.ack.skipped.len() >= n
    }

    pub fn caller_gone(&self) -> bool {
        self.caller_gone
    }

    /// Sends what was settled since the last acknowledgement, if anything.
    pub async fn acknowledge(&mut self) {
        if self.ack == InsertAck::default() {
            return;
        }
        let mut ack = std::mem::take(&mut self.ack);
        ack.write_token = self.summary.write_token;
        self.send(Ok(InsertResponse {
            event: Some(Event::Ack(ack)),
        }))
        .await;
    }

    /// The last acknowledgement, the summary, then `error` if the stream
    /// stopped: nothing is ever said only in trailers.
    pub async fn finish(mut self, error: Option<GatewayError>) {
        self.acknowledge().await;
        let summary = std::mem::take(&mut self.summary);
        self.send(Ok(InsertResponse {
            event: Some(Event::Summary(summary)),
        }))
        .await;
        if let Some(error) = error {
            self.send(Err(error)).await;
        }
    }

    /// A stream refused at the start: the error alone.
    pub async fn refuse(mut self, error: GatewayError) {
        self.send(Err(error)).await;
    }

    async fn send(&mut self, answer: Result<InsertResponse, GatewayError>) {
        if self.caller_gone {
            return;
        }
        if self
            .answers
            .send_timeout(answer, self.patience)
            .await
            .is_err()
        {
            tracing::warn!("the caller stopped reading acknowledgements; finishing without it");
            self.caller_gone = true;
        }
    }
}
