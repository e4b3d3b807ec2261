//! Everything the gateway asks of Milvus, behind one type. No other module
//! touches the SDK, so its rough edges against Milvus 2.3 are handled here:
//! search results are read through ids/scores/output fields (the SDK's
//! `rows()` fails on 2.3.5), reads use Strong consistency so a finished
//! Insert is visible to the next Search, the retry policy is bounded, and
//! the flush (which the SDK would poll forever) has a deadline.
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

use imgsearch_proto::v1::{CollectionInfo, FieldInfo, Hit};
use milvus::v2::prelude::*;
use tracing::{debug, instrument};

use crate::{
    error::GatewayError,
    schema::{self, FILEPATH_FIELD, VECTOR_FIELD},
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
}

/// How long a collection's cached [`CollectionSpec`] is trusted: another
/// gateway may drop and recreate the collection meanwhile.
const SPEC_TTL: Duration = Duration::from_secs(30);

/// What the data path needs to know of a collection.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    pub dimension: u32,
    /// The model fingerprint the collection records; `None` for one created
    /// by other tools, whose vectors are then not checked.
    pub fingerprint: Option<String>,
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
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(GatewayError::InvalidArgument(format!(
            "invalid collection name {name:?}: letters, digits and underscores, starting with a letter or underscore"
        )))
    }
}

impl MilvusStore {
    /// Connects, waiting at most `connect_timeout` for Milvus to answer.
    pub async fn connect(cfg: &MilvusConfig) -> Result<Self> {
        let retry = RetryConfig::new()
            .max_attempts(cfg.max_attempts.max(1))
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(2))
            .max_retry_timeout(cfg.rpc_timeout * 2);
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
        })
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<()> {
        self.list_collections().await.map(|_| ())
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let req = HasCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        Ok(self.client.has_collection(req).await?.exists())
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
        drop_if_exists: bool,
    ) -> Result<()> {
        self.forget(name);
        if self.exists(name).await? {
            if !drop_if_exists {
                return Err(GatewayError::CollectionExists(name.to_string()));
            }
            self.drop_collection(name).await?;
        }
        self.client
            .create_collection(schema::create_request(name, dimension, fingerprint)?)
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
    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        self.forget(name);
        self.require(name).await?;
        let req = DropCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        Ok(self.client.drop_collection(req).await?)
    }

    pub async fn list_collections(&self) -> Result<Vec<String>> {
        let resp = self
            .client
            .list_collections(ListCollectionsRequest::builder().build()?)
            .await?;
        let mut names = resp.collection_names().to_vec();
        names.sort();
        Ok(names)
    }

    async fn load_state(&self, name: &str) -> Result<LoadState> {
        let req = GetLoadStateRequest::builder()
            .collection_name(name)
            .build()?;
        Ok(self.client.get_load_state(req).await?.state())
    }

    /// A collection's schema, NOT_FOUND if it does not exist.
    async fn schema(&self, name: &str) -> Result<CollectionSchema> {
        self.require(name).await?;
        let req = DescribeCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        let described = self.client.describe_collection(req).await?;
        Ok(described.description().get_schema().clone())
    }

    /// Schema, index, row count and load state.
    #[instrument(skip(self))]
    pub async fn describe(&self, name: &str) -> Result<CollectionInfo> {
        let schema = self.schema(name).await?;
        let fingerprint = schema::fingerprint_of(schema.get_description())
            .unwrap_or_default()
            .to_string();
        let fields = schema
            .get_fields()
            .iter()
            .map(|f| FieldInfo {
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
        let (index_type, metric_type) = match self.client.describe_index(index).await {
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
        let stats = GetCollectionStatsRequest::builder()
            .collection_name(name)
            .build()?;
        let row_count = self
            .client
            .get_collection_stats(stats)
            .await?
            .statistics()
            .get("row_count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(CollectionInfo {
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
        let spec = CollectionSpec {
            name: name.to_string(),
            dimension,
            fingerprint: schema::fingerprint_of(schema.get_description()).map(str::to_string),
        };
        self.specs
            .lock()
            .expect("specs lock")
            .insert(name.to_string(), (Instant::now(), spec.clone()));
        Ok(spec)
    }

    /// Inserts rows; returns their generated ids in row order.
    #[instrument(skip_all, fields(collection = name, rows = filepaths.len()))]
    pub async fn insert(
        &self,
        name: &str,
        filepaths: Vec<String>,
        vectors: Vec<Vec<f32>>,
    ) -> Result<Vec<i64>> {
        let req = InsertRequest::builder()
            .collection_name(name)
            .columns(vec![
                FieldData::varchar(FILEPATH_FIELD, filepaths),
                FieldData::float_vector(VECTOR_FIELD, vectors),
            ])
            .build()?;
        let resp = self.client.insert(req).await.map_err(|e| {
            let gone = e.to_string().contains("collection not found");
            if gone {
                self.forget(name);
                GatewayError::CollectionNotFound(name.to_string())
            } else {
                GatewayError::from(e)
            }
        })?;
        match resp.ids() {
            Ids::Int64(ids) => Ok(ids.clone()),
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

    /// Which of `filepaths` at least one row of the collection holds.
    #[instrument(skip_all, fields(collection = name, filepaths = filepaths.len()))]
    pub async fn stored_filepaths(
        &self,
        name: &str,
        filepaths: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        if filepaths.is_empty() {
            return Ok(Default::default());
        }
        let list: Vec<String> = filepaths.iter().map(|p| string_literal(p)).collect();
        let req = QueryRequest::builder()
            .collection_name(name)
            .filter(format!("{FILEPATH_FIELD} in [{}]", list.join(", ")))
            .output_fields([FILEPATH_FIELD])
            .consistency_level(ConsistencyLevel::Strong)
            .build()?;
        let resp = self.client.query(req).await?;
        Ok(resp
            .results()
            .get_output_fields()
            .iter()
            .filter_map(|f| match f {
                FieldData::VarChar { name, values } if name == FILEPATH_FIELD => Some(values),
                _ => None,
            })
            .flatten()
            .cloned()
            .collect())
    }

    /// The `top_k` nearest rows to each vector: (id, filepath, L2 distance).
    #[instrument(skip_all, fields(collection = name, queries = vectors.len(), top_k))]
    pub async fn search(
        &self,
        name: &str,
        vectors: Vec<Vec<f32>>,
        top_k: u32,
    ) -> Result<Vec<Vec<Hit>>> {
        let req = SearchRequest::builder()
            .collection_name(name)
            .vector_field(VECTOR_FIELD)
            .vectors(SearchVectors::Float(vectors))
            .output_fields([FILEPATH_FIELD])
            .limit(i64::from(top_k))
            .consistency_level(ConsistencyLevel::Strong)
            .build()?;
        let resp = self.client.search(req).await?;
        resp.results()
            .iter()
            .map(|r| {
                let Ids::Int64(ids) = r.get_ids() else {
                    return Err(GatewayError::Milvus("unexpected VARCHAR ids".into()));
                };
                let paths = r
                    .get_output_fields()
                    .iter()
                    .find_map(|f| match f {
                        FieldData::VarChar { name, values } if name == FILEPATH_FIELD => {
                            Some(values.clone())
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                Ok(ids
                    .iter()
                    .zip(r.get_scores())
                    .enumerate()
                    .map(|(i, (&id, &distance))| Hit {
                        id,
                        filepath: paths.get(i).cloned().unwrap_or_default(),
                        distance,
                    })
                    .collect())
            })
            .collect()
    }
}

/// A Milvus expression string literal: double-quoted, with quotes and
/// backslashes escaped, so a filepath can never change the expression, and
/// line breaks written as `\n` and `\r`: Milvus's grammar admits any other
/// character raw inside a literal, but not those two.
fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn index_type_name(t: IndexType) -> String {
    match t {
        IndexType::AutoIndex => "AUTOINDEX".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::string_literal;

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(string_literal("a/b.jpg"), r#""a/b.jpg""#);
        assert_eq!(
            string_literal(r#"x" or id > 0 or "#),
            r#""x\" or id > 0 or ""#
        );
        assert_eq!(string_literal(r"c:\dir\"), r#""c:\\dir\\""#);
        assert_eq!(string_literal("a\nb\rc\td\0"), "\"a\\nb\\rc\td\0\"");
    }
}
