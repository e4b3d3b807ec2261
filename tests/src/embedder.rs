//! The real embedder binary on free ports, with the seeded weights, waited
//! on until its health check says SERVING.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use imgsearch_proto::v1::embedder_client::EmbedderClient;
use tonic::transport::Channel;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

use crate::{
    deps,
    ports::free_ports,
    process::{signal, spawn_owned, stop_group, wait_for_exit},
};

/// Largest message the test clients send or accept.
pub const CLIENT_MAX_MESSAGE: usize = 128 << 20;

/// A binary of this workspace, next to the test executable's `deps/` folder.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(bin.is_file(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
    bin
}

/// A running embedder process.
pub struct EmbedderProcess {
    child: Option<Child>,
    pub grpc_port: u16,
    pub metrics_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl EmbedderProcess {
    /// Starts `imgsearch-embedder` on CPU with the seeded weights plus
    /// `extra` flags, and waits until it serves.
    pub async fn start(extra: &[&str]) -> EmbedderProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("embedder.log");
        let ports = free_ports(2);
        let mut cmd = Command::new(workspace_binary("imgsearch-embedder"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", ports[0]))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", ports[1]))
            .arg("--weights")
            .arg(deps::seeded_weights())
            .args(["--device", "cpu"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(Stdio::inherit());
        let child = spawn_owned(cmd).expect("spawn embedder");
        let mut p = EmbedderProcess { child: Some(child), grpc_port: ports[0], metrics_port: ports[1], log, _dir: dir };
        p.wait_serving(Duration::from_secs(180)).await;
        p
    }

    /// `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// A connected client with generous message limits.
    pub async fn client(&self) -> EmbedderClient<Channel> {
        EmbedderClient::new(crate::channel(&self.uri()).await.expect("connect to embedder"))
            .max_decoding_message_size(CLIENT_MAX_MESSAGE)
            .max_encoding_message_size(CLIENT_MAX_MESSAGE)
    }

    /// The Prometheus metrics text.
    pub fn metrics(&self) -> String {
        crate::http::get(self.metrics_port, "/metrics").expect("metrics endpoint answers")
    }

    /// A metric's value summed over its label sets, e.g. `embedder_images_total`.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, without waiting.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            signal(c.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        wait_for_exit(child, timeout).then(|| child.wait().expect("wait"))
    }

    /// Resident memory of the process, in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    async fn wait_serving(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("embedder exited during start ({status}):\n{}", self.log());
            }
            if let Ok(channel) = crate::channel(&self.uri()).await {
                let mut health = HealthClient::new(channel);
                let req = HealthCheckRequest { service: "imgsearch.v1.Embedder".into() };
                if let Ok(r) = health.check(req).await {
                    if r.into_inner().status == ServingStatus::Serving as i32 {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "embedder not serving after {timeout:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for EmbedderProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_group(child, Duration::from_secs(10));
        }
    }
}
