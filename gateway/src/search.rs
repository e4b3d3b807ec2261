//! Search: query images through the embedders, then Milvus, with timings.

use std::time::Instant;

use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    embed_response, EmbedBatchRequest, ErrorKind, ItemError, QueryResult, SearchRequest,
    SearchResponse,
};
use tracing::instrument;

use crate::{embedders::Embedders, error::GatewayError, milvus::MilvusStore};

/// Hits per query when the request says 0, as in the tutorial.
pub const DEFAULT_TOP_K: u32 = 3;
/// Most hits per query (Milvus 2.3 allows 16384; more is not a search result
/// a person or a service wants).
pub const MAX_TOP_K: u32 = 1024;
/// Most queries in one call.
pub const MAX_QUERIES: usize = 64;

/// Runs one search request.
#[instrument(skip_all, fields(collection = %req.collection, images = req.images.len(), vectors = req.vectors.len()))]
pub async fn search(
    store: &MilvusStore,
    embedders: &Embedders,
    trace: &TraceContext,
    req: SearchRequest,
) -> Result<SearchResponse, GatewayError> {
    let top_k = match req.top_k {
        0 => DEFAULT_TOP_K,
        k if k > MAX_TOP_K => {
            return Err(GatewayError::InvalidArgument(format!(
                "top_k {k} is over the maximum {MAX_TOP_K}"
            )))
        }
        k => k,
    };
    let queries = req.images.len() + req.vectors.len();
    if queries == 0 || (!req.images.is_empty() && !req.vectors.is_empty()) {
        return Err(GatewayError::InvalidArgument(
            "give query images or query vectors (one kind, at least one)".into(),
        ));
    }
    if queries > MAX_QUERIES {
        return Err(GatewayError::InvalidArgument(format!(
            "{queries} queries; at most {MAX_QUERIES} per call"
        )));
    }
    let spec = store.collection_spec(&req.collection).await?;
    let dimension = spec.dimension;

    let started = Instant::now();
    // One slot per query: a vector, or why there is none.
    let slots: Vec<Result<Vec<f32>, ItemError>> = if req.images.is_empty() {
        for (i, v) in req.vectors.iter().enumerate() {
            if v.values.len() != dimension as usize {
                return Err(GatewayError::InvalidArgument(format!(
                    "query vector {i} has {} values; the collection holds {dimension}",
                    v.values.len()
                )));
            }
        }
        req.vectors.into_iter().map(|v| Ok(v.values)).collect()
    } else {
        let mut request = tonic::Request::new(EmbedBatchRequest { images: req.images });
        trace.inject(&mut request);
        let resp = embedders.embed_batch(&spec, request).await?;
        resp.results
            .into_iter()
            .map(|r| match r.result {
                Some(embed_response::Result::Vector(v)) if v.values.len() == dimension as usize => {
                    Ok(v.values)
                }
                Some(embed_response::Result::Vector(v)) => Err(ItemError {
                    kind: ErrorKind::InvalidArgument as i32,
                    message: format!(
                        "embedder dimension {} differs from the collection's {dimension}",
                        v.values.len()
                    ),
                }),
                Some(embed_response::Result::Error(e)) => Err(e),
                None => Err(ItemError {
                    kind: ErrorKind::Internal as i32,
                    message: "empty embedder answer".into(),
                }),
            })
            .collect()
    };
    let embed_seconds = started.elapsed().as_secs_f64();

    let good: Vec<Vec<f32>> = slots
        .iter()
        .filter_map(|s| s.as_ref().ok().cloned())
        .collect();
    let t = Instant::now();
    let mut hits = if good.is_empty() {
        Vec::new()
    } else {
        store.search(&req.collection, good, top_k).await?
    };
    let search_seconds = t.elapsed().as_secs_f64();
    hits.reverse();
    let results = slots
        .into_iter()
        .map(|s| match s {
            Ok(_) => QueryResult {
                hits: hits.pop().unwrap_or_default(),
                error: None,
            },
            Err(e) => QueryResult {
                hits: Vec::new(),
                error: Some(e),
            },
        })
        .collect();
    Ok(SearchResponse {
        results,
        embed_seconds,
        search_seconds,
    })
}
