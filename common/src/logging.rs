//! `tracing` output: text for people, JSON for log pipelines; the level comes
//! from `RUST_LOG` (default `info`).

/// Installs the global subscriber. `format` is `text` or `json`.
pub fn init(format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
