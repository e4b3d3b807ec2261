//! Count: the rows of a collection, or those a filter selects, as fresh
//! as the caller asks (SESSION by default, as for searches).

use imgsearch_proto::v1::{CountRequest, CountResponse};
use tracing::instrument;

use crate::{error::GatewayError, filter::Filter, milvus::MilvusStore, search::freshness};

/// Answers one Count request.
#[instrument(skip_all, fields(collection = %req.collection))]
pub async fn count(
    store: &MilvusStore,
    req: CountRequest,
    tenant: Option<&str>,
) -> Result<CountResponse, GatewayError> {
    let filter = Filter::parse(req.filter)?;
    let freshness = freshness(req.consistency, req.write_token)?;
    let spec = store.collection_spec(&req.collection).await?;
    let expression = spec.expression(&filter, tenant)?;
    let count = store.count(&spec.name, expression, freshness).await?;
    Ok(CountResponse { count })
}
