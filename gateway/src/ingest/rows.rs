//! Embedded items on their way into Milvus, and the commit of a batch.
//!
//! What a refused insert leads to depends on why Milvus refused it
//! ([`crate::milvus::refusal`]):
//! - **the rows' fault**: the batch is split in halves, and each half tried
//!   again, until every bad row stands alone: each good row is stored and
//!   each bad one fails by itself (at most 2n - 1 inserts for a batch of n;
//!   the gateway's own checks make this rare);
//! - **throttling** (a rate limit, a quota): the same rows are sent again
//!   after a growing, jittered pause, for at most `--milvus-throttle-wait-secs`
//!   in a row; past that they fail OVERLOADED and the stream stops, as
//!   Milvus is still asking for less;
//! - **any other refusal**: the batch's rows fail once with Milvus's reason,
//!   and the stream goes on;
//! - **Milvus itself** (unreachable, timed out, the collection gone): the
//!   rows not yet stored fail and the stream stops.

use imgsearch_proto::v1::{ErrorKind, ItemFailure};

use super::{
    claims::Claim,
    item::{failure, ItemIndex, RowFacts},
};

use crate::{
    error::GatewayError,
    milvus::{throttle::ThrottleWait, CollectionSpec, ExtendedColumns, MilvusStore, NewRows},
    schema::Profile,
};

/// One embedded item. Its claim (under `skip_existing`) is held until the
/// row is committed or has failed: dropping the row releases the filepath.
pub struct Row {
    pub index: ItemIndex,
    pub filepath: String,
    pub vector: Vec<f32>,
    pub facts: RowFacts,
    pub claim: Option<Claim>,
}

/// The columns of an insert of `rows` into `spec`'s collection.
fn columns(spec: &CollectionSpec, rows: &[Row]) -> NewRows {
    let extended = (spec.profile == Profile::Extended).then(|| {
        let mut x = ExtendedColumns::default();
        for r in rows {
            let attributes = r.facts.attributes.clone();
            x.attributes
                .push(attributes.unwrap_or_else(|| serde_json::json!({})));
            x.contents.push(r.facts.content_sha256.clone());
            x.tenants.push(r.facts.tenant.clone());
        }
        x
    });
    NewRows {
        filepaths: rows.iter().map(|r| r.filepath.clone()).collect(),
        vectors: rows.iter().map(|r| r.vector.clone()).collect(),
        extended,
    }
}

/// What a commit did with a batch.
#[derive(Default)]
pub struct Committed {
    pub stored: Vec<(ItemIndex, i64)>,
    pub failures: Vec<ItemFailure>,
    /// Milvus's timestamp of the last insert.
    pub write_token: u64,
    /// Why the stream must stop, when Milvus itself failed.
    pub stop: Option<GatewayError>,
}

/// What a commit does about one refused insert.
#[derive(Debug, PartialEq)]
enum Response {
    /// Milvus is throttling: wait, and send the same rows again.
    Wait,
    /// The rows are at fault: split them until the bad ones stand alone.
    Split,
    /// Fail these rows with Milvus's reason; go on with the stream.
    FailOnce,
    /// Milvus itself failed: fail what is left and stop the stream.
    Stop,
}

fn response_to(e: &GatewayError) -> Response {
    match e {
        GatewayError::MilvusThrottled(_) => Response::Wait,
        GatewayError::MilvusRefused(_) | GatewayError::InvalidArgument(_) => Response::Split,
        GatewayError::Milvus(_) => Response::FailOnce,
        GatewayError::MilvusUnavailable(_)
        | GatewayError::CollectionNotFound(_)
        | GatewayError::CollectionExists(_)
        | GatewayError::EmbedderUnavailable(_)
        | GatewayError::Overloaded(_)
        | GatewayError::Embedder(_)
        | GatewayError::ModelMismatch { .. }
        | GatewayError::NeedsExtended { .. }
        | GatewayError::FingerprintMismatch { .. }
        | GatewayError::Deadline(_)
        | GatewayError::RowNotFound(_)
        | GatewayError::Internal(_)
        | GatewayError::Config(_) => Response::Stop,
    }
}

/// Inserts `rows`, splitting a refused batch until bad rows stand alone and
/// waiting out throttling for at most the store's throttle wait in a row.
pub async fn commit(store: &MilvusStore, spec: &CollectionSpec, rows: Vec<Row>) -> Committed {
    let mut done = Committed::default();
    let mut todo = vec![rows];
    let patience = store.patience();
    let mut throttle = ThrottleWait::new(patience.throttle_wait);
    while let Some(part) = todo.pop() {
        if part.is_empty() {
            continue;
        }
        if done.stop.is_some() {
            fail_all(&mut done, part, ErrorKind::Unavailable, "not inserted");
            continue;
        }
        let e = match store.insert(&spec.name, columns(spec, &part)).await {
            Ok((ids, timestamp)) => {
                done.stored
                    .extend(part.iter().map(|r| r.index).zip(ids.clone()));
                done.write_token = done.write_token.max(timestamp);
                throttle.taken();
                for (row, id) in part.into_iter().zip(ids) {
                    if let Some(claim) = row.claim {
                        claim.stored(id);
                    }
                }
                continue;
            }
            Err(e) => e,
        };
        match response_to(&e) {
            Response::Wait => {
                patience.throttled.inc();
                if let Some(pause) = throttle.refused() {
                    tracing::info!(rows = part.len(), pause_ms = pause.as_millis() as u64, error = %e,
                        "Milvus is throttling; the batch waits and is sent again");
                    tokio::time::sleep(pause).await;
                    todo.push(part);
                } else {
                    let reason = format!(
                        "not inserted: Milvus throttled writes for over {} s \
                         (--milvus-throttle-wait-secs): {e}",
                        throttle.limit_secs()
                    );
                    fail_all(&mut done, part, ErrorKind::Overloaded, &reason);
                    done.stop = Some(e);
                }
            }
            Response::Split if part.len() == 1 => {
                let reason = format!("Milvus refused this row: {e}");
                fail_all(&mut done, part, ErrorKind::InvalidArgument, &reason);
            }
            Response::Split => {
                tracing::info!(rows = part.len(), error = %e, "Milvus refused a batch; splitting it");
                let mut first = part;
                let second = first.split_off(first.len() / 2);
                todo.push(second);
                todo.push(first);
            }
            Response::FailOnce => {
                let reason = format!("not inserted: {e}");
                fail_all(&mut done, part, ErrorKind::Internal, &reason);
            }
            Response::Stop => {
                let reason = format!("not inserted: {e}");
                fail_all(&mut done, part, ErrorKind::Unavailable, &reason);
                done.stop = Some(e);
            }
        }
    }
    done
}

fn fail_all(done: &mut Committed, rows: Vec<Row>, kind: ErrorKind, reason: &str) {
    done.failures.extend(
        rows.into_iter()
            .map(|r| failure(r.index, r.filepath, kind, reason)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_waits_row_refusals_split_and_other_refusals_fail_once() {
        let of = |e| response_to(&e);
        assert_eq!(
            of(GatewayError::MilvusThrottled("rate".into())),
            Response::Wait
        );
        assert_eq!(
            of(GatewayError::MilvusRefused("long".into())),
            Response::Split
        );
        assert_eq!(
            of(GatewayError::Milvus("internal".into())),
            Response::FailOnce
        );
        assert_eq!(
            of(GatewayError::MilvusUnavailable("gone".into())),
            Response::Stop
        );
    }
}
