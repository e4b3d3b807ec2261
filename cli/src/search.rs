//! `imgsearch search`: query images → the nearest stored images, as a table,
//! JSON, and optionally the tutorial's result picture.

use std::path::PathBuf;

use imgsearch_proto::v1::SearchRequest;
use serde::Serialize;

use crate::{
    error::CliError,
    gateway::{Client, MAX_MESSAGE_BYTES},
    sources,
};

/// Queries per Search call (the gateway's maximum).
const QUERIES_PER_CALL: usize = 64;

/// One stored image near a query.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// 1 for the nearest.
    pub rank: usize,
    pub id: i64,
    pub filepath: String,
    /// Squared L2 distance, as Milvus reports it.
    pub distance: f32,
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

/// Searches `collection` with each image of `queries`.
pub async fn run(
    client: &mut Client,
    collection: &str,
    queries: &[PathBuf],
    top_k: u32,
) -> Result<Results, CliError> {
    if queries.is_empty() {
        return Err(CliError::Usage("give at least one query image".into()));
    }
    let mut out = Results {
        collection: collection.to_string(),
        top_k,
        results: Vec::with_capacity(queries.len()),
        search_seconds: 0.0,
        embed_seconds: 0.0,
    };
    for chunk in queries.chunks(QUERIES_PER_CALL) {
        let mut images = Vec::with_capacity(chunk.len());
        for q in chunk {
            let name = q.display().to_string();
            let bytes = sources::read(&name, (MAX_MESSAGE_BYTES / 2) as u64)
                .map_err(|e| CliError::Usage(format!("cannot read query image {name}: {e}")))?;
            images.push(bytes);
        }
        let resp = client
            .search(SearchRequest {
                collection: collection.to_string(),
                images,
                vectors: vec![],
                top_k,
            })
            .await?
            .into_inner();
        out.search_seconds += resp.search_seconds;
        out.embed_seconds += resp.embed_seconds;
        for (q, r) in chunk.iter().zip(resp.results) {
            out.results.push(QueryResult {
                query: q.display().to_string(),
                hits: r
                    .hits
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| Hit {
                        rank: i + 1,
                        id: h.id,
                        filepath: h.filepath,
                        distance: h.distance,
                    })
                    .collect(),
                error: r
                    .error
                    .map(|e| format!("{}: {}", e.kind().as_str_name(), e.message)),
            });
        }
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
                    "{:<width$}  {:>4}  {:>12.4}  {}\n",
                    r.query, h.rank, h.distance, h.filepath
                );
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
                        },
                        Hit {
                            rank: 2,
                            id: 9,
                            filepath: "b.jpg".into(),
                            distance: 12.5,
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
