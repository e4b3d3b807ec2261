//! The gRPC services every imgsearch server carries besides its own: health
//! (`grpc.health.v1`) and reflection (`v1` and the `v1alpha` grpcurl 1.8
//! speaks), for the imgsearch protos and health only; and the ports they
//! are served on: the gRPC port, TLS when configured, and a plaintext port
//! that answers health alone.

use std::net::SocketAddr;

use tokio::{net::TcpListener, task::JoinHandle};
use tonic_health::{
    pb::health_server::{Health as HealthService, HealthServer},
    server::HealthReporter,
    ServingStatus,
};
use tonic_reflection::server::{v1, v1alpha, Builder, Error};
use tracing::{info, warn};

use crate::tls::{incoming, Incoming, ServerTls, ServerTlsArgs, TlsError};

/// Health of one service, mirrored on the overall (`""`) status.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: &'static str,
}

/// A health service name that is SERVING for as long as the process serves
/// gRPC, whatever its dependencies: what a liveness probe should ask, so an
/// outage of Milvus (readiness) does not restart every pod.
pub const LIVENESS: &str = "liveness";

impl Health {
    /// Starts NOT_SERVING (and [`LIVENESS`] SERVING); returns the handle and
    /// the gRPC service to mount.
    pub async fn new(service: &'static str) -> (Self, HealthServer<impl HealthService>) {
        let (reporter, server) = tonic_health::server::health_reporter();
        let health = Self { reporter, service };
        health.set(false).await;
        health
            .reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        (health, server)
    }

    /// SERVING or NOT_SERVING.
    pub async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(self.service, status).await;
    }
}

fn builder() -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(imgsearch_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Reflection, protocol v1.
pub fn reflection_v1() -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, Error> {
    builder().build_v1()
}

/// Reflection, protocol v1alpha (grpcurl 1.8).
pub fn reflection_v1alpha(
) -> Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>, Error> {
    builder().build_v1alpha()
}

/// Why a server cannot open its ports.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ListenError::Bind(addr, e))
}

/// Opens the gRPC port: TLS when `tls` names a certificate, plaintext
/// otherwise.
pub async fn listen(addr: SocketAddr, tls: &ServerTlsArgs) -> Result<Incoming, ListenError> {
    let tls = ServerTls::load(tls)?;
    let listener = bind(addr).await?;
    let local = listener
        .local_addr()
        .map_err(|e| ListenError::Bind(addr, e))?;
    info!(
        addr = %local,
        tls = tls.is_some(),
        client_certificates = tls.as_ref().is_some_and(ServerTls::mutual),
        "gRPC listening"
    );
    Ok(incoming(listener, tls))
}

/// Serves health alone, in plaintext, on `addr` (when set) until the
/// returned task is aborted: the kubelet's gRPC probes speak no TLS, so with
/// TLS on the main port they ask here. Nothing else is reachable on it.
pub async fn serve_probes<H: HealthService>(
    addr: Option<SocketAddr>,
    health: HealthServer<H>,
) -> Result<Option<JoinHandle<()>>, ListenError> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = bind(addr).await?;
    info!(addr = %addr, "probes listening (health only, plaintext)");
    Ok(Some(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming(listener, None))
            .await;
        if let Err(e) = served {
            warn!(error = %e, "probe port failed");
        }
    })))
}
