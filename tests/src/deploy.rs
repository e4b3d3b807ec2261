//! The Kubernetes manifests as rendered by `scripts/check_deploy.py`
//! (kustomize, then validated): what the deployment tests read instead of
//! retyping it.

use std::{collections::BTreeMap, process::Command, sync::OnceLock};

use serde_json::Value;

use crate::deps;

/// The rendered objects of every overlay, by overlay name (rendered once
/// per test binary). Panics with the checker's reasons when deploy/ fails
/// its checks.
pub fn rendered() -> &'static BTreeMap<String, Vec<Value>> {
    static RENDERED: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    RENDERED.get_or_init(render)
}

fn render() -> BTreeMap<String, Vec<Value>> {
    let out = Command::new(deps::deploy_python())
        .arg(deps::script("check_deploy.py"))
        .output()
        .expect("run check_deploy.py");
    assert!(
        out.status.success(),
        "deploy/ checks failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON of rendered objects")
}

/// The object of `kind` named `name`, or generated from that name (a
/// ConfigMap's name carries a hash of its contents).
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n == name || n.starts_with(&format!("{name}-")))
        })
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}
