//! Load generator for `scripts/bench_search.sh`: one-image Search calls
//! against a running gateway, one after another, for each consistency
//! level, and once more at the default level with the query vectors instead
//! of the images (no embedder at work: on a 2-core machine the embedder's
//! threads otherwise compete with Milvus for the CPU); per row the p50 and
//! p99 of the call's wall time, of its embedding time and of its Milvus
//! time. Also writes the query images'
//! vectors (from the embedder) as JSON, so the baseline searches the same
//! vectors. Prints one JSON object.
//!
//! Then the default level again over the HTTP API: the image as a multipart
//! form, and the vector as JSON. Each row also has the gateway's own time
//! per call (wall time less embedding and Milvus time), the part a
//! transport can change: HTTP against gRPC is compared on it, since the
//! embedding's own spread is larger than what is measured.
//!
//!     search-bench GATEWAY HTTP EMBEDDER COLLECTION CALLS VECTORS_OUT FILE...

use std::time::Instant;

use imgsearch_tests::latency::summary;

use imgsearch_proto::v1::{
    embed_response, embedder_client::EmbedderClient, image_search_client::ImageSearchClient,
    Consistency, EmbedBatchRequest, SearchRequest, Vector,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gateway, http, embedder, collection, calls, vectors_out, files @ ..] = args.as_slice()
    else {
        panic!("usage: search-bench GATEWAY HTTP EMBEDDER COLLECTION CALLS VECTORS_OUT FILE...");
    };
    assert!(!files.is_empty(), "give query images");
    let calls: usize = calls.parse().expect("CALLS");
    let images: Vec<imgsearch_proto::Bytes> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read").into())
        .collect();

    let mut embedder = EmbedderClient::new(imgsearch_tests::channel(embedder).await.unwrap())
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let vectors: Vec<Vec<f32>> = embedder
        .embed_batch(EmbedBatchRequest {
            images: images.clone(),
        })
        .await
        .expect("embed the queries")
        .into_inner()
        .results
        .into_iter()
        .map(|r| match r.result {
            Some(embed_response::Result::Vector(v)) => v.values,
            other => panic!("a query did not embed: {other:?}"),
        })
        .collect();
    std::fs::write(vectors_out, serde_json::to_string(&vectors).unwrap()).unwrap();

    let mut client = ImageSearchClient::new(imgsearch_tests::channel(gateway).await.unwrap())
        .max_encoding_message_size(64 << 20);
    let mut levels = serde_json::Map::new();
    for (name, level, by_vector) in [
        ("session", Consistency::Session, false),
        ("strong", Consistency::Strong, false),
        ("bounded", Consistency::Bounded, false),
        ("eventually", Consistency::Eventually, false),
        ("session_vectors", Consistency::Session, true),
    ] {
        let mut times = Times::default();
        // Ten untimed calls warm the connection and Milvus's caches.
        for i in 0..calls + 10 {
            let started = Instant::now();
            let q = i % images.len();
            let (images, vectors) = if by_vector {
                (
                    vec![],
                    vec![Vector {
                        values: vectors[q].clone(),
                    }],
                )
            } else {
                (vec![images[q].clone()], vec![])
            };
            let r = client
                .search(SearchRequest {
                    collection: collection.clone(),
                    images,
                    vectors,
                    top_k: 3,
                    consistency: level as i32,
                    ..Default::default()
                })
                .await
                .expect("search")
                .into_inner();
            if i >= 10 {
                times.add(started, r.embed_seconds, r.search_seconds);
            }
        }
        levels.insert(name.into(), times.summary());
    }
    let rest =
        imgsearch_tests::rest::Rest::new(&format!("http://{}", http.trim_start_matches("http://")));
    let path = format!("/v1/collections/{collection}:search");
    for (name, by_vector) in [("http_form", false), ("http_vectors", true)] {
        let mut times = Times::default();
        for i in 0..calls + 10 {
            let q = i % images.len();
            let started = Instant::now();
            let answer = if by_vector {
                let body = serde_json::json!({"vectors": [{"values": vectors[q]}], "topK": 3});
                rest.post(&path, &body).await
            } else {
                rest.post_form(&path, &[images[q].to_vec()], &[("top_k", "3")])
                    .await
            };
            assert_eq!(answer.status, 200, "{}", answer.text);
            let r = answer.json();
            let seconds = |field: &str| r[field].as_f64().unwrap_or(0.0);
            if i >= 10 {
                times.add(started, seconds("embedSeconds"), seconds("searchSeconds"));
            }
        }
        levels.insert(name.into(), times.summary());
    }
    println!("{}", serde_json::Value::Object(levels));
}

/// One row's timings, per call.
#[derive(Default)]
struct Times {
    wall: Vec<f64>,
    embed: Vec<f64>,
    milvus: Vec<f64>,
    /// Wall time less embedding and Milvus time: the gateway's and the
    /// transport's own.
    own: Vec<f64>,
}

impl Times {
    fn add(&mut self, started: Instant, embed: f64, milvus: f64) {
        let wall = started.elapsed().as_secs_f64();
        self.wall.push(wall);
        self.embed.push(embed);
        self.milvus.push(milvus);
        self.own.push(wall - embed - milvus);
    }

    fn summary(self) -> serde_json::Value {
        serde_json::json!({
            "wall": summary(self.wall),
            "embed": summary(self.embed),
            "milvus": summary(self.milvus),
            "own": summary(self.own),
        })
    }
}
