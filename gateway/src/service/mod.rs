//! `imgsearch.v1.ImageSearch` over gRPC: each handler hands its request to
//! the store, ingest or search module and turns the result into an answer.
//! Tracing, metrics and the call's log line come from the telemetry layer
//! around the service (`imgsearch_common::telemetry`); the trace context it
//! puts on the request travels on to the embedders.

mod conversions;
mod status;

use self::status::{answers, Answers};
use imgsearch_common::telemetry::trace_of;
use imgsearch_proto::v1::{
    image_search_server::ImageSearch, CollectionInfo, CountRequest, CountResponse,
    CreateCollectionRequest, CreateCollectionResponse, DeleteRequest, DeleteResponse,
    DescribeCollectionRequest, DropCollectionRequest, DropCollectionResponse,
    FindDuplicatesRequest, FindDuplicatesResponse, FindFilepathsRequest, FindFilepathsResponse,
    InsertRequest, InsertResponse, ListCollectionsRequest, ListCollectionsResponse, SearchRequest,
    SearchResponse, SearchStreamRequest, SearchStreamResponse,
};

use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    auth::Caller,
    collections, count, delete, duplicates,
    embedders::Embedders,
    error::GatewayError,
    filepaths,
    ingest::Ingest,
    metrics::Metrics,
    milvus::MilvusStore,
    schema::Profile,
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
    /// How long a FindDuplicates caller that reads nothing is waited for.
    scan_patience: Duration,
}

impl ImageSearchService {
    pub fn new(
        store: watch::Receiver<Option<MilvusStore>>,
        embedders: Embedders,
        ingest: Ingest,
        search_streams: SearchStreams,
        metrics: Metrics,
        scan_patience: Duration,
    ) -> Self {
        Self {
            store,
            embedders,
            ingest,
            search_streams,
            metrics,
            scan_patience,
        }
    }

    fn searcher(&self, tenant: Option<String>) -> Result<Searcher, GatewayError> {
        Ok(Searcher {
            store: self.store()?,
            embedders: self.embedders.clone(),
            metrics: self.metrics.clone(),
            tenant,
        })
    }

    fn store(&self) -> Result<MilvusStore, GatewayError> {
        self.store
            .borrow()
            .clone()
            .ok_or_else(|| GatewayError::MilvusUnavailable("not connected to Milvus yet".into()))
    }
}

/// The tenant the caller's key is confined to, if any (the guard put the
/// caller there).
fn tenant_of<T>(request: &Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.tenant.clone())
}

/// A core result as a gRPC answer.
fn reply<T>(result: Result<T, GatewayError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl ImageSearch for ImageSearchService {
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<CreateCollectionResponse>, Status> {
        let req = request.into_inner();
        let drop_if_exists = req.drop_if_exists.unwrap_or(true);
        let profile = if req.extended {
            Profile::Extended
        } else {
            Profile::Tutorial
        };
        let store = self.store()?;
        let created =
            collections::create(&store, &self.embedders, &req.name, profile, drop_if_exists).await;
        reply(created.map(|c| CreateCollectionResponse {
            collection: Some(c.into()),
        }))
    }

    async fn drop_collection(
        &self,
        request: Request<DropCollectionRequest>,
    ) -> Result<Response<DropCollectionResponse>, Status> {
        let name = request.into_inner().name;
        reply(
            self.store()?
                .drop_collection(&name)
                .await
                .map(|()| DropCollectionResponse {}),
        )
    }

    async fn describe_collection(
        &self,
        request: Request<DescribeCollectionRequest>,
    ) -> Result<Response<CollectionInfo>, Status> {
        let tenant = tenant_of(&request);
        let name = request.into_inner().name;
        reply(
            self.store()?
                .describe(&name, tenant.as_deref())
                .await
                .map(CollectionInfo::from),
        )
    }

    async fn list_collections(
        &self,
        _: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        let names = self.store()?.list_collections().await;
        reply(names.map(|names| ListCollectionsResponse { names }))
    }

    type InsertStream = Answers<InsertResponse>;

    async fn insert(
        &self,
        request: Request<Streaming<InsertRequest>>,
    ) -> Result<Response<Self::InsertStream>, Status> {
        let (trace, tenant) = (trace_of(&request), tenant_of(&request));
        let store = self.store()?;
        let requests = status::requests(request.into_inner(), "Insert");
        reply(
            self.ingest
                .start(store, trace, tenant, requests)
                .map(answers),
        )
    }

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let (trace, tenant) = (trace_of(&request), tenant_of(&request));
        let searcher = self.searcher(tenant)?;
        reply(search::search(&searcher, &trace, request.into_inner()).await)
    }

    async fn find_filepaths(
        &self,
        request: Request<FindFilepathsRequest>,
    ) -> Result<Response<FindFilepathsResponse>, Status> {
        let tenant = tenant_of(&request);
        let store = self.store()?;
        reply(filepaths::find(&store, request.into_inner(), tenant.as_deref()).await)
    }

    type SearchStreamStream = Answers<SearchStreamResponse>;

    async fn search_stream(
        &self,
        request: Request<Streaming<SearchStreamRequest>>,
    ) -> Result<Response<Self::SearchStreamStream>, Status> {
        let (trace, tenant) = (trace_of(&request), tenant_of(&request));
        let searcher = self.searcher(tenant)?;
        let requests = status::requests(request.into_inner(), "SearchStream");
        reply(
            self.search_streams
                .start(searcher, trace, requests)
                .map(answers),
        )
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let tenant = tenant_of(&request);
        let store = self.store()?;
        reply(delete::delete(&store, request.into_inner(), tenant.as_deref()).await)
    }

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<CountResponse>, Status> {
        let tenant = tenant_of(&request);
        reply(count::count(&self.store()?, request.into_inner(), tenant.as_deref()).await)
    }

    type FindDuplicatesStream = Answers<FindDuplicatesResponse>;

    async fn find_duplicates(
        &self,
        request: Request<FindDuplicatesRequest>,
    ) -> Result<Response<Self::FindDuplicatesStream>, Status> {
        let tenant = tenant_of(&request);
        let store = self.store()?;
        let req = request.into_inner();
        let scan = duplicates::start(store, req, tenant.as_deref(), self.scan_patience).await;
        reply(scan.map(answers))
    }
}
