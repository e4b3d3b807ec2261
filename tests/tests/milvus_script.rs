//! `scripts/milvus.sh`, the local Milvus README command 1 runs on: it
//! serves again, with what it stored, however quickly it is started again.
//! It uses Milvus's default ports (19530, 9091), so nothing else may hold
//! them while this runs.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use imgsearch_gateway::milvus::{MilvusConfig, MilvusStore};
use imgsearch_tests::deps;

/// How long each start may take to serve, as the issue asks.
const SERVING_WITHIN: Duration = Duration::from_secs(60);
/// How long the first start may take: `scripts/milvus.sh`'s default.
const FIRST_START_WITHIN: Duration = Duration::from_secs(240);
/// How long another process's Milvus may take to free the default ports.
const PORTS_FREED_WITHIN: Duration = Duration::from_secs(60);

/// Runs `scripts/milvus.sh ARG` on `data`, giving a start [`SERVING_WITHIN`];
/// panics unless it succeeds.
fn milvus_sh(arg: &str, data: &Path) {
    milvus_sh_within(arg, data, SERVING_WITHIN)
}

/// [`milvus_sh`] with a start given `within`.
fn milvus_sh_within(arg: &str, data: &Path, within: Duration) {
    let out = Command::new("bash")
        .arg(deps::script("milvus.sh"))
        .arg(arg)
        .env("IMGSEARCH_CACHE", deps::root())
        .env("IMGSEARCH_MILVUS_DATA", data)
        .env(
            "IMGSEARCH_MILVUS_START_TIMEOUT",
            within.as_secs().to_string(),
        )
        .output()
        .expect("run scripts/milvus.sh");
    assert!(
        out.status.success(),
        "milvus.sh {arg}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts it and checks, within the allowed time, that it serves the
/// collection created before.
async fn start_and_find(data: &Path, collection: &str, case: &str) {
    let t = Instant::now();
    milvus_sh("start", data);
    let names = store().await.list_collections().await.expect("list");
    assert!(names.contains(&collection.to_string()), "{case}: {names:?}");
    let took = t.elapsed();
    println!("{case}: serving after {took:?}");
    assert!(took < SERVING_WITHIN, "{case}: {took:?}");
}

async fn store() -> MilvusStore {
    MilvusStore::connect(&MilvusConfig {
        uri: "http://127.0.0.1:19530".into(),
        token: None,
        database: None,
        ca_certificate: None,
        connect_timeout: Duration::from_secs(10),
        rpc_timeout: Duration::from_secs(30),
        max_attempts: 3,
        load_timeout: Duration::from_secs(120),
        flush_timeout: Duration::from_secs(30),
        throttle_wait: Duration::from_secs(60),
    })
    .await
    .expect("connect to the local Milvus")
}

/// Stops the script's Milvus when the test ends, passed or not.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        milvus_sh("stop", self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_milvus_serves_again_after_a_second_start_a_quick_restart_and_a_kill() {
    // The binary run just before (containers.rs) holds 19530 in its own
    // Milvus, which may still be going down when this starts.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:9091").is_ok()
            && std::net::TcpListener::bind("127.0.0.1:19530").is_ok()
    };
    let deadline = Instant::now() + PORTS_FREED_WITHIN;
    while !free() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        free(),
        "ports 9091 and 19530 must be free: stop the Milvus holding them"
    );
    let data = tempfile::tempdir().unwrap();
    let _stop = StopOnDrop(data.path());
    // The bound is on starting again; the first start on a fresh directory
    // gets the script's own allowance, which covers its one relaunch.
    milvus_sh_within("start", data.path(), FIRST_START_WITHIN);
    let name = "survives_restarts";
    store()
        .await
        .create_collection(
            name,
            2048,
            "test",
            imgsearch_gateway::schema::Profile::Tutorial,
            true,
        )
        .await
        .expect("create");

    start_and_find(data.path(), name, "start while running").await;

    milvus_sh("stop", data.path());
    std::thread::sleep(Duration::from_millis(500));
    start_and_find(data.path(), name, "stop, then start within 1 s").await;

    let pgid = std::fs::read_to_string(data.path().join("milvus.pgid")).unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pgid.trim())])
        .status()
        .unwrap();
    assert!(killed.success());
    start_and_find(data.path(), name, "kill -9, then start at once").await;
}
