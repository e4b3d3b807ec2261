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

use imgsearch_tests::latency::summary;

use imgsearch_proto::v1::{
    attribute_value::Value, condition::Test, embed_response, embedder_client::EmbedderClient,
    image_search_client::ImageSearchClient, insert_response::Event, AttributeValue, Condition,
    DescribeCollectionRequest, EmbedBatchRequest, Filter, InsertRequest, SearchRequest, Vector,
};

/// A deterministic standard-normal-ish sample stream for `seed` (the sum of
/// four uniforms, centred and scaled).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| (uniform() + uniform() + uniform() + uniform() - 2.0) * 3f32.sqrt())
        .collect()
}

/// Photo `seed mod n`'s vector plus noise of 5 % of its RMS.
fn perturbed(bases: &[Vec<f32>], seed: u64) -> Vec<f32> {
    let base = &bases[(seed % bases.len() as u64) as usize];
    let rms = (base.iter().map(|v| v * v).sum::<f32>() / base.len() as f32).sqrt();
    base.iter()
        .zip(noise(seed, base.len()))
        .map(|(b, e)| b + 0.05 * rms * e)
        .collect()
}

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

type Gateway = ImageSearchClient<tonic::transport::Channel>;

async fn gateway(uri: &str) -> Gateway {
    ImageSearchClient::new(imgsearch_tests::channel(uri).await.unwrap())
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20)
}

async fn embed(uri: &str, files: &[String]) -> Vec<Vec<f32>> {
    let mut embedder = EmbedderClient::new(imgsearch_tests::channel(uri).await.unwrap())
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let mut out = Vec::new();
    for chunk in files.chunks(imgsearch_proto::limits::MAX_EMBED_BATCH_IMAGES) {
        let images = chunk
            .iter()
            .map(|f| std::fs::read(f).expect("read a photo").into())
            .collect();
        let answer = embedder
            .embed_batch(EmbedBatchRequest { images })
            .await
            .expect("embed the photos");
        out.extend(
            answer
                .into_inner()
                .results
                .into_iter()
                .map(|r| match r.result {
                    Some(embed_response::Result::Vector(v)) => v.values,
                    other => panic!("a photo did not embed: {other:?}"),
                }),
        );
    }
    out
}

async fn load(args: &[String]) {
    let [gw, embedder, collection, rows, queries_out, files @ ..] = args else {
        panic!("usage: filter-bench load GATEWAY EMBEDDER COLLECTION ROWS QUERIES_OUT FILE...");
    };
    let rows: u64 = rows.parse().expect("ROWS");
    let bases = embed(embedder, files).await;
    let queries: Vec<Vec<f32>> = (0..64).map(|q| perturbed(&bases, rows + q)).collect();
    std::fs::write(queries_out, serde_json::to_string(&queries).unwrap()).unwrap();

    let mut client = gateway(gw).await;
    let fingerprint = client
        .describe_collection(DescribeCollectionRequest {
            name: collection.clone(),
        })
        .await
        .expect("describe")
        .into_inner()
        .fingerprint;
    let (collection, started) = (collection.clone(), Instant::now());
    // Made as the stream is read, so the loader holds a few rows, not all.
    let items = tokio_stream::iter((0..rows).map(move |i| InsertRequest {
        collection: if i == 0 {
            collection.clone()
        } else {
            String::new()
        },
        fingerprint: if i == 0 {
            fingerprint.clone()
        } else {
            String::new()
        },
        filepath: format!("r/{i}"),
        vector: Some(Vector {
            values: perturbed(&bases, i),
        }),
        attributes: [("bucket".to_string(), int((i % 100) as i64))].into(),
        ..Default::default()
    }));
    let mut answers = client.insert(items).await.expect("insert").into_inner();
    let mut inserted = 0;
    while let Some(a) = answers.message().await.expect("insert answers") {
        if let Some(Event::Summary(s)) = a.event {
            inserted = s.inserted;
        }
    }
    assert_eq!(inserted, rows, "every row stored");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"rows": rows, "seconds": seconds, "rows_per_s": rows as f64 / seconds})
    );
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
