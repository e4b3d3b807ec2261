//! What imgsearch's servers share, so each binary's `main` and wiring stay
//! short: health and reflection services, logging set-up, the shutdown
//! signal, the Prometheus endpoint, W3C trace-context propagation over gRPC
//! metadata, and TLS with files re-read when they change.

pub mod grpc;
pub mod logging;
pub mod metrics_http;
pub mod reload;
pub mod shutdown;
pub mod tls;
pub mod trace;
