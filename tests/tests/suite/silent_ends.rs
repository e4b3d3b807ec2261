//! No call ends in silence: a streaming call the gateway could not finish
//! (its caller stopped reading, its task panicked) ends with an explicit
//! error status, never OK, and the CLI exits non-zero for it.

use std::time::Duration;

use imgsearch_proto::v1::{
    image_search_client::ImageSearchClient, insert_response::Event, search_stream_request::Query,
    ErrorKind, InsertRequest, SearchStreamRequest, Vector,
};
use imgsearch_tests::{
    cli::{spawn_ingest, wait_ingest, write_pngs},
    gateway::GatewayFlags,
    insert::named_pngs,
    stack::Stack,
};
use tonic::Code;

async fn stack_with(flags: GatewayFlags) -> Stack {
    Stack::with().gateway(flags).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_caller_that_stops_reading_acks_is_cut_off_deadline_exceeded_never_ok() {
    let stack = stack_with(GatewayFlags {
        insert_idle_timeout_secs: Some(2),
        ..Default::default()
    })
    .await;
    let c = stack.collection("silent_slow_reader").await;
    // A client window of h2's smallest default, so that unread answers soon
    // hold the gateway back.
    let channel = tonic::transport::Endpoint::from_shared(stack.gateway.uri())
        .unwrap()
        .initial_stream_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut client = ImageSearchClient::new(channel);
    // Items the gateway fails at once (a filepath over 200 bytes), each
    // failure a few hundred bytes of answer.
    let requests: Vec<InsertRequest> = (0..20_000)
        .map(|i| InsertRequest {
            collection: c.name.clone(),
            filepath: format!("{i:05}{}", "x".repeat(200)),
            image: vec![1u8].into(),
            ..Default::default()
        })
        .collect();
    let mut answers = client
        .insert(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    // Read nothing for longer than the gateway's patience.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut summary = None;
    let end = loop {
        match answers.message().await {
            Ok(Some(m)) => {
                if let Some(Event::Summary(s)) = m.event {
                    summary = Some(s);
                }
            }
            Ok(None) => break None,
            Err(s) => break Some(s),
        }
    };
    let status = end.expect("the call ends with an error, not OK");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("cut off"), "{}", status.message());
    assert!(
        status.message().contains("rows were stored"),
        "{}",
        status.message()
    );
    assert!(
        summary.is_none(),
        "the summary was dropped with the other answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_insert_task_ends_the_call_internal_and_the_cli_exits_non_zero() {
    let stack = stack_with(GatewayFlags {
        fault: Some("insert-panic"),
        ..Default::default()
    })
    .await;
    let mut c = stack.collection("silent_insert_panic").await;
    let answers = c.insert(named_pngs("p/", 1, 3)).await;
    let status = answers.error.as_ref().expect("an error, not OK");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(answers.summary.is_none());

    let dir = tempfile::tempdir().unwrap();
    write_pngs(dir.path(), "p", 1, 3);
    let ended = wait_ingest(spawn_ingest(&stack.gateway.uri(), dir.path(), &c.name, &[]));
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(ended.report["error"].is_string(), "{}", ended.report);
    assert_eq!(c.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_commit_task_fails_its_rows_internal_and_ends_the_call_internal() {
    let stack = stack_with(GatewayFlags {
        fault: Some("commit-panic"),
        ..Default::default()
    })
    .await;
    let mut c = stack.collection("silent_commit_panic").await;
    let answers = c.insert(named_pngs("c/", 1, 3)).await;
    let status = answers.error.as_ref().expect("an error, not OK");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    answers.assert_every_item_settled_once();
    let failures = answers.failures();
    assert_eq!(failures.len(), 3);
    assert!(failures
        .iter()
        .all(|f| f.error.as_ref().unwrap().kind() == ErrorKind::Internal));
    assert_eq!(c.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_search_stream_task_ends_the_call_internal() {
    let stack = stack_with(GatewayFlags {
        fault: Some("search-stream-panic"),
        ..Default::default()
    })
    .await;
    let c = stack.collection("silent_search_panic").await;
    let first = SearchStreamRequest {
        collection: c.name.clone(),
        top_k: 1,
        query: Some(Query::Vector(Vector {
            values: vec![0.0; 2048],
        })),
        ..Default::default()
    };
    let mut answers = stack
        .client
        .clone()
        .search_stream(tokio_stream::iter([first]))
        .await
        .unwrap()
        .into_inner();
    let status = loop {
        match answers.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended OK"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::Internal, "{status:?}");
}
