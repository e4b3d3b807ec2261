//! Hostile requests through the gateway: an image that would have killed an
//! embedder, a request that does kill one, and a flood of cancelled searches.

use std::time::{Duration, Instant};

use futures::StreamExt;
use imgsearch_proto::v1::{ErrorKind, SearchRequest};
use imgsearch_tests::{
    deps, embedder::EmbedderProcess, gateway::GatewayFlags, gateway::GatewayProcess, hostile,
    insert::create, milvus::Milvus,
};
use tonic::Code;

fn search(collection: &str, image: Vec<u8>) -> SearchRequest {
    SearchRequest {
        collection: collection.into(),
        images: vec![image.into()],
        vectors: vec![],
        top_k: 1,
        ..Default::default()
    }
}

async fn replicas(n: usize, env: &[(&str, &str)]) -> Vec<EmbedderProcess> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(EmbedderProcess::start_with_env(&[], env).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strip_pillow_cannot_resize_is_refused_and_every_replica_keeps_serving() {
    let mut embedders = replicas(3, &[]).await;
    let uris: Vec<String> = embedders.iter().map(|e| e.uri()).collect();
    let gateway =
        GatewayProcess::start(&Milvus::shared().uri(), &uris, &GatewayFlags::default()).await;
    let mut client = gateway.client().await;
    create(&mut client, "strip_refused").await;

    let strip = hostile::png(&hostile::noise(1, 1_000_000, 9));
    let answer = client
        .search(search("strip_refused", strip))
        .await
        .expect("a per-query error, not a failed call")
        .into_inner();
    let error = answer.results[0].error.as_ref().expect("a per-query error");
    assert_eq!(error.kind(), ErrorKind::ImageTooLarge, "{error:?}");

    let photo = std::fs::read(&deps::fixture_images()[2]).unwrap();
    for _ in 0..6 {
        client
            .search(search("strip_refused", photo.clone()))
            .await
            .expect("served");
    }
    for e in embedders.iter_mut() {
        assert!(e.alive(), "an embedder died:\n{}", e.log());
        assert!(
            e.metric("embedder_images_total") >= 1.0,
            "{} served nothing",
            e.uri()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_kills_its_embedder_is_not_carried_to_the_next() {
    let mut embedders = replicas(3, &[("IMGSEARCH_EMBEDDER_FAULT", "abort-on-decode")]).await;
    let uris: Vec<String> = embedders.iter().map(|e| e.uri()).collect();
    let gateway =
        GatewayProcess::start(&Milvus::shared().uri(), &uris, &GatewayFlags::default()).await;
    let mut client = gateway.client().await;
    create(&mut client, "poisonous").await;

    let photo = std::fs::read(&deps::fixture_images()[2]).unwrap();
    let status = client
        .search(search("poisonous", photo))
        .await
        .expect_err("the embedder died holding the call");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dead = embedders
        .iter_mut()
        .map(|e| !e.alive())
        .filter(|&d| d)
        .count();
    assert_eq!(dead, 1, "one request took down {dead} replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_searches_leave_no_work_behind() {
    let mut embedder = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(
        &Milvus::shared().uri(),
        &[embedder.uri()],
        &GatewayFlags::default(),
    )
    .await;
    let mut client = gateway.client().await;
    create(&mut client, "cancel_flood").await;
    let photo = std::fs::read(&deps::fixture_images()[2]).unwrap();
    let mut usual = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        client
            .search(search("cancel_flood", photo.clone()))
            .await
            .unwrap();
        usual = usual.max(t.elapsed());
    }

    // 24-megapixel photos: a few hundred ms of decoding each on this machine.
    let large = hostile::smooth_jpeg(6000, 4000);
    let started = Instant::now();
    futures::stream::iter(0..200)
        .map(|_| {
            let (mut client, request) = (client.clone(), search("cancel_flood", large.clone()));
            async move {
                let _ =
                    tokio::time::timeout(Duration::from_millis(300), client.search(request)).await;
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<()>>()
        .await;
    println!("200 cancelled searches in {:?}", started.elapsed());

    let t = Instant::now();
    client
        .search(search("cancel_flood", photo))
        .await
        .expect("served after the flood");
    let after = t.elapsed();
    let peak = embedder.peak_rss_bytes();
    println!(
        "search before the flood {usual:?}, right after {after:?}; embedder peak RSS {} MiB",
        peak >> 20
    );
    assert!(
        after < usual + Duration::from_secs(2),
        "a search waited {after:?} behind abandoned work (usually {usual:?})"
    );
    assert!(peak < 3 << 30, "peak RSS {} MiB", peak >> 20);
    assert!(embedder.alive());
}
