//! Failures around the gateway: an embedder killed mid-Insert, Milvus
//! stopped and started again.

use std::time::Duration;

use imgsearch_proto::v1::{
    CreateCollectionRequest, InsertRequest, InsertSummary, ListCollectionsRequest, SearchRequest,
};
use imgsearch_tests::{deps, embedder::EmbedderProcess, gateway::GatewayProcess, milvus::Milvus};
use milvus::v2::prelude as mv;
use prost::Message;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedder_killed_mid_insert_reports_what_was_committed() {
    let milvus = Milvus::shared();
    let mut embedder = EmbedderProcess::start(&["--max-batch", "2"]).await;
    let gateway =
        GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &["--batch-size", "4"]).await;
    let mut client = gateway.client().await;
    let name = "embedder_killed";
    client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
        })
        .await
        .unwrap();

    let images: Vec<Vec<u8>> = deps::fixture_images()
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        client
            .insert(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let mut sent = 0u64;
    for (i, image) in images.iter().take(8).enumerate() {
        tx.send(InsertRequest {
            collection: name.into(),
            filepath: format!("img{i}.jpg"),
            image: image.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        sent += 1;
    }
    // Let the first batches through, then crash the embedder mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while embedder.metric("embedder_images_total") < 8.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "embedder never embedded the first images"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    embedder.kill();
    for (i, image) in images.iter().enumerate().skip(8).take(4) {
        if tx
            .send(InsertRequest {
                collection: String::new(),
                filepath: format!("img{i}.jpg"),
                image: image.clone(),
                ..Default::default()
            })
            .await
            .is_ok()
        {
            sent += 1;
        }
    }
    drop(tx);
    let status = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let summary =
        InsertSummary::decode(status.details()).expect("InsertSummary in the status details");
    println!(
        "{}: inserted {}, failed {}, sent {sent}",
        status.message(),
        summary.inserted,
        summary.failures.len()
    );
    assert!(
        summary.inserted >= 8,
        "rows embedded before the crash were committed"
    );
    assert!(summary.inserted + summary.failures.len() as u64 <= sent);
    assert_eq!(summary.ids.len() as u64, summary.inserted);

    // Milvus holds exactly the reported rows: none lost, none doubled.
    let sdk = mv::ClientV2::new(&mv::ConnectConfig::new().uri(milvus.uri()))
        .await
        .unwrap();
    let rows = sdk
        .query(
            mv::QueryRequest::builder()
                .collection_name(name)
                .filter("id >= 0")
                .output_fields(["id"])
                .consistency_level(mv::ConsistencyLevel::Strong)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut stored: Vec<i64> = rows
        .results()
        .get_output_fields()
        .iter()
        .find_map(|f| match f {
            mv::FieldData::Int64 { name, values } if name == "id" => Some(values.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let mut reported = summary.ids.clone();
    stored.sort();
    reported.sort();
    assert_eq!(stored, reported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_restart_is_unavailable_then_served_again() {
    let mut milvus = Milvus::start().expect("own milvus");
    let embedder = EmbedderProcess::start(&[]).await;
    let mut gateway = GatewayProcess::start(
        &milvus.uri(),
        &[embedder.uri()],
        &["--milvus-timeout-secs", "3", "--milvus-attempts", "2"],
    )
    .await;
    let mut client = gateway.client().await;
    let name = "milvus_restart";
    client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
        })
        .await
        .unwrap();
    let image = std::fs::read(&deps::fixture_images()[3]).unwrap();
    let insert = |image: Vec<u8>| InsertRequest {
        collection: name.into(),
        filepath: "before.jpg".into(),
        image,
        ..Default::default()
    };
    client
        .insert(tokio_stream::iter(vec![insert(image.clone())]))
        .await
        .unwrap();

    milvus.stop();
    // Readiness follows Milvus; liveness does not, so Kubernetes takes the
    // gateway out of the Service without restarting it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gateway.health("imgsearch.v1.ImageSearch").await != Some(ServingStatus::NotServing) {
        assert!(
            std::time::Instant::now() < deadline,
            "still SERVING without Milvus"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        gateway.health("liveness").await,
        Some(ServingStatus::Serving)
    );
    let down = client
        .list_collections(ListCollectionsRequest {})
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    let search = SearchRequest {
        collection: name.into(),
        images: vec![image.clone()],
        vectors: vec![],
        top_k: 1,
    };
    assert_eq!(
        client.search(search.clone()).await.unwrap_err().code(),
        Code::Unavailable
    );

    milvus.resume().expect("milvus back");
    gateway.wait_serving(Duration::from_secs(120)).await;
    // Milvus reloads the collection after its restart: allow it a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let hits = loop {
        match client.search(search.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(s) if std::time::Instant::now() < deadline => {
                println!("not yet: {:?} {}", s.code(), s.message());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(s) => panic!("not served again without a gateway restart: {s:?}"),
        }
    };
    assert_eq!(hits.results[0].hits[0].filepath, "before.jpg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spreads_over_embedders_and_a_dead_one_is_skipped() {
    let milvus = Milvus::shared();
    let first = EmbedderProcess::start(&[]).await;
    let mut second = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(&milvus.uri(), &[first.uri(), second.uri()], &[]).await;
    let mut client = gateway.client().await;
    let name = "two_embedders";
    client
        .create_collection(CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
        })
        .await
        .unwrap();
    let image = std::fs::read(&deps::fixture_images()[7]).unwrap();
    let search = SearchRequest {
        collection: name.into(),
        images: vec![image],
        vectors: vec![],
        top_k: 1,
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
