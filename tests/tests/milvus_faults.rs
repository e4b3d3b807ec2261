//! A Milvus that throttles or slows down, through a proxy before the real
//! one: the rows wait, none is reported bad, no embedder is taken for
//! stalled. (A Milvus that stops: `ingest_faults.rs`.)

use std::time::Duration;

use imgsearch_proto::v1::ErrorKind;
use imgsearch_tests::{
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    insert::{create, insert, named_pngs},
    milvus::Milvus,
    milvus_proxy::MilvusProxy,
    stack::Client,
};
use tonic::Code;

/// An embedder and a gateway that reaches the shared Milvus through a
/// proxy, and a client of the gateway with `collection` created.
struct Proxied {
    proxy: MilvusProxy,
    gateway: GatewayProcess,
    client: Client,
    _embedder: EmbedderProcess,
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
        _embedder: embedder,
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
