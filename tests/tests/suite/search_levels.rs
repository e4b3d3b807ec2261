//! The search level, accuracy against speed, on the real stack: over an
//! indexed collection a higher level never finds fewer of the exact
//! nearest rows, the level reaches Milvus (the lowest finds fewer than the
//! highest), and a level beyond the maximum is refused.

use std::collections::HashSet;

use imgsearch_proto::{
    limits::{DEFAULT_SEARCH_LEVEL, MAX_SEARCH_LEVEL},
    v1::{SearchStreamRequest, Vector},
};
use imgsearch_tests::{
    data::{insert_items, vector, vector_item},
    search::{exact_order, for_vector, search, stream, Stack},
    stack::TestCollection,
};
use tonic::Code;

const DIM: usize = 2048;
const ROWS: u64 = 3_000;
const QUERIES: u64 = 40;

/// Recall@10 over the queries at `level`: the share of the exact ten
/// nearest rows among the hits.
async fn recall(c: &mut TestCollection, level: u32, exact: &[HashSet<String>]) -> f64 {
    let mut found = 0;
    for (q, nearest) in exact.iter().enumerate() {
        let mut req = for_vector(&c.name, &vector(ROWS + q as u64, DIM), 10);
        req.search_level = level;
        let resp = search(&mut c.client, req).await.expect("search");
        found += resp.results[0]
            .hits
            .iter()
            .filter(|h| nearest.contains(&h.filepath))
            .count();
    }
    found as f64 / (exact.len() * 10) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_search_level_never_finds_fewer_of_the_exact_nearest_rows() {
    let stack = Stack::shared().await;
    let mut c = stack.collection("levels_recall").await;
    // Uniform random vectors: HNSW's hardest case, where the level shows.
    let items = (0..ROWS)
        .map(|i| vector_item(&format!("r/{i}"), vector(i, DIM), Default::default()))
        .collect();
    let (name, fingerprint) = (c.name.clone(), c.info.fingerprint.clone());
    let answers = insert_items(&mut c.client, &name, &fingerprint, items).await;
    assert_eq!(answers.summary().inserted, ROWS, "{:?}", answers.failures());
    c.milvus()
        .wait_indexed(&c.name, std::time::Duration::from_secs(300))
        .await;

    let rows: Vec<(i64, Vec<f32>)> = (0..ROWS).map(|i| (i as i64, vector(i, DIM))).collect();
    let exact: Vec<HashSet<String>> = (0..QUERIES)
        .map(|q| {
            exact_order(&vector(ROWS + q, DIM), &rows)[..10]
                .iter()
                .map(|&(_, i)| format!("r/{i}"))
                .collect()
        })
        .collect();
    let mut recalls = Vec::new();
    for level in [1, DEFAULT_SEARCH_LEVEL, 4, MAX_SEARCH_LEVEL] {
        recalls.push((level, recall(&mut c, level, &exact).await));
    }
    eprintln!("recall@10 by level: {recalls:?}");
    for pair in recalls.windows(2) {
        assert!(pair[1].1 >= pair[0].1, "recall fell: {recalls:?}");
    }
    let (lowest, highest) = (recalls[0].1, recalls[recalls.len() - 1].1);
    assert!(
        lowest < highest,
        "the level made no difference: {recalls:?}"
    );
    assert!(
        highest >= 0.99,
        "the highest level is near exact: {recalls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_level_over_the_maximum_is_refused_on_search_and_stream() {
    let stack = Stack::shared().await;
    let mut c = stack.collection("levels_refused").await;
    let mut req = for_vector(&c.name, &vector(1, DIM), 3);
    req.search_level = MAX_SEARCH_LEVEL + 1;
    let refused = search(&mut c.client, req).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("search_level"), "{refused:?}");

    let first = SearchStreamRequest {
        collection: c.name.clone(),
        search_level: MAX_SEARCH_LEVEL + 1,
        query: Some(imgsearch_proto::v1::search_stream_request::Query::Vector(
            Vector {
                values: vector(1, DIM),
            },
        )),
        ..Default::default()
    };
    let (answers, ended) = stream(&mut c.client, vec![first]).await;
    assert!(answers.is_empty(), "{answers:?}");
    let refused = ended.expect("the stream ends with an error");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
}
