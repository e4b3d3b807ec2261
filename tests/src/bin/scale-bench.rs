//! The rows part of `scripts/bench_scale.sh`: a collection grown through
//! vector Insert, searched at each size against the exact answer.
//!
//!     scale-bench bases EMBEDDER BASES_OUT FILE...
//!         the photos' vectors from the embedder, as JSON.
//!     scale-bench load GATEWAY COLLECTION BASES FROM TO
//!         stores rows FROM..TO (row i: synthetic::blended(bases, i),
//!         filepath s/i) through one vector Insert stream; prints the rows
//!         per second as JSON.
//!     scale-bench truth BASES ROWS QUERIES TRUTH_OUT
//!         QUERIES query vectors made the same way from other seeds, and
//!         the 10 rows of 0..ROWS nearest each by exact squared L2, as JSON.
//!     scale-bench search GATEWAY COLLECTION TRUTH CALLS LEVEL...
//!         CALLS one-vector Searches (top 10) per search level, cycling
//!         through the queries; prints per level the p50 and p99 of wall
//!         time, recall@10 against the truth over the first
//!         pass through the queries, and HNSW's ef, as JSON.
//!     scale-bench default-level
//!         the search level a search without one gets.
//!     scale-bench chart RESULTS OUT_DIR
//!         draws bench_scale.sh's results (its JSON) as PNG charts.

use std::{collections::HashSet, path::Path, time::Instant};

use imgsearch_gateway::milvus::reads::hnsw_ef;
use imgsearch_proto::v1::{InsertRequest, SearchRequest, Vector};
use imgsearch_tests::{
    charts::{draw, Chart, Series},
    latency::summary,
    search::ranking_l2,
    synthetic::{blended, embed, gateway, store},
};
use plotters::chart::SeriesLabelPosition;
use serde_json::{json, Value};

/// Where query seeds start: far from every row's seed.
const QUERY_SEED: u64 = 1 << 40;
const TOP_K: usize = 10;

fn read_json<T: serde::de::DeserializeOwned>(path: &str) -> T {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}")))
        .unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

async fn bases(args: &[String]) {
    let [embedder, out, files @ ..] = args else {
        panic!("usage: scale-bench bases EMBEDDER BASES_OUT FILE...");
    };
    let vectors = embed(embedder, files).await;
    std::fs::write(out, serde_json::to_vec(&vectors).unwrap()).unwrap();
}

async fn load(args: &[String]) {
    let [gw, collection, bases, from, to] = args else {
        panic!("usage: scale-bench load GATEWAY COLLECTION BASES FROM TO");
    };
    let bases: Vec<Vec<f32>> = read_json(bases);
    let (from, to): (u64, u64) = (from.parse().expect("FROM"), to.parse().expect("TO"));
    let row = move |i: u64| InsertRequest {
        filepath: format!("s/{i}"),
        vector: Some(Vector {
            values: blended(&bases, i),
        }),
        ..Default::default()
    };
    println!("{}", store(gw, collection, (from, to), row).await);
}

/// The `TOP_K` nearest rows of `rows` (numbered from `first`) to `query`,
/// merged into `best` (kept sorted, nearest first).
fn nearest(query: &[f32], rows: &[Vec<f32>], first: u64, best: &mut Vec<(f32, u64)>) {
    for (i, row) in rows.iter().enumerate() {
        let d = ranking_l2(query, row);
        if best.len() < TOP_K || d < best[TOP_K - 1].0 {
            let at = best.partition_point(|&(e, _)| e <= d);
            best.insert(at, (d, first + i as u64));
            best.truncate(TOP_K);
        }
    }
}

fn truth(args: &[String]) {
    let [bases, rows, queries, out] = args else {
        panic!("usage: scale-bench truth BASES ROWS QUERIES TRUTH_OUT");
    };
    let bases: Vec<Vec<f32>> = read_json(bases);
    let (rows, queries): (u64, u64) = (rows.parse().unwrap(), queries.parse().unwrap());
    let queries: Vec<Vec<f32>> = (0..queries)
        .map(|q| blended(&bases, QUERY_SEED + q))
        .collect();
    let mut best = vec![Vec::with_capacity(TOP_K + 1); queries.len()];
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Rows are made again a chunk at a time; the queries split over threads.
    const CHUNK: u64 = 8192;
    for start in (0..rows).step_by(CHUNK as usize) {
        let chunk: Vec<Vec<f32>> = (start..(start + CHUNK).min(rows))
            .map(|i| blended(&bases, i))
            .collect();
        let per = queries.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (qs, bs) in queries.chunks(per).zip(best.chunks_mut(per)) {
                let chunk = &chunk;
                s.spawn(move || {
                    for (q, b) in qs.iter().zip(bs) {
                        nearest(q, chunk, start, b);
                    }
                });
            }
        });
    }
    let truth: Vec<Vec<u64>> = best
        .iter()
        .map(|b| b.iter().map(|&(_, i)| i).collect())
        .collect();
    let answer = json!({"rows": rows, "queries": queries, "truth": truth});
    std::fs::write(out, serde_json::to_vec(&answer).unwrap()).unwrap();
}

async fn search(args: &[String]) {
    let [gw, collection, truth, calls, levels @ ..] = args else {
        panic!("usage: scale-bench search GATEWAY COLLECTION TRUTH CALLS LEVEL...");
    };
    let truth: Value = read_json(truth);
    let queries: Vec<Vec<f32>> = serde_json::from_value(truth["queries"].clone()).unwrap();
    let exact: Vec<HashSet<u64>> = serde_json::from_value::<Vec<Vec<u64>>>(truth["truth"].clone())
        .unwrap()
        .into_iter()
        .map(|t| t.into_iter().collect())
        .collect();
    let calls: usize = calls.parse().expect("CALLS");
    assert!(calls >= queries.len(), "CALLS covers every query once");
    let mut client = gateway(gw).await;
    let mut out = serde_json::Map::new();
    for level in levels {
        let level: u32 = level.parse().expect("LEVEL");
        let (mut wall, mut found) = (Vec::new(), 0usize);
        // Ten untimed calls warm the connection and Milvus's caches.
        for i in 0..calls + 10 {
            let q = i.checked_sub(10).unwrap_or(i) % queries.len();
            let started = Instant::now();
            let r = client
                .search(SearchRequest {
                    collection: collection.clone(),
                    vectors: vec![Vector {
                        values: queries[q].clone(),
                    }],
                    top_k: TOP_K as u32,
                    search_level: level,
                    ..Default::default()
                })
                .await
                .expect("search")
                .into_inner();
            if i < 10 {
                continue;
            }
            wall.push(started.elapsed().as_secs_f64());
            if i - 10 < queries.len() {
                found += r.results[0]
                    .hits
                    .iter()
                    .filter_map(|h| h.filepath.strip_prefix("s/")?.parse::<u64>().ok())
                    .filter(|row| exact[q].contains(row))
                    .count();
            }
        }
        let mut entry = summary(wall);
        entry["recall"] = json!(found as f64 / (queries.len() * TOP_K) as f64);
        entry["ef"] = json!(hnsw_ef(level, TOP_K as u32));
        out.insert(level.to_string(), entry);
    }
    println!("{}", Value::Object(out));
}

/// `f(size)` for every measured size, as points against the row count.
fn against_rows(sizes: &[Value], f: impl Fn(&Value) -> Option<f64>) -> Vec<(f64, f64)> {
    sizes
        .iter()
        .filter_map(|s| Some((s["rows"].as_f64()?, f(s)?)))
        .collect()
}

fn chart(args: &[String]) {
    let [results, out] = args else {
        panic!("usage: scale-bench chart RESULTS OUT_DIR");
    };
    let results: Value = read_json(results);
    let sizes = results["sizes"].as_array().expect("sizes").as_slice();
    let default = results["default_level"]
        .as_u64()
        .expect("default_level")
        .to_string();
    let levels: Vec<String> = results["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| l.to_string())
        .collect();
    let out = Path::new(out);
    let mut latency = Vec::new();
    for (who, label) in [("gateway", "gateway"), ("pymilvus", "pymilvus")] {
        for p in ["p50_ms", "p99_ms"] {
            latency.push(Series {
                name: format!("{label} {}", &p[..3]),
                points: against_rows(sizes, |s| s[who][&default][p].as_f64()),
            });
        }
    }
    let title = format!("One-vector search, top 10, level {default}");
    let x = "rows (log scale)";
    let chart = Chart {
        title: &title,
        x,
        y: "latency (ms)",
        log_x: true,
        y_range: None,
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw(&out.join("scale_latency.png"), &chart, &latency).expect("draw the latency chart");
    let recall: Vec<Series> = levels
        .iter()
        .map(|l| Series {
            name: format!("level {l}{}", if *l == default { " (default)" } else { "" }),
            points: against_rows(sizes, |s| s["gateway"][l]["recall"].as_f64()),
        })
        .collect();
    let chart = Chart {
        title: "Recall@10 against exact L2",
        x,
        y: "recall@10",
        log_x: true,
        y_range: Some((0.9, 1.005)),
        legend: SeriesLabelPosition::LowerRight,
    };
    draw(&out.join("scale_recall.png"), &chart, &recall).expect("draw the recall chart");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("bases") => bases(rest).await,
        Some("load") => load(rest).await,
        Some("truth") => truth(rest),
        Some("search") => search(rest).await,
        Some("chart") => chart(rest),
        Some("default-level") => println!("{}", imgsearch_proto::limits::DEFAULT_SEARCH_LEVEL),
        _ => panic!("usage: scale-bench bases|load|truth|search|chart ..."),
    }
}
