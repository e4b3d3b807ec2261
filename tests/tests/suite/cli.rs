//! The `imgsearch` CLI against the real stack (Milvus, embedder, gateway):
//! the tutorial's steps as commands, a resumed ingest, the result picture,
//! and what a person sees when things are wrong. Most tests share one stack
//! and one ingested collection ([`demo`]).

use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    path::Path,
    process::{Command, Output},
};

use imgsearch_tests::{
    data, deps, ports::free_ports, server_process::workspace_binary, stack::Stack,
};
use serde_json::Value;
use tokio::sync::OnceCell;

/// Runs `imgsearch` in `cwd` against `gateway` (a `host:port`).
fn imgsearch(gateway: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(workspace_binary("imgsearch"))
        .arg("--gateway")
        .arg(gateway)
        .args(args)
        .current_dir(cwd)
        .env_remove("IMGSEARCH_COLLECTION")
        .output()
        .expect("run imgsearch")
}

/// Runs it, expects success, returns stdout.
fn ok(gateway: &str, cwd: &Path, args: &[&str]) -> String {
    let out = imgsearch(gateway, cwd, args);
    assert!(
        out.status.success(),
        "imgsearch {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(gateway: &str, cwd: &Path, args: &[&str]) -> Value {
    let out = ok(gateway, cwd, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn failed_filepaths(report: &Value) -> BTreeSet<String> {
    report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filepath"].as_str().unwrap().to_string())
        .collect()
}

/// Whether a stored filepath (relative to `cwd`) names something there.
fn exists(cwd: &Path, filepath: &str) -> bool {
    let file = filepath.split("!/").next().unwrap();
    cwd.join(file).is_file()
}

/// The tutorial's steps, done once by the first test that needs them: a
/// tree of good photos with bad files mixed in and an archive, a
/// collection made and filled by the CLI (small batches, so the stream
/// spans several Milvus inserts), and the ingest's report.
struct Demo {
    _stack: Stack,
    gateway: String,
    dir: tempfile::TempDir,
    report: Value,
}

impl Demo {
    fn cwd(&self) -> &Path {
        self.dir.path()
    }

    fn json(&self, args: &[&str]) -> Value {
        json(&self.gateway, self.cwd(), args)
    }
}

const DEMO: &str = "cli_demo";

/// The files the demo's ingest must refuse.
fn bad_files() -> BTreeSet<String> {
    [
        "images/empty.jpg",
        "images/nested/notes.png",
        "images/truncated.jpeg",
        "pack.zip!/in/corrupt.png",
    ]
    .map(String::from)
    .into()
}

async fn demo() -> &'static Demo {
    static DEMO_DONE: OnceCell<Demo> = OnceCell::const_new();
    DEMO_DONE
        .get_or_init(|| async {
            let stack = Stack::shared().await;
            let gateway = format!("127.0.0.1:{}", stack.gateway.grpc_port);
            let dir = tempfile::tempdir().unwrap();
            let cwd = dir.path();
            let fixtures = deps::fixture_images();
            fs::create_dir_all(cwd.join("images/nested")).unwrap();
            for (i, f) in fixtures[..8].iter().enumerate() {
                let sub = if i % 2 == 0 {
                    "images"
                } else {
                    "images/nested"
                };
                fs::copy(f, cwd.join(sub).join(format!("photo{i}.JPG"))).unwrap();
            }
            // Quotes and a backslash must not break FindFilepaths's Milvus filter.
            fs::copy(&fixtures[12], cwd.join("images/say \"cheese\" \\o.jpg")).unwrap();
            let jpeg = fs::read(&fixtures[8]).unwrap();
            fs::write(cwd.join("images/empty.jpg"), b"").unwrap();
            fs::write(cwd.join("images/nested/notes.png"), b"just some text").unwrap();
            fs::write(cwd.join("images/truncated.jpeg"), &jpeg[..jpeg.len() / 2]).unwrap();
            fs::write(cwd.join("images/readme.txt"), b"not an image name: ignored").unwrap();
            let mut z = zip::ZipWriter::new(fs::File::create(cwd.join("pack.zip")).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            for (name, data) in [
                ("in/zipped1.jpg", fs::read(&fixtures[9]).unwrap()),
                ("zipped2.jpeg", fs::read(&fixtures[10]).unwrap()),
                ("in/corrupt.png", b"\x89PNG\r\n\x1a\n garbage".to_vec()),
            ] {
                z.start_file(name, opts).unwrap();
                z.write_all(&data).unwrap();
            }
            z.finish().unwrap();
            // Held back: never ingested, used as a query.
            fs::copy(&fixtures[11], cwd.join("query.jpg")).unwrap();

            let created = json(&gateway, cwd, &["collection", "create", DEMO, "--json"]);
            assert_eq!(created["load_state"], "Loaded");
            assert_eq!(created["metric_type"], "L2");
            let ingest = [
                "ingest",
                "images",
                "pack.zip",
                "-c",
                DEMO,
                "--batch-size",
                "4",
            ];
            let report = json(&gateway, cwd, &[&ingest[..], &["--json"]].concat());
            Demo {
                _stack: stack,
                gateway,
                dir,
                report,
            }
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stores_the_good_images_and_reports_exactly_the_bad_files() {
    let d = demo().await;
    let report = &d.report;
    assert_eq!(report["found"], 15, "{report:#}");
    assert_eq!(report["inserted"], 11, "{report:#}");
    assert_eq!(failed_filepaths(report), bad_files());
    assert!(report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| !f["reason"].as_str().unwrap().is_empty()));
    let described = d.json(&["collection", "describe", DEMO, "--json"]);
    assert_eq!(described["row_count"], 11);
    let listed = d.json(&["collection", "list", "--json"]);
    assert!(listed.as_array().unwrap().contains(&Value::from(DEMO)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_ingest_sends_nothing_stored_again() {
    let d = demo().await;
    let again = d.json(&[
        "ingest",
        "images",
        "pack.zip",
        "-c",
        DEMO,
        "--skip-existing",
        "--json",
    ]);
    assert_eq!(again["inserted"], 0, "{again:#}");
    assert_eq!(again["skipped"], 11);
    assert_eq!(
        failed_filepaths(&again),
        bad_files(),
        "the bad files fail again"
    );
    let described = d.json(&["collection", "describe", DEMO, "--json"]);
    assert_eq!(described["row_count"], 11, "no duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_stored_images_first_and_three_real_files_for_each_query() {
    let d = demo().await;
    let found = d.json(&[
        "search",
        "images/photo0.JPG",
        "query.jpg",
        "pack.zip!/zipped2.jpeg",
        "-c",
        DEMO,
        "--json",
    ]);
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        let hits = r["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 3, "default top_k is 3: {r:#}");
        for h in hits {
            assert!(exists(d.cwd(), h["filepath"].as_str().unwrap()), "{h}");
        }
    }
    for i in [0, 2] {
        let first = &results[i]["hits"][0];
        assert_eq!(first["filepath"], results[i]["query"], "{:#}", results[i]);
        assert!(first["distance"].as_f64().unwrap() < 1e-3);
    }
    assert!(found["search_seconds"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_picture_has_a_row_per_query_and_a_cell_per_hit() {
    let d = demo().await;
    let args = [
        "search",
        "query.jpg",
        "images/nested/photo1.JPG",
        "-c",
        DEMO,
        "-k",
        "4",
        "--out",
        "result.png",
    ];
    let table = ok(&d.gateway, d.cwd(), &args);
    assert!(table.contains("search time"), "{table}");
    let rows = table.lines().filter(|l| l.starts_with("query.jpg "));
    assert_eq!(rows.count(), 4, "{table}");
    let png = image::open(d.cwd().join("result.png")).expect("a PNG");
    // A header, then per query a cell for it and one per hit.
    let (cell_width, cell_height, header) = (240, 272, 32);
    let size = (png.width(), png.height());
    assert_eq!(size, (5 * cell_width, header + 2 * cell_height));
    let said = format!("wrote result.png ({}x{} pixels)", size.0, size.1);
    assert!(table.contains(&said), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_tell_a_person_what_went_wrong_by_message_and_exit_code() {
    let d = demo().await;
    let (gw, cwd) = (d.gateway.as_str(), d.cwd());
    let missing = imgsearch(
        gw,
        cwd,
        &["search", "query.jpg", "-c", "no_such_collection"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
    let unreadable = imgsearch(gw, cwd, &["search", "nope.jpg", "-c", DEMO]);
    assert_eq!(unreadable.status.code(), Some(2));
    assert_eq!(ok(gw, cwd, &["health"]).trim(), "SERVING");
    let closed = format!("127.0.0.1:{}", free_ports(1)[0]);
    let unhealthy = imgsearch(&closed, cwd, &["health", "--wait", "1"]);
    assert_eq!(unhealthy.status.code(), Some(3));
    let down = imgsearch(&closed, cwd, &["collection", "list"]);
    assert_eq!(down.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains("cannot reach the imgsearch gateway"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_the_cli_made_it_can_drop() {
    let stack = Stack::shared().await;
    let gw = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let dir = tempfile::tempdir().unwrap();
    ok(&gw, dir.path(), &["collection", "create", "cli_dropped"]);
    ok(&gw, dir.path(), &["collection", "drop", "cli_dropped"]);
    let listed = json(&gw, dir.path(), &["collection", "list", "--json"]);
    assert!(!listed
        .as_array()
        .unwrap()
        .contains(&Value::from("cli_dropped")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_not_serving_once_the_only_embedder_is_gone() {
    let mut stack = Stack::start().await;
    let gw = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ok(&gw, dir.path(), &["health"]).trim(), "SERVING");
    stack.embedder_mut().kill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let not_serving = loop {
        let out = imgsearch(&gw, dir.path(), &["health"]);
        if !out.status.success() {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still SERVING without an embedder"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(not_serving.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&not_serving.stderr).contains("NOT_SERVING"));
}

/// The hits of the first result of a `search --json`: (rank, filepath, distance).
fn hits(found: &Value) -> Vec<(u64, String, f64)> {
    found["results"][0]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["rank"].as_u64().unwrap(),
                h["filepath"].as_str().unwrap().to_string(),
                h["distance"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_like_a_stored_image_paged_cut_and_deleted_from_the_cli() {
    let stack = Stack::shared().await;
    let addr = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let gw = addr.as_str();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    imgsearch_tests::cli::write_pngs(&cwd.join("img"), "p", 0, 12);
    ok(gw, cwd, &["collection", "create", "cli_like"]);
    ok(gw, cwd, &["ingest", "img", "-c", "cli_like"]);
    let item = "img/p00000.png";
    let search = |extra: &[&str]| {
        let mut args = vec!["search", "--like", item, "-c", "cli_like", "--json"];
        args.extend_from_slice(extra);
        hits(&json(gw, cwd, &args))
    };

    let four = search(&["-k", "4"]);
    assert_eq!(four.len(), 4);
    assert!(
        four.iter().all(|h| h.1 != item),
        "the item itself is left out"
    );
    let page = search(&["-k", "2", "--offset", "2", "--consistency", "strong"]);
    assert_eq!(page, four[2..].to_vec(), "ranks 3 and 4, the same hits");
    let cut = (four[1].2 + four[2].2) / 2.0;
    let within = search(&["-k", "4", "--max-distance", &cut.to_string()]);
    assert_eq!(within, four[..2].to_vec());

    let deleted = json(
        gw,
        cwd,
        &[
            "delete",
            &four[0].1,
            "img/never.png",
            "-c",
            "cli_like",
            "--json",
        ],
    );
    assert_eq!(deleted["deleted"], 1);
    let after = search(&["-k", "4"]);
    assert!(after.iter().all(|h| h.1 != four[0].1), "{after:?}");
    let described = json(gw, cwd, &["collection", "describe", "cli_like", "--json"]);
    assert_eq!(described["row_count"], 11);
    let unknown = imgsearch(
        gw,
        cwd,
        &["search", "--like", "img/never.png", "-c", "cli_like"],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));
}

/// Runs `imgsearch` like [`imgsearch`], failing the test if it has not
/// ended within `secs`.
fn imgsearch_within(secs: u64, gateway: &str, cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(workspace_binary("imgsearch"))
        .arg("--gateway")
        .arg(gateway)
        .args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run imgsearch");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            child.kill().unwrap();
            panic!("imgsearch {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_a_device_is_a_files_error_in_an_ingest_and_a_grey_tile_in_the_picture() {
    let stack = Stack::shared().await;
    let gateway = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let mut c = stack.collection("cli_special_files").await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::create_dir(cwd.join("tree")).unwrap();
    let photo = &deps::fixture_images()[0];
    fs::copy(photo, cwd.join("tree/photo.jpg")).unwrap();
    mkfifo(&cwd.join("tree/pipe.jpg"));
    std::os::unix::fs::symlink("/dev/zero", cwd.join("tree/zero.png")).unwrap();
    mkfifo(&cwd.join("named.png"));

    let ingest = [
        "ingest",
        "tree",
        "named.png",
        "/dev/zero",
        "-c",
        &c.name,
        "--json",
    ];
    let out = imgsearch_within(60, &gateway, cwd, &ingest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["inserted"], 1, "{report:#}");
    let expected: BTreeSet<String> = ["tree/pipe.jpg", "tree/zero.png", "named.png", "/dev/zero"]
        .map(String::from)
        .into();
    assert_eq!(failed_filepaths(&report), expected);
    for f in report["failures"].as_array().unwrap() {
        let reason = f["reason"].as_str().unwrap();
        assert!(reason.contains("not a regular file"), "{f}");
    }

    // Hits whose stored filepaths are a device and a FIFO here.
    let fifo = cwd.join("named.png").display().to_string();
    let bytes = fs::read(photo).unwrap();
    c.insert(vec![
        ("/dev/zero".into(), bytes.clone()),
        (fifo.clone(), bytes),
    ])
    .await
    .assert_every_item_settled_once();
    let search = [
        "search",
        "tree/photo.jpg",
        "-c",
        &c.name,
        "--out",
        "result.png",
    ];
    let out = imgsearch_within(60, &gateway, cwd, &search);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not drawn: /dev/zero: a character device"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("not drawn: {fifo}: a FIFO")),
        "{stderr}"
    );
    assert!(image::open(cwd.join("result.png")).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_from_flags_and_a_sidecar_filter_searches_counts_and_deletes() {
    let stack = Stack::shared().await;
    let gateway = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let fixtures = deps::fixture_images();
    fs::create_dir_all(cwd.join("shop")).unwrap();
    for (i, f) in fixtures[..4].iter().enumerate() {
        fs::copy(f, cwd.join(format!("shop/{i}.jpg"))).unwrap();
    }
    fs::write(
        cwd.join("attrs.jsonl"),
        "{\"filepath\": \"shop/0.jpg\", \"attributes\": {\"price\": 19.5, \"sku\": \"007\"}}\n\
         {\"filepath\": \"shop/1.jpg\", \"attributes\": {\"category\": \"hats\", \"tags\": [\"red\"]}}\n",
    )
    .unwrap();
    let c = "cli_catalog";
    let created = json(
        &gateway,
        cwd,
        &["collection", "create", c, "--extended", "--json"],
    );
    assert_eq!(created["profile"], "extended");
    let ingest = [
        "ingest",
        "shop",
        "-c",
        c,
        "--attr",
        "category=shoes",
        "--attr",
        "price:int=80",
        "--attrs-file",
        "attrs.jsonl",
        "--json",
    ];
    assert_eq!(json(&gateway, cwd, &ingest)["inserted"], 4);

    let count = |wheres: &[&str]| -> u64 {
        let mut args = vec!["count", "-c", c, "--json"];
        for w in wheres {
            args.extend(["--where", w]);
        }
        json(&gateway, cwd, &args)["count"].as_u64().unwrap()
    };
    assert_eq!(count(&[]), 4);
    assert_eq!(
        count(&["category=shoes"]),
        3,
        "the sidecar wins for shop/1.jpg"
    );
    assert_eq!(count(&["price<50"]), 1, "19.5 from the sidecar");
    assert_eq!(count(&["sku=\"007\""]), 1, "a quoted value is a text");
    assert_eq!(count(&["sku=7"]), 0, "an unquoted one a number");
    assert_eq!(count(&["tags has red", "category=hats"]), 1);
    assert_eq!(count(&["tags missing"]), 3);

    let found = json(
        &gateway,
        cwd,
        &[
            "search",
            "shop/0.jpg",
            "-c",
            c,
            "-k",
            "4",
            "--where",
            "price>=80",
            "--where",
            "category=shoes",
            "--json",
        ],
    );
    let hits = found["results"][0]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{found:#}");
    for h in hits {
        assert_eq!(h["attributes"]["price"], 80);
        assert_eq!(h["attributes"]["category"], "shoes");
    }
    let deleted = json(
        &gateway,
        cwd,
        &["delete", "-c", c, "--where", "category=shoes", "--json"],
    );
    assert_eq!(deleted["deleted"], 3);
    assert_eq!(stack.milvus.rows(c).await.len(), 1, "rows in Milvus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_with_renamed_copies_keeps_one_row_per_distinct_content() {
    let stack = Stack::shared().await;
    let gateway = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let fixtures = deps::fixture_images();
    fs::create_dir_all(cwd.join("tree/copies/deeper")).unwrap();
    for (i, f) in fixtures[..3].iter().enumerate() {
        fs::copy(f, cwd.join(format!("tree/{i}.jpg"))).unwrap();
        fs::copy(f, cwd.join(format!("tree/copies/renamed-{i}.jpg"))).unwrap();
    }
    fs::copy(&fixtures[0], cwd.join("tree/copies/deeper/again.JPG")).unwrap();
    let c = "cli_same_content";
    ok(&gateway, cwd, &["collection", "create", c, "--extended"]);
    let ingest = ["ingest", "tree", "-c", c, "--skip-same-content", "--json"];
    let report = json(&gateway, cwd, &ingest);
    assert_eq!(report["found"], 7, "{report:#}");
    assert_eq!(report["inserted"], 3, "{report:#}");
    assert_eq!(report["same_content"], 4, "{report:#}");
    assert_eq!(stack.milvus.rows(c).await.len(), 3, "rows in Milvus");
    let again = json(&gateway, cwd, &ingest);
    assert_eq!(again["inserted"], 0);
    assert_eq!(again["same_content"], 7, "a second run stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_lists_and_draws_each_photo_with_its_re_encoded_copy() {
    let stack = Stack::shared().await;
    let gateway = format!("127.0.0.1:{}", stack.gateway.grpc_port);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    fs::create_dir_all(cwd.join("tree/copies")).unwrap();
    for (i, f) in deps::fixture_images()[..3].iter().enumerate() {
        fs::copy(f, cwd.join(format!("tree/{i}.jpg"))).unwrap();
        let img = image::open(f).unwrap();
        fs::write(
            cwd.join(format!("tree/copies/{i}.jpg")),
            data::jpeg_70(&img),
        )
        .unwrap();
    }
    let c = "cli_near_duplicates";
    ok(&gateway, cwd, &["collection", "create", c]);
    json(&gateway, cwd, &["ingest", "tree", "-c", c, "--json"]);
    let args = [
        "duplicates",
        "-c",
        c,
        "--max-distance",
        "2600",
        "--out",
        "groups.png",
    ];
    let found = json(&gateway, cwd, &[&args[..], &["--json"]].concat());
    let mut groups: Vec<Vec<String>> = found["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let mut names: Vec<String> = g
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["filepath"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        })
        .collect();
    groups.sort();
    let want: Vec<Vec<String>> = (0..3)
        .map(|i| vec![format!("tree/{i}.jpg"), format!("tree/copies/{i}.jpg")])
        .collect();
    assert_eq!(groups, want, "{found:#}");
    assert_eq!(found["rows_scanned"], 6);
    let picture = image::open(cwd.join("groups.png")).unwrap();
    assert_eq!((picture.width(), picture.height()), (2 * 240, 32 + 3 * 272));
    let text = ok(&gateway, cwd, &args);
    assert!(
        text.contains("3 groups, 6 rows in them, of 6 rows scanned"),
        "{text}"
    );
}
