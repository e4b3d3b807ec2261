//! The gateway binary: flags, logging, signals; everything else is in the
//! library.

use clap::Parser;
use imgsearch_gateway::{config::Config, server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if cfg.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    tracing::info!(config = ?cfg, "starting imgsearch-gateway");
    server::run(cfg, shutdown_signal()).await?;
    Ok(())
}

/// SIGTERM (what Kubernetes sends to start a graceful shutdown) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
