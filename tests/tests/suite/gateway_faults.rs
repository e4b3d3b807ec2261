//! Embedder replicas: load spread over them, a dead one skipped. (An
//! embedder or Milvus dying mid-ingest: `ingest_faults.rs`.)

use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_model_stalls_turns_not_serving_and_searches_go_to_the_other() {
    use imgsearch_proto::v1::{EmbedBatchRequest, InfoRequest};
    use tonic_health::pb::health_check_response::ServingStatus;
    let milvus = Milvus::shared();
    let stalled = EmbedderProcess::start_with_env(
        &["--stall-timeout-secs", "2"],
        &[("IMGSEARCH_EMBEDDER_FAULT", "model-stall")],
    )
    .await;
    let healthy = EmbedderProcess::start(&[]).await;
    let flags = GatewayFlags {
        embed_timeout_secs: Some(5),
        ..Default::default()
    };
    let gateway =
        GatewayProcess::start(&milvus.uri(), &[stalled.uri(), healthy.uri()], &flags).await;
    let mut client = gateway.client().await;
    let name = "stalled_replica";
    create(&mut client, name).await;
    let image = std::fs::read(&deps::fixture_images()[3]).unwrap();

    // Its model takes one batch and never finishes it.
    let mut direct = stalled.client().await;
    let stuck = image.clone();
    tokio::spawn(async move {
        let _ = direct
            .embed_batch(EmbedBatchRequest {
                images: vec![stuck.into()],
            })
            .await;
    });
    let started = std::time::Instant::now();
    while stalled.health("").await != Some(ServingStatus::NotServing) {
        assert!(started.elapsed() < Duration::from_secs(10), "still SERVING");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("NOT_SERVING after {:?}", started.elapsed());
    let info = stalled
        .client()
        .await
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.stalled_for_ms >= 2000, "{info:?}");

    // The gateway's next health round (about 2 s) takes it out of the order.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let search = SearchRequest {
        collection: name.into(),
        images: vec![image.into()],
        top_k: 1,
        ..Default::default()
    };
    for i in 0..10 {
        client
            .search(search.clone())
            .await
            .unwrap_or_else(|s| panic!("search {i} failed: {s:?}"));
    }
    assert_eq!(gateway.health("").await, Some(ServingStatus::Serving));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_is_routed_around_and_kept_out_until_a_real_call_succeeds_on_it() {
    use std::time::Instant;
    use tonic_health::pb::health_check_response::ServingStatus;
    let milvus = Milvus::shared();
    let frozen = EmbedderProcess::start(&[]).await;
    let healthy = EmbedderProcess::start(&[]).await;
    let flags = GatewayFlags {
        embed_timeout_secs: Some(4),
        ..Default::default()
    };
    let gateway =
        GatewayProcess::start(&milvus.uri(), &[frozen.uri(), healthy.uri()], &flags).await;
    let mut client = gateway.client().await;
    let name = "frozen_replica";
    create(&mut client, name).await;
    let search = SearchRequest {
        collection: name.into(),
        images: vec![std::fs::read(&deps::fixture_images()[5]).unwrap().into()],
        top_k: 1,
        ..Default::default()
    };
    for _ in 0..4 {
        client.search(search.clone()).await.expect("both serve");
    }
    let ready = || gateway.metric("gateway_embedder_replicas_ready");
    let frozen_images = || frozen.metric("embedder_images_total");

    frozen.freeze();
    let frozen_at = Instant::now();
    // Searches at once: those caught on the frozen replica end UNAVAILABLE
    // after --embed-timeout-secs; the rest go to the other.
    let calls = (0..4).map(|_| {
        let (mut c, s) = (client.clone(), search.clone());
        tokio::spawn(async move { c.search(s).await.map_err(|s| s.code()) })
    });
    let ended = futures::future::join_all(calls).await;
    let failed = ended
        .iter()
        .filter(|r| r.as_ref().unwrap().is_err())
        .count();
    for r in &ended {
        if let Err(code) = r.as_ref().unwrap() {
            assert_eq!(*code, Code::Unavailable);
        }
    }
    assert!(
        (1..=2).contains(&failed),
        "{failed} of 4 searches failed beside a serving replica (none: it was never tried)"
    );
    while ready() != 1.0 {
        assert!(
            frozen_at.elapsed() < Duration::from_secs(12),
            "still counted ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "frozen replica out after {:?}; {failed} of 4 searches caught on it",
        frozen_at.elapsed()
    );
    for i in 0..10 {
        client
            .search(search.clone())
            .await
            .unwrap_or_else(|s| panic!("search {i} after it was taken out: {s:?}"));
    }
    assert_eq!(gateway.health("").await, Some(ServingStatus::Serving));

    // Back: Info answers again, which is not enough while a real call
    // failed on it; the next search is its trial and brings it back.
    frozen.thaw();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        ready(),
        1.0,
        "Info alone brought back a replica calls failed on"
    );
    let counted = frozen_images();
    for _ in 0..4 {
        client.search(search.clone()).await.expect("search");
    }
    assert!(frozen_images() > counted, "the thawed replica got no trial");
    let started = Instant::now();
    while ready() != 2.0 {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "not counted ready again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
