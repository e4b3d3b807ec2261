//! Every grpcurl example of the README, run as written (ports aside) with the
//! real grpcurl binary against a real gateway and embedder: reflection only,
//! no proto files.

use std::process::Command;

use imgsearch_tests::{deps, embedder::EmbedderProcess, gateway::GatewayProcess, milvus::Milvus};

/// The grpcurl lines between `<!-- grpcurl-examples -->` markers.
fn readme_examples() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        match line.trim() {
            "<!-- grpcurl-examples -->" => inside = true,
            "<!-- /grpcurl-examples -->" => inside = false,
            l if inside && l.starts_with("grpcurl ") => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_work() {
    let examples = readme_examples();
    assert!(
        examples.len() >= 12,
        "README lost its grpcurl examples: {examples:#?}"
    );
    for rpc in [
        "CreateCollection",
        "DropCollection",
        "DescribeCollection",
        "ListCollections",
        "/Insert",
        "/Search",
        "/SearchStream",
        "/Delete",
        "Embedder/Info",
        "EmbedBatch",
    ] {
        assert!(
            examples.iter().any(|e| e.contains(rpc)),
            "no README example for {rpc}"
        );
    }

    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    let gateway = GatewayProcess::start(&milvus.uri(), &[embedder.uri()], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let fixtures = deps::fixture_images();
    std::fs::copy(&fixtures[0], dir.path().join("photo.jpg")).unwrap();
    std::fs::copy(&fixtures[1], dir.path().join("other.jpg")).unwrap();
    let path = format!(
        "{}:{}",
        deps::grpcurl().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut outputs = Vec::new();
    for example in &examples {
        let cmd = example
            .replace(
                "localhost:50051",
                &format!("127.0.0.1:{}", gateway.grpc_port),
            )
            .replace(
                "localhost:50052",
                &format!("127.0.0.1:{}", embedder.grpc_port),
            );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&cmd)
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{example}\nfailed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((example.clone(), stdout));
    }
    let output = |needle: &str| &outputs.iter().find(|(e, _)| e.contains(needle)).unwrap().1;
    assert!(output(":50051 list").contains("imgsearch.v1.ImageSearch"));
    assert!(output("describe imgsearch.v1.ImageSearch")
        .contains("rpc Insert ( stream .imgsearch.v1.InsertRequest ) returns ( stream .imgsearch.v1.InsertResponse )"));
    let insert = output("/Insert");
    assert!(
        insert.contains("\"stored\""),
        "an acknowledgement: {insert}"
    );
    assert!(
        insert.contains("\"inserted\": \"2\""),
        "the summary: {insert}"
    );
    let resumed = output("skip_existing");
    assert!(resumed.contains("\"skipped\""), "{resumed}");
    assert!(!resumed.contains("\"stored\""), "{resumed}");
    let search = output("/Search");
    assert!(search.contains("\"filepath\": \"photo.jpg\""), "{search}");
    let like = output("\"like\": [");
    assert!(like.contains("\"filepath\": \"other.jpg\""), "{like}");
    assert!(!like.contains("\"filepath\": \"photo.jpg\""), "{like}");
    let streamed = output("/SearchStream");
    assert!(
        streamed.contains("\"index\": \"1\""),
        "two answers: {streamed}"
    );
    assert!(
        streamed.contains("\"filepath\": \"photo.jpg\""),
        "{streamed}"
    );
    assert!(output("/Delete").contains("\"deleted\": \"1\""));
    assert!(output("/DescribeCollection").contains("AUTOINDEX"));
    assert!(output("Embedder/Info").contains("\"dimension\": 2048"));
    assert!(output("EmbedBatch").contains("values"));
}
