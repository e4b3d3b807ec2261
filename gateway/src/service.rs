//! `imgsearch.v1.ImageSearch` over gRPC: thin handlers over the store,
//! ingest and search modules, each counted in metrics and tagged with the
//! caller's trace id (or a new one), which travels on to the embedders.

use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    image_search_server::ImageSearch, CollectionInfo, CreateCollectionRequest,
    CreateCollectionResponse, DescribeCollectionRequest, DropCollectionRequest,
    DropCollectionResponse, ErrorKind, FindFilepathsRequest, FindFilepathsResponse, InsertRequest,
    InsertSummary, ListCollectionsRequest, ListCollectionsResponse, SearchRequest, SearchResponse,
};
use prost::Message;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tracing::{instrument, Span};

use crate::{
    embedders::Embedders, error::GatewayError, filepaths, ingest, metrics::Metrics,
    milvus::MilvusStore, search,
};

/// The gRPC service. Until Milvus is connected, calls are UNAVAILABLE.
#[derive(Clone)]
pub struct ImageSearchService {
    store: watch::Receiver<Option<MilvusStore>>,
    embedders: Embedders,
    batch_size: usize,
    metrics: Metrics,
}

/// The caller's trace context (or a new one), recorded on the current span.
fn trace<T>(request: &Request<T>) -> TraceContext {
    let t = TraceContext::from_metadata_or_start(request.metadata());
    Span::current().record("trace_id", t.trace_id.as_str());
    t
}

impl ImageSearchService {
    pub fn new(
        store: watch::Receiver<Option<MilvusStore>>,
        embedders: Embedders,
        batch_size: usize,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            embedders,
            batch_size,
            metrics,
        }
    }

    fn store(&self) -> Result<MilvusStore, GatewayError> {
        self.store
            .borrow()
            .clone()
            .ok_or_else(|| GatewayError::MilvusUnavailable("not connected to Milvus yet".into()))
    }

    fn counted<T>(&self, method: &str, result: Result<T, Status>) -> Result<Response<T>, Status> {
        self.metrics.observe(method, &result);
        match &result {
            Ok(_) => tracing::info!(method, "ok"),
            Err(s) => tracing::info!(method, code = ?s.code(), message = s.message(), "failed"),
        }
        result.map(Response::new)
    }

    fn count_insert(&self, summary: &InsertSummary) {
        self.metrics.inserted_rows.inc_by(summary.inserted);
        for f in &summary.failures {
            let kind = f
                .error
                .as_ref()
                .map_or(ErrorKind::Unspecified, |e| e.kind());
            self.metrics
                .item_failures
                .with_label_values(&[kind.as_str_name()])
                .inc();
        }
    }
}

#[tonic::async_trait]
impl ImageSearch for ImageSearchService {
    #[instrument(skip_all, fields(name = %request.get_ref().name, trace_id))]
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<CreateCollectionResponse>, Status> {
        trace(&request);
        let req = request.into_inner();
        let result = async {
            let store = self.store()?;
            // The vector field takes the dimension the embedders produce.
            let dimension = self.embedders.info().await?.dimension;
            store
                .create_collection(&req.name, dimension, req.drop_if_exists.unwrap_or(true))
                .await?;
            let collection = store.describe(&req.name).await?;
            Ok::<_, GatewayError>(CreateCollectionResponse {
                collection: Some(collection),
            })
        }
        .await;
        self.counted("CreateCollection", result.map_err(Status::from))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name, trace_id))]
    async fn drop_collection(
        &self,
        request: Request<DropCollectionRequest>,
    ) -> Result<Response<DropCollectionResponse>, Status> {
        trace(&request);
        let name = request.into_inner().name;
        let result = async { self.store()?.drop_collection(&name).await }.await;
        self.counted(
            "DropCollection",
            result
                .map(|()| DropCollectionResponse {})
                .map_err(Status::from),
        )
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name, trace_id))]
    async fn describe_collection(
        &self,
        request: Request<DescribeCollectionRequest>,
    ) -> Result<Response<CollectionInfo>, Status> {
        trace(&request);
        let name = request.into_inner().name;
        let result = async { self.store()?.describe(&name).await }.await;
        self.counted("DescribeCollection", result.map_err(Status::from))
    }

    #[instrument(skip_all, fields(trace_id))]
    async fn list_collections(
        &self,
        request: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        trace(&request);
        let result = async { self.store()?.list_collections().await }.await;
        self.counted(
            "ListCollections",
            result
                .map(|names| ListCollectionsResponse { names })
                .map_err(Status::from),
        )
    }

    #[instrument(skip_all, fields(trace_id))]
    async fn insert(
        &self,
        request: Request<Streaming<InsertRequest>>,
    ) -> Result<Response<InsertSummary>, Status> {
        let trace = trace(&request);
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return self.counted("Insert", Err(e.into())),
        };
        let outcome = ingest::insert_stream(
            &store,
            &self.embedders,
            self.batch_size,
            &trace,
            request.into_inner(),
        )
        .await;
        let result = match outcome {
            Ok(summary) => {
                self.count_insert(&summary);
                Ok(summary)
            }
            Err(interrupted) => {
                self.count_insert(&interrupted.summary);
                // What was committed travels with the error: the status
                // details hold the encoded InsertSummary.
                let status = Status::from(interrupted.error);
                let s = &interrupted.summary;
                let message = format!(
                    "{} ({} rows inserted and flushed before it stopped; {} items failed)",
                    status.message(),
                    s.inserted,
                    s.failures.len()
                );
                Err(Status::with_details(
                    status.code(),
                    message,
                    s.encode_to_vec().into(),
                ))
            }
        };
        self.counted("Insert", result)
    }

    #[instrument(skip_all, fields(trace_id))]
    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let trace = trace(&request);
        let result = async {
            let store = self.store()?;
            search::search(&store, &self.embedders, &trace, request.into_inner()).await
        }
        .await;
        if let Ok(r) = &result {
            self.metrics.search_seconds.observe(r.search_seconds);
            self.metrics.embed_seconds.observe(r.embed_seconds);
        }
        self.counted("Search", result.map_err(Status::from))
    }

    #[instrument(skip_all, fields(collection = %request.get_ref().collection, trace_id))]
    async fn find_filepaths(
        &self,
        request: Request<FindFilepathsRequest>,
    ) -> Result<Response<FindFilepathsResponse>, Status> {
        trace(&request);
        let result = async { filepaths::find(&self.store()?, request.into_inner()).await }.await;
        self.counted("FindFilepaths", result.map_err(Status::from))
    }
}
