//! `imgsearch.v1.ImageSearch` over gRPC: thin handlers over the store,
//! ingest and search modules.

use imgsearch_proto::v1::{
    image_search_server::ImageSearch, CollectionInfo, CreateCollectionRequest,
    CreateCollectionResponse, DescribeCollectionRequest, DropCollectionRequest,
    DropCollectionResponse, InsertRequest, InsertSummary, ListCollectionsRequest,
    ListCollectionsResponse, SearchRequest, SearchResponse,
};
use prost::Message;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use crate::{embedders::Embedders, error::GatewayError, ingest, milvus::MilvusStore, search};

/// The gRPC service. Until Milvus is connected, calls are UNAVAILABLE.
#[derive(Clone)]
pub struct ImageSearchService {
    store: watch::Receiver<Option<MilvusStore>>,
    embedders: Embedders,
    batch_size: usize,
}

impl ImageSearchService {
    pub fn new(
        store: watch::Receiver<Option<MilvusStore>>,
        embedders: Embedders,
        batch_size: usize,
    ) -> Self {
        Self {
            store,
            embedders,
            batch_size,
        }
    }

    fn store(&self) -> Result<MilvusStore, GatewayError> {
        self.store
            .borrow()
            .clone()
            .ok_or_else(|| GatewayError::MilvusUnavailable("not connected to Milvus yet".into()))
    }
}

#[tonic::async_trait]
impl ImageSearch for ImageSearchService {
    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<CreateCollectionResponse>, Status> {
        let req = request.into_inner();
        let store = self.store()?;
        // The vector field takes the dimension the embedders produce.
        let dimension = self.embedders.info().await?.dimension;
        store
            .create_collection(&req.name, dimension, req.drop_if_exists.unwrap_or(true))
            .await?;
        let collection = store.describe(&req.name).await?;
        Ok(Response::new(CreateCollectionResponse {
            collection: Some(collection),
        }))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn drop_collection(
        &self,
        request: Request<DropCollectionRequest>,
    ) -> Result<Response<DropCollectionResponse>, Status> {
        self.store()?
            .drop_collection(&request.into_inner().name)
            .await?;
        Ok(Response::new(DropCollectionResponse {}))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn describe_collection(
        &self,
        request: Request<DescribeCollectionRequest>,
    ) -> Result<Response<CollectionInfo>, Status> {
        Ok(Response::new(
            self.store()?.describe(&request.into_inner().name).await?,
        ))
    }

    async fn list_collections(
        &self,
        _: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        Ok(Response::new(ListCollectionsResponse {
            names: self.store()?.list_collections().await?,
        }))
    }

    #[instrument(skip_all)]
    async fn insert(
        &self,
        request: Request<Streaming<InsertRequest>>,
    ) -> Result<Response<InsertSummary>, Status> {
        let store = self.store()?;
        match ingest::insert_stream(
            &store,
            &self.embedders,
            self.batch_size,
            request.into_inner(),
        )
        .await
        {
            Ok(summary) => Ok(Response::new(summary)),
            Err(interrupted) => {
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
        }
    }

    #[instrument(skip_all)]
    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let store = self.store()?;
        Ok(Response::new(
            search::search(&store, &self.embedders, request.into_inner()).await?,
        ))
    }
}
