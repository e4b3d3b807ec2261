//! The answer half of a streaming call (Insert, SearchStream). Answers go
//! through a bounded channel, so a caller that stops reading holds the work
//! back rather than the gateway's memory. The call's last word (OK or an
//! error) goes apart from them and needs no room in the channel: a caller
//! cut off for reading too slowly still learns why once it reads on, and a
//! task that ends without a last word (it panicked) ends the call INTERNAL,
//! never OK with nothing said.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::error::GatewayError;

/// A call's answers, `window` of them buffered; a caller that takes none
/// for `patience` is cut off.
pub fn channel<T>(window: usize, patience: Duration) -> (AnswerSender<T>, AnswerStream<T>) {
    let (tx, rx) = mpsc::channel(window);
    let (last_tx, last_rx) = oneshot::channel();
    (
        AnswerSender {
            tx,
            last: last_tx,
            patience,
            cut_off: None,
        },
        AnswerStream {
            rx,
            last: Some(last_rx),
        },
    )
}

pub struct AnswerSender<T> {
    tx: mpsc::Sender<T>,
    last: oneshot::Sender<Result<(), GatewayError>>,
    patience: Duration,
    /// Why later answers are dropped: the caller left, or stopped reading.
    cut_off: Option<CutOff>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutOff {
    Left,
    StoppedReading,
}

impl<T> AnswerSender<T> {
    /// Sends `answer`; `false` once the caller is cut off (it left, or took
    /// no answer for the patience), after which answers are dropped and the
    /// work may finish without it.
    pub async fn send(&mut self, answer: T) -> bool {
        if self.cut_off.is_some() {
            return false;
        }
        match self.tx.send_timeout(answer, self.patience).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                self.cut_off = Some(CutOff::Left);
                false
            }
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::warn!(
                    patience_s = self.patience.as_secs(),
                    "the caller stopped reading answers; finishing without it"
                );
                self.cut_off = Some(CutOff::StoppedReading);
                false
            }
        }
    }

    /// Whether the caller is cut off.
    pub fn cut_off(&self) -> bool {
        self.cut_off.is_some()
    }

    /// Ends the call: OK, or `error`. A caller cut off for not reading ends
    /// DEADLINE_EXCEEDED whatever else happened: `what` says what the call
    /// did without it (for Insert, how many rows it stored).
    pub fn end(self, error: Option<GatewayError>, what: impl FnOnce() -> String) {
        let last = match (self.cut_off, error) {
            (Some(CutOff::StoppedReading), _) => Err(GatewayError::Deadline(format!(
                "the caller took no answer for {} s and was cut off; {}",
                self.patience.as_secs(),
                what()
            ))),
            (_, Some(error)) => Err(error),
            (_, None) => Ok(()),
        };
        let _ = self.last.send(last);
    }
}

/// What the transport sends: the answers, then the last word.
pub struct AnswerStream<T> {
    rx: mpsc::Receiver<T>,
    last: Option<oneshot::Receiver<Result<(), GatewayError>>>,
}

impl<T> Stream for AnswerStream<T> {
    type Item = Result<T, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(answer) = ready!(self.rx.poll_recv(cx)) {
            return Poll::Ready(Some(Ok(answer)));
        }
        let Some(last) = self.last.as_mut() else {
            return Poll::Ready(None);
        };
        let word = ready!(Pin::new(last).poll(cx));
        self.last = None;
        Poll::Ready(match word {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(Err(error)),
            Err(_) => Some(Err(GatewayError::Internal(
                "the call's task ended without finishing it (see the gateway's log)".into(),
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn answers_come_first_then_the_error_the_call_ended_with() {
        let (mut tx, rx) = channel(4, Duration::from_secs(1));
        assert!(tx.send(1).await);
        tx.end(
            Some(GatewayError::InvalidArgument("bad".into())),
            String::new,
        );
        let got: Vec<_> = rx.collect().await;
        assert!(matches!(
            got[..],
            [Ok(1), Err(GatewayError::InvalidArgument(_))]
        ));
    }

    #[tokio::test]
    async fn a_call_that_ends_well_ends_with_its_answers_alone() {
        let (mut tx, rx) = channel(4, Duration::from_secs(1));
        assert!(tx.send(1).await);
        tx.end(None, String::new);
        let got: Vec<_> = rx.collect().await;
        assert!(matches!(got[..], [Ok(1)]));
    }

    #[tokio::test]
    async fn a_sender_dropped_without_a_last_word_ends_the_call_internal() {
        let (mut tx, rx) = channel(4, Duration::from_secs(1));
        assert!(tx.send(1).await);
        drop(tx);
        let got: Vec<_> = rx.collect().await;
        assert!(matches!(got[..], [Ok(1), Err(GatewayError::Internal(_))]));
    }

    #[tokio::test]
    async fn a_caller_that_stops_reading_is_told_deadline_exceeded_and_what_was_done() {
        let (mut tx, mut rx) = channel(1, Duration::from_millis(50));
        assert!(tx.send(1).await);
        assert!(!tx.send(2).await, "no room, nobody reading");
        assert!(!tx.send(3).await, "cut off for good");
        tx.end(None, || "3 rows stored".into());
        assert!(matches!(rx.next().await, Some(Ok(1))));
        match rx.next().await {
            Some(Err(GatewayError::Deadline(why))) => {
                assert!(why.contains("3 rows stored"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.next().await.is_none());
    }
}
