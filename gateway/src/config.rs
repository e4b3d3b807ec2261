//! Command-line flags, each with an environment-variable twin. Secrets are
//! never flags: they come from files or the environment, and are wrapped
//! so `Debug` (and so the start-up log) never shows them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;
use imgsearch_common::{
    serve::ServeOptions,
    tls::{self, ServerTlsArgs, TlsError},
};
use imgsearch_proto::limits::{MAX_BATCH_SIZE, MAX_MESSAGE_BYTES};
use tonic::transport::ClientTlsConfig;

use crate::{
    admission::StreamLimits, error::GatewayError, http::HttpOptions, milvus::MilvusConfig,
};

/// What a page may send to the HTTP API across origins.
const HTTP_CORS_HEADERS: &[&str] = &["authorization", "content-type", "traceparent"];

/// What a page may send and read over gRPC-Web across origins.
const GRPC_WEB_CORS_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "traceparent",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
];
const GRPC_WEB_CORS_EXPOSE: &[&str] = &["grpc-status", "grpc-message", "grpc-retry-pushback-ms"];

/// A value that must not be logged.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Secret {
    /// The secret in `file` if given, else in the environment variable
    /// `env`. A file's trailing newline is not part of it.
    pub fn from_file_or_env(file: Option<&Path>, env: &str) -> Result<Option<Self>, GatewayError> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                GatewayError::Config(format!("cannot read {}: {e}", file.display()))
            })?;
            return Ok(Some(Secret(
                text.trim_end_matches(['\n', '\r']).to_string(),
            )));
        }
        Ok(std::env::var(env)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret))
    }
}

/// The imgsearch gateway: reverse image search over Milvus, over gRPC.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// gRPC listen address (imgsearch.v1.ImageSearch, health, reflection).
    /// Beyond loopback, API keys are required (or --allow-unauthenticated).
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub tls: ServerTlsArgs,

    /// HTTP/JSON API listen address (the same calls, keys, roles and limits
    /// as gRPC, and the same TLS certificate), or `off`. Beyond loopback,
    /// API keys are required (or --allow-unauthenticated).
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_HTTP_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR|off"
    )]
    pub http_listen: ListenOrOff,

    /// Also take gRPC-Web on the gRPC port, for browser applications using
    /// generated gRPC clients.
    #[arg(long, env = "IMGSEARCH_GATEWAY_GRPC_WEB", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub grpc_web: bool,

    /// Web origins (`https://app.example.com`, comma-separated) whose pages
    /// may call the HTTP API and gRPC-Web from a browser (CORS). None by
    /// default: only pages the gateway serves itself.
    #[arg(long, env = "IMGSEARCH_GATEWAY_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,

    /// Serve the search page at `/` on the HTTP port: `auto` serves it when
    /// that port is on loopback, `on` wherever it listens.
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_WEB",
        default_value = "auto",
        value_name = "auto|on|off"
    )]
    pub web: WebPage,

    /// Directory that stored filepaths are relative to: the search page's
    /// thumbnails (`GET /v1/collections/{c}/media?filepath=P`) come from it.
    /// Only a stored filepath that resolves to an image inside it is served;
    /// a key confined to a tenant is served from DIR/TENANT/.
    #[arg(long, env = "IMGSEARCH_GATEWAY_MEDIA_ROOT", value_name = "DIR")]
    pub media_root: Option<PathBuf>,

    /// Plaintext gRPC health only (for the kubelet's probes, which speak no
    /// TLS); off when unset.
    #[arg(long, env = "IMGSEARCH_GATEWAY_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,

    /// API keys file: `NAME ROLE DIGEST` lines (`imgsearch key create`
    /// makes them). Every call but health then needs a key with the role
    /// for it. Re-read when it changes.
    #[arg(long, env = "IMGSEARCH_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Serve without API keys on an address beyond loopback: only behind
    /// something else that checks callers.
    #[arg(long, env = "IMGSEARCH_GATEWAY_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Serve gRPC reflection (the API's schema, for grpcurl), without a key.
    #[arg(long, env = "IMGSEARCH_GATEWAY_REFLECTION", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub reflection: bool,

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

    /// Milvus user, with a password from --milvus-password-file or
    /// IMGSEARCH_MILVUS_PASSWORD; or use a token instead.
    #[arg(long, env = "IMGSEARCH_MILVUS_USER")]
    pub milvus_user: Option<String>,

    /// File holding the Milvus password (else IMGSEARCH_MILVUS_PASSWORD;
    /// never a flag, where `ps` would show it).
    #[arg(long, env = "IMGSEARCH_MILVUS_PASSWORD_FILE")]
    pub milvus_password_file: Option<PathBuf>,

    /// File holding the Milvus token, an API key (Zilliz Cloud) or
    /// "user:password" (else IMGSEARCH_MILVUS_TOKEN).
    #[arg(long, env = "IMGSEARCH_MILVUS_TOKEN_FILE")]
    pub milvus_token_file: Option<PathBuf>,

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

    /// Seconds per Milvus call attempt; a call, its retries included,
    /// ends UNAVAILABLE after twice this.
    #[arg(long, env = "IMGSEARCH_MILVUS_TIMEOUT_SECS", default_value_t = 30)]
    pub milvus_timeout_secs: u64,

    /// Attempts per Milvus call on transient errors, the first included.
    #[arg(long, env = "IMGSEARCH_MILVUS_ATTEMPTS", default_value_t = 3)]
    pub milvus_attempts: u32,

    /// Seconds one batch of rows, or one other Milvus call (a search, a
    /// lookup, a count, a delete), may wait out a Milvus that throttles it
    /// (rate limits, quotas) before its rows fail OVERLOADED or the call
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "IMGSEARCH_MILVUS_THROTTLE_WAIT_SECS",
        default_value_t = 60
    )]
    pub milvus_throttle_wait_secs: u64,

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

    /// PEM CA bundle to verify https:// embedders with (the system's roots
    /// when unset).
    #[arg(long, env = "IMGSEARCH_EMBEDDER_TLS_CA")]
    pub embedder_tls_ca: Option<PathBuf>,

    /// PEM client certificate for embedders that require one (mTLS), with
    /// --embedder-tls-key.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_TLS_CERT",
        requires = "embedder_tls_key"
    )]
    pub embedder_tls_cert: Option<PathBuf>,

    /// PEM private key of --embedder-tls-cert.
    #[arg(
        long,
        env = "IMGSEARCH_EMBEDDER_TLS_KEY",
        requires = "embedder_tls_cert"
    )]
    pub embedder_tls_key: Option<PathBuf>,

    /// Rows per Milvus insert (the tutorial's BATCH_SIZE).
    #[arg(long, env = "IMGSEARCH_BATCH_SIZE", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH_SIZE)))]
    pub batch_size: u32,

    /// Most Insert streams open at once; more are RESOURCE_EXHAUSTED.
    #[arg(long, env = "IMGSEARCH_MAX_INSERT_STREAMS", default_value_t = 32)]
    pub max_insert_streams: usize,

    /// Bytes of images one Insert stream may hold while the embedders work
    /// on them; when they are spent the stream stops reading (backpressure).
    /// At least --max-message-bytes plus 1 KiB.
    #[arg(long, env = "IMGSEARCH_INSERT_STREAM_BYTES", default_value_t = 256 << 20)]
    pub insert_stream_bytes: usize,

    /// Bytes all Insert streams together may hold; each reserves
    /// --insert-stream-bytes when it opens, and one that finds no room is
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "IMGSEARCH_INSERT_MEMORY_BYTES", default_value_t = 2 << 30)]
    pub insert_memory_bytes: usize,

    /// Seconds an Insert stream may send nothing; then what it sent is
    /// committed and acknowledged, and it ends DEADLINE_EXCEEDED.
    #[arg(long, env = "IMGSEARCH_INSERT_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub insert_idle_timeout_secs: u64,

    /// Calls in progress at once, of every method together; beyond it a
    /// call is RESOURCE_EXHAUSTED at once, with a retry hint
    /// (grpc-retry-pushback-ms).
    #[arg(long, env = "IMGSEARCH_GATEWAY_MAX_CALLS", default_value_t = 512)]
    pub max_calls: usize,

    /// HTTP/2 streams (calls) one client connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS): a client's HTTP/2 layer queues
    /// its calls beyond it, and any stream opened beyond it is refused.
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_MAX_CONNECTION_STREAMS",
        default_value_t = 128
    )]
    pub max_connection_streams: u32,

    /// Most SearchStream calls open at once; more are RESOURCE_EXHAUSTED.
    #[arg(long, env = "IMGSEARCH_MAX_SEARCH_STREAMS", default_value_t = 32)]
    pub max_search_streams: usize,

    /// Bytes of query images one SearchStream may hold before they are
    /// answered; when they are spent the stream stops reading. At least
    /// --max-message-bytes plus 1 KiB.
    #[arg(long, env = "IMGSEARCH_SEARCH_STREAM_BYTES", default_value_t = 96 << 20)]
    pub search_stream_bytes: usize,

    /// Bytes all searches together may hold: each SearchStream reserves
    /// --search-stream-bytes when it opens, and each unary Search three times
    /// its request's size (the decoded request, the copy sent to an
    /// embedder, its encoding) before the request is read. A search the
    /// budget cannot hold now is RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "IMGSEARCH_SEARCH_MEMORY_BYTES", default_value_t = 1 << 30)]
    pub search_memory_bytes: usize,

    /// Seconds a SearchStream may send nothing before it ends
    /// DEADLINE_EXCEEDED (its answers so far are all sent); also how long
    /// a SearchStream or FindDuplicates caller that reads no answer is
    /// waited for.
    #[arg(long, env = "IMGSEARCH_SEARCH_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub search_idle_timeout_secs: u64,

    /// Seconds an embedder may take to answer a Search's images, or go
    /// without answering anything while an Insert stream's images wait; then
    /// it is taken as gone.
    #[arg(long, env = "IMGSEARCH_EMBED_TIMEOUT_SECS", default_value_t = 30)]
    pub embed_timeout_secs: u64,

    /// Seconds the flush at the end of an Insert may take; the rows stay
    /// stored if it does not finish (Milvus seals them by itself).
    #[arg(
        long,
        env = "IMGSEARCH_MILVUS_FLUSH_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub milvus_flush_timeout_secs: u64,

    /// Seconds between HTTP/2 pings to idle callers; one that does not answer
    /// within --keepalive-timeout-secs is dropped, and its Insert stream
    /// commits what it received.
    #[arg(long, env = "IMGSEARCH_GATEWAY_KEEPALIVE_SECS", default_value_t = 30)]
    pub keepalive_secs: u64,

    /// Seconds a keepalive ping may go unanswered.
    #[arg(
        long,
        env = "IMGSEARCH_GATEWAY_KEEPALIVE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub keepalive_timeout_secs: u64,

    /// Largest gRPC message accepted or sent (an image travels in one).
    #[arg(long, env = "IMGSEARCH_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = MAX_MESSAGE_BYTES)]
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

/// A listen address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct ListenOrOff(pub Option<SocketAddr>);

impl std::str::FromStr for ListenOrOff {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        text.parse()
            .map(|a| Self(Some(a)))
            .map_err(|e| format!("{e}: give host:port or off"))
    }
}

/// Whether the search page is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebPage {
    /// Where the HTTP port is on loopback.
    Auto,
    On,
    Off,
}

impl Config {
    /// The flags the shared server code reads.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            listen: self.listen,
            tls: self.tls.clone(),
            probe_listen: self.probe_listen,
            metrics_listen: self.metrics_listen,
            reflection: self.reflection,
            grpc_web: self.grpc_web,
            // check() has refused origins that do not parse.
            cors: self
                .cors(GRPC_WEB_CORS_HEADERS, GRPC_WEB_CORS_EXPOSE)
                .ok()
                .flatten()
                .filter(|_| self.grpc_web),
            keepalive: Some((
                Duration::from_secs(self.keepalive_secs),
                Duration::from_secs(self.keepalive_timeout_secs),
            )),
            grace: Duration::from_secs(self.shutdown_grace_secs),
            max_connection_streams: Some(self.max_connection_streams),
        }
    }

    /// The HTTP port's settings; `None` when it is off.
    pub fn http_options(&self) -> Result<Option<HttpOptions>, GatewayError> {
        let Some(listen) = self.http_listen.0 else {
            return Ok(None);
        };
        Ok(Some(HttpOptions {
            listen,
            tls: self.tls.clone(),
            cors: self.cors(HTTP_CORS_HEADERS, &[])?,
            max_message_bytes: self.max_message_bytes,
            grace: Duration::from_secs(self.shutdown_grace_secs),
            web: match self.web {
                WebPage::On => true,
                WebPage::Off => false,
                WebPage::Auto => listen.ip().is_loopback(),
            },
            media_root: self
                .media_root
                .as_deref()
                .map(crate::http::MediaRoot::new)
                .transpose()
                .map_err(GatewayError::Config)?,
        }))
    }

    /// CORS for --cors-origin, allowing `headers`.
    fn cors(
        &self,
        headers: &[&'static str],
        expose: &[&'static str],
    ) -> Result<Option<tower_http::cors::CorsLayer>, GatewayError> {
        crate::http::cors(&self.cors_origin, headers, expose)
            .map_err(|e| GatewayError::Config(format!("--cors-origin: {e}")))
    }

    /// Settings that cannot work together.
    pub fn check(&self) -> Result<(), GatewayError> {
        self.insert_limits().check(self.max_message_bytes)?;
        self.search_limits().check(self.max_message_bytes)?;
        if self.max_calls == 0 || self.max_connection_streams == 0 {
            return Err(GatewayError::Config(
                "--max-calls and --max-connection-streams must be at least 1".into(),
            ));
        }
        self.cors(HTTP_CORS_HEADERS, &[])?;
        self.check_exposure()
    }

    /// An unauthenticated gateway is a loopback one unless the operator
    /// says otherwise: one call could otherwise drop a collection.
    fn check_exposure(&self) -> Result<(), GatewayError> {
        let exposed = std::iter::once(self.listen)
            .chain(self.http_listen.0)
            .find(|addr| !addr.ip().is_loopback());
        let Some(exposed) = exposed else {
            return Ok(());
        };
        if self.api_keys_file.is_some() || self.allow_unauthenticated {
            return Ok(());
        }
        Err(GatewayError::Config(format!(
            "refusing to serve on {} without API keys: anyone reaching it could drop \
             collections. Create a key with `imgsearch key create --name NAME --role admin \
             --out NAME.key`, put the line it prints in a file and pass --api-keys-file FILE \
             (IMGSEARCH_API_KEYS_FILE); or listen on 127.0.0.1; or pass \
             --allow-unauthenticated when something in front checks callers",
            exposed
        )))
    }

    pub fn insert_limits(&self) -> StreamLimits {
        StreamLimits {
            rpc: "Insert",
            flag: "insert",
            max_streams: self.max_insert_streams,
            stream_bytes: self.insert_stream_bytes,
            total_bytes: self.insert_memory_bytes,
        }
    }

    pub fn search_limits(&self) -> StreamLimits {
        StreamLimits {
            rpc: "SearchStream",
            flag: "search",
            max_streams: self.max_search_streams,
            stream_bytes: self.search_stream_bytes,
            total_bytes: self.search_memory_bytes,
        }
    }

    /// Whether the gateway checks filepath lengths itself: always, but for
    /// a test build's injected fault ([`crate::fault::check_filepaths`]).
    pub fn check_filepaths(&self) -> bool {
        crate::fault::check_filepaths()
    }

    /// TLS for `https://` embedders; `None` when every one is plaintext.
    pub fn embedder_tls(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        if !self.embedders.iter().any(|u| u.starts_with("https://")) {
            return Ok(None);
        }
        let identity = self
            .embedder_tls_cert
            .as_deref()
            .zip(self.embedder_tls_key.as_deref());
        tls::client_config(self.embedder_tls_ca.as_deref(), identity, None).map(Some)
    }

    /// The Milvus connection settings, credentials folded into one token.
    pub fn milvus(&self) -> Result<MilvusConfig, GatewayError> {
        let token =
            Secret::from_file_or_env(self.milvus_token_file.as_deref(), "IMGSEARCH_MILVUS_TOKEN")?;
        let password = Secret::from_file_or_env(
            self.milvus_password_file.as_deref(),
            "IMGSEARCH_MILVUS_PASSWORD",
        )?;
        let token = match (token, &self.milvus_user, password) {
            (Some(t), _, _) => Some(t.0),
            (None, Some(u), Some(p)) => Some(format!("{u}:{}", p.0)),
            (None, Some(u), None) => Some(format!("{u}:")),
            (None, None, _) => None,
        };
        Ok(MilvusConfig {
            uri: self.milvus_uri.clone(),
            token,
            database: self.milvus_database.clone(),
            ca_certificate: self.milvus_ca_cert.clone(),
            connect_timeout: Duration::from_secs(self.milvus_connect_timeout_secs),
            rpc_timeout: Duration::from_secs(self.milvus_timeout_secs),
            max_attempts: self.milvus_attempts,
            load_timeout: Duration::from_secs(self.load_timeout_secs),
            flush_timeout: Duration::from_secs(self.milvus_flush_timeout_secs),
            throttle_wait: Duration::from_secs(self.milvus_throttle_wait_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn page_served(args: &[&str]) -> bool {
        let cfg = Config::try_parse_from(["imgsearch-gateway"].iter().chain(args)).unwrap();
        cfg.http_options().unwrap().is_some_and(|o| o.web)
    }

    #[test]
    fn the_page_is_served_by_default_only_on_loopback() {
        assert!(page_served(&[]));
        assert!(!page_served(&["--http-listen", "0.0.0.0:8080"]));
        assert!(page_served(&[
            "--http-listen",
            "0.0.0.0:8080",
            "--web",
            "on"
        ]));
        assert!(!page_served(&["--web", "off"]));
    }

    #[test]
    fn a_media_root_that_is_not_a_directory_is_refused() {
        let cfg =
            Config::try_parse_from(["imgsearch-gateway", "--media-root", "/proc/self/status"])
                .unwrap();
        assert!(cfg.http_options().is_err());
    }
}
