//! SearchStream against the real stack: answers in request order, bad
//! queries failing alone, bounded memory, admission and the idle deadline.

use std::time::Duration;

use imgsearch_proto::v1::{
    search_stream_request::Query, ErrorKind, SearchStreamRequest, SearchStreamResponse,
};
use imgsearch_tests::{
    gateway::GatewayFlags,
    hostile::{noise, png},
    insert::{create, insert, named_pngs},
    search::{by_filepath, stream, Client, Stack},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn query(collection: &str, q: Query) -> SearchStreamRequest {
    SearchStreamRequest {
        collection: collection.into(),
        query: Some(q),
        ..Default::default()
    }
}

/// What the query at `i` of the long stream is, and what its answer must be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Photo,
    Garbage,
    Stored,
    Unknown,
}

fn kind(i: u64) -> Kind {
    match i % 10 {
        3 => Kind::Garbage,
        5 => Kind::Stored,
        7 => Kind::Unknown,
        _ => Kind::Photo,
    }
}

/// A stream left open after one `like` query and its answer: the sender
/// that keeps it open, its answers, and the first answer.
async fn open_stream(
    client: &mut Client,
    collection: &str,
    like: &str,
) -> (
    mpsc::Sender<SearchStreamRequest>,
    tonic::Streaming<SearchStreamResponse>,
    SearchStreamResponse,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(query(collection, Query::Like(by_filepath(like))))
        .await
        .unwrap();
    let mut answers = client
        .search_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().expect("an answer");
    (tx, answers, first)
}

fn error_kind(a: &SearchStreamResponse) -> Option<ErrorKind> {
    a.result.as_ref().unwrap().error.as_ref().map(|e| e.kind())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_queries_come_back_in_order_with_bad_ones_alone_in_flat_memory() {
    // Budgets small enough that 200 images of about 0.8 MB could not all be
    // held: 4 MiB messages, 6 MiB per stream.
    let mut s = Stack::with()
        .gateway(GatewayFlags {
            max_message_bytes: Some(4 << 20),
            search_stream_bytes: Some(6 << 20),
            insert_stream_bytes: Some(8 << 20),
            ..Default::default()
        })
        .start()
        .await;
    let c = "stream_order";
    create(&mut s.client, c).await;
    insert(&mut s.client, c, named_pngs("s/", 0, 10)).await;
    let before = s.gateway.peak_rss_bytes();

    let mut sent_bytes = 0usize;
    let reqs: Vec<SearchStreamRequest> = (0..200u64)
        .map(|i| {
            let q = match kind(i) {
                Kind::Photo => Query::Image(png(&noise(512, 512, 1000 + i)).into()),
                Kind::Garbage => Query::Image(b"not an image at all".to_vec().into()),
                Kind::Stored => Query::Like(by_filepath("s/1.png")),
                Kind::Unknown => Query::Like(by_filepath("never/stored.png")),
            };
            if let Query::Image(b) = &q {
                sent_bytes += b.len();
            }
            query(c, q)
        })
        .collect();
    let (answers, end) = stream(&mut s.client, reqs).await;
    assert!(end.is_none(), "{end:?}");

    assert_eq!(answers.len(), 200);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.index, i as u64, "answers come in request order");
        let hits = &a.result.as_ref().unwrap().hits;
        match kind(a.index) {
            Kind::Photo => assert_eq!((error_kind(a), hits.len()), (None, 3), "{i}: {a:?}"),
            Kind::Garbage => assert_eq!(error_kind(a), Some(ErrorKind::InvalidImage)),
            Kind::Unknown => assert_eq!(error_kind(a), Some(ErrorKind::NotFound)),
            Kind::Stored => {
                assert_eq!(hits.len(), 3);
                assert!(hits.iter().all(|h| h.filepath != "s/1.png"));
            }
        }
    }
    let growth = s.gateway.peak_rss_bytes().saturating_sub(before);
    assert!(sent_bytes > 100 << 20, "the images outweigh any budget");
    assert!(
        growth < 48 << 20,
        "the gateway's peak RSS grew {} MiB while {} MiB of images passed",
        growth >> 20,
        sent_bytes >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_and_an_idle_one_ends() {
    let mut s = Stack::with()
        .gateway(GatewayFlags {
            max_search_streams: Some(1),
            search_idle_timeout_secs: Some(2),
            ..Default::default()
        })
        .start()
        .await;
    let c = "stream_limits";
    create(&mut s.client, c).await;
    insert(&mut s.client, c, named_pngs("l/", 0, 4)).await;

    let (tx, mut open, first) = open_stream(&mut s.client, c, "l/0.png").await;
    assert_eq!(first.result.unwrap().hits.len(), 3);

    let (_, refused) = stream(
        &mut s.client,
        vec![query(c, Query::Like(by_filepath("l/1.png")))],
    )
    .await;
    assert_eq!(refused.expect("refused").code(), Code::ResourceExhausted);

    // `tx` stays open and silent: the stream ends after the idle timeout.
    let end = tokio::time::timeout(Duration::from_secs(20), open.message())
        .await
        .expect("ends within the idle timeout");
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_vanishes_frees_its_place() {
    let mut s = Stack::with()
        .gateway(GatewayFlags {
            max_search_streams: Some(1),
            ..Default::default()
        })
        .start()
        .await;
    let c = "stream_vanish";
    create(&mut s.client, c).await;
    insert(&mut s.client, c, named_pngs("v/", 0, 4)).await;

    let (tx, open, _) = open_stream(&mut s.client, c, "v/0.png").await;
    assert_eq!(s.gateway.metric("gateway_search_streams"), 1.0);
    // The caller goes away without closing its side properly.
    drop(open);
    drop(tx);

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (answers, end) = stream(
            &mut s.client,
            vec![query(c, Query::Like(by_filepath("v/1.png")))],
        )
        .await;
        match end {
            None => {
                assert_eq!(answers.len(), 1);
                break;
            }
            Some(e) if e.code() == Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the place was never freed"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(e) => panic!("{e:?}"),
        }
    }
}
