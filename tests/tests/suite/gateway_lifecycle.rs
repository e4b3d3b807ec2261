//! The gateway process itself: secrets stay out of its logs and its command
//! line, and SIGTERM stops it cleanly.

use std::time::Duration;

use imgsearch_proto::v1::{image_search_client::ImageSearchClient, ListCollectionsRequest};
use imgsearch_tests::{
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    milvus::Milvus,
    pki::Pki,
};
use tonic::{metadata::MetadataValue, Request};

/// Whether `secret` appears in the gateway's log or its command line.
fn leaked(gateway: &GatewayProcess, secret: &str) -> Option<&'static str> {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", gateway.pid())).unwrap();
    if String::from_utf8_lossy(&cmdline).contains(secret) {
        return Some("/proc/PID/cmdline");
    }
    gateway.log().contains(secret).then_some("the log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_reach_neither_logs_nor_the_command_line() {
    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let password = "pw-7c1d5e9a-never-log-me";
    let password_file = dir.path().join("milvus-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let key = "isk_never-log-this-key-3f9a";
    let keys_file = dir.path().join("keys");
    let digest = imgsearch_proto::api_key::digest(key);
    std::fs::write(&keys_file, format!("ops admin {digest}\n")).unwrap();
    let pki = Pki::new("lifecycle CA");
    let server = pki.issue("server", false);
    let tls_key = std::fs::read_to_string(&server.1).unwrap();
    let tls_key_line = tls_key.lines().nth(1).unwrap().to_string();

    // The embedded Milvus has authentication off, so it accepts any
    // credentials: the gateway serves, and we can read what it logged.
    let flags = GatewayFlags {
        tls: Some(server),
        milvus_user: Some("root".into()),
        milvus_password_file: Some(password_file),
        api_keys_file: Some(keys_file),
        ..Default::default()
    };
    let mut gateway =
        GatewayProcess::start_tls(&milvus.uri(), &[embedder.uri()], &flags, pki.client(None)).await;
    let mut client = ImageSearchClient::new(gateway.channel().await.unwrap());
    let mut request = Request::new(ListCollectionsRequest {});
    let bearer = MetadataValue::try_from(format!("Bearer {key}")).unwrap();
    request.metadata_mut().insert("authorization", bearer);
    client.list_collections(request).await.expect("serving");

    assert!(
        gateway.log().contains("[REDACTED]"),
        "the configuration is logged, redacted:\n{}",
        gateway.log()
    );
    for secret in [password, key, &tls_key_line] {
        assert_eq!(leaked(&gateway, secret), None, "{secret} leaked");
    }

    drop(client);
    gateway.terminate();
    let status = gateway
        .wait_exit(Duration::from_secs(20))
        .expect("exited after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(gateway.log().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_milvus_token_from_the_environment_reaches_neither_logs_nor_the_command_line() {
    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    let token = "root:tok-5b2e-never-log-me";
    let flags = GatewayFlags {
        milvus_token: Some(token.into()),
        ..Default::default()
    };
    let gateway = GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &flags).await;
    let mut client = gateway.client().await;
    client
        .list_collections(ListCollectionsRequest {})
        .await
        .expect("serving");
    assert_eq!(leaked(&gateway, token), None);
    assert_eq!(leaked(&gateway, "tok-5b2e"), None);
}
