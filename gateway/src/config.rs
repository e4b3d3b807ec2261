//! Command-line flags, each with an environment-variable twin. Secrets are
//! wrapped so `Debug` (and so the start-up log) never shows them.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use clap::Parser;

use crate::milvus::MilvusConfig;

/// A value that must not be logged.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// The imgsearch gateway: reverse image search over Milvus, over gRPC.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// gRPC listen address (imgsearch.v1.ImageSearch, health, reflection).
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_LISTEN",
        default_value = "0.0.0.0:50051"
    )]
    pub listen: SocketAddr,

    /// Prometheus metrics listen address (GET /metrics).
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_METRICS_LISTEN",
        default_value = "0.0.0.0:9103"
    )]
    pub metrics_listen: SocketAddr,

    /// Milvus endpoint: http://host:19530, or https://... for TLS (Zilliz Cloud).
    #[arg(
        long,
        env = "IMGSEARCH_MILVUS_URI",
        default_value = "http://127.0.0.1:19530"
    )]
    pub milvus_uri: String,

    /// Milvus user (with --milvus-password); or use --milvus-token.
    #[arg(long, env = "IMGSEARCH_MILVUS_USER")]
    pub milvus_user: Option<String>,

    /// Milvus password.
    #[arg(long, env = "IMGSEARCH_MILVUS_PASSWORD", hide_env_values = true)]
    pub milvus_password: Option<Secret>,

    /// Milvus token: an API key (Zilliz Cloud) or "user:password".
    #[arg(long, env = "IMGSEARCH_MILVUS_TOKEN", hide_env_values = true)]
    pub milvus_token: Option<Secret>,

    /// Milvus database; the server's default when unset.
    #[arg(long, env = "IMGSEARCH_MILVUS_DATABASE")]
    pub milvus_database: Option<String>,

    /// Path to a PEM CA certificate file, for a TLS endpoint with a private CA.
    #[arg(long, env = "IMGSEARCH_MILVUS_CA_CERT")]
    pub milvus_ca_cert: Option<String>,

    /// Seconds to wait for Milvus to answer when connecting.
    #[arg(
        long,
        env = "IMGSEARCH_MILVUS_CONNECT_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub milvus_connect_timeout_secs: u64,

    /// Seconds per Milvus call attempt.
    #[arg(long, env = "IMGSEARCH_MILVUS_TIMEOUT_SECS", default_value_t = 30)]
    pub milvus_timeout_secs: u64,

    /// Attempts per Milvus call on transient errors, the first included.
    #[arg(long, env = "IMGSEARCH_MILVUS_ATTEMPTS", default_value_t = 3)]
    pub milvus_attempts: u32,

    /// Seconds CreateCollection waits for the new collection to load.
    #[arg(long, env = "IMGSEARCH_LOAD_TIMEOUT_SECS", default_value_t = 120)]
    pub load_timeout_secs: u64,

    /// Embedder endpoints, repeatable or comma-separated; load is spread
    /// over them and a failed one is skipped.
    #[arg(
        long = "embedder",
        env = "IMGSEARCH_EMBEDDERS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50052"
    )]
    pub embedders: Vec<String>,

    /// Resolve each embedder hostname to all its addresses and dial each
    /// one, re-resolving with every health check (about 2 s): with a
    /// Kubernetes headless Service, every ready pod gets a share of the
    /// streams. Off, a name is one connection.
    #[arg(long, env = "IMGSEARCH_EMBEDDER_DNS")]
    pub embedder_dns: bool,

    /// Rows per Milvus insert (the tutorial's BATCH_SIZE).
    #[arg(long, env = "IMGSEARCH_BATCH_SIZE", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch_size: u32,

    /// Largest gRPC message accepted or sent (an image travels in one).
    #[arg(long, env = "IMGSEARCH_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 64 << 20)]
    pub max_message_bytes: usize,

    /// Seconds in-flight calls get after SIGTERM.
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,

    /// Log format: text or json.
    #[arg(long, env = "IMGSEARCH_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    /// The Milvus connection settings, credentials folded into one token.
    pub fn milvus(&self) -> MilvusConfig {
        let token = match (&self.milvus_token, &self.milvus_user, &self.milvus_password) {
            (Some(t), _, _) => Some(t.0.clone()),
            (None, Some(u), Some(p)) => Some(format!("{u}:{}", p.0)),
            (None, Some(u), None) => Some(format!("{u}:")),
            (None, None, _) => None,
        };
        MilvusConfig {
            uri: self.milvus_uri.clone(),
            token,
            database: self.milvus_database.clone(),
            ca_certificate: self.milvus_ca_cert.clone(),
            connect_timeout: Duration::from_secs(self.milvus_connect_timeout_secs),
            rpc_timeout: Duration::from_secs(self.milvus_timeout_secs),
            max_attempts: self.milvus_attempts,
            load_timeout: Duration::from_secs(self.load_timeout_secs),
        }
    }
}
