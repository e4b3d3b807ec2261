//! TLS on the servers: the right CA is served and the wrong one refused,
//! client certificates when required, certificates rotated on disk with no
//! restart, the plaintext probe port, and the gateway and the CLI over TLS.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use imgsearch_proto::v1::{embedder_client::EmbedderClient, InfoRequest};
use imgsearch_tests::{
    cli::{keys_file, succeed},
    deps,
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    milvus::Milvus,
    pki::{server_flags, Pki},
    server_process::workspace_binary,
    tls_channel,
};
use tonic::transport::ClientTlsConfig;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Whether an `Info` call over a new connection with `tls` succeeds.
async fn info_with(embedder: &EmbedderProcess, tls: ClientTlsConfig) -> Result<(), String> {
    let channel = tls_channel(&embedder.uri(), Some(tls))
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    EmbedderClient::new(channel)
        .info(InfoRequest {})
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_is_served_and_one_trusting_another_is_refused() {
    let (pki, stranger) = (Pki::new("right CA"), Pki::new("wrong CA"));
    let flags = server_flags(&pki.issue("server", false));
    let embedder = EmbedderProcess::start_tls(&strs(&flags), pki.client(None)).await;
    info_with(&embedder, pki.client(None)).await.unwrap();
    let refused = info_with(&embedder, stranger.client(None)).await;
    assert!(refused.is_err(), "a client trusting another CA was served");
    let plain = tls_channel(&format!("http://127.0.0.1:{}", embedder.grpc_port), None).await;
    let plain_info = match plain {
        Err(_) => false,
        Ok(c) => EmbedderClient::new(c).info(InfoRequest {}).await.is_ok(),
    };
    assert!(!plain_info, "a plaintext client was served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_required_a_client_without_one_is_refused() {
    let pki = Pki::new("mTLS CA");
    let mut flags = server_flags(&pki.issue("server", false));
    flags.extend(["--tls-client-ca".into(), pki.ca().display().to_string()]);
    let client_cert = pki.issue("client", true);
    let embedder = EmbedderProcess::start_tls(&strs(&flags), pki.client(Some(&client_cert))).await;
    info_with(&embedder, pki.client(Some(&client_cert)))
        .await
        .unwrap();
    let refused = info_with(&embedder, pki.client(None)).await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );
    // A certificate from another CA is no better than none.
    let stranger = Pki::new("other CA");
    let foreign = stranger.issue("client", true);
    let with_foreign = pki
        .client(None)
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(&foreign.0).unwrap(),
            std::fs::read(&foreign.1).unwrap(),
        ));
    assert!(info_with(&embedder, with_foreign).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_on_disk_reaches_new_connections_without_a_restart() {
    let (old, new) = (Pki::new("old CA"), Pki::new("new CA"));
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (live.path().join("tls.crt"), live.path().join("tls.key"));
    let install = |(c, k): &(PathBuf, PathBuf)| {
        std::fs::copy(c, &cert).unwrap();
        std::fs::copy(k, &key).unwrap();
    };
    install(&old.issue("server", false));
    let flags = server_flags(&(cert.clone(), key.clone()));
    let embedder = EmbedderProcess::start_tls(&strs(&flags), old.client(None)).await;
    let pid = embedder.pid();
    info_with(&embedder, old.client(None)).await.unwrap();

    install(&new.issue("server", false));
    let deadline = Instant::now() + Duration::from_secs(20);
    while info_with(&embedder, new.client(None)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(info_with(&embedder, old.client(None)).await.is_err());
    assert_eq!(embedder.pid(), pid);
    assert!(embedder.log().contains("reloaded"), "{}", embedder.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_port_answers_health_alone_in_plaintext() {
    let pki = Pki::new("probe CA");
    let probe = imgsearch_tests::ports::free_ports(1)[0];
    let mut flags = server_flags(&pki.issue("server", false));
    flags.extend(["--probe-listen".into(), format!("127.0.0.1:{probe}")]);
    let _embedder = EmbedderProcess::start_tls(&strs(&flags), pki.client(None)).await;
    let channel = tls_channel(&format!("http://127.0.0.1:{probe}"), None)
        .await
        .unwrap();
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "imgsearch.v1.Embedder".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING");
    let info = EmbedderClient::new(channel).info(InfoRequest {}).await;
    assert_eq!(info.unwrap_err().code(), tonic::Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reaches_embedders_over_mutual_tls_and_the_cli_reaches_it_with_mutual_tls_and_a_key(
) {
    let pki = Pki::new("cluster CA");
    let mut embedder_flags = server_flags(&pki.issue("embedder", false));
    embedder_flags.extend(["--tls-client-ca".into(), pki.ca().display().to_string()]);
    let gateway_client = pki.issue("gateway-client", true);
    let embedder =
        EmbedderProcess::start_tls(&strs(&embedder_flags), pki.client(Some(&gateway_client))).await;
    let cli_cert = pki.issue("cli", true);
    let keys = tempfile::tempdir().unwrap();
    let (keys_file, _) = keys_file(keys.path(), &[("ops", "admin")]);
    let key_file = keys.path().join("ops.key");
    let flags = GatewayFlags {
        tls: Some(pki.issue("gateway", false)),
        tls_client_ca: Some(pki.ca()),
        embedder_tls_ca: Some(pki.ca()),
        embedder_tls_client: Some(gateway_client),
        api_keys_file: Some(keys_file),
        ..Default::default()
    };
    let milvus = Milvus::shared();
    let gateway = GatewayProcess::start_tls(
        &milvus.uri(),
        &[embedder.uri()],
        &flags,
        pki.client(Some(&cli_cert)),
    )
    .await;

    let images = tempfile::tempdir().unwrap();
    for (i, f) in deps::fixture_images().iter().take(3).enumerate() {
        std::fs::copy(f, images.path().join(format!("{i}.jpg"))).unwrap();
    }
    let query = images.path().join("1.jpg").display().to_string();
    let dir = images.path().display().to_string();
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(workspace_binary("imgsearch"));
        cmd.args(["--gateway", &gateway.uri()])
            .args(args)
            .env("IMGSEARCH_TLS_CA", pki.ca())
            .env("IMGSEARCH_TLS_CERT", &cli_cert.0)
            .env("IMGSEARCH_TLS_KEY", &cli_cert.1)
            .env("IMGSEARCH_API_KEY_FILE", &key_file)
            .env_remove("IMGSEARCH_COLLECTION");
        succeed(cmd)
    };
    cli(&["collection", "create", "over_mtls"]);
    cli(&["ingest", "-c", "over_mtls", &dir]);
    let found = cli(&["search", "-c", "over_mtls", "-k", "1", "--json", &query]);
    assert!(found.contains("1.jpg"), "{found}");
}
