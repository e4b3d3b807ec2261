//! The real embedder binary on free ports, with the seeded weights.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use imgsearch_proto::v1::{
    embed_response, embedder_client::EmbedderClient, EmbedRequest, EmbedResponse, ErrorKind,
    InfoRequest, InfoResponse,
};
use tonic::transport::{Channel, ClientTlsConfig};

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
        Self::start_with_env(extra, &[]).await
    }

    /// [`EmbedderProcess::start`] with environment variables, such as a
    /// fault hook's `IMGSEARCH_EMBEDDER_FAULT`.
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> EmbedderProcess {
        Self::start_with_weights(&deps::seeded_weights(), extra, env).await
    }

    /// [`EmbedderProcess::start_with_env`] with another weights file.
    pub async fn start_with_weights(
        weights: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> EmbedderProcess {
        Self::launch(weights, extra, env, None).await
    }

    /// [`EmbedderProcess::start`] for an embedder serving TLS (its flags in
    /// `extra`), reached with `tls`.
    pub async fn start_tls(extra: &[&str], tls: ClientTlsConfig) -> EmbedderProcess {
        Self::launch(&deps::seeded_weights(), extra, &[], Some(tls)).await
    }

    async fn launch(
        weights: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        tls: Option<ClientTlsConfig>,
    ) -> EmbedderProcess {
        let ports = free_ports(2);
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{}", ports[0]),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", ports[1]),
            "--weights".into(),
            weights.display().to_string(),
            "--device".into(),
            "cpu".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        // The tests run many servers on few cores. libgomp's threads spin
        // after each parallel region by default, burning the core another
        // process waits for: two embedders sharing 2 cores embedded 9.2
        // to 9.7 images/s together so, 24.8 with passive waiting (one alone: the
        // same either way; 2026-12-07). The caller's env may still set it.
        let mut env = env.to_vec();
        env.insert(0, ("OMP_WAIT_POLICY", "PASSIVE"));
        let server = ServerProcess::start_tls(
            "imgsearch-embedder",
            &args,
            &env,
            ports[0],
            "imgsearch.v1.Embedder",
            tls,
        )
        .await;
        EmbedderProcess {
            server,
            metrics_port: ports[1],
        }
    }

    /// A connected client with generous message limits.
    pub async fn client(&self) -> EmbedderClient<Channel> {
        EmbedderClient::new(self.channel().await.expect("connect to embedder"))
            .max_decoding_message_size(CLIENT_MAX_MESSAGE)
            .max_encoding_message_size(CLIENT_MAX_MESSAGE)
    }

    /// What `Info` answers.
    pub async fn info(&self) -> InfoResponse {
        let info = self.client().await.info(InfoRequest {}).await;
        info.expect("embedder Info").into_inner()
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

/// Streams `items` through one Embed call; answers by id.
pub async fn embed_stream(
    client: &mut EmbedderClient<Channel>,
    items: Vec<(String, Vec<u8>)>,
) -> HashMap<String, EmbedResponse> {
    let n = items.len();
    let requests = tokio_stream::iter(items.into_iter().map(|(id, image)| EmbedRequest {
        id,
        image: image.into(),
    }));
    let mut responses = client
        .embed(requests)
        .await
        .expect("embed call")
        .into_inner();
    let mut out = HashMap::new();
    while let Some(r) = responses.message().await.expect("response stream") {
        assert!(
            out.insert(r.id.clone(), r).is_none(),
            "duplicate response id"
        );
    }
    assert_eq!(out.len(), n, "one response per request");
    out
}

pub fn vector(r: &EmbedResponse) -> &[f32] {
    match &r.result {
        Some(embed_response::Result::Vector(v)) => &v.values,
        other => panic!("{}: expected a vector, got {other:?}", r.id),
    }
}

pub fn error_kind(r: &EmbedResponse) -> ErrorKind {
    match &r.result {
        Some(embed_response::Result::Error(e)) => e.kind(),
        other => panic!("{}: expected an error, got {other:?}", r.id),
    }
}

/// A copy of the seeded weights in `dir` with one weight changed: a model
/// that loads like the original but has another fingerprint. (safetensors:
/// an 8-byte header length, the JSON header, then the tensors' bytes; the
/// byte changed is the lowest of a float near the end.)
pub fn altered_weights(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(deps::seeded_weights()).expect("seeded weights");
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(bytes.len() > 8 + header + 64, "weights too short");
    let at = bytes.len() - 64;
    bytes[at] ^= 1;
    let out = dir.join("resnet50-altered.safetensors");
    std::fs::write(&out, bytes).expect("write altered weights");
    out
}

/// The quicker precision for tests that embed thousands of images and check
/// no vector: bf16 where the CPU computes it natively (AVX-512 BF16 or AMX),
/// else fp32. On a CPU without them (AVX2 alone) libtorch emulates bf16 at
/// about 0.5 s an image, several times slower than fp32.
pub fn quick_precision() -> &'static str {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let native = flags
        .split_whitespace()
        .any(|f| f == "avx512_bf16" || f == "amx_bf16");
    if native {
        "bf16"
    } else {
        "fp32"
    }
}
