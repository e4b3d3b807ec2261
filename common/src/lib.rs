//! What imgsearch's servers share, so each binary's `main` and wiring stay
//! short: health and reflection services, logging set-up, the shutdown signal, the Prometheus endpoint, and
//! W3C trace-context propagation over gRPC metadata.

pub mod grpc;
pub mod logging;
pub mod metrics_http;
pub mod shutdown;
pub mod trace;
