//! The images of deploy/docker/Dockerfile, built by scripts/images.sh, run
//! as the cpu overlay's Deployments run them (tests/src/containers.rs): the
//! manifests' env, user, read-only root, limits and Secret mounts, against a
//! TLS Milvus on the host.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use imgsearch_tests::{
    cli,
    containers::{podman_ok, run_to_end, stop_together, Cluster, Deployment, Stack},
    deps,
    embedder::EmbedderProcess,
    gateway::{GatewayFlags, GatewayProcess},
    http,
    server_process::workspace_binary,
};
use serde_json::Value;

/// The gateway and both embedders, as the overlays deploy them.
fn every_image() -> [Deployment; 3] {
    [
        Deployment::cpu("gateway"),
        Deployment::cpu("embedder"),
        Deployment::gpu("embedder"),
    ]
}

#[test]
fn images_run_as_their_non_root_user_with_every_library_and_no_compiler_or_package_manager() {
    // The CUDA backend is opened by name at start, so ldd of the binary
    // alone would not see its libraries: ldd it too, where it is.
    let script = "echo uid=$(id -u):$(id -g) os=$(uname -s); \
        echo tools=$(for t in cc gcc g++ clang rustc cargo apt apt-get dpkg pip pip3 python python3; \
        do command -v $t; done); \
        for b in /usr/local/bin/*; do echo \"== $b\"; ldd $b; done; \
        for d in $(echo \"$LD_LIBRARY_PATH\" | tr : ' '); do \
        if [ -e $d/libtorch_cuda.so ]; then echo \"== $d/libtorch_cuda.so\"; ldd $d/libtorch_cuda.so; fi; done";
    for d in every_image() {
        let name = d.image();
        let flags = ["--network=none".to_string(), "--entrypoint=sh".into()];
        let (out, _) = run_to_end(&flags, d.image(), &["-c", script], Duration::from_secs(60));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (uid, gid) = d.run_as();
        assert!(
            text.contains(&format!("uid={uid}:{gid} os=Linux")),
            "{name}: {text}"
        );
        assert!(
            text.contains("tools=\n"),
            "{name} has tools it should not: {text}"
        );
        assert!(
            text.contains("== /usr/local/bin/imgsearch-"),
            "{name}: {text}"
        );
        assert!(
            !text.contains("not found"),
            "{name} misses a library: {text}"
        );
        let cuda = text.contains("/libtorch_cuda.so\n");
        assert_eq!(
            cuda,
            name == Deployment::gpu("embedder").image(),
            "{name}: {text}"
        );
        if cuda {
            assert!(text.contains("libcudnn.so.9 => /"), "{name}: {text}");
        }
    }
}

#[test]
fn each_image_sets_what_its_deployment_sets_exposes_its_ports_and_runs_as_its_user() {
    for d in every_image() {
        let name = d.image();
        let config: Value = serde_json::from_str(&podman_ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config}}",
            name,
        ]))
        .unwrap();
        let (uid, gid) = d.run_as();
        assert_eq!(config["User"], format!("{uid}:{gid}"), "{name}");
        for port in d.ports() {
            assert!(
                config["ExposedPorts"].get(format!("{port}/tcp")).is_some(),
                "{name} does not expose {port}: {config:#}"
            );
        }
        let image_env: Vec<(String, String)> = config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut set = 0;
        for (key, value) in image_env
            .iter()
            .filter(|(k, _)| k.starts_with("IMGSEARCH_"))
        {
            set += 1;
            if let Some(theirs) = d.env.get(key) {
                assert_eq!(theirs, value, "{name}: {key} differs from its Deployment's");
            }
        }
        assert!(set >= 2, "{name} sets no IMGSEARCH_ defaults: {config:#}");
        // Every file the config names is in a volume, as the root is read-only.
        let mounts: Vec<String> = d.mounts().into_iter().map(|(_, path, _)| path).collect();
        for (key, value) in d.env.iter().chain(image_env.iter().map(|(k, v)| (k, v))) {
            if key.starts_with("IMGSEARCH_") && value.starts_with('/') {
                assert!(
                    mounts.iter().any(|m| Path::new(value).starts_with(m)),
                    "{name}: {key}={value} is in no volume of {mounts:?}"
                );
            }
        }
    }
}

/// Runs `d`'s container with the volumes of `sources`, which must exit
/// non-zero within `limit`: what it wrote.
fn fails_within(d: &Deployment, sources: &BTreeMap<String, PathBuf>, limit: Duration) -> String {
    let mut flags = d.run_flags(sources);
    flags.push("--network=none".into());
    let (out, took) = run_to_end(&flags, d.image(), &[], Duration::from_secs(120));
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{} started: {log}", d.image());
    assert!(took < limit, "took {took:?} to fail: {log}");
    log
}

#[test]
fn an_embedder_without_its_weights_mount_fails_fast_naming_the_file() {
    let cluster = Cluster::shared();
    let d = Deployment::cpu("embedder");
    let mut sources = cluster.sources.clone();
    sources.remove("embedder-weights");
    let log = fails_within(&d, &sources, Duration::from_secs(30));
    let weights = &d.env["IMGSEARCH_EMBEDDER_WEIGHTS"];
    assert!(
        log.contains(weights.as_str()),
        "the error names no {weights}: {log}"
    );
}

#[test]
fn the_cuda_image_on_a_host_without_a_gpu_refuses_device_cuda_within_10_s_naming_the_driver() {
    let d = Deployment::gpu("embedder");
    assert_eq!(d.env["IMGSEARCH_EMBEDDER_DEVICE"], "cuda");
    let log = fails_within(&d, &Cluster::shared().sources, Duration::from_secs(10));
    for words in [
        "device cuda:0 is not available",
        "no NVIDIA driver",
        "libcuda.so.1",
    ] {
        assert!(log.contains(words), "the error says no {words:?}: {log}");
    }
}

/// The demo corpus as scripts/demo.sh splits it: three photos held back as
/// queries, the rest in one folder; one per test binary, so every run
/// stores the same filepaths.
struct DemoCorpus {
    dir: tempfile::TempDir,
    queries: Vec<String>,
}

impl DemoCorpus {
    fn shared() -> &'static DemoCorpus {
        static CORPUS: OnceLock<DemoCorpus> = OnceLock::new();
        CORPUS.get_or_init(|| {
            let photos = deps::corpus();
            let n = photos.len();
            let held = [n / 7, n / 2, n * 5 / 6];
            let dir = tempfile::tempdir().unwrap();
            let mut queries = Vec::new();
            for (i, photo) in photos.iter().enumerate() {
                if held.contains(&i) {
                    queries.push(photo.display().to_string());
                } else {
                    let link = dir.path().join(photo.file_name().unwrap());
                    std::os::unix::fs::symlink(photo, link).unwrap();
                }
            }
            DemoCorpus { dir, queries }
        })
    }

    fn photos(&self) -> usize {
        std::fs::read_dir(self.dir.path()).unwrap().count()
    }
}

/// The tutorial with the CLI: create, ingest, search with a picture; the
/// search's JSON.
fn tutorial(gateway: &str, flags: &[String], collection: &str, picture: &Path) -> Value {
    let corpus = DemoCorpus::shared();
    let imgsearch = |args: &[&str]| {
        let mut cmd = Command::new(workspace_binary("imgsearch"));
        cmd.args(["--gateway", gateway]).args(flags).args(args);
        cli::succeed(cmd)
    };
    imgsearch(&["collection", "create", collection]);
    let report: Value = serde_json::from_str(&imgsearch(&[
        "ingest",
        &corpus.dir.path().display().to_string(),
        "--collection",
        collection,
        "--json",
    ]))
    .unwrap();
    let found = report["found"].as_u64().unwrap();
    assert_eq!(report["inserted"].as_u64(), Some(found), "{report:#}");
    let mut search = vec!["search", "--collection", collection, "--json", "--out"];
    let picture = picture.display().to_string();
    search.push(&picture);
    search.extend(corpus.queries.iter().map(String::as_str));
    serde_json::from_str(&imgsearch(&search)).unwrap()
}

/// Each query's hits as (filepath, distance).
fn hits(results: &Value) -> Vec<Vec<(String, f64)>> {
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h["filepath"].as_str().unwrap().to_string(),
                        h["distance"].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The tutorial through the host's own binaries, once per test binary:
/// what the containers must find.
async fn through_host_binaries() -> &'static Value {
    static HOST: tokio::sync::OnceCell<Value> = tokio::sync::OnceCell::const_new();
    HOST.get_or_init(|| async {
        let cluster = Cluster::shared();
        let embedder = EmbedderProcess::start(&[]).await;
        let flags = GatewayFlags {
            milvus_ca_cert: Some(cluster.pki.ca()),
            ..Default::default()
        };
        let milvus = cluster.milvus.uri();
        let gateway = GatewayProcess::start(&milvus, &[embedder.uri()], &flags).await;
        let picture = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
        tutorial(&gateway.uri(), &[], "host", picture.path())
    })
    .await
}

/// The tutorial through `stack`, then the same top-3 as the host binaries'.
async fn finds_what_the_host_binaries_find(
    collection: &str,
    stack: impl AsyncFnOnce(&'static Cluster) -> Stack,
) {
    finds_what_the_host_binaries_find_and(collection, stack, async |_, _| {}).await;
}

/// [`finds_what_the_host_binaries_find`], then `check` of the stack while
/// it runs.
async fn finds_what_the_host_binaries_find_and(
    collection: &str,
    stack: impl AsyncFnOnce(&'static Cluster) -> Stack,
    check: impl AsyncFnOnce(&'static Cluster, &Stack),
) {
    let cluster = Cluster::shared();
    let picture = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
    let found = {
        let _turn = cluster.turn.lock().await;
        let stack = stack(cluster).await;
        let flags = stack.cli_flags(cluster);
        let found = tutorial(&stack.gateway_uri(), &flags, collection, picture.path());
        check(cluster, &stack).await;
        found
    };
    let stored = cluster.milvus.rows(collection).await.len();
    assert_eq!(stored, DemoCorpus::shared().photos());
    let png = std::fs::read(picture.path()).expect("the result picture");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    let (ours, theirs) = (hits(&found), hits(through_host_binaries().await));
    assert_eq!(ours.len(), 3);
    for (q, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a.len(), 3, "query {q}: {a:?}");
        for ((pa, da), (pb, db)) in a.iter().zip(b) {
            assert_eq!(pa, pb, "query {q}: {collection} {a:?}, host {b:?}");
            assert!(
                (da - db).abs() <= 1e-3 * da.max(1.0),
                "query {q}: {a:?} vs {b:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_through_the_containers_finds_what_the_host_binaries_find() {
    finds_what_the_host_binaries_find("containers", Stack::start).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cuda_image_without_a_gpu_under_device_auto_serves_on_the_cpu_says_so_and_finds_what_the_host_binaries_find(
) {
    let embedder = Deployment::gpu("embedder").with_env("IMGSEARCH_EMBEDDER_DEVICE", "auto");
    let start = async |cluster| Stack::start_with(cluster, embedder).await;
    finds_what_the_host_binaries_find_and("cuda_image", start, async |cluster, stack| {
        assert_eq!(stack.embedder_info(cluster).await.device, "cpu");
        let log = stack.embedder.logs();
        for words in ["running on the CPU", "no NVIDIA driver"] {
            assert!(log.contains(words), "the log says no {words:?}: {log}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_through_the_manifests_played_by_podman_finds_what_the_host_binaries_find() {
    finds_what_the_host_binaries_find("played", Stack::play).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_ingest_ends_both_containers_with_exit_zero_in_grace_and_the_acknowledged_rows_stored(
) {
    let cluster = Cluster::shared();
    let corpus = DemoCorpus::shared().dir.path();
    let _turn = cluster.turn.lock().await;
    let stack = Stack::start(cluster).await;
    let flags = stack.cli_flags(cluster);
    let mut create = Command::new(workspace_binary("imgsearch"));
    create
        .args(["--gateway", &stack.gateway_uri()])
        .args(&flags)
        .args(["collection", "create", "drained"]);
    cli::succeed(create);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let ingest = cli::spawn_ingest(&stack.gateway_uri(), corpus, "drained", &flags);

    // Stop once a batch is in Milvus, with the rest of the corpus on its way.
    let metrics = stack.deployments[1].port("metrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while http::metric(metrics, "gateway_inserted_rows_total") == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing inserted:\n{}",
            stack.gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = stop_together(&[&stack.gateway, &stack.embedder]);
    let ended = cli::wait_ingest(ingest);

    let grace = stack.deployments.iter().map(|d| d.grace()).min().unwrap();
    assert!(
        took < grace,
        "stopping took {took:?}, beyond the {grace:?} grace"
    );
    for c in [&stack.gateway, &stack.embedder] {
        assert_eq!(
            c.wait_exit(Duration::from_secs(5)),
            Some(0),
            "{}:\n{}",
            c.name,
            c.logs()
        );
    }
    let acknowledged = ended.report["inserted"].as_u64().unwrap();
    println!(
        "acknowledged {acknowledged} of {}; {took:?} to stop; {}",
        ended.report["found"], ended.report["error"]
    );
    assert!(acknowledged > 0, "{:#}", ended.report);
    assert_eq!(
        cluster.milvus.rows("drained").await.len() as u64,
        acknowledged,
        "{:#}",
        ended.report
    );
}
