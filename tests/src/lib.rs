//! Harness for imgsearch's integration tests: real processes on free ports,
//! waited on until healthy, torn down even when a test fails.
//!
//! - [`deps`]: where `scripts/setup.sh` put Milvus, weights, fixtures, Python.
//! - [`milvus`]: an embedded Milvus 2.3.5 standalone per test binary (or per
//!   test, for tests that stop and restart it).
//! - [`milvus_proxy`]: a gRPC proxy before Milvus that throttles inserts
//!   or holds replies back, as a busy or slow Milvus does.
//! - [`embedder`], [`gateway`]: the real service binaries ([`server_process`]).
//! - [`hostile`]: hostile images, generated.
//! - [`insert`]: Insert streams driven and their answers collected.
//! - [`cli`]: the `imgsearch` CLI as a client process.
//! - [`stack`]: Milvus, embedder, gateway and a client in one line, and
//!   collections to fill, search and count in Milvus directly.
//! - [`search`]: search requests by kind, exact L2.
//! - [`data`]: attributes, filters and vector items of the extended schema,
//!   and the filter rules evaluated over rows read from Milvus.
//! - [`charts`]: benchmark results drawn as line charts (PNG).
//! - [`synthetic`]: many rows made from a few photos' vectors, reproducibly,
//!   for the benchmarks.
//! - [`variants`]: many distinct images made from a few photos (crops,
//!   flips, re-encodes), for the long ingest benchmarks.
//! - [`pki`]: certificates for TLS tests.
//! - [`pyref`]: the tutorial's PyTorch pipeline, run to get reference vectors.
//! - [`deploy`]: the rendered Kubernetes manifests.
//! - [`containers`], [`kube_play`]: the images run as those manifests say,
//!   by `podman run` and by `podman kube play`.

pub mod browser;
pub mod charts;
pub mod cli;
pub mod containers;
pub mod data;
pub mod deploy;
pub mod deps;
pub mod embedder;
pub mod gateway;
pub mod hostile;
pub mod http;
pub mod insert;
pub mod kube_play;
pub mod latency;
pub mod milvus;
pub mod milvus_proxy;
pub mod pki;
pub mod ports;
pub mod process;
pub mod pyref;
pub mod rest;
pub mod search;
pub mod server_process;
pub mod stack;
pub mod synthetic;
pub mod variants;

/// A gRPC channel to `uri`. (The generated clients have no `connect`: the
/// Milvus SDK generates its own, so tonic-build's transport helpers stay off.)
pub async fn channel(uri: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tls_channel(uri, None).await
}

/// [`channel`] with TLS settings, when given.
pub async fn tls_channel(
    uri: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}
