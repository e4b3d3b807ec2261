//! Searches and queries through Milvus's generated gRPC client rather than
//! the SDK's builder, because a read must carry the guarantee timestamp the
//! gateway chose (see [`super::freshness`]): the SDK derives its own from a
//! process-wide cache and offers no way to pass a caller's write token.
//! Its own connection, with the SDK's credentials, database and TLS rules.

use std::time::Duration;

use milvus::proto::{
    common::{
        ConsistencyLevel, DslType, KeyValuePair, PlaceholderGroup, PlaceholderType,
        PlaceholderValue, Status as MilvusStatus,
    },
    milvus::{
        milvus_service_client::MilvusServiceClient, search_request::SearchInput,
        AllocTimestampRequest, QueryRequest, SearchRequest,
    },
    schema::{
        field_data::Field, i_ds::IdField, scalar_field, vector_field, FieldData, SearchResultData,
    },
};
use prost::Message;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
    Code, Request,
};

use super::MilvusConfig;
use crate::{
    error::GatewayError,
    schema::{ATTRIBUTES_FIELD, CONTENT_FIELD, FILEPATH_FIELD, ID_FIELD, VECTOR_FIELD},
};

type Result<T> = std::result::Result<T, GatewayError>;
type Raw = MilvusServiceClient<InterceptedService<Channel, Credentials>>;

/// Milvus's largest messages; a search of 64 queries × 1024 hits with their
/// filepaths is far below.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Sends the token (base64, as Milvus expects) and the database on every call.
#[derive(Clone)]
struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
    database: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: Request<()>,
    ) -> std::result::Result<Request<()>, tonic::Status> {
        if let Some(a) = &self.authorization {
            request.metadata_mut().insert("authorization", a.clone());
        }
        if let Some(d) = &self.database {
            request.metadata_mut().insert("dbname", d.clone());
        }
        Ok(request)
    }
}

/// The shape of a search beyond its vectors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchShape {
    pub top_k: u32,
    pub offset: u32,
    /// Only hits with a squared L2 distance below it (a range search).
    pub max_distance: Option<f32>,
    /// A boolean expression the hits must satisfy.
    pub filter: Option<String>,
    /// Read each hit's attributes (an extended collection's JSON field).
    pub with_attributes: bool,
    /// The API's search level (checked); none leaves Milvus its own default.
    pub search_level: Option<u32>,
}

/// HNSW's `ef` for a search level: the candidates kept while walking the
/// graph, doubling per level from 16, and never fewer than the hits asked
/// for (Milvus searches `offset + top_k` of them).
pub fn hnsw_ef(level: u32, window: u32) -> u32 {
    (16u32 << level.saturating_sub(1).min(16)).max(window)
}

/// One hit: primary key, filepath, squared L2 distance, and the stored
/// attributes' JSON when asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct RawHit {
    pub id: i64,
    pub filepath: String,
    pub distance: f32,
    pub attributes: Option<Vec<u8>>,
}

/// Columns of a query's answer.
#[derive(Debug, Default)]
pub struct Columns {
    pub ids: Vec<i64>,
    pub filepaths: Vec<String>,
    pub vectors: Vec<Vec<f32>>,
    /// Each row's attributes, as stored JSON.
    pub attributes: Vec<Vec<u8>>,
    /// Each row's content hash.
    pub contents: Vec<String>,
    pub count: Option<i64>,
}

#[derive(Clone)]
pub struct Reads {
    client: Raw,
    rpc_timeout: Duration,
    attempts: u32,
}

impl Reads {
    /// A lazy connection: the first read connects.
    pub async fn connect(cfg: &MilvusConfig) -> Result<Self> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            GatewayError::InvalidArgument(format!("Milvus {what}: {e}"))
        };
        let tls = cfg.uri.starts_with("https://") || cfg.ca_certificate.is_some();
        let uri = match cfg.uri.strip_prefix("http://") {
            Some(rest) if tls => format!("https://{rest}"),
            _ => cfg.uri.clone(),
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| invalid("URI", &e))?
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if tls {
            let mut config = ClientTlsConfig::new();
            config = match &cfg.ca_certificate {
                Some(path) => {
                    let pem = tokio::fs::read(path)
                        .await
                        .map_err(|e| invalid(&format!("CA certificate {path}"), &e))?;
                    config.ca_certificate(Certificate::from_pem(pem))
                }
                None => config.with_enabled_roots(),
            };
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| invalid("TLS", &e))?;
        }
        let header = |v: String, what: &str| {
            v.parse::<MetadataValue<Ascii>>()
                .map_err(|e| invalid(what, &e))
        };
        let authorization = cfg
            .token
            .as_ref()
            .map(|t| {
                use base64::Engine;
                header(base64::engine::general_purpose::STANDARD.encode(t), "token")
            })
            .transpose()?;
        let database = cfg
            .database
            .clone()
            .filter(|d| !d.is_empty() && d != "default")
            .map(|d| header(d, "database"))
            .transpose()?;
        let client = MilvusServiceClient::with_interceptor(
            endpoint.connect_lazy(),
            Credentials {
                authorization,
                database,
            },
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            client,
            rpc_timeout: cfg.rpc_timeout,
            attempts: cfg.max_attempts.max(1),
        })
    }

    /// Calls `call` with the per-call timeout, again (with backoff) while
    /// Milvus is unreachable: reads are safe to repeat.
    async fn retried<Req: Clone, Resp, F, Fut>(&self, req: Req, call: F) -> Result<Resp>
    where
        F: Fn(Raw, Request<Req>) -> Fut,
        Fut:
            std::future::Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let mut request = Request::new(req.clone());
            request.set_timeout(self.rpc_timeout);
            let answer = tokio::time::timeout(self.rpc_timeout, call(self.client.clone(), request))
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
            match answer {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if s.code() == Code::Unavailable && attempt < self.attempts => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                Err(s) => {
                    return Err(GatewayError::MilvusUnavailable(format!(
                        "{:?}: {}",
                        s.code(),
                        s.message()
                    )))
                }
            }
        }
    }

    /// A fresh timestamp from Milvus's clock: later than every write
    /// Milvus has answered.
    pub async fn now(&self, collection: &str) -> Result<u64> {
        let resp = self
            .retried(AllocTimestampRequest::default(), |mut c, r| async move {
                c.alloc_timestamp(r).await
            })
            .await?;
        check(collection, resp.status.as_ref())?;
        Ok(resp.timestamp)
    }

    /// The nearest rows to each vector, nearest first.
    pub async fn search(
        &self,
        collection: &str,
        vectors: &[Vec<f32>],
        shape: &SearchShape,
        (level, guarantee): (ConsistencyLevel, u64),
    ) -> Result<Vec<Vec<RawHit>>> {
        let nq = vectors.len();
        let group = PlaceholderGroup {
            placeholders: vec![PlaceholderValue {
                tag: "$0".into(),
                r#type: PlaceholderType::FloatVector as i32,
                values: vectors
                    .iter()
                    .map(|v| v.iter().copied().flat_map(f32::to_le_bytes).collect())
                    .collect(),
                element_level: false,
            }],
        };
        let mut params = serde_json::Map::new();
        if let Some(d) = shape.max_distance {
            params.insert("radius".into(), serde_json::json!(d));
        }
        // Open-source Milvus builds AUTOINDEX as HNSW and reads `ef`
        // (`level` it ignores: measured on 2.3.5); Zilliz Cloud's AUTOINDEX
        // reads `level`.
        if let Some(level) = shape.search_level {
            params.insert("level".into(), serde_json::json!(level));
            let ef = hnsw_ef(level, shape.top_k + shape.offset);
            params.insert("ef".into(), serde_json::json!(ef));
        }
        let kv = |key: &str, value: String| KeyValuePair {
            key: key.into(),
            value,
        };
        let mut search_params = vec![
            kv("anns_field", VECTOR_FIELD.into()),
            kv("topk", shape.top_k.to_string()),
            kv("metric_type", "L2".into()),
            kv("round_decimal", "-1".into()),
            kv("params", serde_json::Value::Object(params).to_string()),
        ];
        if shape.offset > 0 {
            search_params.push(kv("offset", shape.offset.to_string()));
        }
        let req = SearchRequest {
            collection_name: collection.into(),
            dsl: shape.filter.clone().unwrap_or_default(),
            dsl_type: DslType::BoolExprV1 as i32,
            output_fields: if shape.with_attributes {
                vec![FILEPATH_FIELD.into(), ATTRIBUTES_FIELD.into()]
            } else {
                vec![FILEPATH_FIELD.into()]
            },
            search_params,
            guarantee_timestamp: guarantee,
            nq: nq as i64,
            consistency_level: level as i32,
            use_default_consistency: false,
            search_input: Some(SearchInput::PlaceholderGroup(group.encode_to_vec())),
            ..Default::default()
        };
        let resp = self
            .retried(req, |mut c, r| async move { c.search(r).await })
            .await?;
        check(collection, resp.status.as_ref())?;
        Ok(hits(resp.results.unwrap_or_default(), nq))
    }

    /// Rows matching `expr`, with the named fields (and `count(*)`).
    pub async fn query(
        &self,
        collection: &str,
        expr: String,
        output_fields: &[&str],
        limit: Option<u32>,
        (level, guarantee): (ConsistencyLevel, u64),
    ) -> Result<Columns> {
        let query_params = limit
            .map(|l| KeyValuePair {
                key: "limit".into(),
                value: l.to_string(),
            })
            .into_iter()
            .collect();
        let req = QueryRequest {
            collection_name: collection.into(),
            expr,
            output_fields: output_fields.iter().map(|f| f.to_string()).collect(),
            guarantee_timestamp: guarantee,
            query_params,
            consistency_level: level as i32,
            use_default_consistency: false,
            ..Default::default()
        };
        let resp = self
            .retried(req, |mut c, r| async move { c.query(r).await })
            .await?;
        check(collection, resp.status.as_ref())?;
        Ok(columns(resp.fields_data))
    }
}

/// Milvus's in-band status: success, a missing collection, or a failure.
#[allow(deprecated)]
fn check(collection: &str, status: Option<&MilvusStatus>) -> Result<()> {
    let Some(s) = status else { return Ok(()) };
    if s.error_code == 0 && s.code == 0 {
        return Ok(());
    }
    if s.reason.contains("collection not found") || s.reason.contains("can't find collection") {
        return Err(GatewayError::CollectionNotFound(collection.to_string()));
    }
    Err(GatewayError::from_milvus_status(
        s.code,
        s.error_code,
        &s.reason,
    ))
}

/// Splits Milvus's flat result columns into one list per query.
fn hits(data: SearchResultData, nq: usize) -> Vec<Vec<RawHit>> {
    let ids = match data.ids.and_then(|i| i.id_field) {
        Some(IdField::IntId(a)) => a.data,
        _ => Vec::new(),
    };
    let Columns {
        filepaths,
        mut attributes,
        ..
    } = columns(data.fields_data);
    let mut out = Vec::with_capacity(nq);
    let mut at = 0usize;
    for q in 0..nq {
        let k = data.topks.get(q).copied().unwrap_or(0).max(0) as usize;
        let end = (at + k).min(ids.len()).min(data.scores.len());
        out.push(
            (at..end)
                .map(|i| RawHit {
                    id: ids[i],
                    filepath: filepaths.get(i).cloned().unwrap_or_default(),
                    distance: data.scores[i],
                    attributes: attributes.get_mut(i).map(std::mem::take),
                })
                .collect(),
        );
        at = end;
    }
    out
}

/// The columns Milvus sent, each by its field's name.
fn columns(fields: Vec<FieldData>) -> Columns {
    let mut c = Columns::default();
    for f in fields {
        let name = f.field_name.as_str();
        match f.field {
            Some(Field::Scalars(s)) => match s.data {
                Some(scalar_field::Data::LongData(a)) if name == "count(*)" => {
                    c.count = a.data.first().copied();
                }
                Some(scalar_field::Data::LongData(a)) if name == ID_FIELD => c.ids = a.data,
                Some(scalar_field::Data::StringData(a)) if name == FILEPATH_FIELD => {
                    c.filepaths = a.data
                }
                Some(scalar_field::Data::StringData(a)) if name == CONTENT_FIELD => {
                    c.contents = a.data
                }
                Some(scalar_field::Data::JsonData(a)) if name == ATTRIBUTES_FIELD => {
                    c.attributes = a.data
                }
                _ => {}
            },
            Some(Field::Vectors(v)) => {
                if let Some(vector_field::Data::FloatVector(a)) = v.data {
                    let dim = usize::try_from(v.dim).unwrap_or(0).max(1);
                    c.vectors = a.data.chunks(dim).map(<[f32]>::to_vec).collect();
                }
            }
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use milvus::proto::schema::{
        FloatArray, IDs, LongArray, ScalarField, StringArray, VectorField,
    };

    use super::*;

    #[test]
    fn each_search_level_doubles_hnsw_ef_from_16() {
        let efs: Vec<u32> = (1..=4).map(|l| hnsw_ef(l, 10)).collect();
        assert_eq!(efs, [16, 32, 64, 128]);
        assert_eq!(hnsw_ef(10, 10), 8192);
    }

    #[test]
    fn hnsw_ef_covers_every_hit_asked_for() {
        assert_eq!(hnsw_ef(1, 300), 300);
    }

    #[test]
    fn flat_results_split_per_query_by_topks() {
        let data = SearchResultData {
            topks: vec![2, 0, 1],
            scores: vec![0.5, 1.5, 2.5],
            ids: Some(IDs {
                id_field: Some(IdField::IntId(LongArray {
                    data: vec![7, 8, 9],
                })),
            }),
            fields_data: vec![FieldData {
                field_name: "filepath".into(),
                field: Some(Field::Scalars(ScalarField {
                    data: Some(scalar_field::Data::StringData(StringArray {
                        data: vec!["a".into(), "b".into(), "c".into()],
                    })),
                })),
                ..Default::default()
            }],
            ..Default::default()
        };
        let h = hits(data, 3);
        assert_eq!(h[0].len(), 2);
        assert!(h[1].is_empty());
        assert_eq!(
            h[2],
            vec![RawHit {
                id: 9,
                filepath: "c".into(),
                distance: 2.5,
                attributes: None,
            }]
        );
    }

    #[test]
    fn query_vectors_are_cut_by_their_dimension() {
        let c = columns(vec![FieldData {
            field_name: "image_embedding".into(),
            field: Some(Field::Vectors(VectorField {
                dim: 2,
                data: Some(vector_field::Data::FloatVector(FloatArray {
                    data: vec![1.0, 2.0, 3.0, 4.0],
                })),
            })),
            ..Default::default()
        }]);
        assert_eq!(c.vectors, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    }
}
