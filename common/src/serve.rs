//! How an imgsearch server is served, the same for the gateway and the
//! embedder: the metrics port, the gRPC port (TLS when configured) carrying
//! the service behind [`Telemetry`] with health and reflection beside it,
//! the plaintext probe port, and a stop that turns health NOT_SERVING, lets
//! open calls finish within the grace period, and closes the ports.
//!
//! Health starts NOT_SERVING: each server says when it is ready, so probes
//! get answers while it connects or loads its model.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use prometheus::Registry;
use tokio::{sync::watch, task::JoinHandle};
use tonic::{
    body::Body,
    codegen::{http, Service},
    server::NamedService,
};
use tracing::{info, warn};

use imgsearch_proto::limits::{HTTP2_STREAM_WINDOW_BYTES, HTTP2_WINDOW_STREAMS};

use crate::{
    grpc::{self, Health, ListenError},
    telemetry::Telemetry,
    tls::{Protocols, ServerTlsArgs},
};

/// The server-side settings both binaries take from their flags.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tls: ServerTlsArgs,
    pub probe_listen: Option<SocketAddr>,
    pub metrics_listen: SocketAddr,
    /// Serve gRPC reflection beside the service.
    pub reflection: bool,
    /// HTTP/2 keepalive: ping interval and how long a ping may go unanswered.
    pub keepalive: Option<(Duration, Duration)>,
    /// How long open calls may run on after the stop.
    pub grace: Duration,
    /// Also take gRPC-Web (HTTP/1.1 or 2) on the gRPC port, for browsers.
    pub grpc_web: bool,
    /// Origins whose pages may call across origins (gRPC-Web).
    pub cors: Option<tower_http::cors::CorsLayer>,
    /// HTTP/2 streams one connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS): a client opens no more, and h2
    /// refuses any it opens beyond; `None` is h2's default (unbounded).
    pub max_connection_streams: Option<u32>,
}

/// h2 gives a connection's window back only as a call's bytes are read, so
/// streams held back by backpressure would soon hold all of a window no
/// larger than one stream's, and a search sent on the same connection as a
/// bulk ingest would wait for the ingest. A connection's window therefore
/// holds every stream's full window. What stays buffered is still bounded
/// per stream, and the gateway admits only so many streams.
fn connection_window(max_connection_streams: Option<u32>) -> u32 {
    let streams = max_connection_streams.unwrap_or(HTTP2_WINDOW_STREAMS);
    HTTP2_STREAM_WINDOW_BYTES
        .saturating_mul(streams.max(1))
        .min(i32::MAX as u32)
}

/// Why a server cannot start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection descriptors: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A server that is taking calls.
pub struct Serving {
    health: Health,
    stopping: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    probes: Option<JoinHandle<()>>,
    grace: Duration,
}

/// Opens the ports and serves `service`, its calls seen by `telemetry`,
/// until [`Serving::stop`]; `registry` goes out on the metrics port.
pub async fn serve<S>(
    options: &ServeOptions,
    telemetry: Telemetry,
    registry: Registry,
    service: S,
) -> Result<Serving, ServeError>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let service = tower_layer::Layer::layer(&telemetry.for_service(S::NAME), service);
    let metrics = tokio::net::TcpListener::bind(options.metrics_listen)
        .await
        .and_then(|l| Ok((l.local_addr()?, l)))
        .map_err(|e| ListenError::Bind(options.metrics_listen, e))?;
    info!(addr = %metrics.0, "metrics listening");
    tokio::spawn(crate::metrics_http::serve(metrics.1, registry));

    let (health, health_service) = Health::new(S::NAME).await;
    let reflection = if options.reflection {
        Some((grpc::reflection_v1()?, grpc::reflection_v1alpha()?))
    } else {
        None
    };
    let protocols = if options.grpc_web {
        Protocols::Http2AndHttp1
    } else {
        Protocols::Http2
    };
    let (incoming, _) = grpc::listen("gRPC", options.listen, &options.tls, protocols).await?;
    let probes = grpc::serve_probes(options.probe_listen, health_service.clone()).await?;
    let (interval, timeout) = options.keepalive.unzip();
    let (stopping, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .accept_http1(options.grpc_web)
            // Outside the telemetry layer: it sees a gRPC-Web call as the
            // gRPC call it becomes, counted and gated like any other.
            .layer(tower::util::option_layer(options.cors.clone()))
            .layer(tower::util::option_layer(
                options.grpc_web.then(tonic_web::GrpcWebLayer::new),
            ))
            .http2_keepalive_interval(interval)
            .http2_keepalive_timeout(timeout)
            .max_concurrent_streams(options.max_connection_streams)
            .initial_stream_window_size(HTTP2_STREAM_WINDOW_BYTES)
            .initial_connection_window_size(connection_window(options.max_connection_streams))
            .add_service(health_service)
            .add_optional_service(reflection.as_ref().map(|r| r.0.clone()))
            .add_optional_service(reflection.map(|r| r.1))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            }),
    );
    Ok(Serving {
        health,
        stopping,
        server,
        probes,
        grace: options.grace,
    })
}

impl Serving {
    /// The handle that turns health SERVING and back.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Health NOT_SERVING, no new calls, open ones finish within the grace
    /// period, then the ports close. A server with its own draining to do
    /// (the embedder's admitted images) does it before calling this.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.health.set(false).await;
        let _ = self.stopping.send(true);
        let result = match tokio::time::timeout(self.grace, self.server).await {
            Ok(result) => result.expect("server task").map_err(ServeError::from),
            Err(_) => {
                warn!("calls still open after the grace period; exiting");
                Ok(())
            }
        };
        if let Some(p) = self.probes {
            p.abort();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_window_holds_every_streams_full_window() {
        assert_eq!(connection_window(Some(32)), 32 << 20);
    }

    #[test]
    fn an_unbounded_connection_gets_128_streams_worth_and_a_huge_cap_stays_a_valid_window() {
        assert_eq!(connection_window(None), 128 << 20);
        assert_eq!(connection_window(Some(u32::MAX)), i32::MAX as u32);
    }
}
