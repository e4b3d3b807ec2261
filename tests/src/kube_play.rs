//! The rendered cpu overlay played whole by `podman kube play`: its
//! Deployments, ConfigMaps and claim become pods, ConfigMaps and a volume,
//! on podman's default bridge network (named, so its gateway, the host, is
//! known) with the containers' ports published on the host, as a cluster's
//! Services would reach them.
//!
//! Podman 4.3 cannot honour everything; the changes made here are the
//! least that lets it run, each with its reason:
//! - Secret volumes become hostPath volumes of the same files: podman 4.3's
//!   kube play dereferences a nil secrets manager on any Secret volume
//!   (a crash, not an error).
//! - One replica each: every replica would publish the same host ports.
//! - `hostAliases` map the cluster DNS names the config dials to the host,
//!   where Milvus listens and the embedder's port is published.
//! - The claim is played first and filled with the weights before the
//!   Deployments start, as the README's loader pod does.
//!
//! Services, the HPA, PDBs, NetworkPolicies and the Namespace are passed
//! through and ignored by podman; it runs no probes (the tests wait on the
//! probes' health services themselves) and stops containers after 10 s
//! rather than `terminationGracePeriodSeconds`.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::{
    containers::{podman_ok, wait_ready, Cluster, Container, Deployment, Stack},
    deploy,
};

/// The played files; `podman kube down` and the volumes removed on drop.
pub struct Played {
    file: PathBuf,
    volumes: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Played {
    fn drop(&mut self) {
        let file = self.file.display().to_string();
        let _ = crate::containers::podman()
            .args(["kube", "down", &file])
            .output();
        for v in &self.volumes {
            let _ = crate::containers::podman()
                .args(["volume", "rm", "-f", v])
                .output();
        }
    }
}

/// Writes objects as one multi-document file (JSON is YAML).
fn write_docs(file: &std::path::Path, docs: &[Value]) {
    let text: Vec<String> = docs.iter().map(Value::to_string).collect();
    std::fs::write(file, text.join("\n---\n")).unwrap();
}

impl Stack {
    /// The rendered cpu overlay played by `podman kube play`, with the
    /// changes the module header lists, waited on through its probes.
    pub async fn play(cluster: &Cluster) -> Stack {
        let (embedder, gateway) = (Deployment::cpu("embedder"), Deployment::cpu("gateway"));
        let host = podman_ok(&[
            "network",
            "inspect",
            "podman",
            "--format",
            "{{range .Subnets}}{{.Gateway}}{{end}}",
        ])
        .trim()
        .to_string();
        let mut hostnames = embedder.dialled_hosts();
        hostnames.extend(gateway.dialled_hosts());
        let dir = tempfile::tempdir().unwrap();
        let (mut docs, mut claims) = (Vec::new(), Vec::new());
        for object in &deploy::rendered()["cpu"] {
            let mut o = object.clone();
            match o["kind"].as_str() {
                Some("PersistentVolumeClaim") => claims.push(o),
                Some("Deployment") => {
                    o["spec"]["replicas"] = json!(1);
                    let pod = &mut o["spec"]["template"]["spec"];
                    for v in pod["volumes"].as_array_mut().into_iter().flatten() {
                        if let Some(secret) = v["secret"]["secretName"].as_str() {
                            let path = cluster.sources[secret].display().to_string();
                            *v = json!({"name": v["name"], "hostPath": {"path": path, "type": "Directory"}});
                        }
                    }
                    pod["hostAliases"] = json!([{"ip": host, "hostnames": hostnames}]);
                    docs.push(o);
                }
                _ => docs.push(o),
            }
        }
        let (claims_file, file) = (dir.path().join("claims.json"), dir.path().join("play.json"));
        write_docs(&claims_file, &claims);
        write_docs(&file, &docs);
        let volumes: Vec<String> = claims
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        let played = Played {
            file: file.clone(),
            volumes: volumes.clone(),
            _dir: dir,
        };
        for v in &volumes {
            let _ = crate::containers::podman()
                .args(["volume", "rm", "-f", v])
                .output();
        }
        podman_ok(&["kube", "play", &claims_file.display().to_string()]);
        for v in &volumes {
            let mount = podman_ok(&["volume", "inspect", v, "--format", "{{.Mountpoint}}"]);
            let mount = PathBuf::from(mount.trim());
            for entry in std::fs::read_dir(&cluster.sources[v]).unwrap() {
                let from = entry.unwrap().path();
                std::fs::copy(&from, mount.join(from.file_name().unwrap())).unwrap();
            }
        }
        // A container that fails to start makes this exit non-zero; the
        // wait below then shows the container's logs, and this its words.
        let out = crate::containers::podman()
            .args([
                "kube",
                "play",
                "--network=podman",
                &file.display().to_string(),
            ])
            .output()
            .expect("podman kube play");
        if !out.status.success() {
            eprintln!("podman kube play: {}", String::from_utf8_lossy(&out.stderr));
        }
        let container = |d: &Deployment| {
            let name = d.container_name();
            Container::named(format!("{}-pod-0-{name}", d.name))
        };
        let (e, g) = (container(&embedder), container(&gateway));
        for (d, c) in [(&embedder, &e), (&gateway, &g)] {
            wait_ready(d, c, std::time::Duration::from_secs(300)).await;
        }
        Stack {
            embedder: e,
            gateway: g,
            deployments: [embedder, gateway],
            _played: Some(played),
        }
    }
}
