//! The real gateway binary on a free port, pointed at a Milvus and embedders.

use std::{
    ops::{Deref, DerefMut},
    path::PathBuf,
};

use imgsearch_proto::v1::image_search_client::ImageSearchClient;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::{embedder::CLIENT_MAX_MESSAGE, ports::free_ports, server_process::ServerProcess};

/// A running `imgsearch-gateway`.
pub struct GatewayProcess {
    server: ServerProcess,
    pub metrics_port: u16,
    /// The HTTP API's port.
    pub http_port: u16,
}

/// The gateway flags tests set, typed: a misspelt flag or a value of the
/// wrong kind fails to compile instead of failing a gateway's start. What
/// is `None` (or false) is left to the gateway's default.
#[derive(Debug, Clone, Default)]
pub struct GatewayFlags {
    pub batch_size: Option<u32>,
    pub max_insert_streams: Option<u32>,
    pub max_search_streams: Option<u32>,
    pub insert_stream_bytes: Option<u64>,
    pub search_stream_bytes: Option<u64>,
    pub max_message_bytes: Option<u64>,
    pub search_memory_bytes: Option<u64>,
    pub max_calls: Option<u32>,
    pub max_connection_streams: Option<u32>,
    pub insert_idle_timeout_secs: Option<u64>,
    pub search_idle_timeout_secs: Option<u64>,
    pub embed_timeout_secs: Option<u64>,
    pub milvus_timeout_secs: Option<u64>,
    pub milvus_attempts: Option<u32>,
    pub milvus_throttle_wait_secs: Option<u64>,
    pub milvus_ca_cert: Option<PathBuf>,
    pub milvus_user: Option<String>,
    pub milvus_password_file: Option<PathBuf>,
    /// Given in the environment (`IMGSEARCH_MILVUS_TOKEN`), as secrets are.
    pub milvus_token: Option<String>,
    pub api_keys_file: Option<PathBuf>,
    pub reflection: Option<bool>,
    pub embedder_dns: bool,
    /// The gateway's own certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub tls_client_ca: Option<PathBuf>,
    pub embedder_tls_ca: Option<PathBuf>,
    /// The gateway's client certificate and key towards embedders.
    pub embedder_tls_client: Option<(PathBuf, PathBuf)>,
    /// A test hook (`IMGSEARCH_GATEWAY_FAULT`, fault-injection builds).
    pub fault: Option<&'static str>,
    /// Origins allowed across origins (`--cors-origin`).
    pub cors_origin: Option<String>,
    /// Where stored images are served from (`--media-root`).
    pub media_root: Option<PathBuf>,
    /// The search page: `auto`, `on` or `off` (`--web`).
    pub web: Option<&'static str>,
}

impl GatewayFlags {
    /// The command line these flags make.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.extend([format!("--{name}"), v]);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let text = |v: Option<u64>| v.map(|v| v.to_string());
        flag("batch-size", text(self.batch_size.map(u64::from)));
        flag(
            "max-insert-streams",
            text(self.max_insert_streams.map(u64::from)),
        );
        flag(
            "max-search-streams",
            text(self.max_search_streams.map(u64::from)),
        );
        flag("insert-stream-bytes", text(self.insert_stream_bytes));
        flag("search-stream-bytes", text(self.search_stream_bytes));
        flag("max-message-bytes", text(self.max_message_bytes));
        flag("search-memory-bytes", text(self.search_memory_bytes));
        flag("max-calls", text(self.max_calls.map(u64::from)));
        flag(
            "max-connection-streams",
            text(self.max_connection_streams.map(u64::from)),
        );
        flag(
            "insert-idle-timeout-secs",
            text(self.insert_idle_timeout_secs),
        );
        flag(
            "search-idle-timeout-secs",
            text(self.search_idle_timeout_secs),
        );
        flag("embed-timeout-secs", text(self.embed_timeout_secs));
        flag("milvus-timeout-secs", text(self.milvus_timeout_secs));
        flag("milvus-attempts", text(self.milvus_attempts.map(u64::from)));
        flag(
            "milvus-throttle-wait-secs",
            text(self.milvus_throttle_wait_secs),
        );
        flag("milvus-ca-cert", path(&self.milvus_ca_cert));
        flag("milvus-user", self.milvus_user.clone());
        flag("milvus-password-file", path(&self.milvus_password_file));
        flag("api-keys-file", path(&self.api_keys_file));
        flag("reflection", self.reflection.map(|r| r.to_string()));
        flag("cors-origin", self.cors_origin.clone());
        flag("media-root", path(&self.media_root));
        flag("web", self.web.map(str::to_owned));
        flag(
            "tls-cert",
            self.tls.as_ref().map(|t| t.0.display().to_string()),
        );
        flag(
            "tls-key",
            self.tls.as_ref().map(|t| t.1.display().to_string()),
        );
        flag("tls-client-ca", path(&self.tls_client_ca));
        flag("embedder-tls-ca", path(&self.embedder_tls_ca));
        let client = self.embedder_tls_client.as_ref();
        flag(
            "embedder-tls-cert",
            client.map(|c| c.0.display().to_string()),
        );
        flag(
            "embedder-tls-key",
            client.map(|c| c.1.display().to_string()),
        );
        if self.embedder_dns {
            args.push("--embedder-dns".into());
        }
        args
    }

    /// The environment these flags need.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(fault) = self.fault {
            env.push(("IMGSEARCH_GATEWAY_FAULT", fault.to_string()));
        }
        if let Some(token) = &self.milvus_token {
            env.push(("IMGSEARCH_MILVUS_TOKEN", token.clone()));
        }
        env
    }
}

impl GatewayProcess {
    /// Starts `imgsearch-gateway` for `milvus_uri` and `embedders` with
    /// `flags`, and waits until it serves (Milvus and an embedder up).
    pub async fn start(
        milvus_uri: &str,
        embedders: &[String],
        flags: &GatewayFlags,
    ) -> GatewayProcess {
        Self::launch(milvus_uri, embedders, flags, None).await
    }

    /// [`GatewayProcess::start`] for a gateway serving TLS (`flags.tls`),
    /// reached with `tls`.
    pub async fn start_tls(
        milvus_uri: &str,
        embedders: &[String],
        flags: &GatewayFlags,
        tls: ClientTlsConfig,
    ) -> GatewayProcess {
        Self::launch(milvus_uri, embedders, flags, Some(tls)).await
    }

    async fn launch(
        milvus_uri: &str,
        embedders: &[String],
        flags: &GatewayFlags,
        tls: Option<ClientTlsConfig>,
    ) -> GatewayProcess {
        let ports = free_ports(3);
        let port = ports[0];
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", ports[1]),
            "--http-listen".into(),
            format!("127.0.0.1:{}", ports[2]),
            "--milvus-uri".into(),
            milvus_uri.into(),
            "--embedder".into(),
            embedders.join(","),
        ];
        args.extend(flags.args());
        let env = flags.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = ServerProcess::start_tls(
            "imgsearch-gateway",
            &args,
            &env,
            port,
            "imgsearch.v1.ImageSearch",
            tls,
        )
        .await;
        GatewayProcess {
            server,
            metrics_port: ports[1],
            http_port: ports[2],
        }
    }

    /// A metric's value (see [`crate::http::metric`]).
    pub fn metric(&self, name: &str) -> f64 {
        crate::http::metric(self.metrics_port, name)
    }

    /// The HTTP API, without a key.
    pub fn rest(&self) -> crate::rest::Rest {
        crate::rest::Rest::new(&format!("http://127.0.0.1:{}", self.http_port))
    }

    /// A connected client with generous message limits.
    pub async fn client(&self) -> ImageSearchClient<Channel> {
        ImageSearchClient::new(self.channel().await.expect("connect to gateway"))
            .max_decoding_message_size(CLIENT_MAX_MESSAGE)
            .max_encoding_message_size(CLIENT_MAX_MESSAGE)
    }
}

impl Deref for GatewayProcess {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl DerefMut for GatewayProcess {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }
}
