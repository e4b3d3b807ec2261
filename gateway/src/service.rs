//! `imgsearch.v1.ImageSearch` over gRPC: thin handlers over the store,
//! ingest and search modules, each counted in metrics and tagged with the
//! caller's trace id (or a new one), which travels on to the embedders.

use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    image_search_server::ImageSearch, CollectionInfo, CreateCollectionRequest,
    CreateCollectionResponse, DeleteRequest, DeleteResponse, DescribeCollectionRequest,
    DropCollectionRequest, DropCollectionResponse, FindFilepathsRequest, FindFilepathsResponse,
    InsertRequest, InsertResponse, ListCollectionsRequest, ListCollectionsResponse, SearchRequest,
    SearchResponse, SearchStreamRequest, SearchStreamResponse,
};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{instrument, Span};

use crate::{
    auth::Caller,
    delete,
    embedders::Embedders,
    error::GatewayError,
    filepaths,
    ingest::Ingest,
    metrics::Metrics,
    milvus::MilvusStore,
    search::{self, stream::SearchStreams, Searcher},
};

/// The gRPC service. Until Milvus is connected, calls are UNAVAILABLE.
#[derive(Clone)]
pub struct ImageSearchService {
    store: watch::Receiver<Option<MilvusStore>>,
    embedders: Embedders,
    ingest: Ingest,
    search_streams: SearchStreams,
    metrics: Metrics,
}

/// The caller's trace context (or a new one), recorded on the current span
/// with the name of the caller's key, so every log line of a call says who
/// made it.
fn trace<T>(request: &Request<T>) -> TraceContext {
    let t = TraceContext::from_metadata_or_start(request.metadata());
    let span = Span::current();
    span.record("trace_id", t.trace_id.as_str());
    if let Some(caller) = request.extensions().get::<Caller>() {
        span.record("caller", caller.key.as_str());
    }
    t
}

impl ImageSearchService {
    pub fn new(
        store: watch::Receiver<Option<MilvusStore>>,
        embedders: Embedders,
        ingest: Ingest,
        search_streams: SearchStreams,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            embedders,
            ingest,
            search_streams,
            metrics,
        }
    }

    fn searcher(&self) -> Result<Searcher, GatewayError> {
        Ok(Searcher {
            store: self.store()?,
            embedders: self.embedders.clone(),
        })
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
}

#[tonic::async_trait]
impl ImageSearch for ImageSearchService {
    #[instrument(skip_all, fields(name = %request.get_ref().name, trace_id, caller))]
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<CreateCollectionResponse>, Status> {
        trace(&request);
        let req = request.into_inner();
        let result = async {
            let store = self.store()?;
            // The vector field takes the dimension the embedders produce,
            // and the collection records which model made its vectors.
            let info = self.embedders.info().await?;
            store
                .create_collection(
                    &req.name,
                    info.dimension,
                    &info.fingerprint,
                    req.drop_if_exists.unwrap_or(true),
                )
                .await?;
            let collection = store.describe(&req.name).await?;
            Ok::<_, GatewayError>(CreateCollectionResponse {
                collection: Some(collection),
            })
        }
        .await;
        self.counted("CreateCollection", result.map_err(Status::from))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name, trace_id, caller))]
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

    #[instrument(skip_all, fields(name = %request.get_ref().name, trace_id, caller))]
    async fn describe_collection(
        &self,
        request: Request<DescribeCollectionRequest>,
    ) -> Result<Response<CollectionInfo>, Status> {
        trace(&request);
        let name = request.into_inner().name;
        let result = async { self.store()?.describe(&name).await }.await;
        self.counted("DescribeCollection", result.map_err(Status::from))
    }

    #[instrument(skip_all, fields(trace_id, caller))]
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

    type InsertStream = ReceiverStream<Result<InsertResponse, Status>>;

    /// Admits the stream and hands it to the ingest task; how it ends is
    /// counted there.
    #[instrument(skip_all, fields(trace_id, caller))]
    async fn insert(
        &self,
        request: Request<Streaming<InsertRequest>>,
    ) -> Result<Response<Self::InsertStream>, Status> {
        let trace = trace(&request);
        let started = self
            .store()
            .and_then(|store| self.ingest.start(store, trace, request.into_inner()));
        match started {
            Ok(answers) => Ok(Response::new(answers)),
            Err(e) => self.counted("Insert", Err(e.into())),
        }
    }

    #[instrument(skip_all, fields(trace_id, caller))]
    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let trace = trace(&request);
        let result =
            async { search::search(&self.searcher()?, &trace, request.into_inner()).await }.await;
        if let Ok(r) = &result {
            self.metrics.search_seconds.observe(r.search_seconds);
            self.metrics.embed_seconds.observe(r.embed_seconds);
        }
        self.counted("Search", result.map_err(Status::from))
    }

    #[instrument(skip_all, fields(collection = %request.get_ref().collection, trace_id, caller))]
    async fn find_filepaths(
        &self,
        request: Request<FindFilepathsRequest>,
    ) -> Result<Response<FindFilepathsResponse>, Status> {
        trace(&request);
        let result = async { filepaths::find(&self.store()?, request.into_inner()).await }.await;
        self.counted("FindFilepaths", result.map_err(Status::from))
    }

    type SearchStreamStream = ReceiverStream<Result<SearchStreamResponse, Status>>;

    /// Admits the stream and hands it to its task; how it ends is counted
    /// there.
    #[instrument(skip_all, fields(trace_id, caller))]
    async fn search_stream(
        &self,
        request: Request<Streaming<SearchStreamRequest>>,
    ) -> Result<Response<Self::SearchStreamStream>, Status> {
        let trace = trace(&request);
        let started = self
            .searcher()
            .and_then(|s| self.search_streams.start(s, trace, request.into_inner()));
        match started {
            Ok(answers) => Ok(Response::new(answers)),
            Err(e) => self.counted("SearchStream", Err(e.into())),
        }
    }

    #[instrument(skip_all, fields(collection = %request.get_ref().collection, trace_id, caller))]
    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        trace(&request);
        let result = async { delete::delete(&self.store()?, request.into_inner()).await }.await;
        self.counted("Delete", result.map_err(Status::from))
    }
}
