//! An ingest interrupted by a dying embedder or a restarting Milvus, with
//! more than 2,000 images sent: the CLI reports exactly the rows Milvus
//! holds, and the documented resume (`imgsearch ingest --skip-existing`)
//! leaves each filepath stored exactly once.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use imgsearch_proto::v1::{ListCollectionsRequest, SearchRequest};
use imgsearch_tests::{
    cli::{spawn_ingest, wait_ingest, write_pngs, Ended},
    embedder::{quick_precision, EmbedderProcess},
    gateway::{GatewayFlags, GatewayProcess},
    insert::{create, distinct_pngs},
    milvus::Milvus,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const IMAGES: u64 = 2200;
/// The fault strikes once this many images went through.
const FAULT_AT: f64 = 2000.0;
const BATCH: u32 = 32;

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milvus's rows, retried while a restarted Milvus reloads the collection.
async fn rows_when_loaded(milvus: &Milvus, name: &str) -> Vec<(i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let attempt = tokio::spawn({
            let uri = milvus.uri();
            let name = name.to_string();
            async move { Milvus::rows_at(&uri, &name).await }
        })
        .await;
        match attempt {
            Ok(rows) => return rows,
            Err(e) if Instant::now() < deadline => {
                println!("rows not readable yet: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => panic!("rows never readable: {e}"),
        }
    }
}

/// Every image of the tree stored exactly once.
fn assert_each_stored_once(rows: &[(i64, String)]) {
    let paths: BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(paths.len(), rows.len(), "a filepath stored twice");
    assert_eq!(rows.len() as u64, IMAGES, "every filepath stored");
}

fn interrupted(ended: &Ended) -> u64 {
    assert_eq!(ended.status.code(), Some(3), "{}", ended.stderr);
    assert!(ended.report["error"]
        .as_str()
        .unwrap()
        .contains("Unavailable"));
    assert!(ended.stderr.contains("--skip-existing"), "{}", ended.stderr);
    ended.report["inserted"].as_u64().unwrap()
}

/// The gateway's flags for these tests: batches of [`BATCH`].
fn batches() -> GatewayFlags {
    GatewayFlags {
        batch_size: Some(BATCH),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_killed_mid_ingest_leaves_exactly_the_acknowledged_rows() {
    let milvus = Milvus::shared();
    let dir = tempfile::tempdir().unwrap();
    write_pngs(dir.path(), "img", 0, IMAGES);
    let mut embedder = EmbedderProcess::start(&["--precision", quick_precision()]).await;
    let gateway = GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &batches()).await;
    let name = "embedder_killed";
    create(&mut gateway.client().await, name).await;
    let addr = format!("127.0.0.1:{}", gateway.grpc_port);

    let ingest = spawn_ingest(&addr, dir.path(), name, &[]);
    wait_until("2,000 images embedded", Duration::from_secs(600), || {
        embedder.metric("embedder_images_total") >= FAULT_AT
    })
    .await;
    embedder.kill();
    let ended = tokio::task::block_in_place(|| wait_ingest(ingest));
    let acknowledged = interrupted(&ended);
    let stored = milvus.rows(name).await.len() as u64;
    println!("embedder killed: {acknowledged} rows acknowledged, {stored} in Milvus");
    assert_eq!(
        acknowledged, stored,
        "acknowledged rows are exactly Milvus's rows"
    );

    // The documented resume, through a fresh embedder.
    let embedder = EmbedderProcess::start(&["--precision", quick_precision()]).await;
    let gateway = GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &batches()).await;
    let addr = format!("127.0.0.1:{}", gateway.grpc_port);
    let resumed = tokio::task::block_in_place(|| {
        wait_ingest(spawn_ingest(&addr, dir.path(), name, &["--skip-existing"]))
    });
    assert!(resumed.status.success(), "{}", resumed.stderr);
    assert_eq!(resumed.report["skipped"].as_u64(), Some(stored));
    assert_eq!(
        embedder.metric("embedder_images_total") as u64,
        IMAGES - stored,
        "nothing embedded twice"
    );
    let rows = milvus.rows(name).await;
    println!("after resume: {} rows", rows.len());
    assert_each_stored_once(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_restarted_mid_ingest_leaves_exactly_the_acknowledged_rows() {
    let mut milvus = Milvus::start().expect("own milvus");
    let dir = tempfile::tempdir().unwrap();
    write_pngs(dir.path(), "img", 10_000, IMAGES);
    let embedder = EmbedderProcess::start(&["--precision", quick_precision()]).await;
    let mut gateway = GatewayProcess::start(
        &milvus.uri(),
        &[embedder.uri()],
        &GatewayFlags {
            milvus_timeout_secs: Some(3),
            milvus_attempts: Some(2),
            ..batches()
        },
    )
    .await;
    let name = "milvus_restarted";
    let mut client = gateway.client().await;
    create(&mut client, name).await;
    let addr = format!("127.0.0.1:{}", gateway.grpc_port);

    let ingest = spawn_ingest(&addr, dir.path(), name, &[]);
    wait_until("2,000 rows inserted", Duration::from_secs(600), || {
        gateway.metric("gateway_inserted_rows_total") >= FAULT_AT
    })
    .await;
    milvus.stop();
    let ended = tokio::task::block_in_place(|| wait_ingest(ingest));
    let acknowledged = interrupted(&ended);

    // Readiness follows Milvus; liveness does not, so Kubernetes takes the
    // gateway out of the Service without restarting it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.health("imgsearch.v1.ImageSearch").await != Some(ServingStatus::NotServing) {
        assert!(Instant::now() < deadline, "still SERVING without Milvus");
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

    milvus.resume().expect("milvus back");
    gateway.wait_serving(Duration::from_secs(120)).await;
    let stored = rows_when_loaded(&milvus, name).await.len() as u64;
    println!("Milvus restarted: {acknowledged} rows acknowledged, {stored} in Milvus");
    assert_eq!(
        acknowledged, stored,
        "acknowledged rows are exactly Milvus's rows"
    );

    let resumed = tokio::task::block_in_place(|| {
        wait_ingest(spawn_ingest(&addr, dir.path(), name, &["--skip-existing"]))
    });
    assert!(resumed.status.success(), "{}", resumed.stderr);
    assert_eq!(resumed.report["skipped"].as_u64(), Some(stored));
    let rows = milvus.rows(name).await;
    println!("after resume: {} rows", rows.len());
    assert_each_stored_once(&rows);

    // Search is served again without a gateway restart.
    let image = distinct_pngs(10_000, 1).remove(0);
    let hits = client
        .search(SearchRequest {
            collection: name.into(),
            images: vec![image.into()],
            top_k: 1,
            ..Default::default()
        })
        .await
        .expect("search after the restart")
        .into_inner();
    let first = &hits.results[0].hits[0].filepath;
    assert!(first.ends_with("/img00000.png"), "{first}");
}
