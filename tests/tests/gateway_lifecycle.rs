//! The gateway process itself: secrets stay out of its logs, and SIGTERM
//! stops it cleanly.

use std::time::Duration;

use imgsearch_proto::v1::ListCollectionsRequest;
use imgsearch_tests::{embedder::EmbedderProcess, gateway::GatewayProcess, milvus::Milvus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs_and_sigterm_stops_it() {
    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    let password = "pw-7c1d5e9a-never-log-me";
    // The embedded Milvus has authentication off, so it accepts any
    // credentials: the gateway serves, and we can read what it logged.
    let mut gateway = GatewayProcess::start(
        &milvus.uri(),
        &[embedder.uri()],
        &["--milvus-user", "root", "--milvus-password", password],
    )
    .await;
    let mut client = gateway.client().await;
    client
        .list_collections(ListCollectionsRequest {})
        .await
        .expect("serving");
    let log = gateway.log();
    assert!(
        log.contains("[REDACTED]"),
        "the configuration is logged, redacted:\n{log}"
    );
    assert!(!log.contains(password), "the password leaked into the log");

    drop(client);
    gateway.terminate();
    let status = gateway
        .wait_exit(Duration::from_secs(20))
        .expect("exited after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(gateway.log().contains("stopped"));
}
