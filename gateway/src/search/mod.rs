//! Search: queries (images, vectors, stored rows) → vectors → Milvus, with
//! the caller's options checked once, in domain terms, for both the unary
//! call and the stream ([`stream`]).

pub mod stream;

use std::time::Instant;

use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    self as pb, embed_response, stored_ref, ErrorKind, Hit, ItemError, QueryResult, SearchRequest,
    SearchResponse,
};
use imgsearch_proto::Bytes;
use tracing::instrument;

use crate::{
    attributes,
    embedders::Embedders,
    error::GatewayError,
    filter::Filter,
    metrics::Metrics,
    milvus::{
        expr::{both, string_literal},
        freshness::{Consistency, Freshness},
        reads::{RawHit, SearchShape},
        CollectionSpec, MilvusStore, RowRef,
    },
    schema::{Profile, FILEPATH_FIELD},
};

pub use imgsearch_proto::limits::{
    DEFAULT_SEARCH_LEVEL, DEFAULT_TOP_K, MAX_QUERIES, MAX_RESULT_WINDOW, MAX_SEARCH_LEVEL,
    MAX_TOP_K,
};

/// One query, whatever its kind.
#[derive(Debug)]
pub enum Query {
    Image(Bytes),
    Vector(Vec<f32>),
    Like(RowRef),
}

/// The options of a search, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub top_k: u32,
    pub offset: u32,
    pub max_distance: Option<f32>,
    pub include_self: bool,
    pub freshness: Freshness,
    /// Hits must pass it.
    pub filter: Filter,
    pub with_attributes: bool,
    /// Accuracy against speed, 1 to [`MAX_SEARCH_LEVEL`].
    pub search_level: u32,
}

/// The options as the API carries them, in SearchRequest and in the first
/// message of a SearchStream.
pub struct RawOptions {
    pub top_k: u32,
    pub offset: u32,
    pub max_distance: Option<f32>,
    pub include_self: bool,
    pub consistency: i32,
    pub write_token: u64,
    pub filter: Option<pb::Filter>,
    pub with_attributes: bool,
    pub search_level: u32,
}

/// The consistency the API names.
pub fn consistency(raw: i32) -> Result<Consistency, GatewayError> {
    match pb::Consistency::try_from(raw) {
        Ok(pb::Consistency::Unspecified | pb::Consistency::Session) => Ok(Consistency::Session),
        Ok(pb::Consistency::Strong) => Ok(Consistency::Strong),
        Ok(pb::Consistency::Bounded) => Ok(Consistency::Bounded),
        Ok(pb::Consistency::Eventually) => Ok(Consistency::Eventually),
        Err(_) => Err(GatewayError::InvalidArgument(format!(
            "unknown consistency {raw}"
        ))),
    }
}

/// The freshness the API names (a consistency and a write token), checked.
pub fn freshness(raw_consistency: i32, write_token: u64) -> Result<Freshness, GatewayError> {
    let freshness = Freshness {
        consistency: consistency(raw_consistency)?,
        write_token,
    };
    freshness.check()?;
    Ok(freshness)
}

impl Options {
    pub fn parse(raw: RawOptions) -> Result<Self, GatewayError> {
        let bad = |m: String| Err(GatewayError::InvalidArgument(m));
        let top_k = match raw.top_k {
            0 => DEFAULT_TOP_K,
            k if k > MAX_TOP_K => return bad(format!("top_k {k} is over the maximum {MAX_TOP_K}")),
            k => k,
        };
        if u64::from(top_k) + u64::from(raw.offset) > u64::from(MAX_RESULT_WINDOW) {
            return bad(format!(
                "offset {} + top_k {top_k} is over {MAX_RESULT_WINDOW}, Milvus's result window",
                raw.offset
            ));
        }
        if let Some(d) = raw.max_distance {
            if !d.is_finite() || d <= 0.0 {
                return bad(format!(
                    "max_distance {d} must be a finite squared L2 distance above 0"
                ));
            }
        }
        let search_level = match raw.search_level {
            0 => DEFAULT_SEARCH_LEVEL,
            l if l > MAX_SEARCH_LEVEL => {
                return bad(format!(
                    "search_level {l} is over the maximum {MAX_SEARCH_LEVEL}"
                ))
            }
            l => l,
        };
        let freshness = freshness(raw.consistency, raw.write_token)?;
        Ok(Self {
            top_k,
            offset: raw.offset,
            max_distance: raw.max_distance,
            include_self: raw.include_self,
            freshness,
            filter: Filter::parse(raw.filter)?,
            with_attributes: raw.with_attributes,
            search_level,
        })
    }
}

/// A stored row reference from the API.
pub fn row_ref(r: pb::StoredRef) -> Result<RowRef, GatewayError> {
    match r.r#ref {
        Some(stored_ref::Ref::Id(id)) => Ok(RowRef::Id(id)),
        Some(stored_ref::Ref::Filepath(p)) if !p.is_empty() => Ok(RowRef::Filepath(p)),
        _ => Err(GatewayError::InvalidArgument(
            "a `like` reference needs an id or a non-empty filepath".into(),
        )),
    }
}

/// The results of a batch of queries, in order, and what they cost.
pub struct Answered {
    pub results: Vec<Result<Vec<Hit>, ItemError>>,
    pub embed_seconds: f64,
    pub search_seconds: f64,
}

fn item_error(kind: ErrorKind, message: String) -> ItemError {
    ItemError {
        kind: kind as i32,
        message,
    }
}

/// What the data path needs for searches.
#[derive(Clone)]
pub struct Searcher {
    pub store: MilvusStore,
    pub embedders: Embedders,
    pub metrics: Metrics,
    /// The caller's tenant: it sees, and finds `like` rows among, only
    /// that tenant's rows.
    pub tenant: Option<String>,
}

/// A query made ready for Milvus: its vector and, for a stored row left out
/// of its own results, the filter that leaves it out.
struct Ready {
    vector: Vec<f32>,
    exclude: Option<String>,
}

impl Searcher {
    /// Answers `queries` (at most [`MAX_QUERIES`]) against `spec`'s
    /// collection; a query that cannot be answered fails alone.
    #[instrument(skip_all, fields(collection = %spec.name, queries = queries.len()))]
    pub async fn answer(
        &self,
        spec: &CollectionSpec,
        options: &Options,
        trace: &TraceContext,
        queries: Vec<Query>,
    ) -> Result<Answered, GatewayError> {
        let Sorted {
            mut slots,
            images,
            likes,
        } = sort(queries, spec.dimension as usize);

        let started = Instant::now();
        let embed_seconds = if images.is_empty() {
            0.0
        } else {
            self.embed_into(spec, trace, images, &mut slots).await?;
            started.elapsed().as_secs_f64()
        };

        let started = Instant::now();
        self.resolve_likes(spec, options, likes, &mut slots).await?;
        let found = self.search_slots(spec, options, &mut slots).await?;
        let search_seconds = started.elapsed().as_secs_f64();
        self.metrics.search_seconds.observe(search_seconds);
        self.metrics.embed_seconds.observe(embed_seconds);

        let results = slots
            .into_iter()
            .zip(found)
            .map(|(slot, hits)| {
                slot.map(|_| {
                    hits.unwrap_or_default()
                        .into_iter()
                        .map(|h| Hit {
                            id: h.id,
                            filepath: h.filepath,
                            distance: h.distance,
                            attributes: h
                                .attributes
                                .map(|json| attributes::from_json(&json))
                                .unwrap_or_default(),
                        })
                        .collect()
                })
            })
            .collect();
        Ok(Answered {
            results,
            embed_seconds,
            search_seconds,
        })
    }

    /// Embeds the image queries, each into its slot.
    async fn embed_into(
        &self,
        spec: &CollectionSpec,
        trace: &TraceContext,
        images: Vec<(usize, Bytes)>,
        slots: &mut [Slot],
    ) -> Result<(), GatewayError> {
        let dimension = spec.dimension as usize;
        let (at, bytes): (Vec<usize>, Vec<Bytes>) = images.into_iter().unzip();
        let embedded = self.embedders.embed_images(spec, trace, bytes).await?;
        for (i, r) in at.into_iter().zip(embedded) {
            slots[i] = match r.result {
                Some(embed_response::Result::Vector(v)) if v.values.len() == dimension => {
                    Ok(Some(Ready {
                        vector: v.values,
                        exclude: None,
                    }))
                }
                Some(embed_response::Result::Vector(v)) => Err(item_error(
                    ErrorKind::InvalidArgument,
                    format!(
                        "embedder dimension {} differs from the collection's {dimension}",
                        v.values.len()
                    ),
                )),
                Some(embed_response::Result::Error(e)) => Err(e),
                None => Err(item_error(
                    ErrorKind::Internal,
                    "empty embedder answer".into(),
                )),
            };
        }
        Ok(())
    }

    /// Reads the stored vector of each `like` query into its slot, with the
    /// filter that leaves its own row out unless `include_self`.
    async fn resolve_likes(
        &self,
        spec: &CollectionSpec,
        options: &Options,
        likes: Vec<(usize, RowRef)>,
        slots: &mut [Slot],
    ) -> Result<(), GatewayError> {
        for (i, row) in likes {
            let scope = spec.scope(self.tenant.as_deref())?;
            slots[i] = match self
                .store
                .stored_vector(&spec.name, &row, options.freshness, scope)
                .await?
            {
                Some((id, vector)) => Ok(Some(Ready {
                    vector,
                    exclude: (!options.include_self).then(|| match &row {
                        RowRef::Id(_) => format!("id != {id}"),
                        RowRef::Filepath(p) => format!("{FILEPATH_FIELD} != {}", string_literal(p)),
                    }),
                })),
                None => Err(item_error(
                    ErrorKind::NotFound,
                    format!("no row of collection {} has {row}", spec.name),
                )),
            };
        }
        Ok(())
    }

    /// The hits of every ready slot. Queries without a filter share one
    /// Milvus search; each one that leaves its own row out needs its own.
    async fn search_slots(
        &self,
        spec: &CollectionSpec,
        options: &Options,
        slots: &mut [Slot],
    ) -> Result<Vec<Option<Vec<RawHit>>>, GatewayError> {
        let shape = SearchShape {
            top_k: options.top_k,
            offset: options.offset,
            max_distance: options.max_distance,
            filter: spec.expression(&options.filter, self.tenant.as_deref())?,
            with_attributes: options.with_attributes && spec.profile == Profile::Extended,
            search_level: Some(options.search_level),
        };
        let mut found: Vec<Option<Vec<RawHit>>> = vec![None; slots.len()];
        let plain: Vec<usize> = (0..slots.len())
            .filter(|&i| matches!(&slots[i], Ok(Some(r)) if r.exclude.is_none()))
            .collect();
        if !plain.is_empty() {
            let vectors: Vec<Vec<f32>> = plain
                .iter()
                .map(|&i| match &mut slots[i] {
                    Ok(Some(r)) => std::mem::take(&mut r.vector),
                    _ => unreachable!("chosen above"),
                })
                .collect();
            let hits = self
                .store
                .search(&spec.name, &vectors, &shape, options.freshness)
                .await?;
            for (i, h) in plain.into_iter().zip(hits) {
                found[i] = Some(h);
            }
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            let Ok(Some(Ready {
                vector,
                exclude: Some(filter),
            })) = slot
            else {
                continue;
            };
            let shape = SearchShape {
                filter: both(shape.filter.clone(), Some(std::mem::take(filter))),
                ..shape.clone()
            };
            let mut hits = self
                .store
                .search(
                    &spec.name,
                    std::slice::from_ref(vector),
                    &shape,
                    options.freshness,
                )
                .await?;
            found[i] = hits.pop();
        }
        Ok(found)
    }
}

/// A query's place in the answer: ready for Milvus, waiting for its vector
/// (`None`), or failed alone.
type Slot = Result<Option<Ready>, ItemError>;

/// Queries sorted by what they need before Milvus can take them.
struct Sorted {
    slots: Vec<Slot>,
    /// Image queries, by slot, to embed.
    images: Vec<(usize, Bytes)>,
    /// Stored-row queries, by slot, whose vectors are read first.
    likes: Vec<(usize, RowRef)>,
}

fn sort(queries: Vec<Query>, dimension: usize) -> Sorted {
    let mut sorted = Sorted {
        slots: Vec::with_capacity(queries.len()),
        images: Vec::new(),
        likes: Vec::new(),
    };
    for (i, q) in queries.into_iter().enumerate() {
        sorted.slots.push(match q {
            Query::Vector(v) if v.len() != dimension => Err(item_error(
                ErrorKind::InvalidArgument,
                format!(
                    "the vector has {} values; the collection holds {dimension}",
                    v.len()
                ),
            )),
            Query::Vector(vector) => Ok(Some(Ready {
                vector,
                exclude: None,
            })),
            Query::Image(bytes) => {
                sorted.images.push((i, bytes));
                Ok(None)
            }
            Query::Like(row) => {
                sorted.likes.push((i, row));
                Ok(None)
            }
        });
    }
    sorted
}

/// The unary Search: one kind of query, at most [`MAX_QUERIES`]; an unknown
/// `like` row fails the whole call, NOT_FOUND.
#[instrument(skip_all, fields(collection = %req.collection, images = req.images.len(), vectors = req.vectors.len(), like = req.like.len()))]
pub async fn search(
    searcher: &Searcher,
    trace: &TraceContext,
    req: SearchRequest,
) -> Result<SearchResponse, GatewayError> {
    let options = Options::parse(RawOptions {
        top_k: req.top_k,
        offset: req.offset,
        max_distance: req.max_distance,
        include_self: req.include_self,
        consistency: req.consistency,
        write_token: req.write_token,
        filter: req.filter,
        with_attributes: req.with_attributes,
        search_level: req.search_level,
    })?;
    let kinds = [
        !req.images.is_empty(),
        !req.vectors.is_empty(),
        !req.like.is_empty(),
    ];
    let queries = req.images.len() + req.vectors.len() + req.like.len();
    if kinds.iter().filter(|&&k| k).count() != 1 {
        return Err(GatewayError::InvalidArgument(
            "give query images, query vectors or `like` rows (one kind, at least one)".into(),
        ));
    }
    if queries > MAX_QUERIES {
        return Err(GatewayError::InvalidArgument(format!(
            "{queries} queries; at most {MAX_QUERIES} per call"
        )));
    }
    let spec = searcher.store.collection_spec(&req.collection).await?;
    let queries: Vec<Query> = if !req.like.is_empty() {
        req.like
            .into_iter()
            .map(|r| row_ref(r).map(Query::Like))
            .collect::<Result<_, _>>()?
    } else if !req.vectors.is_empty() {
        if let Some((i, v)) = req
            .vectors
            .iter()
            .enumerate()
            .find(|(_, v)| v.values.len() != spec.dimension as usize)
        {
            return Err(GatewayError::InvalidArgument(format!(
                "query vector {i} has {} values; the collection holds {}",
                v.values.len(),
                spec.dimension
            )));
        }
        req.vectors
            .into_iter()
            .map(|v| Query::Vector(v.values))
            .collect()
    } else {
        req.images.into_iter().map(Query::Image).collect()
    };
    let answered = searcher.answer(&spec, &options, trace, queries).await?;
    let mut results = Vec::with_capacity(answered.results.len());
    for r in answered.results {
        results.push(match r {
            Ok(hits) => QueryResult { hits, error: None },
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(GatewayError::RowNotFound(e.message))
            }
            Err(e) => QueryResult {
                hits: Vec::new(),
                error: Some(e),
            },
        });
    }
    Ok(SearchResponse {
        results,
        embed_seconds: answered.embed_seconds,
        search_seconds: answered.search_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_level(search_level: u32) -> Result<Options, GatewayError> {
        Options::parse(RawOptions {
            top_k: 0,
            offset: 0,
            max_distance: None,
            include_self: false,
            consistency: 0,
            write_token: 0,
            filter: None,
            with_attributes: false,
            search_level,
        })
    }

    #[test]
    fn a_search_without_a_level_gets_the_default_one() {
        assert_eq!(with_level(0).unwrap().search_level, DEFAULT_SEARCH_LEVEL);
    }

    #[test]
    fn a_level_over_the_maximum_is_an_invalid_argument() {
        let refused = with_level(MAX_SEARCH_LEVEL + 1).unwrap_err();
        assert!(matches!(refused, GatewayError::InvalidArgument(m) if m.contains("search_level")));
        assert_eq!(
            with_level(MAX_SEARCH_LEVEL).unwrap().search_level,
            MAX_SEARCH_LEVEL
        );
    }
}
