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

use crate::tls::{incoming, Incoming, Protocols, ServerTls, ServerTlsArgs, TlsError};

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

/// Opens a port (`what`, for the log: "gRPC", "HTTP") offering
/// `protocols`: TLS when `tls` names a certificate, plaintext otherwise.
/// Returns the address bound (the port chosen, for port 0).
pub async fn listen(
    what: &'static str,
    addr: SocketAddr,
    tls: &ServerTlsArgs,
    protocols: Protocols,
) -> Result<(Incoming, SocketAddr), ListenError> {
    let tls = ServerTls::load(tls, protocols)?;
    let listener = bind(addr).await?;
    let local = listener
        .local_addr()
        .map_err(|e| ListenError::Bind(addr, e))?;
    info!(
        addr = %local,
        tls = tls.is_some(),
        client_certificates = tls.as_ref().is_some_and(ServerTls::mutual),
        "{what} listening"
    );
    Ok((incoming(listener, tls), local))
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

/// Adds the hint gRPC clients read before retrying a refused call
/// (`grpc-retry-pushback-ms`, from gRPC's retry design A6).
pub fn retry_pushback(status: &mut tonic::Status) {
    let ms = imgsearch_proto::limits::RETRY_PUSHBACK_MS.to_string();
    if let Ok(v) = ms.parse() {
        status.metadata_mut().insert("grpc-retry-pushback-ms", v);
    }
}

/// The hint [`retry_pushback`] adds, where a status carries one.
pub fn pushback_of(status: &tonic::Status) -> Option<std::time::Duration> {
    let ms: u64 = status
        .metadata()
        .get("grpc-retry-pushback-ms")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Duration::from_millis(ms))
}

/// The time a caller allows, from its `grpc-timeout` header ("250m", "5S").
pub fn timeout_of(headers: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_their_units() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(timeout_of(&m), None);
        m.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(timeout_of(&m), Some(std::time::Duration::from_millis(250)));
        m.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(timeout_of(&m), Some(std::time::Duration::from_secs(3)));
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(timeout_of(&m), None);
    }

    #[test]
    fn a_refusal_carries_its_retry_hint() {
        let mut s = tonic::Status::resource_exhausted("busy");
        retry_pushback(&mut s);
        assert!(pushback_of(&s).is_some());
    }
}
