//! Insert item by item: what one bad item may cost (only itself), what a
//! stream reports (every item, exactly once, in acknowledgements), and what
//! one gateway holds however its callers behave. Real Milvus, embedder and
//! gateway; rows counted in Milvus directly.

use std::time::Duration;

use imgsearch_proto::v1::{
    insert_response::Event, ErrorKind, FindFilepathsRequest, InsertRequest, SearchRequest,
};
use imgsearch_tests::{
    cli::{spawn_ingest, wait_ingest, write_pngs},
    embedder::{altered_weights, EmbedderProcess},
    gateway::GatewayFlags,
    gateway::GatewayProcess,
    insert::{
        collect, create, distinct_pngs, insert, insert_skipping_existing, named_pngs, requests,
    },
    milvus::Milvus,
    stack::Stack,
};
use tonic::Code;

/// Filepaths at and around Milvus's 200-byte limit, and with every
/// character that needs care in an expression literal.
fn awkward_filepaths() -> Vec<(String, bool)> {
    let bytes = |n: usize| {
        // "é" is 2 bytes: n - 1 of them in pairs, the rest ASCII.
        let e = "é".repeat((n - 1) / 2);
        format!("{e}{}", "a".repeat(n - e.len()))
    };
    vec![
        (bytes(199), true),
        (bytes(200), true),
        (bytes(201), false),
        ("line\nbreak.jpg".into(), true),
        ("carriage\rreturn.jpg".into(), true),
        ("double\"quote.jpg".into(), true),
        ("back\\slash.jpg".into(), true),
        ("single'quote.jpg".into(), true),
        ("nul\0byte.jpg".into(), true),
        ("tab\tand \u{1F600}.jpg".into(), true),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_filepaths_fail_alone_and_round_trip_through_every_rpc() {
    let stack = Stack::start().await;
    let mut client = stack.gateway.client().await;
    let name = "awkward_filepaths";
    create(&mut client, name).await;

    let cases = awkward_filepaths();
    assert_eq!(cases[0].0.len(), 199);
    assert_eq!(cases[2].0.len(), 201);
    assert!(
        cases[2].0.chars().count() < 200,
        "under 200 characters, over 200 bytes"
    );
    let images = distinct_pngs(0, cases.len() as u64 + 2);
    // Good images around the awkward ones, all in one batch.
    let mut items = vec![("good-first.png".to_string(), images[0].clone())];
    items.extend(
        cases
            .iter()
            .zip(&images[2..])
            .map(|((p, _), i)| (p.clone(), i.clone())),
    );
    items.push(("good-last.png".into(), images[1].clone()));
    let answers = insert(&mut client, name, items.clone()).await;
    assert!(answers.error.is_none(), "{:?}", answers.error);
    answers.assert_every_item_settled_once();
    let failures = answers.failures();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0].index, 3, "the 201-byte filepath");
    assert_eq!(
        failures[0].error.as_ref().unwrap().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(failures[0]
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("201 bytes"));

    let mut expected: Vec<String> = items
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| p.len() <= 200)
        .collect();
    expected.sort();
    let mut stored: Vec<String> = stack
        .milvus
        .rows(name)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    stored.sort();
    assert_eq!(
        stored, expected,
        "every good filepath stored, byte for byte"
    );

    let found = client
        .find_filepaths(FindFilepathsRequest {
            collection: name.into(),
            filepaths: items.iter().map(|(p, _)| p.clone()).collect(),
        })
        .await
        .expect("FindFilepaths with every awkward filepath")
        .into_inner()
        .found;
    let mut found_sorted = found.clone();
    found_sorted.sort();
    assert_eq!(found_sorted, expected);

    // Resume: everything stored is skipped before embedding; the bad one fails again.
    let before = stack.embedder.metric("embedder_images_total");
    let again = insert_skipping_existing(&mut client, name, items).await;
    again.assert_every_item_settled_once();
    assert_eq!(again.summary().inserted, 0);
    assert_eq!(again.summary().skipped, expected.len() as u64);
    assert_eq!(again.failures().len(), 1);
    assert_eq!(
        stack.embedder.metric("embedder_images_total"),
        before,
        "nothing embedded twice"
    );
    assert_eq!(stack.milvus.rows(name).await.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_resumes_through_one_gateway_store_each_filepath_once() {
    let stack = Stack::with().batch_size(8).start().await;
    let name = "concurrent_resumes";
    create(&mut stack.gateway.client().await, name).await;
    let items = named_pngs("same", 500, 40);
    let (mut a, mut b) = (stack.gateway.client().await, stack.gateway.client().await);
    let (first, second) = tokio::join!(
        insert_skipping_existing(&mut a, name, items.clone()),
        insert_skipping_existing(&mut b, name, items)
    );
    for answers in [&first, &second] {
        assert!(answers.error.is_none(), "{:?}", answers.error);
        answers.assert_every_item_settled_once();
        assert!(answers.failures().is_empty(), "{:?}", answers.failures());
    }
    let (x, y) = (first.summary(), second.summary());
    println!(
        "stored {} + {}, skipped {} + {}",
        x.inserted, y.inserted, x.skipped, y.skipped
    );
    assert_eq!(x.inserted + y.inserted, 40);
    assert_eq!(x.skipped + y.skipped, 40);
    let rows = stack.milvus.rows(name).await;
    let distinct: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        (rows.len(), distinct.len()),
        (40, 40),
        "each filepath stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_milvus_refuses_is_split_until_the_bad_row_stands_alone() {
    // The test hook lets a 201-byte filepath reach Milvus, which refuses it.
    let stack = Stack::with()
        .gateway(GatewayFlags {
            batch_size: Some(16),
            fault: Some("skip-filepath-check"),
            ..Default::default()
        })
        .start()
        .await;
    let mut client = stack.gateway.client().await;
    let name = "split_refused_batch";
    create(&mut client, name).await;
    let mut items = named_pngs("good", 100, 16);
    items[11].0 = "é".repeat(101);
    let answers = insert(&mut client, name, items).await;
    assert!(answers.error.is_none(), "{:?}", answers.error);
    answers.assert_every_item_settled_once();
    assert_eq!(answers.summary().inserted, 15);
    let failures = answers.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 11);
    let error = failures[0].error.as_ref().unwrap();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
    assert!(
        error.message.contains("Milvus refused this row"),
        "{}",
        error.message
    );
    assert_eq!(stack.milvus.rows(name).await.len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_sending_gets_its_rows_committed_after_the_idle_timeout() {
    let stack = Stack::with()
        .gateway(GatewayFlags {
            insert_idle_timeout_secs: Some(3),
            ..Default::default()
        })
        .start()
        .await;
    let mut client = stack.gateway.client().await;
    let name = "idle_caller";
    create(&mut client, name).await;

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for (i, image) in distinct_pngs(200, 5).into_iter().enumerate() {
        tx.send(InsertRequest {
            collection: name.into(),
            filepath: format!("idle{i}.png"),
            image: image.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // Five images, well under a batch, and the stream stays open.
    let call = client.insert(tokio_stream::wrappers::ReceiverStream::new(rx));
    let answers =
        tokio::time::timeout(Duration::from_secs(60), async { collect(call.await).await })
            .await
            .expect("the gateway ends an idle stream");
    drop(tx);
    assert_eq!(
        answers.error.as_ref().unwrap().code(),
        Code::DeadlineExceeded
    );
    answers.assert_every_item_settled_once();
    assert_eq!(answers.summary().inserted, 5);
    assert!(answers.summary().flushed);
    assert_eq!(stack.milvus.rows(name).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_embedder_ends_the_stream_after_the_embed_timeout() {
    let Stack {
        embedder: _embedder,
        gateway: _gateway,
        mut client,
        ..
    } = Stack::with()
        .embedder_fault("model-stall")
        .gateway(GatewayFlags {
            embed_timeout_secs: Some(2),
            ..Default::default()
        })
        .start()
        .await;
    let name = "stalled_embedder";
    create(&mut client, name).await;
    let items = named_pngs("stall", 600, 3);
    let started = std::time::Instant::now();
    let answers = insert(&mut client, name, items).await;
    let status = answers.error.clone().expect("the stream stops");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("--embed-timeout-secs"),
        "{}",
        status.message()
    );
    answers.assert_every_item_settled_once();
    assert_eq!(answers.summary().failed, 3);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let search = client
        .search(SearchRequest {
            collection: name.into(),
            images: vec![distinct_pngs(600, 1).remove(0).into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(search.code(), Code::Unavailable, "{search:?}");
    assert!(
        search.message().contains("--embed-timeout-secs"),
        "{}",
        search.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_refuses_an_embedder_with_other_weights() {
    let milvus = Milvus::shared();
    let dir = tempfile::tempdir().unwrap();
    let seeded = EmbedderProcess::start(&[]).await;
    let altered = EmbedderProcess::start_with_weights(&altered_weights(dir.path()), &[], &[]).await;
    let first =
        GatewayProcess::start(&milvus.uri(), &[seeded.uri()], &GatewayFlags::default()).await;
    let second =
        GatewayProcess::start(&milvus.uri(), &[altered.uri()], &GatewayFlags::default()).await;
    let name = "bound_to_its_model";
    let mut client = first.client().await;
    create(&mut client, name).await;
    let described = client
        .describe_collection(imgsearch_proto::v1::DescribeCollectionRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        described.fingerprint.starts_with("resnet50-no-fc/sha256:"),
        "{described:?}"
    );

    let image = distinct_pngs(300, 1).remove(0);
    let mut other = second.client().await;
    let refused = insert(&mut other, name, vec![("x.png".into(), image.clone())]).await;
    let status = refused.error.expect("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(&described.fingerprint),
        "{}",
        status.message()
    );
    let search = other
        .search(SearchRequest {
            collection: name.into(),
            images: vec![image.clone().into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(search.code(), Code::FailedPrecondition, "{search:?}");
    assert!(milvus.rows(name).await.is_empty());

    // The collection's own model still stores and finds.
    let stored = insert(&mut client, name, vec![("x.png".into(), image)]).await;
    assert_eq!(stored.summary().inserted, 1, "{:?}", stored.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_refuses_an_embedder_with_the_other_preprocessing() {
    let milvus = Milvus::shared();
    let exact = EmbedderProcess::start(&[]).await;
    let fast = EmbedderProcess::start(&["--preprocess", "fast"]).await;
    let first =
        GatewayProcess::start(&milvus.uri(), &[exact.uri()], &GatewayFlags::default()).await;
    let second =
        GatewayProcess::start(&milvus.uri(), &[fast.uri()], &GatewayFlags::default()).await;
    let name = "bound_to_its_preprocessing";
    create(&mut first.client().await, name).await;
    let info = fast.info().await;
    assert_eq!(info.preprocess, "fast");
    assert!(info.fingerprint.ends_with("/preprocess:1-fast"), "{info:?}");

    let image = distinct_pngs(300, 1).remove(0);
    let refused = insert(
        &mut second.client().await,
        name,
        vec![("x.png".into(), image)],
    )
    .await;
    let status = refused.error.expect("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("-fast"), "{}", status.message());
    assert!(milvus.rows(name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_cap_are_refused_and_the_admitted_ones_finish_in_bounded_memory() {
    let stack = Stack::with()
        .quick()
        .gateway(GatewayFlags {
            max_insert_streams: Some(2),
            max_message_bytes: Some(16777216),
            insert_stream_bytes: Some(50331648),
            batch_size: Some(4),
            ..Default::default()
        })
        .start()
        .await;
    let name = "admission";
    create(&mut stack.gateway.client().await, name).await;
    let base = stack.gateway.rss_bytes();
    // 12 MB of noise per image: a stream of 8 would hold 96 MB unbounded.
    let big = imgsearch_tests::hostile::png(&imgsearch_tests::hostile::noise(2000, 2000, 7));
    assert!(big.len() > 11 << 20);
    // The first two streams send their images, then stay open until the
    // other two have been answered: however fast the embedder, two streams
    // are open when the others knock.
    let (release, released) = tokio::sync::watch::channel(false);
    let mut calls = Vec::new();
    for s in 0..4 {
        let mut client = stack.gateway.client().await;
        let items: Vec<(String, Vec<u8>)> = (0..8)
            .map(|i| (format!("s{s}/big{i}.png"), big.clone()))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut released = released.clone();
        tokio::spawn(async move {
            for r in requests(name, items, false) {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
            if s < 2 {
                let _ = released.wait_for(|r| *r).await;
            }
        });
        calls.push(tokio::spawn(async move {
            collect(
                client
                    .insert(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await,
            )
            .await
        }));
        if s == 1 {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while stack.gateway.metric("gateway_insert_streams") < 2.0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "two streams never opened"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let mut done = 0;
    let mut refused = 0;
    for (i, call) in calls.into_iter().enumerate().rev() {
        let answers = call.await.unwrap();
        if i == 2 {
            // Both late streams are answered: let the first two end.
            release.send_replace(true);
        }
        match &answers.error {
            Some(s) if s.code() == Code::ResourceExhausted => {
                assert!(answers.summary.is_none());
                assert!(
                    s.message().contains("--max-insert-streams"),
                    "{}",
                    s.message()
                );
                refused += 1;
            }
            other => {
                assert!(other.is_none(), "{other:?}");
                assert_eq!(answers.summary().inserted, 8);
                done += 1;
            }
        }
    }
    assert_eq!((done, refused), (2, 2));
    assert_eq!(stack.milvus.rows(name).await.len(), 16);
    let peak = stack.gateway.peak_rss_bytes();
    // Per stream: its 48 MiB budget, one 16 MiB message being read, four
    // vectors; two streams, plus slack for allocator and HTTP/2 buffers.
    let bound = base + 2 * (48 + 16) * (1 << 20) + (96 << 20);
    println!(
        "gateway RSS: base {} MiB, peak {} MiB, bound {} MiB",
        base >> 20,
        peak >> 20,
        bound >> 20
    );
    assert!(peak < bound, "peak RSS {peak} over {bound}");
}

fn write_items(dir: &std::path::Path, good: u64, bad: u64) {
    write_pngs(dir, "good", 1000, good);
    for i in 0..bad {
        std::fs::write(dir.join(format!("bad{i:05}.png")), b"not an image").unwrap();
    }
}

/// Ingests `dir` with the CLI, expecting success: its report and peak RSS.
fn cli_ingest(gateway: &str, dir: &std::path::Path, collection: &str) -> (serde_json::Value, u64) {
    let ended = wait_ingest(spawn_ingest(gateway, dir, collection, &[]));
    assert!(ended.status.success(), "{}: {}", ended.status, ended.stderr);
    (ended.report, ended.peak_rss_bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_items_are_all_acknowledged_in_flat_memory() {
    let stack = Stack::with().quick().start().await;
    let addr = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = (dir.path().join("small"), dir.path().join("large"));
    write_items(&small, 20, 480);
    write_items(&large, 200, 4800);
    let mut client = stack.gateway.client().await;
    create(&mut client, "items_500").await;
    create(&mut client, "items_5000").await;

    let (report, cli_small) =
        tokio::task::block_in_place(|| cli_ingest(&addr, &small, "items_500"));
    assert_eq!(report["inserted"], 20);
    let gateway_small = stack.gateway.peak_rss_bytes();
    let (report, cli_large) =
        tokio::task::block_in_place(|| cli_ingest(&addr, &large, "items_5000"));
    // Before acknowledgements, 4,800 failures rode in trailers over 16 KiB.
    assert_eq!(report["inserted"], 200, "{}", report["error"]);
    assert_eq!(report["failures"].as_array().unwrap().len(), 4800);
    assert!(report.get("error").is_none());
    let gateway_large = stack.gateway.peak_rss_bytes();
    assert_eq!(stack.milvus.rows("items_5000").await.len(), 200);
    println!(
        "peak RSS, 500 then 5,000 items: CLI {} -> {} MiB, gateway {} -> {} MiB",
        cli_small >> 20,
        cli_large >> 20,
        gateway_small >> 20,
        gateway_large >> 20
    );
    assert!(
        cli_large < cli_small + (24 << 20),
        "the CLI grew with the item count"
    );
    assert!(
        gateway_large < gateway_small + (48 << 20),
        "the gateway grew with the item count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_answers_end_with_a_summary_after_every_acknowledgement() {
    let stack = Stack::with().batch_size(2).start().await;
    let mut client = stack.gateway.client().await;
    let name = "answer_order";
    create(&mut client, name).await;
    let items = named_pngs("o", 400, 5);
    let reqs = imgsearch_tests::insert::requests(name, items, false);
    let mut stream = client
        .insert(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        events.push(m.event.unwrap());
    }
    assert!(matches!(events.last(), Some(Event::Summary(_))));
    let acks = events.len() - 1;
    assert!(acks >= 3, "batches of 2 for 5 items: {events:?}");
    assert!(events[..acks].iter().all(|e| matches!(e, Event::Ack(_))));
}
