//! A workspace server binary run as a child process on free ports, waited
//! on until its gRPC health check says SERVING, stopped on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tonic::transport::{Channel, ClientTlsConfig};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::process::{signal, spawn_owned, stop_group, wait_for_exit};

/// A binary of this workspace, next to the test executable's `deps/` folder.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// A running server process.
pub struct ServerProcess {
    child: Option<Child>,
    /// The gRPC port.
    pub grpc_port: u16,
    health_service: String,
    /// How clients reach it when it serves TLS.
    tls: Option<ClientTlsConfig>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts workspace binary `name` with `args` and `env`, logging to a
    /// temp file, and waits until `health_service` is SERVING on `grpc_port`.
    pub async fn start(
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
        grpc_port: u16,
        health_service: &str,
    ) -> ServerProcess {
        Self::start_tls(name, args, env, grpc_port, health_service, None).await
    }

    /// [`ServerProcess::start`] for a server reached with `tls` (over
    /// `https://localhost`) when it is set.
    pub async fn start_tls(
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
        grpc_port: u16,
        health_service: &str,
        tls: Option<ClientTlsConfig>,
    ) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join(format!("{name}.log"));
        let mut cmd = Command::new(workspace_binary(name));
        cmd.args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(Stdio::inherit());
        let child = spawn_owned(cmd).expect("spawn server");
        let mut p = ServerProcess {
            child: Some(child),
            grpc_port,
            health_service: health_service.into(),
            tls,
            log,
            _dir: dir,
        };
        p.wait_serving(Duration::from_secs(180)).await;
        p
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS.
    pub fn uri(&self) -> String {
        match self.tls {
            None => format!("http://127.0.0.1:{}", self.grpc_port),
            Some(_) => format!("https://localhost:{}", self.grpc_port),
        }
    }

    /// A channel to its gRPC port, with TLS when it serves TLS.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        crate::tls_channel(&self.uri(), self.tls.clone()).await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
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

    /// Freezes the process (SIGSTOP), as a hung node or GPU would: its
    /// sockets stay open and nothing answers.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            signal(c.id() as i32, libc::SIGSTOP);
        }
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        if let Some(c) = &self.child {
            signal(c.id() as i32, libc::SIGCONT);
        }
    }

    /// Kills the process outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        wait_for_exit(child, timeout).then(|| child.wait().expect("wait"))
    }

    /// Resident memory of the process, in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmRSS:")
    }

    /// The most resident memory the process has had, in bytes (from /proc).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmHWM:")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn proc_status_bytes(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// What `grpc.health.v1` says of `service`; `None` when it cannot be asked.
    pub async fn health(&self, service: &str) -> Option<ServingStatus> {
        health_of(self.channel().await.ok()?, service).await
    }

    /// Waits until health says SERVING (again, after a dependency came back).
    pub async fn wait_serving(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("server exited during start ({status}):\n{}", self.log());
            }
            if self.health(&self.health_service).await == Some(ServingStatus::Serving) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not serving after {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_group(child, Duration::from_secs(10));
        }
    }
}

/// What `grpc.health.v1` on `channel` says of `service`; `None` when it
/// cannot be asked.
pub async fn health_of(channel: Channel, service: &str) -> Option<ServingStatus> {
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    let status = HealthClient::new(channel)
        .check(req)
        .await
        .ok()?
        .into_inner()
        .status;
    ServingStatus::try_from(status).ok()
}
