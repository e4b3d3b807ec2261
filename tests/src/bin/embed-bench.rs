//! Load generator for `scripts/bench_embedder.sh`: streams image files
//! through a running embedder's `Embed` stream and prints one JSON line with
//! the throughput. A warm-up pass over the first images is not timed. Every
//! image must embed, unless `--allow-errors` (the hostile set) counts the
//! per-item errors instead.
//!
//!     embed-bench [--allow-errors] URI WARMUP FILE...

use std::time::Instant;

use imgsearch_proto::v1::{embed_response, embedder_client::EmbedderClient, EmbedRequest};
use tonic::transport::Channel;

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let allow_errors = args.first().is_some_and(|a| a == "--allow-errors");
    if allow_errors {
        args.remove(0);
    }
    let (uri, warmup, files) = match args.as_slice() {
        [uri, warmup, files @ ..] if !files.is_empty() => {
            (uri.clone(), warmup.parse::<usize>().expect("WARMUP"), files)
        }
        _ => panic!("usage: embed-bench [--allow-errors] URI WARMUP FILE..."),
    };
    let images: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read image"))
        .collect();
    let channel = imgsearch_tests::channel(&uri).await.expect("connect");
    let client = EmbedderClient::new(channel).max_encoding_message_size(64 << 20);

    run(&client, images.iter().take(warmup).cloned().collect()).await;
    let (seconds, embedded) = run(&client, images.clone()).await;
    let errors = images.len() - embedded;
    assert!(allow_errors || errors == 0, "{errors} images not embedded");
    println!(
        "{{\"images\": {}, \"errors\": {errors}, \"seconds\": {seconds:.3}, \"images_per_s\": {:.2}}}",
        images.len(),
        images.len() as f64 / seconds
    );
}

/// Streams `images` on one Embed call: seconds until the last answer, and
/// how many were embedded.
async fn run(client: &EmbedderClient<Channel>, images: Vec<Vec<u8>>) -> (f64, usize) {
    let mut client = client.clone();
    let n = images.len();
    let requests =
        tokio_stream::iter(
            images
                .into_iter()
                .enumerate()
                .map(|(i, image)| EmbedRequest {
                    id: i.to_string(),
                    image,
                }),
        );
    let start = Instant::now();
    let mut stream = client.embed(requests).await.expect("embed").into_inner();
    let mut ok = 0;
    while let Some(r) = stream.message().await.expect("stream") {
        ok += usize::from(matches!(r.result, Some(embed_response::Result::Vector(_))));
    }
    assert!(ok <= n);
    (start.elapsed().as_secs_f64(), ok)
}
