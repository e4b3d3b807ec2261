//! FindFilepaths: which filepaths a collection already holds, for clients
//! that keep their own account (an Insert stream with `skip_existing` does
//! the same check on the gateway).

use imgsearch_proto::v1::{FindFilepathsRequest, FindFilepathsResponse};
use tracing::instrument;

use imgsearch_proto::limits::{FILEPATH_MAX_BYTES, MAX_FILEPATHS};

use crate::{error::GatewayError, milvus::MilvusStore};

/// Answers one FindFilepaths request.
#[instrument(skip_all, fields(collection = %req.collection, filepaths = req.filepaths.len()))]
pub async fn find(
    store: &MilvusStore,
    req: FindFilepathsRequest,
    tenant: Option<&str>,
) -> Result<FindFilepathsResponse, GatewayError> {
    if req.filepaths.len() > MAX_FILEPATHS {
        return Err(GatewayError::InvalidArgument(format!(
            "{} filepaths; at most {MAX_FILEPATHS} per call",
            req.filepaths.len()
        )));
    }
    // A filepath longer than the field's limit cannot be stored: no need to
    // ask Milvus about it (which would reject the whole expression).
    let askable: Vec<String> = req
        .filepaths
        .iter()
        .filter(|p| !p.is_empty() && p.len() <= FILEPATH_MAX_BYTES)
        .cloned()
        .collect();
    let scope = store
        .collection_spec(&req.collection)
        .await?
        .scope(tenant)?;
    let stored = store
        .stored_filepaths(&req.collection, &askable, scope)
        .await?;
    let mut seen = std::collections::HashSet::new();
    let found = req
        .filepaths
        .into_iter()
        .filter(|p| stored.contains(p) && seen.insert(p.clone()))
        .collect();
    Ok(FindFilepathsResponse { found })
}
