//! `imgsearch`: the tutorial's steps as commands against a running gateway.
//!
//! The commands (collection, ingest, search) arrive with the gateway; for now
//! the binary reports its version and the API it speaks.

use clap::Parser;

/// Reverse image search over Milvus: the command line.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address of the imgsearch gateway.
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY",
        default_value = "http://127.0.0.1:50051"
    )]
    gateway: String,
}

fn main() {
    let cli = Cli::parse();
    println!(
        "imgsearch {} (API imgsearch.v1, gateway {}): no commands yet",
        env!("CARGO_PKG_VERSION"),
        cli.gateway
    );
}
