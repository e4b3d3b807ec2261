//! The `imgsearch` CLI as a client process, for tests that interrupt it or
//! measure it.

use std::{
    io::Read,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use crate::server_process::workspace_binary;

/// Starts `imgsearch ingest DIR -c COLLECTION --json` plus `extra` flags.
pub fn spawn_ingest(gateway: &str, dir: &Path, collection: &str, extra: &[&str]) -> Child {
    Command::new(workspace_binary("imgsearch"))
        .args(["--gateway", gateway, "ingest", "-c", collection, "--json"])
        .args(extra)
        .arg(dir)
        .env_remove("IMGSEARCH_COLLECTION")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imgsearch")
}

/// How an ingest ended: its exit status, its JSON report, its stderr, and
/// its peak RSS (sampled from /proc while it ran).
pub struct Ended {
    pub status: ExitStatus,
    pub report: serde_json::Value,
    pub stderr: String,
    pub peak_rss_bytes: u64,
}

/// Waits for an ingest started by [`spawn_ingest`] (blocking).
pub fn wait_ingest(mut child: Child) -> Ended {
    // Drain the pipes while it runs: a report larger than a pipe's buffer
    // would otherwise block the CLI on its last write.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut p) = pipe {
                p.read_to_end(&mut out).expect("read pipe");
            }
            out
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = child.id();
    let mut peak = 0u64;
    let status = loop {
        let proc_status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kb) = proc_status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb * 1024);
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).to_string();
    let report = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&stdout)
        )
    });
    Ended {
        status,
        report,
        stderr,
        peak_rss_bytes: peak,
    }
}

/// Writes `n` distinct small PNGs (seeds from `first`) as `{prefix}NNNNN.png`.
pub fn write_pngs(dir: &Path, prefix: &str, first: u64, n: u64) {
    std::fs::create_dir_all(dir).expect("image dir");
    for (i, png) in crate::insert::distinct_pngs(first, n)
        .into_iter()
        .enumerate()
    {
        std::fs::write(dir.join(format!("{prefix}{i:05}.png")), png).expect("write image");
    }
}

/// Runs `cmd`, which must succeed; returns its stdout.
pub fn succeed(mut cmd: Command) -> String {
    let out = cmd.output().expect("run command");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `imgsearch key create`: the key it wrote to `dir/NAME.key`, and the line
/// it printed for the keys file.
pub fn create_key(dir: &Path, name: &str, role: &str) -> (String, String) {
    create_tenant_key(dir, name, role, None)
}

/// [`create_key`], confined to `tenant` when given.
pub fn create_tenant_key(
    dir: &Path,
    name: &str,
    role: &str,
    tenant: Option<&str>,
) -> (String, String) {
    let out_file = dir.join(format!("{name}.key"));
    let mut cmd = Command::new(workspace_binary("imgsearch"));
    cmd.args(["key", "create", "--name", name, "--role", role, "--out"])
        .arg(&out_file);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    let line = succeed(cmd);
    let key = std::fs::read_to_string(&out_file).expect("key file");
    (key.trim().to_string(), line)
}

/// A keys file `dir/keys` with one new key per `(name, role)`; the keys, in
/// the same order.
pub fn keys_file(dir: &Path, keys: &[(&str, &str)]) -> (std::path::PathBuf, Vec<String>) {
    let (keys, lines): (Vec<String>, String) = keys
        .iter()
        .map(|(name, role)| create_key(dir, name, role))
        .unzip();
    let file = dir.join("keys");
    std::fs::write(&file, lines).expect("write keys file");
    (file, keys)
}
