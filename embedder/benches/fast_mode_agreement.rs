//! How far fast preprocessing's vectors are from exact ones:
//!
//!   cargo bench -p imgsearch-embedder --bench fast_mode_agreement -- WEIGHTS HELD_BACK FILE...
//!
//! Embeds every file in both modes (fp32, CPU) and prints one JSON object:
//! the distribution of cosine(exact, fast) over the files, and top-3
//! agreement (the share of each query's 3 nearest, by L2 as the collection
//! searches, that both modes return) for self-search (each indexed file as
//! its own query) and for the last HELD_BACK files, which stay out of the
//! index, as the demo's queries do.

use std::path::Path;

use imgsearch_embedder::{
    model::DIMENSION,
    preprocess::{self, Limits, Mode},
    Precision, Resnet50,
};
use tch::Device;

const BATCH: usize = 16;
const TOP: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (weights, held_back, files) = (&args[0], args[1].parse::<usize>().unwrap(), &args[2..]);
    let model = Resnet50::load(Path::new(weights), Device::Cpu, Precision::Fp32).expect("weights");
    let blobs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let exact = tensors(&blobs, Mode::Exact);
    let fast = tensors(&blobs, Mode::Fast);
    let scaled = exact.iter().zip(&fast).filter(|(a, b)| a != b).count();
    let (exact, fast) = (embed_all(&model, &exact), embed_all(&model, &fast));

    let mut cosines: Vec<f64> = exact.iter().zip(&fast).map(|(a, b)| cosine(a, b)).collect();
    cosines.sort_by(f64::total_cmp);
    let at = |q: f64| cosines[((cosines.len() - 1) as f64 * q).round() as usize];

    let indexed = files.len() - held_back;
    let agreement = |queries: std::ops::Range<usize>| {
        let n = queries.len();
        let shared: usize = queries
            .map(|q| {
                let a = nearest(&exact[..indexed], &exact[q]);
                let b = nearest(&fast[..indexed], &fast[q]);
                a.iter().filter(|i| b.contains(i)).count()
            })
            .sum();
        shared as f64 / (n * TOP) as f64
    };
    println!(
        "{{\"images\": {}, \"scaled_by_fast\": {scaled}, \"cosine\": {{\"min\": {:.6}, \"p1\": {:.6}, \"p5\": {:.6}, \"p50\": {:.6}, \"mean\": {:.6}}}, \"top3_agreement\": {{\"self\": {:.4}, \"held_back\": {:.4}}}}}",
        files.len(),
        cosines[0],
        at(0.01),
        at(0.05),
        at(0.5),
        cosines.iter().sum::<f64>() / cosines.len() as f64,
        agreement(0..indexed),
        agreement(indexed..files.len()),
    );
}

fn tensors(blobs: &[Vec<u8>], mode: Mode) -> Vec<Vec<f32>> {
    blobs
        .iter()
        .map(|b| preprocess::preprocess(b, &Limits::DEFAULT, mode).expect("image"))
        .collect()
}

fn embed_all(model: &Resnet50, tensors: &[Vec<f32>]) -> Vec<Vec<f32>> {
    tensors
        .chunks(BATCH)
        .flat_map(|chunk| {
            let out = model.embed_flat(&chunk.concat()).expect("forward");
            out.chunks_exact(DIMENSION as usize)
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Indices of the [`TOP`] vectors of `index` nearest `query` by L2.
fn nearest(index: &[Vec<f32>], query: &[f32]) -> Vec<usize> {
    let mut d: Vec<(f64, usize)> = index
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let l2: f64 = v
                .iter()
                .zip(query)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum();
            (l2, i)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.iter().take(TOP).map(|&(_, i)| i).collect()
}
