//! The real embedder binary over gRPC: parity with the tutorial's PyTorch
//! pipeline, bf16, batching across streams, bad input, overload, shutdown.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use image::{ImageBuffer, Luma, Rgb};
use imgsearch_proto::v1::{
    embedder_client::EmbedderClient, EmbedBatchRequest, EmbedRequest, ErrorKind, InfoRequest,
};
use imgsearch_tests::{
    deps,
    embedder::{embed_stream, error_kind, vector, EmbedderProcess},
    hostile, pyref,
};
use tonic::{Code, Status};

/// Fixtures plus PIL-made odd formats (RGBA, gray, CMYK, palette, 16-bit...).
fn parity_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let fixtures = deps::fixture_images();
    let mut files = fixtures.clone();
    files.extend(pyref::variants(dir, &fixtures[..3]));
    files
}

fn items(files: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| (i.to_string(), std::fs::read(f).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_match_the_tutorial_pipeline_and_bf16_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    let files = parity_files(dir.path());
    let reference = pyref::pipeline(&deps::seeded_weights(), &files).vectors;

    let fp32 = EmbedderProcess::start(&[]).await;
    let got = embed_stream(&mut fp32.client().await, items(&files)).await;
    let mut min_cos = f64::MAX;
    for (i, f) in files.iter().enumerate() {
        let ours = vector(&got[&i.to_string()]);
        assert_eq!(ours.len(), 2048);
        let c = pyref::cosine(ours, &reference[i]);
        assert!(c >= 0.9999, "{}: cosine {c}", f.display());
        min_cos = min_cos.min(c);
    }
    println!(
        "fp32 vs PyTorch over {} images: min cosine {min_cos:.8}",
        files.len()
    );

    let bf16 = EmbedderProcess::start(&["--precision", "bf16"]).await;
    let info = bf16.info().await;
    assert_eq!(info.precision, "bf16");
    let half = embed_stream(&mut bf16.client().await, items(&files)).await;
    let mut min_bf = f64::MAX;
    for i in 0..files.len() {
        let c = pyref::cosine(vector(&half[&i.to_string()]), vector(&got[&i.to_string()]));
        assert!(c >= 0.999, "{}: bf16 cosine {c}", files[i].display());
        min_bf = min_bf.min(c);
    }
    println!("bf16 vs fp32: min cosine {min_bf:.6}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_are_batched_and_answers_match_ids() {
    let server = EmbedderProcess::start(&["--max-batch", "8", "--max-wait-ms", "50"]).await;
    let files = deps::fixture_images();
    // Each image alone first: the expected vector per file.
    let mut client = server.client().await;
    let mut single = Vec::new();
    for f in &files[..8] {
        let r = client
            .embed_batch(EmbedBatchRequest {
                images: vec![std::fs::read(f).unwrap().into()],
            })
            .await
            .unwrap();
        single.push(vector(&r.into_inner().results[0]).to_vec());
    }
    let before = client.info(InfoRequest {}).await.unwrap().into_inner();

    // Four streams at once, each sending the 8 images in its own order.
    let tasks: Vec<_> = (0..4)
        .map(|s| {
            let files = files[..8].to_vec();
            let uri = server.uri();
            tokio::spawn(async move {
                let mut client = EmbedderClient::new(imgsearch_tests::channel(&uri).await.unwrap());
                let order: Vec<usize> = (0..8).map(|i| (i * 3 + s) % 8).collect();
                let items = order
                    .iter()
                    .map(|&i| (format!("s{s}-f{i}"), std::fs::read(&files[i]).unwrap()))
                    .collect();
                embed_stream(&mut client, items).await
            })
        })
        .collect();
    for t in tasks {
        for (id, r) in t.await.unwrap() {
            let i: usize = id.rsplit("-f").next().unwrap().parse().unwrap();
            let c = pyref::cosine(vector(&r), &single[i]);
            assert!(c >= 0.99999, "{id} got another image's vector (cosine {c})");
        }
    }
    let after = client.info(InfoRequest {}).await.unwrap().into_inner();
    let (batches, images) = (
        after.batches_run - before.batches_run,
        after.images_embedded - before.images_embedded,
    );
    println!("{images} images in {batches} batches");
    assert_eq!(images, 32);
    assert!(
        batches < images,
        "no batching happened: {images} images in {batches} batches"
    );
    assert!(server.metric("embedder_batch_size_count") >= (batches + before.batches_run) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_items_fail_alone_and_good_items_still_succeed() {
    let server = EmbedderProcess::start(&[]).await;
    let good = std::fs::read(&deps::fixture_images()[0]).unwrap();
    let mut random = Vec::with_capacity(4096);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.push(x as u8);
    }
    let mut oversized = vec![0u8; 50 << 20];
    oversized[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    let gray16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(40, 30, |x, y| Luma([(x * 1000 + y * 7) as u16]));
    let tiny: ImageBuffer<Rgb<u8>, Vec<u8>> = ImageBuffer::from_pixel(1, 1, Rgb([10, 200, 30]));

    let cases: Vec<(&str, Vec<u8>, Option<ErrorKind>)> = vec![
        ("good-1", good.clone(), None),
        ("empty", vec![], Some(ErrorKind::InvalidImage)),
        ("random", random, Some(ErrorKind::InvalidImage)),
        (
            "truncated-jpeg",
            good[..good.len() / 2].to_vec(),
            Some(ErrorKind::InvalidImage),
        ),
        (
            "text",
            b"name,score\nalice,3\n".to_vec(),
            Some(ErrorKind::InvalidImage),
        ),
        (
            "bomb-30000x30000",
            hostile::png_header_only(30_000, 30_000, 8, 2),
            Some(ErrorKind::ImageTooLarge),
        ),
        ("oversized-50MB", oversized, Some(ErrorKind::ImageTooLarge)),
        ("one-pixel", hostile::png(&tiny), None),
        ("png-16bit", hostile::png(&gray16), None),
        ("animated-gif", hostile::animated_gif(2), None),
        ("good-2", good, None),
    ];
    let expected: HashMap<String, Option<ErrorKind>> = cases
        .iter()
        .map(|(id, _, k)| (id.to_string(), *k))
        .collect();
    let items = cases
        .into_iter()
        .map(|(id, bytes, _)| (id.to_string(), bytes))
        .collect();
    let got = embed_stream(&mut server.client().await, items).await;
    for (id, kind) in expected {
        match kind {
            None => assert_eq!(vector(&got[&id]).len(), 2048, "{id}"),
            Some(k) => assert_eq!(error_kind(&got[&id]), k, "{id}: {:?}", got[&id].result),
        }
    }
    assert_eq!(vector(&got["good-1"]), vector(&got["good-2"]));
    assert!(server.metric("embedder_errors_total") >= 6.0);
}

/// 40 one-image EmbedBatch calls at once on an interactive queue of 4, each
/// with `deadline` (none when `None`): how many were served, and the
/// statuses of the others.
async fn forty_calls(server: &EmbedderProcess, deadline: Option<Duration>) -> (usize, Vec<Status>) {
    let image = std::fs::read(&deps::fixture_images()[1]).unwrap();
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let (uri, image) = (server.uri(), image.clone());
            tokio::spawn(async move {
                let mut client = EmbedderClient::new(imgsearch_tests::channel(&uri).await.unwrap());
                let mut request = tonic::Request::new(EmbedBatchRequest {
                    images: vec![image.into()],
                });
                if let Some(d) = deadline {
                    request.set_timeout(d);
                }
                client.embed_batch(request).await.map(|_| ())
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, Vec::new());
    for c in calls {
        match c.await.unwrap() {
            Ok(()) => ok += 1,
            Err(s) => failed.push(s),
        }
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_calls_wait_for_a_place_and_fail_only_when_their_deadline_passes() {
    let server = EmbedderProcess::start(&["--interactive-capacity", "4", "--max-batch", "2"]).await;
    let (ok, failed) = forty_calls(&server, None).await;
    assert_eq!(
        (ok, failed.len()),
        (40, 0),
        "busy is not failure: {failed:?}"
    );

    let (ok, failed) = forty_calls(&server, Some(Duration::from_secs(1))).await;
    println!(
        "{ok} served within 1 s, {} not; RSS {} MB",
        failed.len(),
        server.rss_bytes() >> 20
    );
    assert!(ok > 0);
    let exhausted: Vec<_> = failed
        .iter()
        .filter(|s| s.code() == Code::ResourceExhausted)
        .collect();
    assert!(
        !exhausted.is_empty(),
        "40 calls of 1 s never outwaited a queue of 4"
    );
    for s in &exhausted {
        assert!(
            s.message().contains("the call's deadline"),
            "{}",
            s.message()
        );
        assert!(s.metadata().get("grpc-retry-pushback-ms").is_some());
    }
    for s in &failed {
        assert!(
            matches!(
                s.code(),
                Code::ResourceExhausted | Code::DeadlineExceeded | Code::Cancelled
            ),
            "unexpected status {s:?}"
        );
    }
    assert!(
        server.rss_bytes() < 3 << 30,
        "memory not bounded: {} bytes",
        server.rss_bytes()
    );
    let (ok, _) = forty_calls(&server, None).await;
    assert_eq!(ok, 40, "recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_ends_cleanly() {
    let mut server = EmbedderProcess::start(&["--shutdown-grace-secs", "5"]).await;
    let image = std::fs::read(&deps::fixture_images()[2]).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = server.client().await;
    let mut responses = client
        .embed(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        tx.send(EmbedRequest {
            id: i.to_string(),
            image: image.clone().into(),
        })
        .await
        .unwrap();
    }
    // The first answer proves the stream is live; then SIGTERM with the
    // request stream still open.
    let first = responses.message().await.unwrap().expect("a response");
    assert_eq!(vector(&first).len(), 2048);
    server.terminate();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let mut answered = 1;
        loop {
            match responses.message().await {
                Ok(Some(_)) => answered += 1,
                Ok(None) => return (answered, None),
                Err(status) => return (answered, Some(status)),
            }
        }
    })
    .await
    .expect("the stream ended after SIGTERM instead of hanging");
    println!(
        "answered {} before the end, ended with {:?}",
        ended.0,
        ended.1.as_ref().map(|s| s.code())
    );
    assert_eq!(ended.0, 3, "every admitted image was answered");
    if let Some(status) = ended.1 {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    drop(tx);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("process exited");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_work_with_grpcurl() {
    let server = EmbedderProcess::start(&[]).await;
    let addr = format!("127.0.0.1:{}", server.grpc_port);
    let grpcurl = |args: &[&str]| {
        let out = std::process::Command::new(deps::grpcurl())
            .arg("-plaintext")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let services = grpcurl(&[&addr, "list"]);
    assert!(services.contains("imgsearch.v1.Embedder"), "{services}");
    assert!(services.contains("grpc.health.v1.Health"), "{services}");
    let described = grpcurl(&[&addr, "describe", "imgsearch.v1.Embedder"]);
    assert!(
        described.contains("rpc Embed ( stream .imgsearch.v1.EmbedRequest )"),
        "{described}"
    );
    let health = grpcurl(&[
        "-d",
        r#"{"service":"imgsearch.v1.Embedder"}"#,
        &addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(health.contains("SERVING"), "{health}");
    let info = grpcurl(&[&addr, "imgsearch.v1.Embedder/Info"]);
    assert!(info.contains("\"dimension\": 2048"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_served_calls_exits_promptly() {
    // Regression: a finished server used to keep the batcher alive through
    // its readiness channel, so the process never exited.
    let mut server = EmbedderProcess::start(&["--shutdown-grace-secs", "5"]).await;
    let image = std::fs::read(&deps::fixture_images()[4]).unwrap();
    let mut client = server.client().await;
    client
        .embed_batch(EmbedBatchRequest {
            images: vec![image.into()],
        })
        .await
        .unwrap();
    drop(client);
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("exited after SIGTERM");
    assert!(status.success(), "exit status {status}");
}
