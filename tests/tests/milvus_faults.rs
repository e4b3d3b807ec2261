//! A Milvus that throttles, slows down or refuses rows, through a proxy
//! before the real one: the rows wait, none is reported bad, no embedder is
//! taken for stalled, and a resume beside failing rows skips only what is
//! stored. (A Milvus that stops: `ingest_faults.rs`.)

use std::time::Duration;

use imgsearch_proto::v1::ErrorKind;
use imgsearch_tests::{
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    insert::{collect, create, insert, named_pngs, requests, Answers},
    milvus::Milvus,
    milvus_proxy::MilvusProxy,
    stack::Client,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// An embedder and a gateway that reaches the shared Milvus through a
/// proxy, and a client of the gateway with `collection` created.
struct Proxied {
    proxy: MilvusProxy,
    gateway: GatewayProcess,
    client: Client,
    embedder: EmbedderProcess,
}

async fn proxied(flags: GatewayFlags, collection: &str) -> Proxied {
    let proxy = MilvusProxy::start(&Milvus::shared().uri()).await;
    let embedder = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(proxy.uri(), &[embedder.uri()], &flags).await;
    let mut client = gateway.client().await;
    create(&mut client, collection).await;
    Proxied {
        proxy,
        gateway,
        client,
        embedder,
    }
}

/// Each filepath stored, and stored once, counted in Milvus.
async fn assert_stored_once(collection: &str, n: usize) {
    let rows = Milvus::shared().rows(collection).await;
    let mut paths: Vec<_> = rows.iter().map(|(_, p)| p.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(
        (rows.len(), paths.len()),
        (n, n),
        "rows and distinct filepaths"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_milvus_throttles_for_a_while_are_sent_again_and_none_is_refused() {
    let name = "throttled_for_a_while";
    let flags = GatewayFlags {
        batch_size: Some(8),
        ..Default::default()
    };
    let mut p = proxied(flags, name).await;
    p.proxy.throttle_inserts_for(Duration::from_secs(4));

    let answers = insert(&mut p.client, name, named_pngs("t", 0, 40)).await;

    assert!(answers.error.is_none(), "{:?}", answers.error);
    answers.assert_every_item_settled_once();
    assert_eq!(answers.failures(), vec![], "no row fails");
    assert!(p.proxy.refused_inserts() > 0, "the throttle was met");
    assert_eq!(
        p.gateway.metric("gateway_milvus_throttled_total"),
        p.proxy.refused_inserts() as f64
    );
    assert_stored_once(name, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_that_outlasts_the_wait_fails_its_rows_overloaded_naming_the_flag() {
    let name = "throttled_for_good";
    let flags = GatewayFlags {
        batch_size: Some(8),
        milvus_throttle_wait_secs: Some(2),
        ..Default::default()
    };
    let mut p = proxied(flags, name).await;
    p.proxy.throttle_inserts_for(Duration::from_secs(600));

    let answers = insert(&mut p.client, name, named_pngs("g", 0, 8)).await;

    answers.assert_every_item_settled_once();
    let failures = answers.failures();
    assert_eq!(failures.len(), 8);
    for f in &failures {
        let error = f.error.as_ref().unwrap();
        assert_eq!(error.kind(), ErrorKind::Overloaded, "{}", error.message);
        assert!(
            error.message.contains("--milvus-throttle-wait-secs"),
            "{}",
            error.message
        );
    }
    let status = answers.error.expect("the stream ends with the throttle");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_stored_once(name, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_milvus_slower_than_the_embed_timeout_stalls_no_stream_and_fails_no_item() {
    let name = "slow_milvus";
    let flags = GatewayFlags {
        batch_size: Some(8),
        embed_timeout_secs: Some(2),
        ..Default::default()
    };
    let mut p = proxied(flags, name).await;
    // Each commit waits 3 s for Milvus while the embedder goes on
    // answering: more than the 2 s the stall timer allows the embedder.
    p.proxy.delay_replies(Duration::from_secs(3));

    let answers = insert(&mut p.client, name, named_pngs("s", 0, 40)).await;

    assert!(answers.error.is_none(), "{:?}", answers.error);
    answers.assert_every_item_settled_once();
    assert_eq!(answers.failures(), vec![], "no item fails");
    p.proxy.delay_replies(Duration::ZERO);
    assert_stored_once(name, 40).await;
}

/// The filepaths of `items` that `answers` reports under `indices`.
fn named(items: &[(String, Vec<u8>)], indices: impl IntoIterator<Item = u64>) -> Vec<String> {
    let mut paths: Vec<String> = indices
        .into_iter()
        .map(|i| items[i as usize].0.clone())
        .collect();
    paths.sort();
    paths
}

fn stored_paths(items: &[(String, Vec<u8>)], answers: &Answers) -> Vec<String> {
    named(items, answers.stored().iter().map(|s| s.index))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_beside_a_stream_whose_rows_fail_skips_only_what_that_stream_stored() {
    let name = "claims_awaited";
    let flags = GatewayFlags {
        batch_size: Some(16),
        ..Default::default()
    };
    let mut p = proxied(flags, name).await;
    let items = named_pngs("c", 0, 16);
    // Milvus refuses every other row of the first stream (once each).
    p.proxy
        .refuse_rows_once(items.iter().step_by(2).map(|(f, _)| f.clone()));

    // The first stream holds every filepath's claim: its items are embedded
    // and wait in an open batch of 16.
    let (first_tx, first_rx) = tokio::sync::mpsc::channel(16);
    for r in requests(name, items.clone(), true) {
        first_tx.send(r).await.unwrap();
    }
    let mut c = p.client.clone();
    let first =
        tokio::spawn(async move { collect(c.insert(ReceiverStream::new(first_rx)).await).await });
    let embedder = &p.embedder;
    for _ in 0..600 {
        if embedder.metric("embedder_images_total") >= 16.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(embedder.metric("embedder_images_total"), 16.0);

    // The same tree again, resuming, while those claims are held.
    let second = collect(
        p.client
            .insert(tokio_stream::iter(requests(name, items.clone(), true)))
            .await,
    )
    .await;
    drop(first_tx);
    let first = first.await.unwrap();

    for answers in [&first, &second] {
        assert!(answers.error.is_none(), "{:?}", answers.error);
        answers.assert_every_item_settled_once();
    }
    assert_eq!(first.failures().len(), 8, "half the first stream's rows");
    assert_eq!(
        named(&items, second.skipped()),
        stored_paths(&items, &first),
        "skipped exactly what the first stream stored"
    );
    assert_eq!(
        stored_paths(&items, &second),
        named(&items, first.failures().iter().map(|f| f.index)),
        "stored what the first stream failed"
    );
    assert_stored_once(name, 16).await;
}
