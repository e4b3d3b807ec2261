//! The account of one Insert stream: every item received is settled exactly
//! once, as stored, failed or skipped, and every settlement reaches the
//! caller in an acknowledgement. Stored rows are acknowledged as their batch
//! commits; failures and skips ride along, or go on their own once a batch's
//! worth has gathered, so they never pile up. The call then ends with its
//! summary and an explicit status: a caller cut off for not reading learns
//! it as DEADLINE_EXCEEDED with what was stored without it.

use imgsearch_proto::v1::{
    insert_response::Event, ErrorKind, InsertAck, InsertResponse, InsertSummary, ItemFailure,
    SameContent, StoredItem,
};

use super::item::ItemIndex;
use crate::{answers::AnswerSender, error::GatewayError, metrics::Metrics};

/// The answer half of an Insert stream.
pub type Answers = AnswerSender<InsertResponse>;

pub struct Ledger {
    ack: InsertAck,
    pub summary: InsertSummary,
    metrics: Metrics,
    /// Once the caller stopped reading (or left), later answers are
    /// dropped and the work still finishes.
    answers: Answers,
}

impl Ledger {
    pub fn new(answers: Answers, metrics: Metrics) -> Self {
        Self {
            ack: InsertAck::default(),
            summary: InsertSummary::default(),
            metrics,
            answers,
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

    /// An item skipped; `holder` is the row with its content, when that is
    /// why.
    pub fn skipped(&mut self, index: ItemIndex, holder: Option<i64>) {
        if let Some(id) = holder {
            self.ack
                .same_content
                .push(SameContent { index: index.0, id });
        }
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
        self.answers.cut_off()
    }

    /// Sends what was settled since the last acknowledgement, if anything.
    pub async fn acknowledge(&mut self) {
        if self.ack == InsertAck::default() {
            return;
        }
        let mut ack = std::mem::take(&mut self.ack);
        ack.write_token = self.summary.write_token;
        self.send(InsertResponse {
            event: Some(Event::Ack(ack)),
        })
        .await;
    }

    /// The last acknowledgement, the summary, then the status: `error` if
    /// the stream stopped. Nothing is ever said only in trailers.
    pub async fn finish(mut self, error: Option<GatewayError>) {
        self.acknowledge().await;
        let summary = std::mem::take(&mut self.summary);
        let done = format!(
            "{} rows were stored, {} items failed and {} were skipped without it",
            summary.inserted, summary.failed, summary.skipped
        );
        self.send(InsertResponse {
            event: Some(Event::Summary(summary)),
        })
        .await;
        self.answers.end(error, || done);
    }

    /// A stream refused at the start: the error alone.
    pub fn refuse(self, error: GatewayError) {
        self.answers.end(Some(error), String::new);
    }

    async fn send(&mut self, answer: InsertResponse) {
        self.answers.send(answer).await;
    }
}
