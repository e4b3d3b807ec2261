//! Embedder replicas: load spread over them, a dead one skipped. (An
//! embedder or Milvus dying mid-ingest: `ingest_faults.rs`.)

use imgsearch_proto::v1::SearchRequest;
use imgsearch_tests::{
    deps, embedder::EmbedderProcess, gateway::GatewayFlags, gateway::GatewayProcess,
    insert::create, milvus::Milvus,
};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spreads_over_embedders_and_a_dead_one_is_skipped() {
    let milvus = Milvus::shared();
    let first = EmbedderProcess::start(&[]).await;
    let mut second = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(
        &milvus.uri(),
        &[first.uri(), second.uri()],
        &GatewayFlags::default(),
    )
    .await;
    let mut client = gateway.client().await;
    let name = "two_embedders";
    create(&mut client, name).await;
    let image = std::fs::read(&deps::fixture_images()[7]).unwrap();
    let search = SearchRequest {
        collection: name.into(),
        images: vec![image.into()],
        vectors: vec![],
        top_k: 1,
        ..Default::default()
    };

    for _ in 0..16 {
        client.search(search.clone()).await.expect("search");
    }
    let (a, b) = (
        first.metric("embedder_images_total"),
        second.metric("embedder_images_total"),
    );
    println!("spread: {a} + {b}");
    assert!(a > 0.0 && b > 0.0, "load not spread: {a} and {b}");

    second.kill();
    // A call caught on the dying replica may fail; after that, all succeed.
    let mut failures = 0;
    for _ in 0..10 {
        if let Err(s) = client.search(search.clone()).await {
            assert_eq!(s.code(), Code::Unavailable, "{s:?}");
            failures += 1;
        }
    }
    assert!(
        failures <= 2,
        "{failures} of 10 searches failed with one embedder still up"
    );
    for _ in 0..5 {
        client
            .search(search.clone())
            .await
            .expect("served by the remaining embedder");
    }
}
