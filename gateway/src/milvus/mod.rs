//! Everything the gateway asks of Milvus, behind one type. No other module
//! touches the SDK, so its rough edges against Milvus 2.3 are handled here:
//! reads go through [`reads`] with a guarantee timestamp of the gateway's
//! choosing ([`freshness`]), every write's timestamp is recorded so a later
//! read sees it, the retry policy is bounded, every call ends within a
//! deadline of the gateway's own and waits out throttling ([`throttle`];
//! inserts excepted, whose batches wait for themselves), and the flush
//! (which the SDK would poll forever) has a deadline.
//!
//! What Insert and Search need to know of a collection (its dimension and
//! the model fingerprint it records) is cached for [`SPEC_TTL`], so they
//! spend no Milvus call on it; creating or dropping a collection through
//! this gateway clears its entry at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use milvus::v2::prelude::*;
use prometheus::IntCounter;
use tracing::{debug, instrument, warn};

pub mod expr;
pub mod freshness;
pub mod reads;
pub mod refusal;
pub mod throttle;

use self::{
    expr::{check_name, filepaths_in, ids_in},
    freshness::{Freshness, WriteClock},
    reads::{Columns, RawHit, Reads, SearchShape},
    throttle::Patience,
};
use crate::{
    error::GatewayError,
    schema::{
        self, Profile, ATTRIBUTES_FIELD, CONTENT_FIELD, FILEPATH_FIELD, TENANT_FIELD, VECTOR_FIELD,
    },
};

type Result<T> = std::result::Result<T, GatewayError>;

/// How to reach Milvus. Secrets are redacted from `Debug`.
#[derive(Clone)]
pub struct MilvusConfig {
    /// `http://host:19530`, or `https://...` for TLS (Zilliz Cloud).
    pub uri: String,
    /// `user:password` or an API key.
    pub token: Option<String>,
    pub database: Option<String>,
    /// PEM CA certificate for private TLS endpoints.
    pub ca_certificate: Option<String>,
    pub connect_timeout: Duration,
    pub rpc_timeout: Duration,
    /// Attempts per call for transient failures, including the first.
    pub max_attempts: u32,
    /// How long CreateCollection waits for the collection to load.
    pub load_timeout: Duration,
    /// How long a flush may take before the stream reports it unfinished.
    pub flush_timeout: Duration,
    /// How long a call may wait out a Milvus that throttles it.
    pub throttle_wait: Duration,
}

/// A collection as Milvus describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    pub name: String,
    /// In schema order.
    pub fields: Vec<Field>,
    /// Of the vector field; empty if none.
    pub index_type: String,
    pub metric_type: String,
    pub row_count: u64,
    /// Milvus's name for it: "Loaded", "Loading", "NotLoad" or "NotExist".
    pub load_state: String,
    /// Empty for a collection created elsewhere.
    pub fingerprint: String,
    pub profile: Profile,
}

/// One field of a collection's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    /// Milvus's name for it: "Int64", "VarChar", "FloatVector", ...
    pub data_type: String,
    pub primary_key: bool,
    pub auto_id: bool,
    /// Vector fields only; 0 otherwise.
    pub dimension: u32,
    /// VarChar fields only; 0 otherwise.
    pub max_length: u32,
}

/// How long a collection's cached [`CollectionSpec`] is trusted: another
/// gateway may drop and recreate the collection meanwhile.
const SPEC_TTL: Duration = Duration::from_secs(30);

/// A stored row, as a caller names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowRef {
    Id(i64),
    Filepath(String),
}

impl std::fmt::Display for RowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowRef::Id(id) => write!(f, "id {id}"),
            RowRef::Filepath(p) => write!(f, "filepath {p:?}"),
        }
    }
}

/// What the data path needs to know of a collection.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    pub dimension: u32,
    /// The model fingerprint the collection records; `None` for one created
    /// by other tools, whose vectors are then not checked.
    pub fingerprint: Option<String>,
    pub profile: Profile,
}

impl CollectionSpec {
    /// `filter` as an expression over this collection; attribute tests on
    /// a tutorial collection fail FAILED_PRECONDITION.
    /// `filter` as an expression over this collection, confined to
    /// `tenant`'s rows; attribute tests or a tenant on a tutorial collection
    /// fail FAILED_PRECONDITION.
    pub fn expression(
        &self,
        filter: &crate::filter::Filter,
        tenant: Option<&str>,
    ) -> Result<Option<String>> {
        if filter.tests_attributes() {
            self.require_extended("a filter on attributes")?;
        }
        Ok(expr::both(
            expr::filter_expression(filter),
            self.scope(tenant)?,
        ))
    }

    /// The rows `tenant` may see, as an expression (`None`: every row).
    pub fn scope(&self, tenant: Option<&str>) -> Result<Option<String>> {
        match tenant {
            None => Ok(None),
            Some(t) => {
                self.require_extended("a key confined to a tenant")?;
                Ok(Some(expr::tenant_is(t)))
            }
        }
    }

    /// Fails FAILED_PRECONDITION unless the collection is extended:
    /// `what` needs its fields.
    pub fn require_extended(&self, what: &str) -> Result<()> {
        match self.profile {
            Profile::Extended => Ok(()),
            Profile::Tutorial => Err(GatewayError::NeedsExtended {
                collection: self.name.clone(),
                what: what.to_string(),
            }),
        }
    }
}

/// The rows of one insert, column by column.
pub struct NewRows {
    pub filepaths: Vec<String>,
    pub vectors: Vec<Vec<f32>>,
    /// Into an extended collection: the fields it adds, row for row.
    pub extended: Option<ExtendedColumns>,
}

/// What an extended collection stores beside filepath and vector.
#[derive(Default)]
pub struct ExtendedColumns {
    pub attributes: Vec<serde_json::Value>,
    pub contents: Vec<String>,
    pub tenants: Vec<String>,
}

impl std::fmt::Debug for MilvusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusConfig")
            .field("uri", &self.uri)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("database", &self.database)
            .field("ca_certificate", &self.ca_certificate)
            .field("connect_timeout", &self.connect_timeout)
            .field("rpc_timeout", &self.rpc_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("load_timeout", &self.load_timeout)
            .field("flush_timeout", &self.flush_timeout)
            .field("throttle_wait", &self.throttle_wait)
            .finish()
    }
}

/// A connected Milvus; cheap to clone. The underlying channel reconnects by
/// itself after Milvus restarts.
#[derive(Clone)]
pub struct MilvusStore {
    client: ClientV2,
    load_timeout: Duration,
    flush_timeout: Duration,
    specs: Arc<Mutex<HashMap<String, (Instant, CollectionSpec)>>>,
    reads: Reads,
    clock: WriteClock,
    patience: Patience,
}

impl MilvusStore {
    /// Connects, waiting at most `connect_timeout` for Milvus to answer.
    pub async fn connect(cfg: &MilvusConfig) -> Result<Self> {
        let give_up = cfg.connect_timeout + Duration::from_secs(1);
        tokio::time::timeout(give_up, Self::connect_now(cfg))
            .await
            .unwrap_or_else(|_| {
                Err(GatewayError::MilvusUnavailable(format!(
                    "no answer within {} s (--milvus-connect-timeout-secs)",
                    cfg.connect_timeout.as_secs()
                )))
            })
    }

    /// Counts the calls Milvus turns away as throttled in `throttled`.
    pub fn counting_throttles(mut self, throttled: IntCounter) -> Self {
        self.patience.throttled = throttled;
        self
    }

    async fn connect_now(cfg: &MilvusConfig) -> Result<Self> {
        let deadline = cfg.rpc_timeout * 2;
        // Throttling comes back at once, typed: the SDK's own waits would
        // end in an untyped timeout, and an insert's wait belongs to its
        // batch (`ingest::rows`), a read's to its caller.
        let retry = RetryConfig::new()
            .retry_on_rate_limit(false)
            .max_attempts(cfg.max_attempts.max(1))
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(2))
            .max_retry_timeout(deadline);
        let mut connect = ConnectConfig::new()
            .uri(cfg.uri.clone())
            .connect_timeout(cfg.connect_timeout)
            .rpc_timeout(cfg.rpc_timeout)
            .retry(retry);
        if let Some(token) = &cfg.token {
            connect = connect.token(token.clone());
        }
        if let Some(db) = &cfg.database {
            connect = connect.database(db.clone());
        }
        if let Some(ca) = &cfg.ca_certificate {
            connect = connect.ca_certificate(ca.clone());
        }
        let client = ClientV2::new(&connect).await?;
        Ok(Self {
            client,
            load_timeout: cfg.load_timeout,
            flush_timeout: cfg.flush_timeout,
            specs: Arc::default(),
            reads: Reads::connect(cfg).await?,
            clock: WriteClock::default(),
            patience: Patience {
                deadline,
                throttle_wait: cfg.throttle_wait,
                throttled: IntCounter::new("milvus_throttled", "uncounted").expect("a valid name"),
            },
        })
    }

    /// How long calls wait out throttling, and where it is counted; an
    /// insert's batch uses it for its own waiting (`ingest::rows`).
    pub fn patience(&self) -> &Patience {
        &self.patience
    }

    /// A cheap round trip, for health checks. A Milvus that throttles is
    /// busy, not down: it answered.
    pub async fn ping(&self) -> Result<()> {
        let req = ListCollectionsRequest::builder().build()?;
        let answer = async { Ok(self.client.list_collections(req).await?) };
        match self.patience.bounded("health check", answer).await {
            Ok(_) | Err(GatewayError::MilvusThrottled(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let req = HasCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        let found = self.patience.waiting("collection lookup", || async {
            Ok(self.client.has_collection(req.clone()).await?.exists())
        });
        found.await
    }

    async fn require(&self, name: &str) -> Result<()> {
        if self.exists(name).await? {
            Ok(())
        } else {
            Err(GatewayError::CollectionNotFound(name.to_string()))
        }
    }

    /// Creates the tutorial's collection (dropping an existing one first when
    /// asked), builds its AUTOINDEX/L2 index, loads it, and returns once loaded.
    #[instrument(skip(self))]
    pub async fn create_collection(
        &self,
        name: &str,
        dimension: u32,
        fingerprint: &str,
        profile: Profile,
        drop_if_exists: bool,
    ) -> Result<()> {
        self.forget(name);
        if self.exists(name).await? {
            if !drop_if_exists {
                return Err(GatewayError::CollectionExists(name.to_string()));
            }
            self.drop_collection(name).await?;
        }
        let create = schema::create_request(name, dimension, fingerprint, profile)?;
        self.patience
            .waiting("collection create", || async {
                Ok(self.client.create_collection(create.clone()).await?)
            })
            .await?;
        let deadline = tokio::time::Instant::now() + self.load_timeout;
        loop {
            if self.load_state(name).await? == LoadState::Loaded {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(GatewayError::Milvus(format!(
                    "collection {name} not loaded after {:?}",
                    self.load_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[instrument(skip(self))]
    /// Logged as a warning: the call's span names the caller's key, so the
    /// log says who dropped what (by DropCollection, or CreateCollection
    /// over an existing collection).
    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        self.forget(name);
        self.require(name).await?;
        warn!(
            collection = name,
            "dropping the collection and all its rows"
        );
        let req = DropCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        self.patience
            .waiting("collection drop", || async {
                Ok(self.client.drop_collection(req.clone()).await?)
            })
            .await
    }

    pub async fn list_collections(&self) -> Result<Vec<String>> {
        let req = ListCollectionsRequest::builder().build()?;
        let resp = self
            .patience
            .waiting("collection list", || async {
                Ok(self.client.list_collections(req.clone()).await?)
            })
            .await?;
        let mut names = resp.collection_names().to_vec();
        names.sort();
        Ok(names)
    }

    async fn load_state(&self, name: &str) -> Result<LoadState> {
        let req = GetLoadStateRequest::builder()
            .collection_name(name)
            .build()?;
        self.patience
            .waiting("load state", || async {
                Ok(self.client.get_load_state(req.clone()).await?.state())
            })
            .await
    }

    /// A collection's schema, NOT_FOUND if it does not exist.
    async fn schema(&self, name: &str) -> Result<CollectionSchema> {
        self.require(name).await?;
        let req = DescribeCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        let described = self
            .patience
            .waiting("collection description", || async {
                Ok(self.client.describe_collection(req.clone()).await?)
            })
            .await?;
        Ok(described.description().get_schema().clone())
    }

    /// Schema, index, row count (of `tenant`'s rows, for a tenant) and
    /// load state.
    #[instrument(skip(self))]
    pub async fn describe(&self, name: &str, tenant: Option<&str>) -> Result<Described> {
        let schema = self.schema(name).await?;
        let fingerprint = schema::fingerprint_of(schema.get_description())
            .unwrap_or_default()
            .to_string();
        let fields: Vec<Field> = schema
            .get_fields()
            .iter()
            .map(|f| Field {
                name: f.get_name().to_string(),
                data_type: format!("{:?}", f.get_data_type()),
                primary_key: f.is_primary_key(),
                auto_id: f.is_auto_id(),
                dimension: if f.get_data_type() == DataType::FloatVector {
                    f.get_dimension()
                } else {
                    0
                },
                max_length: if f.get_data_type() == DataType::VarChar {
                    f.get_max_length()
                } else {
                    0
                },
            })
            .collect();
        let index = DescribeIndexRequest::builder()
            .collection_name(name)
            .field_name(VECTOR_FIELD)
            .build()?;
        let index = self.patience.waiting("index description", || async {
            Ok(self.client.describe_index(index.clone()).await?)
        });
        let (index_type, metric_type) = match index.await {
            Ok(r) => r
                .indexes()
                .first()
                .map(|i| {
                    (
                        index_type_name(i.get_index_type()),
                        format!("{:?}", i.get_metric_type()).to_uppercase(),
                    )
                })
                .unwrap_or_default(),
            Err(e) => {
                debug!(error = %e, "no index");
                Default::default()
            }
        };
        let names: Vec<&str> = fields.iter().map(|f: &Field| f.name.as_str()).collect();
        let profile = Profile::of(&names);
        let scope = match (tenant, profile) {
            (Some(t), Profile::Extended) => Some(expr::tenant_is(t)),
            (None, _) => None,
            (Some(_), Profile::Tutorial) => {
                return Err(GatewayError::NeedsExtended {
                    collection: name.to_string(),
                    what: "a key confined to a tenant".into(),
                })
            }
        };
        let row_count = self.count(name, scope, Freshness::STRONG).await?;
        Ok(Described {
            profile,
            name: name.to_string(),
            fields,
            index_type,
            metric_type,
            row_count,
            load_state: format!("{:?}", self.load_state(name).await?),
            fingerprint,
        })
    }

    fn forget(&self, name: &str) {
        self.specs.lock().expect("specs lock").remove(name);
        self.clock.forget(name);
    }

    /// Dimension and fingerprint of a collection, checking it is one of
    /// ours; cached (see the module docs).
    pub async fn collection_spec(&self, name: &str) -> Result<CollectionSpec> {
        if let Some((at, spec)) = self.specs.lock().expect("specs lock").get(name) {
            if at.elapsed() < SPEC_TTL {
                return Ok(spec.clone());
            }
        }
        let schema = self.schema(name).await?;
        let dimension = schema
            .get_fields()
            .iter()
            .find(|f| f.get_name() == VECTOR_FIELD && f.get_data_type() == DataType::FloatVector)
            .map(|f| f.get_dimension())
            .ok_or_else(|| {
                GatewayError::InvalidArgument(format!(
                    "collection {name} has no {VECTOR_FIELD} vector field"
                ))
            })?;
        let names: Vec<&str> = schema.get_fields().iter().map(|f| f.get_name()).collect();
        let spec = CollectionSpec {
            profile: Profile::of(&names),
            name: name.to_string(),
            dimension,
            fingerprint: schema::fingerprint_of(schema.get_description()).map(str::to_string),
        };
        let mut specs = self.specs.lock().expect("specs lock");
        // Expired entries go when another is added, so collections dropped
        // by other gateways leave nothing behind here for long.
        specs.retain(|_, (at, _)| at.elapsed() < SPEC_TTL);
        specs.insert(name.to_string(), (Instant::now(), spec.clone()));
        Ok(spec)
    }

    /// Inserts rows; returns their generated ids in row order and the
    /// insert's timestamp (its write token).
    #[instrument(skip_all, fields(collection = name, rows = rows.filepaths.len()))]
    pub async fn insert(&self, name: &str, rows: NewRows) -> Result<(Vec<i64>, u64)> {
        let mut columns = vec![FieldData::varchar(FILEPATH_FIELD, rows.filepaths)];
        if let Some(x) = rows.extended {
            columns.extend([
                FieldData::json(ATTRIBUTES_FIELD, x.attributes),
                FieldData::varchar(CONTENT_FIELD, x.contents),
                FieldData::varchar(TENANT_FIELD, x.tenants),
            ]);
        }
        columns.push(FieldData::float_vector(VECTOR_FIELD, rows.vectors));
        let req = InsertRequest::builder()
            .collection_name(name)
            .columns(columns)
            .build()?;
        let insert = async { Ok(self.client.insert(req).await?) };
        let resp = self.patience.bounded("insert", insert).await.map_err(|e| {
            let gone = matches!(&e, GatewayError::Milvus(m) | GatewayError::MilvusRefused(m)
                if m.contains("collection not found"));
            if gone {
                self.forget(name);
                GatewayError::CollectionNotFound(name.to_string())
            } else {
                e
            }
        })?;
        self.clock.record(name, resp.timestamp());
        match resp.ids() {
            Ids::Int64(ids) => Ok((ids.clone(), resp.timestamp())),
            _ => Err(GatewayError::Milvus(
                "collection has non-INT64 primary keys".into(),
            )),
        }
    }

    /// Seals and persists what was inserted (the tutorial's `flush()`),
    /// within the flush timeout.
    #[instrument(skip(self))]
    pub async fn flush(&self, name: &str) -> Result<()> {
        let req = FlushRequest::builder()
            .collection_names([name])
            .wait_flushed_ms(i64::try_from(self.flush_timeout.as_millis()).unwrap_or(i64::MAX))
            .build()?;
        match tokio::time::timeout(self.flush_timeout, self.client.flush(req)).await {
            Ok(done) => done.map(|_| ()).map_err(GatewayError::from),
            Err(_) => Err(GatewayError::MilvusUnavailable(format!(
                "the flush did not finish within {} s (--milvus-flush-timeout-secs)",
                self.flush_timeout.as_secs()
            ))),
        }
    }

    /// Which of `filepaths` at least one row of the collection in `scope`
    /// (see [`CollectionSpec::scope`]) holds.
    #[instrument(skip_all, fields(collection = name, filepaths = filepaths.len()))]
    pub async fn stored_filepaths(
        &self,
        name: &str,
        filepaths: &[String],
        scope: Option<String>,
    ) -> Result<std::collections::HashSet<String>> {
        if filepaths.is_empty() {
            return Ok(Default::default());
        }
        let matching = expr::within(filepaths_in(filepaths), scope);
        let strong = self.clock.read_at(name, Freshness::STRONG);
        let lookup = || {
            self.reads
                .query(name, matching.clone(), &[FILEPATH_FIELD], None, strong)
        };
        let found = self.patience.waiting("filepath lookup", lookup).await?;
        Ok(found.filepaths.into_iter().collect())
    }

    /// Which of the content hashes `contents` a row in `scope` holds, each
    /// with the lowest such row's id (Strong: an item must not be stored
    /// again because its twin's row was not yet visible).
    #[instrument(skip_all, fields(collection = name, contents = contents.len()))]
    pub async fn stored_contents(
        &self,
        name: &str,
        contents: &[String],
        scope: Option<String>,
    ) -> Result<HashMap<String, i64>> {
        if contents.is_empty() {
            return Ok(HashMap::new());
        }
        let list: Vec<String> = contents.iter().map(|c| expr::string_literal(c)).collect();
        let matching = format!("{CONTENT_FIELD} in [{}]", list.join(", "));
        let matching = expr::within(matching, scope);
        let strong = self.clock.read_at(name, Freshness::STRONG);
        let fields = [schema::ID_FIELD, CONTENT_FIELD];
        let lookup = || {
            self.reads
                .query(name, matching.clone(), &fields, None, strong)
        };
        let found = self.patience.waiting("content lookup", lookup).await?;
        let mut holders: HashMap<String, i64> = HashMap::new();
        for (id, content) in found.ids.into_iter().zip(found.contents) {
            let holder = holders.entry(content).or_insert(id);
            *holder = (*holder).min(id);
        }
        Ok(holders)
    }

    /// The nearest rows to each vector, as fresh as `freshness` asks.
    #[instrument(skip_all, fields(collection = name, queries = vectors.len(), top_k = shape.top_k))]
    pub async fn search(
        &self,
        name: &str,
        vectors: &[Vec<f32>],
        shape: &SearchShape,
        freshness: Freshness,
    ) -> Result<Vec<Vec<RawHit>>> {
        let at = self.clock.read_at(name, freshness);
        self.patience
            .waiting("search", || self.reads.search(name, vectors, shape, at))
            .await
    }

    /// The stored vector of a row in `scope`, by id or (the lowest id
    /// holding it) by filepath; `None` if no row there matches.
    #[instrument(skip(self, freshness, scope))]
    pub async fn stored_vector(
        &self,
        name: &str,
        row: &RowRef,
        freshness: Freshness,
        scope: Option<String>,
    ) -> Result<Option<(i64, Vec<f32>)>> {
        let at = self.clock.read_at(name, freshness);
        let id = match row {
            RowRef::Id(id) => *id,
            // Rows sharing a filepath are few; read their ids, then one vector.
            RowRef::Filepath(p) => {
                let expr = filepaths_in(std::slice::from_ref(p));
                let expr = expr::within(expr, scope.clone());
                let lookup = || self.reads.query(name, expr.clone(), &["id"], None, at);
                let Columns { ids, .. } = self.patience.waiting("row lookup", lookup).await?;
                match ids.iter().min() {
                    Some(&id) => id,
                    None => return Ok(None),
                }
            }
        };
        let fields = ["id", VECTOR_FIELD];
        let expr = expr::within(ids_in(&[id]), scope);
        let read = || self.reads.query(name, expr.clone(), &fields, None, at);
        let c = self.patience.waiting("row lookup", read).await?;
        Ok(c.vectors.into_iter().next().map(|v| (id, v)))
    }

    /// Rows the collection holds, deletes subtracted, that `filter` selects
    /// (all, without one), as a `count(*)` at `freshness` sees them
    /// (Milvus's statistics count neither deletes nor unflushed rows).
    pub async fn count(
        &self,
        name: &str,
        filter: Option<String>,
        freshness: Freshness,
    ) -> Result<u64> {
        let at = self.clock.read_at(name, freshness);
        let expr = filter.unwrap_or_default();
        let count = || {
            self.reads
                .query(name, expr.clone(), &["count(*)"], None, at)
        };
        let c = self.patience.waiting("count", count).await?;
        Ok(c.count.unwrap_or(0).max(0) as u64)
    }

    /// The first `limit` rows with an id above `after` (any, for none) that `filter`
    /// selects, lowest id first, with their filepaths and vectors. Milvus
    /// 2.3.5 answers a query with a limit with the lowest primary keys,
    /// sorted, across growing and sealed segments (checked here with
    /// pymilvus: 18,000 rows in six inserts, three flushed, read back 500 at
    /// a time by `id > last`, came back complete and in order); the page is
    /// sorted again here all the same.
    pub async fn rows_after(
        &self,
        name: &str,
        after: Option<i64>,
        limit: u32,
        filter: Option<String>,
        freshness: Freshness,
    ) -> Result<Columns> {
        let at = self.clock.read_at(name, freshness);
        let expr = after.map(|after| format!("{} > {after}", schema::ID_FIELD));
        let expr = expr::both(expr, filter).unwrap_or_default();
        let fields = [schema::ID_FIELD, FILEPATH_FIELD, VECTOR_FIELD];
        let page = || {
            self.reads
                .query(name, expr.clone(), &fields, Some(limit), at)
        };
        let c = self.patience.waiting("query", page).await?;
        let mut rows: Vec<_> = c.ids.into_iter().zip(c.filepaths).zip(c.vectors).collect();
        rows.sort_unstable_by_key(|((id, _), _)| *id);
        let (pairs, vectors): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
        let (ids, filepaths) = pairs.into_iter().unzip();
        Ok(Columns {
            ids,
            filepaths,
            vectors,
            ..Default::default()
        })
    }

    /// Deletes the rows with these ids or filepaths that `filter` selects,
    /// or (no ids, no filepaths) every row it selects. More than `most`
    /// rows found is INVALID_ARGUMENT, and nothing is deleted.
    /// Returns how many existed (found by a Strong read first, since Milvus
    /// counts the keys it was given, not the rows it removed) and the
    /// delete's timestamp.
    #[instrument(skip_all, fields(collection = name, ids = ids.len(), filepaths = filepaths.len()))]
    pub async fn delete(
        &self,
        name: &str,
        (ids, filepaths): (&[i64], &[String]),
        filter: Option<String>,
        most: Option<u64>,
    ) -> Result<(u64, u64)> {
        let mut matching = Vec::new();
        if !ids.is_empty() {
            matching.push(ids_in(ids));
        }
        if !filepaths.is_empty() {
            matching.push(filepaths_in(filepaths));
        }
        let matching = (!matching.is_empty()).then(|| matching.join(" || "));
        let matching = expr::both(matching, filter).unwrap_or_default();
        let strong = self.clock.read_at(name, Freshness::STRONG);
        let limit = most.map(|m| u32::try_from(m + 1).unwrap_or(u32::MAX));
        let lookup = || {
            self.reads
                .query(name, matching.clone(), &["id"], limit, strong)
        };
        let mut found = self.patience.waiting("delete", lookup).await?.ids;
        if let Some(most) = most.filter(|&m| found.len() as u64 > m) {
            return Err(GatewayError::InvalidArgument(format!(
                "the filter selects more than {most} rows (MAX_DELETE_BY_FILTER); \
                 nothing was deleted: narrow it, or delete in parts"
            )));
        }
        found.sort_unstable();
        found.dedup();
        if found.is_empty() {
            return Ok((0, 0));
        }
        let req = DeleteRequest::builder()
            .collection_name(name)
            .filter(ids_in(&found))
            .build()?;
        let resp = self
            .patience
            .waiting("delete", || async {
                Ok(self.client.delete(req.clone()).await?)
            })
            .await?;
        // Milvus 2.3 answers a delete without its timestamp; one taken from
        // its clock after the answer is as good a write token.
        let timestamp = match resp.timestamp() {
            0 => {
                self.patience
                    .bounded("clock read", self.reads.now(name))
                    .await?
            }
            t => t,
        };
        self.clock.record(name, timestamp);
        Ok((found.len() as u64, timestamp))
    }
}

fn index_type_name(t: IndexType) -> String {
    match t {
        IndexType::AutoIndex => "AUTOINDEX".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}
