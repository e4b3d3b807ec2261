//! The real gateway binary on a free port, pointed at a Milvus and embedders.

use std::ops::{Deref, DerefMut};

use imgsearch_proto::v1::image_search_client::ImageSearchClient;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::{embedder::CLIENT_MAX_MESSAGE, ports::free_ports, server_process::ServerProcess};

/// A running `imgsearch-gateway`.
pub struct GatewayProcess {
    server: ServerProcess,
    pub metrics_port: u16,
}

impl GatewayProcess {
    /// Starts `imgsearch-gateway` for `milvus_uri` and `embedders` plus
    /// `extra` flags, and waits until it serves (Milvus and an embedder up).
    pub async fn start(milvus_uri: &str, embedders: &[String], extra: &[&str]) -> GatewayProcess {
        Self::start_with_env(milvus_uri, embedders, extra, &[]).await
    }

    /// [`GatewayProcess::start`] with environment variables, such as a fault
    /// hook's `IMGSEARCH_GATEWAY_FAULT`.
    pub async fn start_with_env(
        milvus_uri: &str,
        embedders: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        Self::launch(milvus_uri, embedders, extra, env, None).await
    }

    /// [`GatewayProcess::start`] for a gateway serving TLS (its flags in
    /// `extra`), reached with `tls`.
    pub async fn start_tls(
        milvus_uri: &str,
        embedders: &[String],
        extra: &[&str],
        tls: ClientTlsConfig,
    ) -> GatewayProcess {
        Self::launch(milvus_uri, embedders, extra, &[], Some(tls)).await
    }

    async fn launch(
        milvus_uri: &str,
        embedders: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
        tls: Option<ClientTlsConfig>,
    ) -> GatewayProcess {
        let ports = free_ports(2);
        let port = ports[0];
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", ports[1]),
            "--milvus-uri".into(),
            milvus_uri.into(),
            "--embedder".into(),
            embedders.join(","),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let server = ServerProcess::start_tls(
            "imgsearch-gateway",
            &args,
            env,
            port,
            "imgsearch.v1.ImageSearch",
            tls,
        )
        .await;
        GatewayProcess {
            server,
            metrics_port: ports[1],
        }
    }

    /// A metric's value (see [`crate::http::metric`]).
    pub fn metric(&self, name: &str) -> f64 {
        crate::http::metric(self.metrics_port, name)
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
