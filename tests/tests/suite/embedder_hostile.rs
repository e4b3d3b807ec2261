//! Hostile images against the real embedder binary: each is a vector equal
//! to the tutorial pipeline's or its own per-item error, the process lives,
//! and its peak memory stays under the CPU deployment's limit. A model thread
//! that dies turns health NOT_SERVING and ends the process non-zero.

use std::time::{Duration, Instant};

use futures::StreamExt;
use imgsearch_proto::v1::{embed_response, EmbedRequest, ErrorKind};
use imgsearch_tests::{
    deps,
    embedder::{embed_stream, error_kind, vector, EmbedderProcess},
    hostile, pyref,
};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

/// The CPU overlay's memory limit is 4 GiB; the embedder with its default
/// budget must stay well under it whatever it is sent.
const PEAK_RSS_BOUND: u64 = 3 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_image_is_a_vector_or_its_own_error_within_bounded_memory() {
    let fixture = std::fs::read(&deps::fixture_images()[0]).unwrap();
    let cases = hostile::set(fixture[..fixture.len() / 3].to_vec());
    let mut server = EmbedderProcess::start(&[]).await;
    let mut client = server.client().await;
    let before = server.peak_rss_bytes();

    let started = Instant::now();
    let items = cases
        .iter()
        .map(|c| (c.name.clone(), c.bytes.clone()))
        .collect();
    let got = embed_stream(&mut client, items).await;
    let seconds = started.elapsed().as_secs_f64();
    let wrong: Vec<_> = cases
        .iter()
        .filter(|c| match (&got[&c.name].result, c.expect) {
            (Some(embed_response::Result::Vector(v)), None) => v.values.len() != 2048,
            (Some(embed_response::Result::Error(e)), Some(kind)) => e.kind() != kind,
            _ => true,
        })
        .map(|c| {
            format!(
                "{}: expected {:?}, got {:?}",
                c.name, c.expect, got[&c.name].result
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    let peak = server.peak_rss_bytes();
    println!(
        "{} hostile images in {seconds:.1} s; embedder peak RSS {} MiB (after warm-up {} MiB)",
        cases.len(),
        peak >> 20,
        before >> 20
    );
    assert!(server.alive(), "the embedder died:\n{}", server.log());
    assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB", peak >> 20);

    // Where PIL embeds a file too, the vectors agree. (The thin strips are
    // in the bit-exact preprocessing parity test, which runs PIL on them.)
    let dir = tempfile::tempdir().unwrap();
    let compared: Vec<_> = cases
        .iter()
        .filter(|c| c.expect.is_none() && !c.name.starts_with("strip-"))
        .collect();
    let files: Vec<_> = compared
        .iter()
        .map(|c| {
            let path = dir.path().join(&c.name);
            std::fs::write(&path, &c.bytes).unwrap();
            path
        })
        .collect();
    let reference = pyref::pipeline(&deps::seeded_weights(), &files).vectors;
    for (i, c) in compared.iter().enumerate() {
        let cos = pyref::cosine(vector(&got[&c.name]), &reference[i]);
        assert!(cos >= 0.9999, "{}: cosine {cos}", c.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_error_names_its_flag() {
    let server = EmbedderProcess::start(&[]).await;
    let items = vec![
        (
            "side".into(),
            hostile::png(&hostile::noise(1_000_001, 1, 1)),
        ),
        ("scans".into(), hostile::jpeg_scan_bomb(200)),
        ("strip".into(), hostile::png(&hostile::noise(1, 400_000, 2))),
    ];
    let got = embed_stream(&mut server.client().await, items).await;
    let message = |id: &str| match &got[id].result {
        Some(embed_response::Result::Error(e)) => e.message.clone(),
        other => panic!("{id}: {other:?}"),
    };
    assert!(
        message("side").contains("--max-image-side"),
        "{}",
        message("side")
    );
    assert!(
        message("scans").contains("--max-jpeg-scans"),
        "{}",
        message("scans")
    );
    assert!(message("strip").contains("Pillow"), "{}", message("strip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_model_thread_turns_health_not_serving_and_exits_non_zero() {
    let mut server =
        EmbedderProcess::start_with_env(&[], &[("IMGSEARCH_EMBEDDER_FAULT", "model-panic")]).await;
    let mut watch = HealthClient::new(imgsearch_tests::channel(&server.uri()).await.unwrap())
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "imgsearch.v1.Embedder".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().status;
    assert_eq!(first, ServingStatus::Serving as i32);

    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();
    let requests = tokio_stream::iter((0..3).map(move |i| EmbedRequest {
        id: i.to_string(),
        image: image.clone().into(),
    }));
    let mut client = server.client().await;
    let mut answers = Vec::new();
    if let Ok(response) = client.embed(requests).await {
        let mut stream = response.into_inner();
        while let Some(Ok(r)) = stream.next().await {
            answers.push(r);
        }
    }
    for r in &answers {
        assert_eq!(error_kind(r), ErrorKind::Unavailable, "{r:?}");
    }

    let mut statuses = Vec::new();
    while let Some(Ok(r)) = watch.next().await {
        statuses.push(r.status);
    }
    assert!(
        statuses.contains(&(ServingStatus::NotServing as i32)),
        "health went {statuses:?}"
    );
    let exit = server
        .wait_exit(Duration::from_secs(30))
        .expect("the embedder exits after its model died");
    assert!(!exit.success(), "exit status {exit}");
    assert!(server.log().contains("model failed"), "{}", server.log());
}
