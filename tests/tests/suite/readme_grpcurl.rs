//! Every grpcurl example of the README, run as written (ports aside) with the
//! real grpcurl binary against a real gateway and embedder: reflection only,
//! no proto files; the plaintext ones against the loopback demo set-up, the
//! TLS ones against a gateway with a certificate and API keys.

use std::{path::Path, process::Command};

use imgsearch_tests::{
    cli::{keys_file, succeed},
    deps,
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    milvus::Milvus,
    pki::Pki,
    stack::Stack,
};

/// The grpcurl lines between `<!-- MARKER -->` and `<!-- /MARKER -->`.
fn readme_examples(marker: &str) -> Vec<String> {
    readme_lines(marker, "grpcurl ")
}

/// The lines starting with `program` between `<!-- MARKER -->` and
/// `<!-- /MARKER -->`.
pub(crate) fn readme_lines(marker: &str, program: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (open, close) = (format!("<!-- {marker} -->"), format!("<!-- /{marker} -->"));
    let mut out = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        match line.trim() {
            l if l == open => inside = true,
            l if l == close => inside = false,
            l if inside && l.starts_with(program) => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

/// Runs each example with bash in `dir`, its ports replaced as `ports`
/// says; each must succeed. Returns (example, stdout) pairs.
pub(crate) fn run_all(
    examples: &[String],
    ports: &[(&str, String)],
    dir: &Path,
) -> Vec<(String, String)> {
    let path = format!(
        "{}:{}",
        deps::grpcurl().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut outputs = Vec::new();
    for example in examples {
        let cmd = ports
            .iter()
            .fold(example.clone(), |cmd, (from, to)| cmd.replace(from, to));
        let mut bash = Command::new("bash");
        bash.arg("-c").arg(&cmd).current_dir(dir).env("PATH", &path);
        let stdout = succeed(bash);
        outputs.push((example.clone(), stdout));
    }
    outputs
}

/// A folder holding the examples' photo.jpg and other.jpg.
pub(crate) fn photos() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = deps::fixture_images();
    std::fs::copy(&fixtures[0], dir.path().join("photo.jpg")).unwrap();
    std::fs::copy(&fixtures[1], dir.path().join("other.jpg")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_work() {
    let examples = readme_examples("grpcurl-examples");
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

    let Stack {
        embedder, gateway, ..
    } = Stack::start().await;
    let dir = photos();
    let ports = [
        (
            "localhost:50051",
            format!("127.0.0.1:{}", gateway.grpc_port),
        ),
        (
            "localhost:50052",
            format!("127.0.0.1:{}", embedder.grpc_port),
        ),
    ];
    let outputs = run_all(&examples, &ports, dir.path());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_of_attributes_and_filters_work() {
    let examples = readme_examples("grpcurl-data-examples");
    for rpc in [
        "CreateCollection",
        "/Insert",
        "/Search",
        "/Count",
        "/FindDuplicates",
        "/Delete",
    ] {
        assert!(
            examples.iter().any(|e| e.contains(rpc)),
            "no README data example for {rpc}"
        );
    }
    // The embedder must outlive the examples: CreateCollection asks it.
    let Stack {
        embedder: _embedder,
        gateway,
        ..
    } = Stack::start().await;
    let dir = photos();
    let ports = [(
        "localhost:50051",
        format!("127.0.0.1:{}", gateway.grpc_port),
    )];
    let outputs = run_all(&examples, &ports, dir.path());
    let output = |needle: &str| &outputs.iter().find(|(e, _)| e.contains(needle)).unwrap().1;
    assert!(output("CreateCollection").contains("COLLECTION_PROFILE_EXTENDED"));
    assert!(output("/Insert").contains("\"inserted\": \"2\""));
    let search = output("/Search");
    assert!(search.contains("\"filepath\": \"shoe.jpg\""), "{search}");
    assert!(!search.contains("hat.jpg"), "the filter: {search}");
    assert!(search.contains("\"category\""), "attributes: {search}");
    assert!(output("/Count").contains("\"count\": \"1\""));
    let scan = output("/FindDuplicates");
    assert!(scan.contains("\"rowsScanned\": \"2\""), "{scan}");
    assert!(scan.contains("\"done\": true"), "{scan}");
    assert!(output("/Delete").contains("\"deleted\": \"1\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_with_tls_and_api_keys_work() {
    let examples = readme_examples("grpcurl-tls-examples");
    for needle in [
        "-cacert",
        "authorization: Bearer",
        "/Insert",
        "/Search",
        "DropCollection",
    ] {
        assert!(
            examples.iter().any(|e| e.contains(needle)),
            "no README TLS example with {needle}: {examples:#?}"
        );
    }
    let pki = Pki::new("readme CA");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(pki.ca(), dir.path().join("ca.pem")).unwrap();
    std::fs::copy(&deps::fixture_images()[0], dir.path().join("photo.jpg")).unwrap();
    let roles = [("admin", "admin"), ("writer", "write"), ("reader", "read")];
    let (keys, _) = keys_file(dir.path(), &roles);
    let flags = GatewayFlags {
        tls: Some(pki.issue("gateway", false)),
        api_keys_file: Some(keys),
        ..Default::default()
    };

    let milvus = Milvus::shared();
    let embedder = EmbedderProcess::start(&[]).await;
    let gateway =
        GatewayProcess::start_tls(&milvus.uri(), &[embedder.uri()], &flags, pki.client(None)).await;
    let ports = [(
        "localhost:50051",
        format!("localhost:{}", gateway.grpc_port),
    )];
    let outputs = run_all(&examples, &ports, dir.path());
    let output = |needle: &str| &outputs.iter().find(|(e, _)| e.contains(needle)).unwrap().1;
    assert!(output(" list").contains("imgsearch.v1.ImageSearch"));
    assert!(output("Health/Check").contains("SERVING"));
    assert!(output("/Insert").contains("\"inserted\": \"1\""));
    assert!(output("/Search").contains("\"filepath\": \"photo.jpg\""));
}
