//! The images `scripts/images.sh` builds from `deploy/docker/Dockerfile`,
//! run with podman the way the cpu overlay's Deployments run them. Image,
//! env, user and group, read-only root, dropped capabilities, memory and CPU
//! limits, grace period, mounts and probes are read from the rendered
//! manifests ([`Deployment`]), not retyped.
//!
//! What a cluster would provide is stood in for on the host: the Secrets are
//! files this harness writes (certificates from one test CA, as
//! cert-manager's), the weights claim is a folder, and the cluster DNS names
//! the config dials resolve to the host, where a TLS Milvus listens on the
//! port its URI names. Containers use the host's network, so every port is
//! the manifests' own and the tests that run them take turns ([`Cluster`]).

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use tonic_health::pb::health_check_response::ServingStatus;

use imgsearch_proto::v1::{embedder_client::EmbedderClient, InfoRequest, InfoResponse};

use crate::{cli, deploy, deps, milvus::Milvus, pki::Pki};

/// `podman` with this host's settings (runc, cgroupfs, fixed ulimits).
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", deps::containers_conf());
    cmd
}

/// Runs podman, which must succeed; returns its stdout.
pub fn podman_ok(args: &[&str]) -> String {
    let mut cmd = podman();
    cmd.args(args);
    cli::succeed(cmd)
}

/// One Deployment of a rendered overlay.
pub struct Deployment {
    pub name: String,
    pod: Value,
    container: Value,
    /// Its env: the ConfigMaps of `envFrom`, then `env`.
    pub env: BTreeMap<String, String>,
}

impl Deployment {
    /// The cpu overlay's, as the tests run it on this GPU-less host.
    pub fn cpu(name: &str) -> Deployment {
        Deployment::of("cpu", name)
    }

    /// The gpu overlay's (the CUDA image).
    pub fn gpu(name: &str) -> Deployment {
        Deployment::of("gpu", name)
    }

    fn of(overlay: &str, name: &str) -> Deployment {
        let objects = &deploy::rendered()[overlay];
        let pod = deploy::find(objects, "Deployment", name)["spec"]["template"]["spec"].clone();
        let container = pod["containers"][0].clone();
        let mut env = BTreeMap::new();
        for from in container["envFrom"].as_array().into_iter().flatten() {
            let map = from["configMapRef"]["name"].as_str().expect("configMapRef");
            let data = deploy::find(objects, "ConfigMap", map)["data"].clone();
            for (k, v) in data.as_object().expect("ConfigMap data") {
                env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        for e in container["env"].as_array().into_iter().flatten() {
            env.insert(
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap_or_default().into(),
            );
        }
        Deployment {
            name: name.to_string(),
            pod,
            container,
            env,
        }
    }

    /// The same with one env var set otherwise, as a patch would.
    pub fn with_env(mut self, key: &str, value: &str) -> Deployment {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Every container port's number.
    pub fn ports(&self) -> Vec<u16> {
        let ports = self.container["ports"].as_array().expect("ports");
        ports
            .iter()
            .map(|p| p["containerPort"].as_u64().expect("containerPort") as u16)
            .collect()
    }

    /// The container's name in the pod.
    pub fn container_name(&self) -> &str {
        self.container["name"].as_str().expect("container name")
    }

    /// The image the manifest names (scripts/images.sh tags it so).
    pub fn image(&self) -> &str {
        self.container["image"].as_str().expect("image")
    }

    /// The container port named `name`.
    pub fn port(&self, name: &str) -> u16 {
        let ports = self.container["ports"].as_array().expect("ports");
        let port = ports.iter().find(|p| p["name"] == name);
        port.and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{}: no port {name}", self.name)) as u16
    }

    /// The port and health service of the readiness probe.
    pub fn readiness(&self) -> (u16, String) {
        let grpc = &self.container["readinessProbe"]["grpc"];
        let port = grpc["port"].as_u64().expect("a gRPC readiness probe") as u16;
        (
            port,
            grpc["service"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// `terminationGracePeriodSeconds`.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(
            self.pod["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30),
        )
    }

    /// `(volume source, mount path, read-only)` for each mount; the source
    /// is the Secret's or the claim's name.
    pub fn mounts(&self) -> Vec<(String, String, bool)> {
        let volumes = self.pod["volumes"].as_array().expect("volumes");
        let source = |name: &str| {
            let v = volumes.iter().find(|v| v["name"] == name).expect("volume");
            let s = &v["secret"]["secretName"];
            let c = &v["persistentVolumeClaim"]["claimName"];
            s.as_str()
                .or(c.as_str())
                .expect("a Secret or claim")
                .to_string()
        };
        let mounts = self.container["volumeMounts"]
            .as_array()
            .expect("volumeMounts");
        mounts
            .iter()
            .map(|m| {
                (
                    source(m["name"].as_str().unwrap()),
                    m["mountPath"].as_str().unwrap().to_string(),
                    m["readOnly"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    /// `(runAsUser, runAsGroup)`.
    pub fn run_as(&self) -> (u64, u64) {
        let sc = &self.pod["securityContext"];
        (
            sc["runAsUser"].as_u64().unwrap(),
            sc["runAsGroup"].as_u64().unwrap(),
        )
    }

    /// The fsGroup, which may read the Secret files.
    pub fn fs_group(&self) -> u32 {
        self.pod["securityContext"]["fsGroup"]
            .as_u64()
            .expect("fsGroup") as u32
    }

    /// The hosts its config dials (the `scheme://host:port` values).
    pub fn dialled_hosts(&self) -> Vec<String> {
        let uris = self.env.values().flat_map(|v| v.split(','));
        uris.filter_map(|u| u.split_once("://"))
            .map(|(_, rest)| rest.split([':', '/']).next().unwrap_or(rest).to_string())
            .collect()
    }

    /// `podman run` flags that make a container what this Deployment's pod
    /// would be, with each volume source at the host path `sources` gives
    /// (sources it lacks are left unmounted).
    pub fn run_flags(&self, sources: &BTreeMap<String, PathBuf>) -> Vec<String> {
        let pod_sc = &self.pod["securityContext"];
        let sc = &self.container["securityContext"];
        let mut f: Vec<String> = vec![
            format!("--user={}:{}", pod_sc["runAsUser"], pod_sc["runAsGroup"]),
            format!("--group-add={}", pod_sc["fsGroup"]),
            format!("--stop-timeout={}", self.grace().as_secs()),
        ];
        if sc["readOnlyRootFilesystem"] == true {
            f.push("--read-only".into());
        }
        if sc["allowPrivilegeEscalation"] == false {
            f.push("--security-opt=no-new-privileges".into());
        }
        for cap in sc["capabilities"]["drop"].as_array().into_iter().flatten() {
            f.push(format!("--cap-drop={}", cap.as_str().unwrap()));
        }
        let limits = &self.container["resources"]["limits"];
        if let Some(memory) = limits["memory"].as_str() {
            f.push(format!("--memory={}b", quantity(memory)));
        }
        if let Some(cpus) = limits["cpu"].as_str() {
            // A host with fewer cores than the limit gets them all.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            f.push(format!("--cpus={}", (quantity(cpus) as usize).min(cores)));
        }
        for (k, v) in &self.env {
            f.push(format!("--env={k}={v}"));
        }
        for (source, path, read_only) in self.mounts() {
            if let Some(host) = sources.get(&source) {
                let ro = if read_only { ":ro" } else { "" };
                f.push(format!("--volume={}:{path}{ro}", host.display()));
            }
        }
        f
    }
}

/// A Kubernetes quantity ("4Gi", "512Mi", "4", "500m" rounds up) in units.
fn quantity(q: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    for (suffix, scale) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().expect("quantity") * scale;
        }
    }
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<u64>().expect("quantity").div_ceil(1000),
        None => q.parse().expect("quantity"),
    }
}

/// The names of the containers [`Container::run`] starts begin so.
const CONTAINER_PREFIX: &str = "imgsearch-test-";

/// A running container, removed on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d` of `image` with `flags` (and a name of its own).
    pub fn run(name: &str, flags: &[String], image: &str) -> Container {
        let name = format!("{CONTAINER_PREFIX}{name}-{}", std::process::id());
        let _ = podman().args(["rm", "-f", "-t", "0", &name]).output();
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), format!("--name={name}")];
        args.extend(flags.iter().cloned());
        args.push(image.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman_ok(&args);
        Container { name }
    }

    /// A container something else started (`podman kube play`).
    pub fn named(name: String) -> Container {
        Container { name }
    }

    /// What it wrote to stdout and stderr.
    pub fn logs(&self) -> String {
        let out = podman()
            .args(["logs", &self.name])
            .output()
            .expect("podman logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn state(&self, field: &str) -> String {
        let format = format!("{{{{.State.{field}}}}}");
        podman_ok(&["inspect", "--format", &format, &self.name])
            .trim()
            .to_string()
    }

    pub fn running(&self) -> bool {
        self.state("Running") == "true"
    }

    /// Its exit code, once it has exited, waiting up to `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i64> {
        let deadline = Instant::now() + timeout;
        while self.running() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(self.state("ExitCode").parse().expect("exit code"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// `podman stop` of several containers at once, as a node drain sends
/// SIGTERM to every pod: how long it took. Podman sends SIGKILL at each
/// container's own `--stop-timeout`, the pods' grace period.
pub fn stop_together(containers: &[&Container]) -> Duration {
    let started = Instant::now();
    let mut cmd = podman();
    cmd.arg("stop")
        .args(containers.iter().map(|c| c.name.as_str()));
    cli::succeed(cmd);
    started.elapsed()
}

/// What the gRPC health service on loopback `port` says of `service`.
pub async fn health(port: u16, service: &str) -> Option<ServingStatus> {
    let channel = crate::channel(&format!("http://127.0.0.1:{port}")).await;
    crate::server_process::health_of(channel.ok()?, service).await
}

/// The Secret files, Milvus and weights the two Deployments need; one per
/// test binary, its host ports the manifests' own.
pub struct Cluster {
    pub pki: Pki,
    pub milvus: Milvus,
    /// Volume source name -> host folder.
    pub sources: BTreeMap<String, PathBuf>,
    /// An admin API key's file, for the CLI.
    pub admin_key: PathBuf,
    _dir: tempfile::TempDir,
    /// Tests that start the containers hold it: host ports are shared.
    pub turn: tokio::sync::Mutex<()>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

impl Cluster {
    pub fn shared() -> &'static Cluster {
        CLUSTER.get_or_init(Cluster::start)
    }

    fn start() -> Cluster {
        let gateway = Deployment::cpu("gateway");
        let embedder = Deployment::cpu("embedder");
        remove_leftovers(&[&gateway, &embedder]);
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("imgsearch test cluster CA");
        let host = |uri: &str| gateway.env[uri].split("://").nth(1).unwrap().to_string();
        let (milvus_host, milvus_port) = host("IMGSEARCH_MILVUS_URI")
            .split_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .unwrap();
        let embedder_host = host("IMGSEARCH_EMBEDDERS")
            .split(':')
            .next()
            .unwrap()
            .to_string();
        pki.issue_for("milvus", false, &[&milvus_host]);
        let file = |name: &str| pki.file(name).display().to_string();
        let milvus = Milvus::start_with(&[
            ("proxy_port", milvus_port),
            ("tls_mode", "1".into()),
            ("server_pem_path", file("milvus.pem")),
            ("server_key_path", file("milvus.key")),
            ("ca_pem_path", file("ca.pem")),
        ])
        .unwrap_or_else(|e| panic!("{e}"));

        let pem = |name: &str| std::fs::read(pki.file(name)).unwrap();
        let tls = |name: &str| {
            vec![
                ("tls.crt", pem(&format!("{name}.pem"))),
                ("tls.key", pem(&format!("{name}.key"))),
                ("ca.crt", pem("ca.pem")),
            ]
        };
        pki.issue_for("gateway", false, &["gateway.imgsearch.svc.cluster.local"]);
        pki.issue("gateway-client", true);
        pki.issue_for("embedder", false, &[&embedder_host]);
        let keys_dir = dir.path().join("keys");
        std::fs::create_dir(&keys_dir).unwrap();
        let (keys, _) = cli::keys_file(&keys_dir, &[("tests-admin", "admin")]);
        let group = gateway.fs_group();
        let mut sources = BTreeMap::new();
        for (name, files) in [
            ("gateway-tls", tls("gateway")),
            ("gateway-client-tls", tls("gateway-client")),
            ("embedder-tls", tls("embedder")),
            (
                "gateway-api-keys",
                vec![("keys", std::fs::read(keys).unwrap())],
            ),
            // Milvus here has no authorization: any password passes.
            ("milvus-credentials", vec![("password", b"unused".to_vec())]),
        ] {
            sources.insert(name.to_string(), secret(dir.path(), name, group, &files));
        }
        // The claim holds the weights under the name the config expects.
        let weights = Path::new(&embedder.env["IMGSEARCH_EMBEDDER_WEIGHTS"]);
        let claim = dir.path().join("embedder-weights");
        std::fs::create_dir(&claim).unwrap();
        let copy = claim.join(weights.file_name().unwrap());
        std::fs::copy(deps::seeded_weights(), &copy).unwrap();
        // Written once by a loader pod, readable by every embedder's user.
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
        sources.insert("embedder-weights".into(), claim);
        Cluster {
            pki,
            milvus,
            sources,
            admin_key: keys_dir.join("tests-admin.key"),
            _dir: dir,
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

/// Removes what a killed earlier run left holding the manifests' ports:
/// this harness's containers, and the pods `podman kube play` names after
/// the Deployments.
fn remove_leftovers(deployments: &[&Deployment]) {
    let names = podman_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    for name in names.lines().filter(|n| n.starts_with(CONTAINER_PREFIX)) {
        let _ = podman().args(["rm", "-f", "-t", "0", name]).output();
    }
    for d in deployments {
        let _ = podman()
            .args(["pod", "rm", "-f", "-t", "0", &format!("{}-pod-0", d.name)])
            .output();
    }
}

/// A Secret volume as the kubelet writes it: one file per key, mode 0440,
/// group `group` (the pod's fsGroup).
fn secret(dir: &Path, name: &str, group: u32, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir(&folder).unwrap();
    for (key, contents) in files {
        let path = folder.join(key);
        std::fs::write(&path, contents).unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(group)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
    folder
}

/// The embedder and gateway containers, started from the manifests on the
/// host network and waited on through their readiness probes.
pub struct Stack {
    pub embedder: Container,
    pub gateway: Container,
    pub deployments: [Deployment; 2],
    /// What `podman kube play` made, torn down after the containers.
    pub(crate) _played: Option<crate::kube_play::Played>,
}

impl Stack {
    /// Each Deployment as one `podman run` (see [`Stack::play`] for the
    /// manifests played whole).
    pub async fn start(cluster: &Cluster) -> Stack {
        Stack::start_with(cluster, Deployment::cpu("embedder")).await
    }

    /// [`Stack::start`] with another embedder Deployment.
    pub async fn start_with(cluster: &Cluster, embedder: Deployment) -> Stack {
        let gateway = Deployment::cpu("gateway");
        let network = |d: &Deployment| {
            let mut f = d.run_flags(&cluster.sources);
            f.push("--network=host".into());
            f.extend(
                d.dialled_hosts()
                    .into_iter()
                    .map(|h| format!("--add-host={h}:127.0.0.1")),
            );
            f
        };
        let e = Container::run("embedder", &network(&embedder), embedder.image());
        let g = Container::run("gateway", &network(&gateway), gateway.image());
        for (d, c) in [(&embedder, &e), (&gateway, &g)] {
            wait_ready(d, c, Duration::from_secs(300)).await;
        }
        Stack {
            embedder: e,
            gateway: g,
            deployments: [embedder, gateway],
            _played: None,
        }
    }

    /// The gateway's address for clients on this host.
    pub fn gateway_uri(&self) -> String {
        format!("https://localhost:{}", self.deployments[1].port("grpc"))
    }

    /// What the embedder's `Info` says, asked as the gateway asks it (TLS
    /// with the gateway's client certificate).
    pub async fn embedder_info(&self, cluster: &Cluster) -> InfoResponse {
        let identity = (
            cluster.pki.file("gateway-client.pem"),
            cluster.pki.file("gateway-client.key"),
        );
        let host = self.deployments[1].env["IMGSEARCH_EMBEDDERS"]
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .expect("the embedder's host")
            .to_string();
        let tls = cluster.pki.client(Some(&identity)).domain_name(host);
        let port = self.deployments[0].port("grpc");
        let channel = crate::tls_channel(&format!("https://127.0.0.1:{port}"), Some(tls))
            .await
            .expect("connect to the embedder");
        let mut client = EmbedderClient::new(channel);
        let info = client.info(InfoRequest {}).await.expect("embedder Info");
        info.into_inner()
    }

    /// The CLI's flags to reach it: TLS with the cluster's CA, an admin key.
    pub fn cli_flags(&self, cluster: &Cluster) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            cluster.pki.ca().display().to_string(),
            "--api-key-file".into(),
            cluster.admin_key.display().to_string(),
        ]
    }
}

/// Waits until the readiness probe's health service says SERVING, as the
/// kubelet would; panics with the logs when the container exits first.
pub async fn wait_ready(d: &Deployment, c: &Container, timeout: Duration) {
    let (port, service) = d.readiness();
    let deadline = Instant::now() + timeout;
    while health(port, &service).await != Some(ServingStatus::Serving) {
        assert!(c.running(), "{} exited during start:\n{}", d.name, c.logs());
        assert!(
            Instant::now() < deadline,
            "{} not ready in {timeout:?}:\n{}",
            d.name,
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `podman run --rm` of `image` with `flags` and `args`, bounded by
/// `timeout`: its output, and how long it ran.
pub fn run_to_end(
    flags: &[String],
    image: &str,
    args: &[&str],
    timeout: Duration,
) -> (Output, Duration) {
    let started = Instant::now();
    let mut cmd = podman();
    cmd.args(["run", "--rm", &format!("--timeout={}", timeout.as_secs())])
        .args(flags)
        .arg(image)
        .args(args);
    let out = cmd.output().expect("podman run");
    (out, started.elapsed())
}
