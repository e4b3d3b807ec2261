//! Each preprocessing stage timed alone on one thread, no model, in both
//! modes, over image files read into memory first:
//!
//!   cargo bench -p imgsearch-embedder --bench preprocess_stages -- [--rounds R] FILE...
//!
//! Prints one JSON object: per mode, mean milliseconds per image of each
//! stage (probe: header and limits; decode: to packed RGB, conversion
//! included; resize_crop: `Resize(256)` computed on the `CenterCrop(224)`
//! window only; tensor: `ToTensor` + `Normalize`) and their total.
//! `scripts/bench_preprocess.sh` runs it beside PIL + torchvision on the
//! same files.

use std::time::{Duration, Instant};

use imgsearch_embedder::preprocess::{self, decode, Limits, Mode};

const STAGES: [&str; 4] = ["probe", "decode", "resize_crop", "tensor"];

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut rounds = 1;
    if args.first().map(String::as_str) == Some("--rounds") {
        rounds = args[1].parse().expect("--rounds N");
        args.drain(..2);
    }
    let blobs: Vec<Vec<u8>> = args
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    let modes: Vec<String> = [Mode::Exact, Mode::Fast]
        .into_iter()
        .map(|mode| {
            let total = stage_times(&blobs, rounds, mode);
            let n = (rounds * blobs.len()) as f64;
            let ms = |d: Duration| format!("{:.4}", d.as_secs_f64() * 1000.0 / n);
            let stages: Vec<String> = STAGES
                .iter()
                .zip(total)
                .map(|(name, d)| format!("\"{name}\": {}", ms(d)))
                .collect();
            format!(
                "\"{mode}\": {{{}, \"total\": {}}}",
                stages.join(", "),
                ms(total.iter().sum())
            )
        })
        .collect();
    println!("{{\"images\": {}, {}}}", blobs.len(), modes.join(", "));
}

/// Summed time of each of [`STAGES`] over `rounds` passes of `blobs`.
fn stage_times(blobs: &[Vec<u8>], rounds: usize, mode: Mode) -> [Duration; 4] {
    let limits = Limits::DEFAULT;
    let mut total = [Duration::ZERO; 4];
    let mut lap = |stage: usize, start: &mut Instant| {
        let now = Instant::now();
        total[stage] += now - *start;
        *start = now;
    };
    for _ in 0..rounds {
        for blob in blobs {
            let mut t = Instant::now();
            let probe = preprocess::probe(blob, &limits).expect("probe");
            lap(0, &mut t);
            let rgb = preprocess::decode_rgb(blob, &probe, &limits, mode).expect("decode");
            lap(1, &mut t);
            let crop = preprocess::resize_and_crop(&rgb).expect("resize");
            decode::retain(rgb.data);
            lap(2, &mut t);
            std::hint::black_box(preprocess::to_tensor(&crop));
            lap(3, &mut t);
        }
    }
    total
}
