//! The gateway reaches a Milvus that only speaks TLS (as Zilliz Cloud and
//! most production clusters do) through an `https://` URI and a private CA
//! given with `--milvus-ca-cert`.

use imgsearch_proto::v1::SearchRequest;
use imgsearch_tests::{
    deps,
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    insert::{create, insert},
    milvus::Milvus,
    pki::Pki,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_talks_tls_to_milvus() {
    let pki = Pki::new("imgsearch test CA");
    pki.issue("server", false);
    let file = |name: &str| pki.file(name).display().to_string();
    let milvus = Milvus::start_with(&[
        ("tls_mode", "1".into()),
        ("server_pem_path", file("server.pem")),
        ("server_key_path", file("server.key")),
        ("ca_pem_path", file("ca.pem")),
    ])
    .unwrap();
    let embedder = EmbedderProcess::start(&[]).await;
    let uri = format!("https://localhost:{}", milvus.port());
    let gateway = GatewayProcess::start(
        &uri,
        &[embedder.uri()],
        &GatewayFlags {
            milvus_ca_cert: Some(pki.file("ca.pem")),
            ..Default::default()
        },
    )
    .await;
    let mut client = gateway.client().await;
    create(&mut client, "over_tls").await;
    let image = std::fs::read(&deps::fixture_images()[0]).unwrap();
    let answers = insert(
        &mut client,
        "over_tls",
        vec![("photo.jpg".into(), image.clone())],
    )
    .await;
    assert_eq!(answers.summary().inserted, 1, "{:?}", answers.error);
    let found = client
        .search(SearchRequest {
            collection: "over_tls".into(),
            images: vec![image.into()],
            top_k: 1,
            ..Default::default()
        })
        .await
        .expect("search over TLS")
        .into_inner();
    assert_eq!(found.results[0].hits[0].filepath, "photo.jpg");

    // The same Milvus refuses plain-text clients: TLS is really on.
    let plain = milvus::v2::prelude::ClientV2::new(
        &milvus::v2::prelude::ConnectConfig::new()
            .uri(format!("http://127.0.0.1:{}", milvus.port()))
            .connect_timeout(std::time::Duration::from_secs(3))
            .rpc_timeout(std::time::Duration::from_secs(3))
            .retry(milvus::v2::prelude::RetryConfig::new().max_attempts(1)),
    )
    .await;
    let listed = match plain {
        Err(_) => false,
        Ok(c) => c
            .list_collections(
                milvus::v2::prelude::ListCollectionsRequest::builder()
                    .build()
                    .unwrap(),
            )
            .await
            .is_ok(),
    };
    assert!(!listed, "a plain-text client was served");
}
