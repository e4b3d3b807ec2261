//! Delete: rows by id or filepath. The answer counts the rows that existed
//! (Milvus itself counts the keys it was given) and carries the delete's
//! write token, so a later Search anywhere can be sure not to see them.

use imgsearch_proto::v1::{DeleteRequest, DeleteResponse};
use tracing::instrument;

use imgsearch_proto::limits::{FILEPATH_MAX_BYTES, MAX_FILEPATHS};

use crate::{error::GatewayError, milvus::MilvusStore};

/// Answers one Delete request.
#[instrument(skip_all, fields(collection = %req.collection, ids = req.ids.len(), filepaths = req.filepaths.len()))]
pub async fn delete(
    store: &MilvusStore,
    req: DeleteRequest,
) -> Result<DeleteResponse, GatewayError> {
    let bad = |m: String| Err(GatewayError::InvalidArgument(m));
    if req.ids.is_empty() && req.filepaths.is_empty() {
        return bad("give the ids or filepaths of the rows to delete".into());
    }
    if req.ids.len() > MAX_FILEPATHS || req.filepaths.len() > MAX_FILEPATHS {
        return bad(format!(
            "{} ids and {} filepaths; at most {MAX_FILEPATHS} of each per call",
            req.ids.len(),
            req.filepaths.len()
        ));
    }
    // A filepath outside the field's limits matches no row.
    let filepaths: Vec<String> = req
        .filepaths
        .into_iter()
        .filter(|p| !p.is_empty() && p.len() <= FILEPATH_MAX_BYTES)
        .collect();
    store.collection_spec(&req.collection).await?;
    if req.ids.is_empty() && filepaths.is_empty() {
        return Ok(DeleteResponse::default());
    }
    let (deleted, write_token) = store.delete(&req.collection, &req.ids, &filepaths).await?;
    tracing::info!(deleted, "deleted");
    Ok(DeleteResponse {
        deleted,
        write_token,
    })
}
