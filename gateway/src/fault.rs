//! Faults the tests inject: only a build with the `fault-injection`
//! feature reads `IMGSEARCH_GATEWAY_FAULT`; otherwise every hook is empty.

#[cfg(feature = "fault-injection")]
fn active(name: &str) -> bool {
    std::env::var("IMGSEARCH_GATEWAY_FAULT").as_deref() == Ok(name)
}

/// Whether the gateway checks filepath lengths itself (`skip-filepath-check`
/// turns it off, so tests can watch Milvus refuse a row).
pub fn check_filepaths() -> bool {
    #[cfg(feature = "fault-injection")]
    if active("skip-filepath-check") {
        tracing::warn!("fault injection: filepath lengths are not checked");
        return false;
    }
    true
}

/// Called once a streaming call's first message is read: `insert-panic` or
/// `search-stream-panic` makes that call's task panic there.
pub fn streaming_call_started(_rpc: &str) {
    #[cfg(feature = "fault-injection")]
    if active(&format!("{_rpc}-panic")) {
        panic!("injected fault: {_rpc}-panic");
    }
}

/// Called in each commit task: `commit-panic` makes it panic there.
pub fn commit_started() {
    #[cfg(feature = "fault-injection")]
    if active("commit-panic") {
        panic!("injected fault: commit-panic");
    }
}
