//! What imgsearch's servers share, so each binary's `main` and wiring stay
//! short: how a gRPC server is served (ports, health, reflection, graceful
//! stop), the layer that traces, counts and logs every call, logging set-up,
//! the shutdown signal, the Prometheus endpoint, W3C trace-context
//! propagation over gRPC metadata, and TLS with files re-read when they
//! change.

pub mod admission;
pub mod backoff;
pub mod grpc;
pub mod logging;
pub mod metrics_http;
pub mod reload;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace;
