//! A Milvus that throttles, slows down, stops answering or refuses rows,
//! through a proxy before the real one: rows, searches, lookups and
//! deletes wait, none is reported bad, no embedder is taken for stalled, a
//! slow commit holds back no answer behind it, every call ends within the
//! gateway's deadline, health tells the truth within a probe's deadline,
//! and a resume beside failing rows skips only what is stored. (A Milvus
//! that stops: `ingest_faults.rs`.)

use std::time::{Duration, Instant};

use imgsearch_proto::v1::{DeleteRequest, DescribeCollectionRequest, ErrorKind, SearchRequest};
use imgsearch_tests::{
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    insert::{collect, create, insert, named_pngs, requests, Answers},
    milvus::Milvus,
    milvus_proxy::MilvusProxy,
    search::{by_id, like},
    stack::Client,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_behind_a_batch_milvus_is_slow_to_take_are_acknowledged_before_it_lands() {
    let name = "commit_beside_answers";
    let flags = GatewayFlags {
        batch_size: Some(8),
        ..Default::default()
    };
    let p = proxied(flags, name).await;
    p.proxy.delay_inserts(Duration::from_secs(8));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut c = p.client.clone();
    let answers =
        tokio::spawn(async move { collect(c.insert(ReceiverStream::new(rx)).await).await });

    // A full batch goes to Milvus, which sits on it ...
    for r in requests(name, named_pngs("b", 0, 8), false) {
        tx.send(r).await.unwrap();
    }
    let sent = Instant::now();
    while p.proxy.inserts_received() == 0 {
        assert!(sent.elapsed() < Duration::from_secs(60), "no insert came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... while a batch's worth of images the embedder cannot decode follows.
    let garbage = (0..8).map(|i| (format!("garbage{i}"), b"not an image".to_vec()));
    for r in requests(name, garbage.collect(), false) {
        tx.send(r).await.unwrap();
    }
    drop(tx);
    let answers = answers.await.unwrap();

    assert!(answers.error.is_none(), "{:?}", answers.error);
    answers.assert_every_item_settled_once();
    let first = &answers.acks[0];
    assert_eq!(
        (first.failures.len(), first.stored.len()),
        (8, 0),
        "the failures were acknowledged while the batch was still at Milvus"
    );
    assert_stored_once(name, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_by_a_stored_row_whose_lookup_milvus_throttles_waits_and_is_answered() {
    let name = "like_throttled_for_a_while";
    let mut p = proxied(GatewayFlags::default(), name).await;
    let answers = insert(&mut p.client, name, named_pngs("l", 0, 4)).await;
    p.proxy
        .throttle_queries_and_deletes_for(Duration::from_secs(3));

    let answer = p
        .client
        .search(like(name, by_id(answers.id_of(0)), 2))
        .await
        .expect("the lookup waits the throttle out")
        .into_inner();

    assert!(
        p.proxy.refused_queries_and_deletes() > 0,
        "the throttle was met"
    );
    assert_eq!(answer.results[0].hits.len(), 2, "{answer:?}");
    assert_eq!(
        p.gateway.metric("gateway_milvus_throttled_total"),
        p.proxy.refused_queries_and_deletes() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_milvus_throttles_for_a_while_waits_and_deletes() {
    let name = "delete_throttled_for_a_while";
    let mut p = proxied(GatewayFlags::default(), name).await;
    let answers = insert(&mut p.client, name, named_pngs("x", 0, 4)).await;
    p.proxy
        .throttle_queries_and_deletes_for(Duration::from_secs(3));

    let deleted = p
        .client
        .delete(DeleteRequest {
            collection: name.into(),
            ids: vec![answers.id_of(0)],
            ..Default::default()
        })
        .await
        .expect("the delete waits the throttle out")
        .into_inner();

    assert!(
        p.proxy.refused_queries_and_deletes() > 0,
        "the throttle was met"
    );
    assert_eq!(deleted.deleted, 1);
    assert_eq!(Milvus::shared().rows(name).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_milvus_never_answers_ends_unavailable_within_twice_the_milvus_timeout() {
    let name = "call_unanswered";
    let flags = GatewayFlags {
        milvus_timeout_secs: Some(1),
        ..Default::default()
    };
    let mut p = proxied(flags, name).await;
    p.proxy.delay_replies(Duration::from_secs(600));

    let started = Instant::now();
    let status = p
        .client
        .describe_collection(DescribeCollectionRequest { name: name.into() })
        .await
        .unwrap_err();

    println!("ended after {:?}: {status:?}", started.elapsed());
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    p.proxy.delay_replies(Duration::ZERO);
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

/// A search by the image of the first of `items`, top 1.
fn search_for(collection: &str, items: &[(String, Vec<u8>)]) -> SearchRequest {
    SearchRequest {
        collection: collection.into(),
        images: vec![items[0].1.clone().into()],
        top_k: 1,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_milvus_throttles_for_a_while_waits_and_is_answered() {
    let name = "search_throttled_for_a_while";
    let mut p = proxied(GatewayFlags::default(), name).await;
    let items = named_pngs("q", 0, 4);
    assert_eq!(
        insert(&mut p.client, name, items.clone())
            .await
            .summary()
            .inserted,
        4
    );
    p.proxy.throttle_searches_for(Duration::from_secs(3));

    let started = Instant::now();
    let answer = p
        .client
        .search(search_for(name, &items))
        .await
        .expect("the search waits the throttle out")
        .into_inner();

    println!("answered after {:?}", started.elapsed());
    assert!(p.proxy.refused_searches() > 0, "the throttle was met");
    assert_eq!(answer.results[0].hits[0].filepath, items[0].0);
    assert_eq!(
        p.gateway.metric("gateway_milvus_throttled_total"),
        p.proxy.refused_searches() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_throttled_past_the_wait_fails_resource_exhausted_naming_the_flag() {
    let name = "search_throttled_for_good";
    let flags = GatewayFlags {
        milvus_throttle_wait_secs: Some(2),
        ..Default::default()
    };
    let mut p = proxied(flags, name).await;
    let items = named_pngs("g", 0, 1);
    p.proxy.throttle_searches_for(Duration::from_secs(600));

    let status = p.client.search(search_for(name, &items)).await.unwrap_err();

    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--milvus-throttle-wait-secs"),
        "{}",
        status.message()
    );
    assert!(p.proxy.refused_searches() > 1, "it was sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_search_ends_at_its_callers_deadline_and_is_not_sent_again_after() {
    let name = "search_throttled_past_deadline";
    let mut p = proxied(GatewayFlags::default(), name).await;
    let items = named_pngs("d", 0, 1);
    p.proxy.throttle_searches_for(Duration::from_secs(600));

    let mut request = tonic::Request::new(search_for(name, &items));
    request.set_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let status = p.client.search(request).await.unwrap_err();

    // tonic's client keeps the deadline too and, when it is first, reports
    // CANCELLED "Timeout expired"; the gateway's side says DEADLINE_EXCEEDED.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = p.proxy.refused_searches();
    assert!(refused > 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        p.proxy.refused_searches(),
        refused,
        "sent again after its caller left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_milvus_that_stops_answering_turns_the_gateway_not_serving_within_the_probe_deadline() {
    let name = "hung_milvus";
    let p = proxied(GatewayFlags::default(), name).await;
    assert_eq!(p.gateway.health("").await, Some(ServingStatus::Serving));

    p.proxy.delay_replies(Duration::from_secs(600));
    let hung = Instant::now();
    while p.gateway.health("").await != Some(ServingStatus::NotServing) {
        assert!(
            hung.elapsed() < Duration::from_secs(12),
            "still SERVING beside a Milvus that answers nothing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("NOT_SERVING after {:?}", hung.elapsed());
    assert_eq!(p.gateway.metric("gateway_milvus_up"), 0.0);
    assert_eq!(p.gateway.metric("gateway_embedder_up"), 1.0);

    p.proxy.delay_replies(Duration::ZERO);
    let back = Instant::now();
    while p.gateway.health("").await != Some(ServingStatus::Serving) {
        assert!(
            back.elapsed() < Duration::from_secs(12),
            "not SERVING again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
