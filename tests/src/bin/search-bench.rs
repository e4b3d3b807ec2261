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
//!     search-bench GATEWAY EMBEDDER COLLECTION CALLS VECTORS_OUT FILE...

use std::time::Instant;

use imgsearch_tests::latency::summary;

use imgsearch_proto::v1::{
    embed_response, embedder_client::EmbedderClient, image_search_client::ImageSearchClient,
    Consistency, EmbedBatchRequest, SearchRequest, Vector,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gateway, embedder, collection, calls, vectors_out, files @ ..] = args.as_slice() else {
        panic!("usage: search-bench GATEWAY EMBEDDER COLLECTION CALLS VECTORS_OUT FILE...");
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
        let (mut wall, mut embed, mut milvus) = (Vec::new(), Vec::new(), Vec::new());
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
                wall.push(started.elapsed().as_secs_f64());
                embed.push(r.embed_seconds);
                milvus.push(r.search_seconds);
            }
        }
        levels.insert(
            name.into(),
            serde_json::json!({
                "wall": summary(wall),
                "embed": summary(embed),
                "milvus": summary(milvus),
            }),
        );
    }
    println!("{}", serde_json::Value::Object(levels));
}
