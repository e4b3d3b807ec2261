//! `imgsearch search`: query images → the nearest stored images, as a table,
//! JSON, and optionally the tutorial's result picture.

use std::path::PathBuf;

use imgsearch_proto::{
    limits,
    v1::{
        stored_ref, Consistency, CountRequest, DeleteRequest, Filter, SearchRequest,
        SearchResponse, StoredRef,
    },
};
use serde::Serialize;

use tonic::Status;

use crate::{
    attrs,
    busy::Patience,
    error::CliError,
    gateway::{Client, MAX_MESSAGE_BYTES},
    sources,
};

/// One stored image near a query.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// 1 for the nearest (after --offset: offset + 1).
    pub rank: usize,
    pub id: i64,
    pub filepath: String,
    /// Squared L2 distance, as Milvus reports it.
    pub distance: f32,
    /// The row's attributes (none in a tutorial collection).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// The hits of one query image, or why it has none.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    /// The query image's path, as given.
    pub query: String,
    pub hits: Vec<Hit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything a search returned.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub collection: String,
    pub top_k: u32,
    pub results: Vec<QueryResult>,
    /// Milvus's search time over all queries (the tutorial's "search time").
    pub search_seconds: f64,
    /// Time the embedders took for the query images.
    pub embed_seconds: f64,
}

/// What every query of a search shares.
#[derive(Debug, Clone)]
pub struct Options {
    pub top_k: u32,
    pub max_distance: Option<f32>,
    pub offset: u32,
    pub search_level: u32,
    pub consistency: Consistency,
    pub patience: Patience,
    /// Hits must pass it.
    pub filter: Option<Filter>,
}

/// The API's consistency for a `--consistency` value.
pub fn consistency(name: &str) -> Consistency {
    match name {
        "strong" => Consistency::Strong,
        "bounded" => Consistency::Bounded,
        "eventually" => Consistency::Eventually,
        _ => Consistency::Session,
    }
}

impl Options {
    /// One Search, sent again while the gateway refuses it as busy.
    async fn search(
        &self,
        client: &Client,
        request: SearchRequest,
    ) -> Result<SearchResponse, Status> {
        self.patience
            .clone()
            .retry(|| {
                let (mut client, request) = (client.clone(), request.clone());
                async move { Ok(client.search(request).await?.into_inner()) }
            })
            .await
    }

    fn request(&self, collection: &str) -> SearchRequest {
        SearchRequest {
            collection: collection.to_string(),
            top_k: self.top_k,
            max_distance: self.max_distance,
            offset: self.offset,
            search_level: self.search_level,
            consistency: self.consistency as i32,
            filter: self.filter.clone(),
            with_attributes: true,
            ..Default::default()
        }
    }
}

impl Results {
    fn new(collection: &str, top_k: u32, queries: usize) -> Self {
        Results {
            collection: collection.to_string(),
            top_k,
            results: Vec::with_capacity(queries),
            search_seconds: 0.0,
            embed_seconds: 0.0,
        }
    }

    /// Adds one call's answers, `names` naming its queries in order.
    fn add(&mut self, names: impl Iterator<Item = String>, resp: SearchResponse, offset: u32) {
        self.search_seconds += resp.search_seconds;
        self.embed_seconds += resp.embed_seconds;
        for (query, r) in names.zip(resp.results) {
            self.results.push(QueryResult {
                query,
                hits: r
                    .hits
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| Hit {
                        rank: offset as usize + i + 1,
                        id: h.id,
                        filepath: h.filepath,
                        distance: h.distance,
                        attributes: h
                            .attributes
                            .iter()
                            .map(|(k, v)| (k.clone(), attrs::to_json(v)))
                            .collect(),
                    })
                    .collect(),
                error: r
                    .error
                    .map(|e| format!("{}: {}", e.kind().short_name(), e.message)),
            });
        }
    }
}

/// "More like this": searches `collection` with the stored vectors of the
/// rows holding `filepaths`, each row left out of its own hits.
pub async fn like(
    client: &Client,
    collection: &str,
    filepaths: &[String],
    opts: &Options,
) -> Result<Results, CliError> {
    let mut out = Results::new(collection, opts.top_k, filepaths.len());
    for chunk in filepaths.chunks(limits::MAX_QUERIES) {
        let request = SearchRequest {
            like: chunk
                .iter()
                .map(|p| StoredRef {
                    r#ref: Some(stored_ref::Ref::Filepath(p.clone())),
                })
                .collect(),
            ..opts.request(collection)
        };
        let resp = opts.search(client, request).await?;
        out.add(chunk.iter().cloned(), resp, opts.offset);
    }
    Ok(out)
}

/// Deletes every row holding one of `filepaths` that `filter` selects, or
/// (no filepaths) every row it selects; returns how many went.
pub async fn delete(
    client: &Client,
    collection: &str,
    filepaths: Vec<String>,
    filter: Option<Filter>,
    patience: &Patience,
) -> Result<u64, CliError> {
    let request = |filepaths: &[String]| DeleteRequest {
        collection: collection.to_string(),
        ids: vec![],
        filepaths: filepaths.to_vec(),
        filter: filter.clone(),
    };
    // A filter alone is one call; filepaths go a call's worth at a time.
    let requests: Vec<DeleteRequest> = if filepaths.is_empty() {
        vec![request(&[])]
    } else {
        filepaths
            .chunks(limits::MAX_FILEPATHS)
            .map(request)
            .collect()
    };
    let mut deleted = 0;
    for request in requests {
        deleted += patience
            .clone()
            .retry(|| {
                let (mut client, request) = (client.clone(), request.clone());
                async move { Ok(client.delete(request).await?.into_inner().deleted) }
            })
            .await?;
    }
    Ok(deleted)
}

/// The rows of `collection` that `filter` selects (all, without one).
pub async fn count(
    client: &Client,
    collection: &str,
    filter: Option<Filter>,
    patience: &Patience,
) -> Result<u64, CliError> {
    let request = CountRequest {
        collection: collection.to_string(),
        filter,
        ..Default::default()
    };
    Ok(patience
        .clone()
        .retry(|| {
            let (mut client, request) = (client.clone(), request.clone());
            async move { Ok(client.count(request).await?.into_inner().count) }
        })
        .await?)
}

/// Searches `collection` with each image of `queries`.
pub async fn run(
    client: &Client,
    collection: &str,
    queries: &[PathBuf],
    opts: &Options,
) -> Result<Results, CliError> {
    if queries.is_empty() {
        return Err(CliError::Usage("give at least one query image".into()));
    }
    let mut out = Results::new(collection, opts.top_k, queries.len());
    for chunk in queries.chunks(limits::MAX_QUERIES) {
        let mut images = Vec::with_capacity(chunk.len());
        for q in chunk {
            let name = q.display().to_string();
            let bytes = sources::read(&name, (MAX_MESSAGE_BYTES / 2) as u64)
                .map_err(|e| CliError::Usage(format!("cannot read query image {name}: {e}")))?;
            images.push(bytes.into());
        }
        let request = SearchRequest {
            images,
            ..opts.request(collection)
        };
        let resp = opts.search(client, request).await?;
        out.add(
            chunk.iter().map(|q| q.display().to_string()),
            resp,
            opts.offset,
        );
    }
    Ok(out)
}

impl Results {
    /// A table: query, rank, distance, filepath; then the timings.
    pub fn render(&self) -> String {
        let width = self
            .results
            .iter()
            .map(|r| r.query.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut out = format!(
            "{:<width$}  {:>4}  {:>12}  filepath\n",
            "query", "rank", "distance"
        );
        for r in &self.results {
            if let Some(e) = &r.error {
                out += &format!("{:<width$}  {:>4}  {:>12}  error: {e}\n", r.query, "-", "-");
            }
            for h in &r.hits {
                out += &format!(
                    "{:<width$}  {:>4}  {:>12.4}  {}",
                    r.query, h.rank, h.distance, h.filepath
                );
                if !h.attributes.is_empty() {
                    out += &format!("  {}", serde_json::Value::Object(h.attributes.clone()));
                }
                out += "\n";
            }
        }
        out += &format!(
            "search time {:.1} ms (Milvus), embedding {:.1} ms\n",
            self.search_seconds * 1e3,
            self.embed_seconds * 1e3
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_hit_and_errors() {
        let r = Results {
            collection: "c".into(),
            top_k: 2,
            results: vec![
                QueryResult {
                    query: "q/one.jpg".into(),
                    hits: vec![
                        Hit {
                            rank: 1,
                            id: 7,
                            filepath: "a.jpg".into(),
                            distance: 0.0,
                            attributes: Default::default(),
                        },
                        Hit {
                            rank: 2,
                            id: 9,
                            filepath: "b.jpg".into(),
                            distance: 12.5,
                            attributes: Default::default(),
                        },
                    ],
                    error: None,
                },
                QueryResult {
                    query: "bad".into(),
                    hits: vec![],
                    error: Some("INVALID_IMAGE: x".into()),
                },
            ],
            search_seconds: 0.0061,
            embed_seconds: 0.1,
        };
        let t = r.render();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert_eq!(lines[2], "q/one.jpg     2       12.5000  b.jpg");
        assert!(lines[3].contains("error: INVALID_IMAGE: x"));
        assert_eq!(lines[4], "search time 6.1 ms (Milvus), embedding 100.0 ms");
    }
}
