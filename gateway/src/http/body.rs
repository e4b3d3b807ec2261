//! What the HTTP API reads of a request, and the memory it may hold for it.
//!
//! A unary call's body is read whole (a JSON document, a multipart form)
//! before the gRPC call it becomes is admitted, so it is charged first to a
//! byte budget the HTTP listener holds for all such bodies: by its declared
//! length, or the largest body allowed when it declares none, all or
//! nothing, refused (429) when the budget cannot hold it now, and released
//! when the answer is made; a body that takes longer than
//! `HTTP_BODY_READ_TIMEOUT` to arrive is 408. A stream's body is read a line at a time, each
//! line at most the largest body, as the admitted call asks for messages.

use std::sync::Arc;

use axum::{
    body::Body,
    http::{header, HeaderMap},
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use imgsearch_common::admission::{budget_units, BUDGET_UNIT};
use imgsearch_proto::limits::{HTTP_BODIES_AT_ONCE, HTTP_BODY_READ_TIMEOUT, HTTP_JSON_SLACK_BYTES};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::problem::Problem;

/// The byte budget of the bodies being read or answered.
#[derive(Clone)]
pub struct Bodies {
    units: Arc<Semaphore>,
    max_body: usize,
}

/// The largest body for messages of up to `max_message_bytes`: base64 adds
/// a third.
pub fn max_body(max_message_bytes: usize) -> usize {
    max_message_bytes.div_ceil(3) * 4 + HTTP_JSON_SLACK_BYTES
}

impl Bodies {
    pub fn new(max_message_bytes: usize) -> Self {
        let max_body = max_body(max_message_bytes);
        // Whole bodies' units: rounding each up, as charges are.
        let total = budget_units(max_body) as usize * HTTP_BODIES_AT_ONCE;
        Self {
            units: Arc::new(Semaphore::new(total)),
            max_body,
        }
    }

    /// The whole body, and its charge (held until the answer is made).
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, OwnedSemaphorePermit), Problem> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body) {
            return Err(Problem::too_large(self.max_body));
        }
        let charge = declared.unwrap_or(self.max_body).max(1);
        let permit = self
            .units
            .clone()
            .try_acquire_many_owned(budget_units(charge))
            .map_err(|_| {
                let mut busy = Status::resource_exhausted(format!(
                    "the gateway is reading {} MiB of request bodies, the most it holds at \
                     once; retry shortly",
                    self.max_body * HTTP_BODIES_AT_ONCE / BUDGET_UNIT / 1024
                ));
                imgsearch_common::grpc::retry_pushback(&mut busy);
                Problem::from(busy)
            })?;
        let limit = declared.unwrap_or(self.max_body);
        let read = tokio::time::timeout(HTTP_BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit));
        match read.await {
            Ok(Ok(bytes)) => Ok((bytes, permit)),
            Ok(Err(e)) if is_length_limit(&e) => Err(Problem::too_large(self.max_body)),
            Ok(Err(e)) => Err(Problem::invalid(format!("the request body failed: {e}"))),
            Err(_) => Err(Problem::slow_body(HTTP_BODY_READ_TIMEOUT)),
        }
    }

    /// The body's lines (NDJSON), each at most the largest body; blank
    /// lines are skipped. A line too long, or a body that breaks, ends the
    /// stream with an error.
    pub fn lines(&self, body: Body) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static {
        let max = self.max_body;
        let chunks = body.into_data_stream();
        futures::stream::unfold(Some((chunks, BytesMut::new())), move |state| async move {
            let (mut chunks, mut pending) = state?;
            loop {
                if let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line = pending.split_to(end + 1).freeze();
                    let line = trim_line(line);
                    if line.is_empty() {
                        continue;
                    }
                    return Some((Ok(line), Some((chunks, pending))));
                }
                if pending.len() > max {
                    return Some((Err(line_too_long(max)), None));
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let broken =
                            Status::invalid_argument(format!("the request body failed: {e}"));
                        return Some((Err(broken), None));
                    }
                    None => {
                        let last = trim_line(pending.split().freeze());
                        if last.is_empty() {
                            return None;
                        }
                        return Some((Ok(last), None));
                    }
                }
            }
        })
    }
}

fn line_too_long(max: usize) -> Status {
    Status::invalid_argument(format!(
        "an NDJSON line is over {max} bytes, the most one message may take"
    ))
}

/// The line without its end (`\n` or `\r\n`) and surrounding blanks.
fn trim_line(line: Bytes) -> Bytes {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    line.slice(start..end)
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(
        chunks: Vec<&'static str>,
        max_message: usize,
    ) -> Vec<Result<String, String>> {
        let body = Body::from_stream(futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
        ));
        let bodies = Bodies {
            units: Arc::new(Semaphore::new(1)),
            max_body: max_message,
        };
        bodies
            .lines(body)
            .map(|l| {
                l.map(|b| String::from_utf8(b.to_vec()).unwrap())
                    .map_err(|s| s.message().to_string())
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn lines_are_split_across_chunks_and_blank_ones_skipped() {
        let lines = lines_of(vec!["{\"a\":1}\n{\"b\"", ":2}\r\n\n  \n{\"c\":3}"], 100).await;
        let lines: Vec<_> = lines.into_iter().map(Result::unwrap).collect();
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_ends_the_stream_with_an_error() {
        let lines = lines_of(vec!["{}\n", "0123456789", "0123456789", "\n{}\n"], 15).await;
        assert_eq!(lines.len(), 2);
        assert!(lines[1].as_ref().unwrap_err().contains("over 15 bytes"));
    }
}
