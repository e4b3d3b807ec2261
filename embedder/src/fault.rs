//! Fault hooks for tests, compiled only with the `fault-injection` feature
//! (scripts/test.sh builds it; the shipped images do not). Without it every
//! hook is an empty function.
//!
//! `IMGSEARCH_EMBEDDER_FAULT` names the fault:
//! - `model-panic`: the model thread panics on its first batch, as a CUDA
//!   error surfacing as a panic would;
//! - `abort-on-decode`: the process aborts while decoding, as it does when
//!   an allocation fails;
//! - `model-stall`: the model thread hangs on its first batch, as a wedged
//!   GPU would, while the process stays up and answers health checks.

#[cfg(feature = "fault-injection")]
fn active(name: &str) -> bool {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("IMGSEARCH_EMBEDDER_FAULT").ok())
        .as_deref()
        == Some(name)
}

/// Called by the model thread before each batch.
pub fn on_batch() {
    #[cfg(feature = "fault-injection")]
    if active("model-panic") {
        panic!("injected fault: model-panic");
    }
    #[cfg(feature = "fault-injection")]
    if active("model-stall") {
        std::thread::sleep(std::time::Duration::from_secs(24 * 3600));
    }
}

/// Called on the pool before each decode.
pub fn on_preprocess() {
    #[cfg(feature = "fault-injection")]
    if active("abort-on-decode") {
        std::process::abort();
    }
}
