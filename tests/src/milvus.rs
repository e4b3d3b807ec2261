//! A real Milvus 2.3.5 standalone (the binary from the PyPI `milvus`
//! package), on free ports with its own data directory.
//!
//! We run the `milvus` binary directly rather than the `milvus-server` Python
//! wrapper: the wrapper leaves its child running when killed, and cannot move
//! the embedded etcd's peer port (2380), so two instances collided. Here every
//! port is chosen free, etcd gets its own config file, the server runs in its
//! own process group, and it dies with the test process (PR_SET_PDEATHSIG)
//! even when a test panics or the binary is killed.

use std::{
    collections::HashMap,
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{
    deps,
    ports::free_ports,
    process::{spawn_owned, stop_group},
};

/// Data dirs are `$TMPDIR/imgsearch-milvus-*`, each with an `owner.pid`.
const DIR_PREFIX: &str = "imgsearch-milvus-";
/// How long a cold start may take on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a SIGTERM gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The template keys that are ports, each given a free one.
const PORT_KEYS: [&str; 10] = [
    "etcd_port",
    "root_coord_port",
    "proxy_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
];

/// A running (or stopped, restartable) embedded Milvus.
pub struct Milvus {
    child: Option<Child>,
    data_dir: PathBuf,
    /// Keeps `data_dir` removed on drop for owned instances.
    _cleanup: Option<tempfile::TempDir>,
    ports: HashMap<&'static str, u16>,
    metrics_port: u16,
    etcd_peer_port: u16,
    /// Extra values for the config template (TLS settings, say).
    settings: Vec<(&'static str, String)>,
    /// The CA that signed the server's certificate, when it speaks TLS.
    tls_ca: Option<String>,
}

static SHARED: OnceLock<Milvus> = OnceLock::new();

impl Milvus {
    /// One Milvus for the whole test binary, started on first use. Tests
    /// sharing it use their own collection names.
    pub fn shared() -> &'static Milvus {
        SHARED.get_or_init(|| Milvus::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Removes data dirs of earlier test processes that have exited. The
    /// shared instance is never dropped (statics are not), so its dir
    /// outlives its process; the next run cleans it here.
    fn remove_stale_dirs() {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let ours = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(DIR_PREFIX));
            let owner = fs::read_to_string(dir.join("owner.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let (true, Some(pid)) = (ours, owner) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(&dir);
                }
            }
        }
    }

    /// A Milvus of the caller's own, stopped and deleted on drop. For tests
    /// that stop and restart it; others should use [`Milvus::shared`].
    pub fn start() -> Result<Milvus, String> {
        Self::start_with(&[])
    }

    /// Like [`Milvus::start`], with values for more keys of the config
    /// template, e.g. `("tls_mode", "1")` and the `*_pem_path` keys, or a
    /// fixed `proxy_port`.
    pub fn start_with(settings: &[(&'static str, String)]) -> Result<Milvus, String> {
        Self::remove_stale_dirs();
        let tmp = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        fs::write(tmp.path().join("owner.pid"), std::process::id().to_string())
            .map_err(|e| format!("temp dir: {e}"))?;
        let free = free_ports(PORT_KEYS.len() + 2);
        let setting = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        let mut ports: HashMap<&'static str, u16> = PORT_KEYS
            .iter()
            .copied()
            .zip(free.iter().copied())
            .collect();
        if let Some(port) = setting("proxy_port") {
            ports.insert(
                "proxy_port",
                port.parse().map_err(|e| format!("proxy_port: {e}"))?,
            );
        }
        let tls = setting("tls_mode").is_some_and(|m| m != "0");
        let mut milvus = Milvus {
            child: None,
            data_dir: tmp.path().to_path_buf(),
            _cleanup: Some(tmp),
            ports,
            metrics_port: free[PORT_KEYS.len()],
            etcd_peer_port: free[PORT_KEYS.len() + 1],
            settings: settings.to_vec(),
            tls_ca: setting("ca_pem_path").filter(|_| tls).cloned(),
        };
        milvus.write_config()?;
        milvus.resume()?;
        Ok(milvus)
    }

    /// The gRPC endpoint, e.g. `http://127.0.0.1:40123`, or
    /// `https://localhost:40123` when it speaks TLS.
    pub fn uri(&self) -> String {
        match self.tls_ca {
            Some(_) => format!("https://localhost:{}", self.ports["proxy_port"]),
            None => format!("http://127.0.0.1:{}", self.ports["proxy_port"]),
        }
    }

    /// Every row of a collection as (id, filepath), sorted by id, read from
    /// Milvus directly with Strong consistency: what a test about data
    /// counts, never the gateway's word.
    pub async fn rows(&self, collection: &str) -> Vec<(i64, String)> {
        Self::rows_through(&self.uri(), self.tls_ca.as_deref(), collection).await
    }

    /// [`Milvus::rows`] of the Milvus at `uri`.
    pub async fn rows_at(uri: &str, collection: &str) -> Vec<(i64, String)> {
        Self::rows_through(uri, None, collection).await
    }

    async fn rows_through(uri: &str, ca: Option<&str>, collection: &str) -> Vec<(i64, String)> {
        Self::strings_through(uri, ca, collection, "filepath").await
    }

    /// Every row's id and its VARCHAR `field` (a tenant, a content hash),
    /// sorted by id, read from Milvus directly (Strong).
    pub async fn strings(&self, collection: &str, field: &str) -> Vec<(i64, String)> {
        Self::strings_through(&self.uri(), self.tls_ca.as_deref(), collection, field).await
    }

    async fn strings_through(
        uri: &str,
        ca: Option<&str>,
        collection: &str,
        field: &str,
    ) -> Vec<(i64, String)> {
        use milvus::v2::prelude::FieldData;
        let (ids, fields) = Self::every_row(uri, ca, collection, field).await;
        let paths = fields
            .into_iter()
            .find_map(|f| match f {
                FieldData::VarChar { name, values } if name == field => Some(values),
                _ => None,
            })
            .unwrap_or_default();
        let mut rows: Vec<(i64, String)> = ids.into_iter().zip(paths).collect();
        rows.sort();
        rows
    }

    /// Every row's id and stored vector, read from Milvus directly (Strong),
    /// sorted by id.
    pub async fn vectors(&self, collection: &str) -> Vec<(i64, Vec<f32>)> {
        use milvus::v2::prelude::FieldData;
        let (ids, fields) = Self::every_row(
            &self.uri(),
            self.tls_ca.as_deref(),
            collection,
            "image_embedding",
        )
        .await;
        let vectors = fields
            .into_iter()
            .find_map(|f| match f {
                FieldData::FloatVector { values, .. } => Some(values),
                _ => None,
            })
            .expect("vectors in the answer");
        let mut rows: Vec<(i64, Vec<f32>)> = ids.into_iter().zip(vectors).collect();
        rows.sort_by_key(|r| r.0);
        rows
    }

    /// Every row of an extended collection as (id, filepath, attributes),
    /// sorted by id, read from Milvus directly (Strong).
    pub async fn attributes(&self, collection: &str) -> Vec<(i64, String, serde_json::Value)> {
        use milvus::v2::prelude::FieldData;
        let uri = self.uri();
        let ca = self.tls_ca.as_deref();
        let (ids, fields) = Self::every_row(&uri, ca, collection, "attributes").await;
        let json = fields
            .into_iter()
            .find_map(|f| match f {
                FieldData::Json { values, .. } => Some(values),
                _ => None,
            })
            .expect("attributes in the answer");
        let paths = self.rows(collection).await;
        let mut rows: Vec<(i64, String, serde_json::Value)> = ids
            .into_iter()
            .zip(json)
            .map(|(id, a)| {
                let path = paths
                    .iter()
                    .find(|(i, _)| *i == id)
                    .expect("same rows")
                    .1
                    .clone();
                (id, path, a)
            })
            .collect();
        rows.sort_by_key(|r| r.0);
        rows
    }

    /// Waits until Milvus searches every row of `collection` through its
    /// index: rows of segments not indexed yet are searched exactly, and so
    /// are indexed segments until the query node has loaded their index.
    pub async fn wait_indexed(&self, collection: &str, within: std::time::Duration) {
        use milvus::v2::prelude as mv;
        let mut connect = mv::ConnectConfig::new().uri(self.uri());
        if let Some(ca) = &self.tls_ca {
            connect = connect.ca_certificate(ca.to_string());
        }
        let sdk = mv::ClientV2::new(&connect).await.expect("SDK connects");
        let started = std::time::Instant::now();
        loop {
            let request = mv::DescribeIndexRequest::builder()
                .collection_name(collection)
                .field_name("image_embedding")
                .build()
                .expect("describe index");
            let answer = sdk.describe_index(request).await.expect("describe index");
            let built = answer.indexes().iter().all(|i| {
                i.get_total_rows() > 0
                    && i.get_indexed_rows() == i.get_total_rows()
                    && i.get_pending_rows() == 0
            });
            let total = answer.indexes().first().map_or(0, |i| i.get_total_rows());
            // Built is not yet searched: the query node must have swapped
            // every segment for its indexed version.
            let request = mv::ListQuerySegmentsRequest::builder()
                .collection_name(collection)
                .build()
                .expect("list segments");
            let loaded = sdk.list_query_segments(request).await.expect("segments");
            let served: i64 = loaded
                .segments()
                .iter()
                .filter(|s| s.get_index_id() != 0 && !s.get_index_name().is_empty())
                .map(|s| s.get_row_count())
                .sum();
            if built && total > 0 && served == total {
                break;
            }
            assert!(
                started.elapsed() < within,
                "{collection} not indexed in {within:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Every row's id and `field` (Strong), through the SDK.
    async fn every_row(
        uri: &str,
        ca: Option<&str>,
        collection: &str,
        field: &str,
    ) -> (Vec<i64>, Vec<milvus::v2::prelude::FieldData>) {
        use milvus::v2::prelude as mv;
        let mut connect = mv::ConnectConfig::new().uri(uri);
        if let Some(ca) = ca {
            connect = connect.ca_certificate(ca.to_string());
        }
        let sdk = mv::ClientV2::new(&connect).await.expect("SDK connects");
        let resp = sdk
            .query(
                mv::QueryRequest::builder()
                    .collection_name(collection)
                    .filter("id >= 0")
                    .output_fields(["id", field])
                    .consistency_level(mv::ConsistencyLevel::Strong)
                    .build()
                    .expect("query"),
            )
            .await
            .expect("query rows");
        let fields = resp.results().get_output_fields().to_vec();
        let ids = fields
            .iter()
            .find_map(|f| match f {
                mv::FieldData::Int64 { name, values } if name == "id" => Some(values.clone()),
                _ => None,
            })
            .unwrap_or_default();
        (ids, fields)
    }

    /// The gRPC port.
    pub fn port(&self) -> u16 {
        self.ports["proxy_port"]
    }

    /// Where logs and data live (logs/ has milvus-stdout.log and etcd.log).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server (SIGTERM to its group, SIGKILL after a grace period),
    /// keeping its data, so [`Milvus::resume`] brings the same state back.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_group(child, STOP_GRACE);
        }
    }

    /// Starts the server on the same ports and data, and waits until it
    /// answers health checks.
    pub fn resume(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let home = deps::milvus_home();
        let bin = home.join("bin");
        let logs = self.data_dir.join("logs");
        let stdout = fs::File::create(logs.join("milvus-stdout.log")).map_err(|e| e.to_string())?;
        let stderr = fs::File::create(logs.join("milvus-stderr.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin.join("milvus"));
        cmd.args(["run", "standalone"])
            .current_dir(&self.data_dir)
            .env("DEPLOY_MODE", "STANDALONE")
            .env("METRICS_PORT", self.metrics_port.to_string())
            .env("MILVUS_RUN_DIR", self.data_dir.join("run"))
            .env("MILVUSCONF", self.data_dir.join("configs"))
            .env(
                "ETCD_CONFIG_PATH",
                self.data_dir.join("configs/embedEtcd.yaml"),
            )
            .env("LD_LIBRARY_PATH", &bin)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.child = Some(spawn_owned(cmd).map_err(|e| format!("spawn milvus: {e}"))?);
        self.wait_healthy()
    }

    fn write_config(&self) -> Result<(), String> {
        let home = deps::milvus_home();
        let configs = self.data_dir.join("configs");
        let logs = self.data_dir.join("logs");
        let data = self.data_dir.join("data");
        for d in [&configs, &logs, &data, &self.data_dir.join("run")] {
            fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let mut values: HashMap<&str, String> = self
            .ports
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let path = |p: PathBuf| p.display().to_string();
        values.insert("etcd_log_path", path(logs.join("etcd.log")));
        values.insert("system_log_path", path(logs.clone()));
        values.insert("etcd_data_dir", path(data.join("etcd.data")));
        values.insert("local_storage_dir", path(data.clone()));
        values.insert("rocksmq_data_dir", path(data.join("rocksmq")));
        values.extend(self.settings.iter().cloned());
        let template = fs::read_to_string(home.join("config.yaml.template"))
            .map_err(|e| format!("read milvus config template: {e}"))?;
        fs::write(
            configs.join("milvus.yaml"),
            render_template(&template, &values),
        )
        .map_err(|e| e.to_string())?;
        fs::copy(home.join("glog.conf"), configs.join("glog.conf")).map_err(|e| e.to_string())?;
        let (client, peer) = (self.ports["etcd_port"], self.etcd_peer_port);
        let etcd = format!(
            "name: imgsearch-test\n\
             listen-client-urls: http://127.0.0.1:{client}\n\
             advertise-client-urls: http://127.0.0.1:{client}\n\
             listen-peer-urls: http://127.0.0.1:{peer}\n\
             initial-advertise-peer-urls: http://127.0.0.1:{peer}\n\
             initial-cluster: imgsearch-test=http://127.0.0.1:{peer}\n\
             auto-compaction-mode: revision\n\
             auto-compaction-retention: '1000'\n"
        );
        fs::write(configs.join("embedEtcd.yaml"), etcd).map_err(|e| e.to_string())
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "milvus exited during start ({status}){}",
                    self.log_tail()
                ));
            }
            if crate::http::get(self.metrics_port, "/healthz").is_some_and(|b| b.contains("OK"))
                && port_open(self.ports["proxy_port"])
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "milvus not healthy in {START_TIMEOUT:?}{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let log =
            fs::read_to_string(self.data_dir.join("logs/milvus-stdout.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "; data dir {}; last log lines:\n{}",
            self.data_dir.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Milvus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Replaces each `{{ key(type): default }}` of the wrapper's template with
/// `values[key]`, or its default.
fn render_template(template: &str, values: &HashMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = rest[start + 2..start + len].trim();
        let (head, default) = inner.split_once(':').unwrap_or((inner, ""));
        let key = head.split('(').next().unwrap_or(head).trim();
        out.push_str(
            values
                .get(key)
                .map(String::as_str)
                .unwrap_or(default.trim()),
        );
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_values_and_defaults() {
        let values = HashMap::from([("proxy_port", "4242".to_string())]);
        let t = "a: {{ proxy_port(int): 19530 }}\nb: {{ tls_mode(int): 0 }} # c\nd: {{ etcd_data_dir }}\n";
        assert_eq!(render_template(t, &values), "a: 4242\nb: 0 # c\nd: \n");
    }
}
