//! Latency summaries for the benchmark binaries (search-bench,
//! filter-bench).

/// The p50 and p99 of `seconds`, in milliseconds, as JSON.
pub fn summary(mut seconds: Vec<f64>) -> serde_json::Value {
    seconds.sort_by(f64::total_cmp);
    let at = |p: f64| seconds[((seconds.len() - 1) as f64 * p).round() as usize] * 1e3;
    serde_json::json!({ "p50_ms": at(0.5), "p99_ms": at(0.99) })
}
