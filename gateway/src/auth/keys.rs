//! The API keys file, re-read when it changes.
//!
//! One key per line: `NAME ROLE DIGEST [tenant=TENANT]`, as `imgsearch
//! key create` prints it; `#` starts a comment. NAME identifies the caller
//! in logs, ROLE is read, write or admin, DIGEST is
//! [`imgsearch_proto::api_key::digest`] of the key, and TENANT (1 to 64 of
//! the characters a name may hold) confines every call of the key to that
//! tenant's rows. A file with a mistake is refused whole: at start the gateway
//! does not start, on a reload the previous keys stay in force.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use imgsearch_common::reload;
use imgsearch_proto::api_key;
use tokio::task::JoinHandle;

use super::{Caller, Role};
use crate::error::GatewayError;

type ByDigest = HashMap<String, Caller>;

/// The keys in force.
#[derive(Clone)]
pub struct ApiKeys {
    path: PathBuf,
    /// The file's contents the keys in force came from.
    loaded: Vec<u8>,
    by_digest: Arc<RwLock<Arc<ByDigest>>>,
}

impl ApiKeys {
    pub fn load(path: &Path) -> Result<Self, GatewayError> {
        let refuse = |e: String| GatewayError::Config(format!("API keys file: {e}"));
        let mut bytes =
            reload::read_all(&[path.to_path_buf()]).map_err(|e| refuse(e.to_string()))?;
        let loaded = bytes.remove(0);
        let keys = parse(&loaded).map_err(|e| refuse(format!("{}: {e}", path.display())))?;
        Ok(Self {
            path: path.to_path_buf(),
            loaded,
            by_digest: Arc::new(RwLock::new(Arc::new(keys))),
        })
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.by_digest.read().expect("keys lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Who holds `key`, if anyone.
    pub fn caller(&self, key: &str) -> Option<Caller> {
        let keys = self.by_digest.read().expect("keys lock").clone();
        keys.get(&api_key::digest(key)).cloned()
    }

    /// Re-reads the file when it changes, until the task is aborted.
    pub fn watch(&self) -> JoinHandle<()> {
        let paths = vec![self.path.clone()];
        let by_digest = self.by_digest.clone();
        reload::watch(
            "API keys",
            paths,
            vec![self.loaded.clone()],
            move |contents| {
                let keys = parse(&contents[0])?;
                tracing::info!(keys = keys.len(), "API keys in force");
                *by_digest.write().expect("keys lock") = Arc::new(keys);
                Ok::<_, GatewayError>(())
            },
        )
    }
}

fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    })
}

/// The keys a file's contents list, by digest.
pub fn parse(contents: &[u8]) -> Result<ByDigest, GatewayError> {
    let text =
        std::str::from_utf8(contents).map_err(|_| GatewayError::Config("not UTF-8".into()))?;
    let mut keys = ByDigest::new();
    let mut names = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |e: String| GatewayError::Config(format!("line {}: {e}", i + 1));
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, role, digest, tenant) = match fields[..] {
            [name, role, digest] => (name, role, digest, None),
            [name, role, digest, extra] => match extra.strip_prefix("tenant=") {
                Some(t) if api_key::valid_name(t) => (name, role, digest, Some(t.to_string())),
                _ => {
                    return Err(at(format!(
                        "{extra:?}: the fourth field is tenant=TENANT ({})",
                        api_key::NAME_RULE
                    )))
                }
            },
            _ => return Err(at("expected NAME ROLE DIGEST [tenant=TENANT]".into())),
        };
        if !api_key::valid_name(name) {
            return Err(at(format!(
                "{name:?} is not a key name ({})",
                api_key::NAME_RULE
            )));
        }
        let role: Role = role.parse().map_err(at)?;
        if !valid_digest(digest) {
            return Err(at(
                "the digest is not sha256: and 64 lowercase hex digits (the key itself never goes in this file)".into(),
            ));
        }
        if !names.insert(name.to_string()) {
            return Err(at(format!("the name {name:?} is used twice")));
        }
        let caller = Caller {
            key: name.to_string(),
            role,
            tenant,
        };
        if keys.insert(digest.to_string(), caller).is_some() {
            return Err(at("the same key is listed twice".into()));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, role: &str, key: &str) -> String {
        format!("{name} {role} {}\n", api_key::digest(key))
    }

    #[test]
    fn a_listed_key_gets_its_name_and_role() {
        let text = format!("# keys\n\n{}", line("ci", "write", "isk_a"));
        let keys = parse(text.as_bytes()).unwrap();
        let caller = &keys[&api_key::digest("isk_a")];
        assert_eq!((caller.key.as_str(), caller.role), ("ci", Role::Write));
    }

    #[test]
    fn a_tenant_confines_its_key_and_must_be_a_name() {
        let text = format!(
            "{} tenant=acme\n{}",
            line("a", "write", "isk_a").trim_end(),
            line("b", "read", "isk_b")
        );
        let keys = parse(text.as_bytes()).unwrap();
        assert_eq!(
            keys[&api_key::digest("isk_a")].tenant.as_deref(),
            Some("acme")
        );
        assert_eq!(keys[&api_key::digest("isk_b")].tenant, None);
        let bad = format!("{} tenant=a/b\n", line("a", "write", "isk_a").trim_end());
        assert!(parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("tenant="));
    }

    #[test]
    fn a_raw_key_in_the_file_is_refused() {
        let err = parse(b"ci read isk_a\n").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("never goes"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_role_is_refused_with_its_line() {
        let text = format!(
            "{}{}",
            line("a", "read", "isk_a"),
            line("b", "root", "isk_b")
        );
        let err = parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("line 2: unknown role"), "{err}");
    }

    #[test]
    fn a_name_used_twice_is_refused() {
        let text = format!(
            "{}{}",
            line("a", "read", "isk_a"),
            line("a", "admin", "isk_b")
        );
        assert!(parse(text.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("used twice"));
    }
}
