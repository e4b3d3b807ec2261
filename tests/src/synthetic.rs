//! Rows for the benchmarks that load more rows than there are photos: the
//! photos' real vectors (from the embedder), made into many by seeded,
//! reproducible perturbations, so that a row can be made again from its
//! number when a benchmark needs the exact answer.

use std::time::Instant;

use imgsearch_proto::v1::{
    embed_response, embedder_client::EmbedderClient, image_search_client::ImageSearchClient,
    insert_response::Event, DescribeCollectionRequest, EmbedBatchRequest, InsertRequest,
};

/// A deterministic stream of uniforms in [0, 1) for `seed` (xorshift).
pub fn uniforms(seed: u64) -> impl FnMut() -> f32 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A deterministic standard-normal-ish sample stream for `seed` (the sum of
/// four uniforms, centred and scaled).
pub fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut uniform = uniforms(seed);
    (0..n)
        .map(|_| (uniform() + uniform() + uniform() + uniform() - 2.0) * 3f32.sqrt())
        .collect()
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
}

/// Photo `seed mod n`'s vector plus noise of 5 % of its RMS.
pub fn perturbed(bases: &[Vec<f32>], seed: u64) -> Vec<f32> {
    let base = &bases[(seed % bases.len() as u64) as usize];
    let rms = rms(base);
    base.iter()
        .zip(noise(seed, base.len()))
        .map(|(b, e)| b + 0.05 * rms * e)
        .collect()
}

/// Row `seed` of a large synthetic collection: a photo's vector moved
/// part of the way towards another photo's (a share w = u²/2 of the way, u
/// uniform, so most rows stay near their photo and a few lie between two),
/// plus noise of 2 % of its RMS. Unlike noise alone, which puts every copy
/// of a photo at nearly the same distance from a query, this gives each
/// query neighbours at spread-out distances, as real collections do.
pub fn blended(bases: &[Vec<f32>], seed: u64) -> Vec<f32> {
    let mut uniform = uniforms(seed ^ 0x5EED_B1E4D);
    let n = bases.len();
    let pick = |u: f32| ((u * n as f32) as usize).min(n - 1);
    let (a, b) = (&bases[pick(uniform())], &bases[pick(uniform())]);
    let u = uniform();
    let w = 0.5 * u * u;
    let rms = rms(a);
    a.iter()
        .zip(b)
        .zip(noise(seed, a.len()))
        .map(|((a, b), e)| (1.0 - w) * a + w * b + 0.02 * rms * e)
        .collect()
}

pub type Gateway = ImageSearchClient<tonic::transport::Channel>;

/// A gateway client that takes and sends messages as large as the API allows.
pub async fn gateway(uri: &str) -> Gateway {
    ImageSearchClient::new(crate::channel(uri).await.expect("reach the gateway"))
        .max_encoding_message_size(imgsearch_proto::limits::MAX_MESSAGE_BYTES)
        .max_decoding_message_size(imgsearch_proto::limits::MAX_MESSAGE_BYTES)
}

/// The embedder's vectors of `files`, in order; every file must embed.
pub async fn embed(uri: &str, files: &[String]) -> Vec<Vec<f32>> {
    let mut embedder = EmbedderClient::new(crate::channel(uri).await.expect("reach the embedder"))
        .max_encoding_message_size(imgsearch_proto::limits::MAX_MESSAGE_BYTES)
        .max_decoding_message_size(imgsearch_proto::limits::MAX_MESSAGE_BYTES);
    let mut out = Vec::new();
    for chunk in files.chunks(imgsearch_proto::limits::MAX_EMBED_BATCH_IMAGES) {
        let images = chunk
            .iter()
            .map(|f| std::fs::read(f).expect("read a photo").into())
            .collect();
        let answer = embedder
            .embed_batch(EmbedBatchRequest { images })
            .await
            .expect("embed the photos");
        out.extend(
            answer
                .into_inner()
                .results
                .into_iter()
                .map(|r| match r.result {
                    Some(embed_response::Result::Vector(v)) => v.values,
                    other => panic!("a photo did not embed: {other:?}"),
                }),
        );
    }
    out
}

/// Stores rows `from..to` on one vector Insert stream, row i being
/// `item(i)` (the stream's first message gets the collection and its
/// fingerprint), each made as the stream is read, so the loader holds a few
/// rows, not all. Returns the rows per second as JSON.
pub async fn store(
    uri: &str,
    collection: &str,
    (from, to): (u64, u64),
    item: impl Fn(u64) -> InsertRequest + Send + 'static,
) -> serde_json::Value {
    let mut client = gateway(uri).await;
    let fingerprint = client
        .describe_collection(DescribeCollectionRequest {
            name: collection.to_string(),
        })
        .await
        .expect("describe")
        .into_inner()
        .fingerprint;
    let (collection, started) = (collection.to_string(), Instant::now());
    let items = tokio_stream::iter((from..to).map(move |i| {
        let mut request = item(i);
        if i == from {
            request.collection = collection.clone();
            request.fingerprint = fingerprint.clone();
        }
        request
    }));
    let mut answers = client.insert(items).await.expect("insert").into_inner();
    let mut inserted = 0;
    while let Some(a) = answers.message().await.expect("insert answers") {
        if let Some(Event::Summary(s)) = a.event {
            inserted = s.inserted;
        }
    }
    let rows = to - from;
    assert_eq!(inserted, rows, "every row stored");
    let seconds = started.elapsed().as_secs_f64();
    serde_json::json!({"rows": rows, "seconds": seconds, "rows_per_s": rows as f64 / seconds})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blended_row_is_made_again_the_same_from_its_number() {
        let bases = vec![vec![1.0; 8], vec![3.0; 8], vec![-2.0; 8]];
        assert_eq!(blended(&bases, 42), blended(&bases, 42));
        assert_ne!(blended(&bases, 42), blended(&bases, 43));
    }
}
