//! Delete: rows by id or filepath, narrowed by a filter, or every row a
//! filter selects (at most `MAX_DELETE_BY_FILTER`). The answer counts the
//! rows that existed (Milvus itself counts the keys it was given) and
//! carries the delete's write token, so a later Search anywhere can be
//! sure not to see them.

use imgsearch_proto::v1::{DeleteRequest, DeleteResponse};
use tracing::instrument;

use imgsearch_proto::limits::{FILEPATH_MAX_BYTES, MAX_DELETE_BY_FILTER, MAX_FILEPATHS};

use crate::{error::GatewayError, filter::Filter, milvus::MilvusStore};

/// Answers one Delete request.
#[instrument(skip_all, fields(collection = %req.collection, ids = req.ids.len(), filepaths = req.filepaths.len()))]
pub async fn delete(
    store: &MilvusStore,
    req: DeleteRequest,
    tenant: Option<&str>,
) -> Result<DeleteResponse, GatewayError> {
    let bad = |m: String| Err(GatewayError::InvalidArgument(m));
    let filter = Filter::parse(req.filter)?;
    let by_filter_alone = req.ids.is_empty() && req.filepaths.is_empty();
    if by_filter_alone && filter.is_empty() {
        return bad("give the ids or filepaths of the rows to delete, or a filter".into());
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
    let spec = store.collection_spec(&req.collection).await?;
    let expression = spec.expression(&filter, tenant)?;
    if !by_filter_alone && req.ids.is_empty() && filepaths.is_empty() {
        return Ok(DeleteResponse::default());
    }
    let most = by_filter_alone.then_some(MAX_DELETE_BY_FILTER);
    let (deleted, write_token) = store
        .delete(&req.collection, (&req.ids, &filepaths), expression, most)
        .await?;
    tracing::info!(deleted, "deleted");
    Ok(DeleteResponse {
        deleted,
        write_token,
    })
}
