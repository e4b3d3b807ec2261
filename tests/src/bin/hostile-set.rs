//! Writes the hostile image set (`imgsearch_tests::hostile`) into a folder,
//! one file per case, for `scripts/bench_embedder.sh`.
//!
//!     hostile-set DIR

fn main() {
    let dir = std::env::args().nth(1).expect("usage: hostile-set DIR");
    std::fs::create_dir_all(&dir).expect("create DIR");
    // A JPEG cut short: its first third.
    let jpeg = imgsearch_tests::hostile::smooth_jpeg(640, 480);
    for case in imgsearch_tests::hostile::set(jpeg[..jpeg.len() / 3].to_vec()) {
        std::fs::write(std::path::Path::new(&dir).join(&case.name), &case.bytes)
            .expect("write a case");
    }
}
