//! The whole system as an end-to-end test meets it: the shared Milvus, a
//! real embedder, a real gateway and a client, started in one line; and
//! collections to create, fill, search and count (in Milvus directly, not
//! through the gateway).
//!
//! ```ignore
//! let mut stack = Stack::start().await;
//! let mut c = stack.collection("finds_itself").await;
//! c.insert_files(&files).await.assert_every_item_settled_once();
//! assert_eq!(c.count().await, files.len());
//! ```

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use imgsearch_proto::v1::{
    image_search_client::ImageSearchClient, CollectionInfo, CreateCollectionRequest, Hit,
    SearchRequest,
};
use tokio::sync::OnceCell;
use tonic::transport::Channel;

use crate::{
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    insert::{self, Answers},
    milvus::Milvus,
};

pub type Client = ImageSearchClient<Channel>;

/// An embedder and a gateway on the shared Milvus, and a client of the
/// gateway. The processes are shared (see [`Stack::shared`]) or the test's
/// own; the client is always the test's own, as a client lives on its
/// test's runtime.
pub struct Stack {
    pub milvus: &'static Milvus,
    pub embedder: Arc<EmbedderProcess>,
    pub gateway: Arc<GatewayProcess>,
    pub client: Client,
}

/// How to start a [`Stack`]: [`Stack::with`].
#[derive(Debug, Default)]
pub struct StackBuilder {
    gateway: GatewayFlags,
    embedder: Vec<&'static str>,
    embedder_env: Vec<(&'static str, &'static str)>,
}

impl StackBuilder {
    /// The gateway's flags.
    pub fn gateway(mut self, flags: GatewayFlags) -> Self {
        self.gateway = flags;
        self
    }

    /// Rows per Milvus insert: small ones make a short stream span several.
    pub fn batch_size(mut self, n: u32) -> Self {
        self.gateway.batch_size = Some(n);
        self
    }

    /// Extra embedder flags.
    pub fn embedder(mut self, flags: &[&'static str]) -> Self {
        self.embedder.extend(flags);
        self
    }

    /// The embedder at its quicker precision (bf16 where the CPU has it,
    /// see [`crate::embedder::quick_precision`]), for tests that embed
    /// thousands of images and check no vector.
    pub fn quick(self) -> Self {
        self.embedder(&["--precision", crate::embedder::quick_precision()])
    }

    /// An embedder test hook (`IMGSEARCH_EMBEDDER_FAULT`).
    pub fn embedder_fault(mut self, hook: &'static str) -> Self {
        self.embedder_env.push(("IMGSEARCH_EMBEDDER_FAULT", hook));
        self
    }

    pub async fn start(self) -> Stack {
        let milvus = Milvus::shared();
        let embedder = EmbedderProcess::start_with_env(&self.embedder, &self.embedder_env).await;
        let gateway = GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &self.gateway).await;
        Stack::of(Arc::new(embedder), Arc::new(gateway)).await
    }
}

impl Stack {
    /// Everything with its defaults, the test's own.
    pub async fn start() -> Stack {
        Stack::with().start().await
    }

    /// Everything with its defaults, shared by the tests of this binary
    /// that ask for it (started by the first): for tests that count no
    /// metric and read no log, which others' calls would change.
    pub async fn shared() -> Stack {
        static SHARED: OnceCell<(Arc<EmbedderProcess>, Arc<GatewayProcess>)> =
            OnceCell::const_new();
        let (embedder, gateway) = SHARED
            .get_or_init(|| async {
                let stack = Stack::start().await;
                (stack.embedder, stack.gateway)
            })
            .await;
        Stack::of(embedder.clone(), gateway.clone()).await
    }

    async fn of(embedder: Arc<EmbedderProcess>, gateway: Arc<GatewayProcess>) -> Stack {
        Stack {
            milvus: Milvus::shared(),
            client: gateway.client().await,
            embedder,
            gateway,
        }
    }

    /// Everything, with settings to choose.
    pub fn with() -> StackBuilder {
        StackBuilder::default()
    }

    /// A second gateway on the same Milvus and embedder.
    pub async fn another_gateway(&self) -> GatewayProcess {
        self.another_gateway_with(&GatewayFlags::default()).await
    }

    /// A second gateway on the same Milvus and embedder, with `flags`.
    pub async fn another_gateway_with(&self, flags: &GatewayFlags) -> GatewayProcess {
        GatewayProcess::start(&self.milvus.uri(), &[self.embedder.uri()], flags).await
    }

    /// The embedder, to stop or kill; only a test's own stack has one to
    /// give.
    pub fn embedder_mut(&mut self) -> &mut EmbedderProcess {
        Arc::get_mut(&mut self.embedder).expect("the test's own stack (Stack::start)")
    }

    /// Creates `name` afresh (dropping one left by an earlier run).
    pub async fn collection(&self, name: &str) -> TestCollection {
        self.create(name, false).await
    }

    /// [`Stack::collection`] with the extended schema.
    pub async fn extended_collection(&self, name: &str) -> TestCollection {
        self.create(name, true).await
    }

    async fn create(&self, name: &str, extended: bool) -> TestCollection {
        let info = self
            .client
            .clone()
            .create_collection(CreateCollectionRequest {
                name: name.into(),
                drop_if_exists: Some(true),
                extended,
            })
            .await
            .unwrap_or_else(|s| panic!("create {name}: {s:?}"))
            .into_inner()
            .collection
            .expect("the created collection");
        TestCollection {
            name: name.into(),
            info,
            client: self.client.clone(),
            milvus: self.milvus,
        }
    }
}

/// A collection a test made, with its own client.
#[derive(Clone)]
pub struct TestCollection {
    pub name: String,
    /// As CreateCollection described it.
    pub info: CollectionInfo,
    pub client: Client,
    milvus: &'static Milvus,
}

impl TestCollection {
    /// Inserts `items` (filepath, image bytes) on one stream.
    pub async fn insert(&mut self, items: Vec<(String, Vec<u8>)>) -> Answers {
        insert::insert(&mut self.client, &self.name, items).await
    }

    /// Inserts image files on one stream, each under its path.
    pub async fn insert_files(&mut self, files: &[PathBuf]) -> Answers {
        self.insert(files_as_items(files)).await
    }

    /// The top `top_k` hits for one image file; panics if the call or the
    /// query fails.
    pub async fn search_file(&mut self, file: &Path, top_k: u32) -> Vec<Hit> {
        let image = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let response = self
            .client
            .search(SearchRequest {
                collection: self.name.clone(),
                images: vec![image.into()],
                top_k,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("search {}: {s:?}", self.name))
            .into_inner();
        let result = response.results.into_iter().next().expect("one result");
        assert!(result.error.is_none(), "{:?}", result.error);
        result.hits
    }

    /// Rows in Milvus, counted there.
    pub async fn count(&self) -> usize {
        self.rows().await.len()
    }

    /// (id, filepath) of every row, read from Milvus directly.
    pub async fn rows(&self) -> Vec<(i64, String)> {
        self.milvus.rows(&self.name).await
    }

    /// The Milvus that holds it, for its other direct readings
    /// (attributes, vectors, strings).
    pub fn milvus(&self) -> &'static Milvus {
        self.milvus
    }
}

/// Image files as Insert items named by their paths.
pub fn files_as_items(files: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect()
}
