//! The real embedder binary on free ports, with the seeded weights.

use std::ops::{Deref, DerefMut};

use imgsearch_proto::v1::embedder_client::EmbedderClient;
use tonic::transport::Channel;

use crate::{deps, ports::free_ports, server_process::ServerProcess};

/// Largest message the test clients send or accept.
pub const CLIENT_MAX_MESSAGE: usize = 128 << 20;

/// A running `imgsearch-embedder`.
pub struct EmbedderProcess {
    server: ServerProcess,
    pub metrics_port: u16,
}

impl EmbedderProcess {
    /// Starts `imgsearch-embedder` on CPU with the seeded weights plus
    /// `extra` flags, and waits until it serves.
    pub async fn start(extra: &[&str]) -> EmbedderProcess {
        let ports = free_ports(2);
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{}", ports[0]),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", ports[1]),
            "--weights".into(),
            deps::seeded_weights().display().to_string(),
            "--device".into(),
            "cpu".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let server = ServerProcess::start(
            "imgsearch-embedder",
            &args,
            ports[0],
            "imgsearch.v1.Embedder",
        )
        .await;
        EmbedderProcess {
            server,
            metrics_port: ports[1],
        }
    }

    /// A connected client with generous message limits.
    pub async fn client(&self) -> EmbedderClient<Channel> {
        EmbedderClient::new(
            crate::channel(&self.uri())
                .await
                .expect("connect to embedder"),
        )
        .max_decoding_message_size(CLIENT_MAX_MESSAGE)
        .max_encoding_message_size(CLIENT_MAX_MESSAGE)
    }

    /// A metric's value summed over its label sets, e.g. `embedder_images_total`.
    pub fn metric(&self, name: &str) -> f64 {
        crate::http::metric(self.metrics_port, name)
    }
}

impl Deref for EmbedderProcess {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl DerefMut for EmbedderProcess {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }
}
