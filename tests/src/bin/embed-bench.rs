//! Load generator for `scripts/bench_embedder.sh`: streams image files
//! through a running embedder's `Embed` stream and prints one JSON line with
//! the throughput. A warm-up pass over the first images is not timed. Every
//! image must embed, unless `--allow-errors` (the hostile set) counts the
//! per-item errors instead. `--vectors-out F` writes the timed pass's vectors
//! to F in file order, as little-endian f32 (N × 2048), for parity checks.
//!
//!     embed-bench [--allow-errors] [--vectors-out F] URI WARMUP FILE...

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
    let vectors_out = (args.first().map(String::as_str) == Some("--vectors-out"))
        .then(|| args.drain(..2).nth(1).expect("--vectors-out FILE"));
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

    if warmup > 0 {
        run(&client, images.iter().take(warmup).cloned().collect()).await;
    }
    let (seconds, embedded, vectors) = run(&client, images.clone()).await;
    if let Some(path) = vectors_out {
        let bytes: Vec<u8> = vectors
            .iter()
            .flat_map(|v| v.iter().flat_map(|x| x.to_le_bytes()))
            .collect();
        std::fs::write(path, bytes).expect("write vectors");
    }
    let errors = images.len() - embedded;
    assert!(allow_errors || errors == 0, "{errors} images not embedded");
    println!(
        "{{\"images\": {}, \"errors\": {errors}, \"seconds\": {seconds:.3}, \"images_per_s\": {:.2}}}",
        images.len(),
        images.len() as f64 / seconds
    );
}

/// Streams `images` on one Embed call: seconds until the last answer, how
/// many were embedded, and the vectors in image order (empty for an error).
async fn run(
    client: &EmbedderClient<Channel>,
    images: Vec<Vec<u8>>,
) -> (f64, usize, Vec<Vec<f32>>) {
    let mut client = client.clone();
    let n = images.len();
    let requests =
        tokio_stream::iter(
            images
                .into_iter()
                .enumerate()
                .map(|(i, image)| EmbedRequest {
                    id: i.to_string(),
                    image: image.into(),
                }),
        );
    let start = Instant::now();
    let mut stream = client.embed(requests).await.expect("embed").into_inner();
    let mut vectors = vec![Vec::new(); n];
    while let Some(r) = stream.message().await.expect("stream") {
        if let Some(embed_response::Result::Vector(v)) = r.result {
            vectors[r.id.parse::<usize>().expect("id")] = v.values;
        }
    }
    let ok = vectors.iter().filter(|v| !v.is_empty()).count();
    (start.elapsed().as_secs_f64(), ok, vectors)
}
