//! The media route (`GET /v1/collections/{c}/media?filepath=P`, under
//! `--media-root`) against a real gateway: a stored image inside the root is
//! served; every way out of the root, and everything that is not a stored
//! image file, is refused with its status, and a canary file outside the
//! root is never read (its access time, set before its change time, would
//! move); a key confined to a tenant is served from its own directory.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use imgsearch_proto::limits::MEDIA_MAX_BYTES;
use imgsearch_tests::{
    cli::{create_tenant_key, keys_file},
    deps,
    gateway::{GatewayFlags, GatewayProcess},
    rest::{base64, Rest},
    stack::Stack,
};
use serde_json::json;

/// A media root with a photo, traps inside it, and a canary outside it.
struct Tree {
    dir: tempfile::TempDir,
}

const SECRET: &[u8] = b"\xFF\xD8\xFF\xE0 canary: never served, never read";

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("photos")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let photo = std::fs::read(&deps::fixture_images()[0]).unwrap();
        std::fs::write(root.join("photos/cat.jpg"), &photo).unwrap();
        std::fs::write(root.join("photos/unlisted.jpg"), &photo).unwrap();
        std::fs::write(root.join("notes.txt"), b"plain text, not an image").unwrap();
        let huge = std::fs::File::create(root.join("huge.jpg")).unwrap();
        std::io::Write::write_all(&mut &huge, &[0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
        huge.set_len(MEDIA_MAX_BYTES + 1).unwrap();
        fifo(&root.join("pipe.jpg"));
        std::os::unix::fs::symlink(outside.join("canary.jpg"), root.join("link-out.jpg")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dir-out")).unwrap();
        std::fs::write(outside.join("canary.jpg"), SECRET).unwrap();
        std::fs::write(outside.join("control.jpg"), SECRET).unwrap();
        let tree = Tree { dir };
        tree.age(&tree.canary());
        tree.age(&tree.control());
        tree
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn canary(&self) -> PathBuf {
        self.dir.path().join("outside/canary.jpg")
    }

    fn control(&self) -> PathBuf {
        self.dir.path().join("outside/control.jpg")
    }

    /// Sets `file`'s access time before its change time, so a read moves it
    /// even under `relatime`.
    fn age(&self, file: &Path) {
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let f = std::fs::File::options().write(true).open(file).unwrap();
        f.set_times(std::fs::FileTimes::new().set_accessed(old))
            .unwrap();
    }

    fn accessed(file: &Path) -> SystemTime {
        std::fs::metadata(file).unwrap().accessed().unwrap()
    }
}

/// A FIFO: opened for reading the usual way, it blocks until a writer comes.
fn fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.unwrap().success(), "mkfifo {}", path.display());
}

/// A gateway serving `root`, with a read and a write key, and a collection
/// `name` holding a row for each of `filepaths` (the photo's bytes, whatever
/// the path).
async fn serving(
    stack: &Stack,
    root: &Path,
    name: &str,
    filepaths: &[&str],
) -> (GatewayProcess, Rest, tempfile::TempDir) {
    let keys_dir = tempfile::tempdir().unwrap();
    let (keys, secrets) = keys_file(keys_dir.path(), &[("reader", "read"), ("writer", "write")]);
    let gateway = stack
        .another_gateway_with(&GatewayFlags {
            api_keys_file: Some(keys),
            media_root: Some(root.to_path_buf()),
            ..Default::default()
        })
        .await;
    stack.collection(name).await;
    let photo = base64(&std::fs::read(&deps::fixture_images()[0]).unwrap());
    let lines: Vec<_> = filepaths
        .iter()
        .map(|p| json!({"filepath": p, "image": photo}))
        .collect();
    let writer = gateway.rest().key(Some(&secrets[1]));
    let inserted = writer
        .post_lines(&format!("/v1/collections/{name}:insert"), &lines)
        .await;
    assert!(inserted.text.contains("\"OK\""), "{}", inserted.text);
    let reader = gateway.rest().key(Some(&secrets[0]));
    (gateway, reader, keys_dir)
}

fn media(collection: &str, filepath: &str) -> String {
    let mut query = url_encoded(filepath);
    query.insert_str(0, "?filepath=");
    format!("/v1/collections/{collection}/media{query}")
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_image_inside_the_media_root_is_served_as_an_image() {
    let stack = Stack::shared().await;
    let tree = Tree::new();
    let (_gateway, rest, _keys) =
        serving(&stack, &tree.root(), "media_served", &["photos/cat.jpg"]).await;
    let answer = Rest::send(rest.request(
        reqwest::Method::GET,
        &media("media_served", "photos/cat.jpg"),
    ))
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "image/jpeg");
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    let bytes = reqwest::get(rest.url(&media("media_served", "photos/cat.jpg")))
        .await
        .unwrap();
    assert_eq!(bytes.status(), 401, "the route needs a key like any read");
    let served = Rest::send(rest.request(
        reqwest::Method::GET,
        &media("media_served", "./photos/cat.jpg"),
    ))
    .await;
    assert_eq!(
        served.status, 404,
        "only the stored spelling: {}",
        served.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_out_of_the_root_and_files_that_are_not_stored_images_are_refused_unread() {
    let stack = Stack::shared().await;
    let tree = Tree::new();
    let canary = tree.canary().display().to_string();
    let cases: [(&str, u16, &str); 10] = [
        ("../outside/canary.jpg", 400, "INVALID_ARGUMENT"),
        ("photos/../../outside/canary.jpg", 400, "INVALID_ARGUMENT"),
        (&canary, 400, "INVALID_ARGUMENT"),
        ("link-out.jpg", 403, "PERMISSION_DENIED"),
        ("dir-out/canary.jpg", 403, "PERMISSION_DENIED"),
        ("pipe.jpg", 403, "PERMISSION_DENIED"),
        ("photos", 403, "PERMISSION_DENIED"),
        ("notes.txt", 400, "FAILED_PRECONDITION"),
        ("huge.jpg", 400, "OUT_OF_RANGE"),
        ("gone.jpg", 404, "NOT_FOUND"),
    ];
    let stored: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let (_gateway, rest, _keys) = serving(&stack, &tree.root(), "media_refused", &stored).await;
    for (filepath, status, code) in cases.into_iter().chain([
        // On disk inside the root, but no row holds it.
        ("photos/unlisted.jpg", 404, "NOT_FOUND"),
    ]) {
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            Rest::send(rest.request(reqwest::Method::GET, &media("media_refused", filepath))),
        )
        .await
        .unwrap_or_else(|_| panic!("{filepath}: no answer (a FIFO opened?)"));
        assert_eq!(
            (answer.status, answer.code()),
            (status, code.into()),
            "{filepath}: {}",
            answer.text
        );
        assert!(!answer.text.contains("canary:"), "{filepath}");
    }
    // The check can fail: reading the control file, set up the same way,
    // moves its access time.
    let before = Tree::accessed(&tree.control());
    std::fs::read(tree.control()).unwrap();
    assert_ne!(Tree::accessed(&tree.control()), before);
    assert_eq!(
        Tree::accessed(&tree.canary()),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        "the canary outside the media root was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_media_root_no_image_is_served() {
    let stack = Stack::shared().await;
    let mut collection = stack.collection("media_none").await;
    let photo = std::fs::read(&deps::fixture_images()[0]).unwrap();
    collection.insert(vec![("cat.jpg".into(), photo)]).await;
    let answer = stack
        .gateway
        .rest()
        .get(&media("media_none", "cat.jpg"))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "FAILED_PRECONDITION".into()),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("--media-root"), "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_key_is_served_from_its_own_directory_only() {
    let stack = Stack::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let photo = std::fs::read(&deps::fixture_images()[0]).unwrap();
    for path in ["acme/cat.jpg", "globex/secret.jpg", "shared.jpg"] {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), &photo).unwrap();
    }
    std::os::unix::fs::symlink("../globex/secret.jpg", root.join("acme/peek.jpg")).unwrap();
    let keys = [("acme", "write", Some("acme")), ("admin", "admin", None)];
    let (secrets, lines): (Vec<String>, String) = keys
        .iter()
        .map(|(name, role, tenant)| create_tenant_key(dir.path(), name, role, *tenant))
        .unzip();
    std::fs::write(dir.path().join("keys"), lines).unwrap();
    let gateway = stack
        .another_gateway_with(&GatewayFlags {
            api_keys_file: Some(dir.path().join("keys")),
            media_root: Some(root),
            ..Default::default()
        })
        .await;
    let name = "media_tenants";
    stack.extended_collection(name).await;
    let acme = gateway.rest().key(Some(&secrets[0]));
    let filepaths = ["cat.jpg", "peek.jpg", "globex/secret.jpg", "shared.jpg"];
    let lines: Vec<_> = filepaths
        .iter()
        .map(|p| json!({"filepath": p, "image": base64(&photo)}))
        .collect();
    let inserted = acme
        .post_lines(&format!("/v1/collections/{name}:insert"), &lines)
        .await;
    assert!(inserted.text.contains("\"OK\""), "{}", inserted.text);
    let get = |rest: &Rest, filepath: &str| {
        Rest::send(rest.request(reqwest::Method::GET, &media(name, filepath)))
    };
    // DIR/acme/ is acme's root: its own file, nothing beside or above it.
    assert_eq!(get(&acme, "cat.jpg").await.status, 200);
    for (filepath, status) in [
        ("peek.jpg", 403),
        ("globex/secret.jpg", 404),
        ("shared.jpg", 404),
    ] {
        let answer = get(&acme, filepath).await;
        assert_eq!(answer.status, status, "{filepath}: {}", answer.text);
    }
    // An untenanted key sees every row, and all of DIR.
    let admin = gateway.rest().key(Some(&secrets[1]));
    assert_eq!(get(&admin, "shared.jpg").await.status, 200);
}
