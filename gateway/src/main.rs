//! The gateway binary: flags, logging, signals; everything else is in the
//! library.

use clap::Parser;
use imgsearch_gateway::{config::Config, server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    imgsearch_common::logging::init(&cfg.log_format);
    tracing::info!(config = ?cfg, "starting imgsearch-gateway");
    server::run(cfg, imgsearch_common::shutdown::signal()).await?;
    Ok(())
}
