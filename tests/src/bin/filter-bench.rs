//! Load generator for `scripts/bench_filters.sh`.
//!
//!     filter-bench load GATEWAY EMBEDDER COLLECTION ROWS QUERIES_OUT FILE...
//!         embeds the photos, then stores ROWS rows through the gateway's
//!         vector Insert: row i is photo i mod n's vector plus seeded noise
//!         (5 % of the vector's RMS per dimension, so neighbourhoods look
//!         like real ones), filepath r/i and attribute bucket = i mod 100
//!         (bucket == 0 selects 1 %, bucket < 50 half). Writes 64 query
//!         vectors made the same way with other seeds, as JSON, and prints
//!         the load's rows per second as JSON.
//!     filter-bench search GATEWAY COLLECTION CALLS QUERIES
//!         times one-vector Searches (top 10, the default consistency)
//!         without a filter, with bucket == 0 and with bucket < 50; prints
//!         each one's p50 and p99 of wall time and of Milvus's time, and its
//!         mean hits, as JSON.

use std::time::Instant;

use imgsearch_tests::{
    latency::summary,
    synthetic::{embed, gateway, perturbed, store},
};

use imgsearch_proto::v1::{
    attribute_value::Value, condition::Test, AttributeValue, Condition, Filter, InsertRequest,
    SearchRequest, Vector,
};

fn bucket(test: Test) -> Filter {
    Filter {
        all: vec![Condition {
            subject: Some(imgsearch_proto::v1::condition::Subject::Attribute(
                "bucket".into(),
            )),
            test: Some(test),
        }],
    }
}

fn int(i: i64) -> AttributeValue {
    AttributeValue {
        value: Some(Value::Integer(i)),
    }
}

async fn load(args: &[String]) {
    let [gw, embedder, collection, rows, queries_out, files @ ..] = args else {
        panic!("usage: filter-bench load GATEWAY EMBEDDER COLLECTION ROWS QUERIES_OUT FILE...");
    };
    let rows: u64 = rows.parse().expect("ROWS");
    let bases = embed(embedder, files).await;
    let queries: Vec<Vec<f32>> = (0..64).map(|q| perturbed(&bases, rows + q)).collect();
    std::fs::write(queries_out, serde_json::to_string(&queries).unwrap()).unwrap();

    let row = move |i: u64| InsertRequest {
        filepath: format!("r/{i}"),
        vector: Some(Vector {
            values: perturbed(&bases, i),
        }),
        attributes: [("bucket".to_string(), int((i % 100) as i64))].into(),
        ..Default::default()
    };
    println!("{}", store(gw, collection, (0, rows), row).await);
}

async fn search(args: &[String]) {
    let [gw, collection, calls, queries] = args else {
        panic!("usage: filter-bench search GATEWAY COLLECTION CALLS QUERIES");
    };
    let calls: usize = calls.parse().expect("CALLS");
    let queries: Vec<Vec<f32>> =
        serde_json::from_slice(&std::fs::read(queries).expect("read QUERIES")).unwrap();
    let mut client = gateway(gw).await;
    let mut out = serde_json::Map::new();
    for (name, filter) in [
        ("none", None),
        ("1%", Some(bucket(Test::Eq(int(0))))),
        ("50%", Some(bucket(Test::Lt(int(50))))),
    ] {
        let (mut wall, mut milvus, mut hits) = (Vec::new(), Vec::new(), 0usize);
        // Ten untimed calls warm the connection and Milvus's caches.
        for i in 0..calls + 10 {
            let started = Instant::now();
            let r = client
                .search(SearchRequest {
                    collection: collection.clone(),
                    vectors: vec![Vector {
                        values: queries[i % queries.len()].clone(),
                    }],
                    top_k: 10,
                    filter: filter.clone(),
                    ..Default::default()
                })
                .await
                .expect("search")
                .into_inner();
            if i >= 10 {
                wall.push(started.elapsed().as_secs_f64());
                milvus.push(r.search_seconds);
                hits += r.results[0].hits.len();
            }
        }
        out.insert(
            name.into(),
            serde_json::json!({
                "wall": summary(wall),
                "milvus": summary(milvus),
                "mean_hits": hits as f64 / calls as f64,
            }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") => load(&args[1..]).await,
        Some("search") => search(&args[1..]).await,
        _ => panic!("usage: filter-bench load ... | filter-bench search ..."),
    }
}
