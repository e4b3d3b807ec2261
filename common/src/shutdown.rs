//! The one shutdown signal servers wait on.

/// Resolves on SIGTERM (what Kubernetes sends to start a graceful shutdown)
/// or Ctrl-C.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
