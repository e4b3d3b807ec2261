//! Embedded items on their way into Milvus, and the commit of a batch.
//!
//! A batch Milvus refuses for what is in it is split in halves, and each
//! half tried again, until every bad row stands alone: each good row is
//! stored and each bad one fails by itself (at most 2n - 1 inserts for a
//! batch of n; the gateway's own checks make this rare). An error that is
//! about Milvus and not the rows (unreachable, timed out, the collection
//! gone) is not split: the rows not yet stored fail and the stream stops.

use imgsearch_proto::v1::{ErrorKind, ItemFailure};

use super::{
    claims::Claim,
    item::{failure, ItemIndex},
};
use crate::{error::GatewayError, milvus::MilvusStore};

/// One embedded item. Its claim (under `skip_existing`) is held until the
/// row is committed or has failed.
pub struct Row {
    pub index: ItemIndex,
    pub filepath: String,
    pub vector: Vec<f32>,
    /// Held, not read: dropping the row releases the filepath.
    pub _claim: Option<Claim>,
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

/// Whether an insert error is about Milvus rather than the rows sent.
fn about_milvus(e: &GatewayError) -> bool {
    match e {
        GatewayError::MilvusUnavailable(_) | GatewayError::CollectionNotFound(_) => true,
        GatewayError::InvalidArgument(_) | GatewayError::Milvus(_) => false,
        GatewayError::CollectionExists(_)
        | GatewayError::EmbedderUnavailable(_)
        | GatewayError::Overloaded(_)
        | GatewayError::Embedder(_)
        | GatewayError::ModelMismatch { .. }
        | GatewayError::Deadline(_)
        | GatewayError::RowNotFound(_)
        | GatewayError::Internal(_)
        | GatewayError::Config(_) => true,
    }
}

/// Inserts `rows`, splitting a refused batch until bad rows stand alone.
pub async fn commit(store: &MilvusStore, collection: &str, rows: Vec<Row>) -> Committed {
    let mut done = Committed::default();
    let mut todo = vec![rows];
    while let Some(part) = todo.pop() {
        if part.is_empty() {
            continue;
        }
        if done.stop.is_some() {
            fail_all(&mut done, part, ErrorKind::Unavailable, "not inserted");
            continue;
        }
        let filepaths = part.iter().map(|r| r.filepath.clone()).collect();
        let vectors = part.iter().map(|r| r.vector.clone()).collect();
        match store.insert(collection, filepaths, vectors).await {
            Ok((ids, timestamp)) => {
                done.stored.extend(part.iter().map(|r| r.index).zip(ids));
                done.write_token = done.write_token.max(timestamp);
            }
            Err(e) if about_milvus(&e) => {
                let reason = format!("not inserted: {e}");
                fail_all(&mut done, part, ErrorKind::Unavailable, &reason);
                done.stop = Some(e);
            }
            Err(e) if part.len() == 1 => {
                let reason = format!("Milvus refused this row: {e}");
                fail_all(&mut done, part, ErrorKind::InvalidArgument, &reason);
            }
            Err(e) => {
                tracing::info!(rows = part.len(), error = %e, "Milvus refused a batch; splitting it");
                let mut first = part;
                let second = first.split_off(first.len() / 2);
                todo.push(second);
                todo.push(first);
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
