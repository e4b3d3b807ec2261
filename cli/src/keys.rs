//! `imgsearch key create`: a new API key, written where only its owner can
//! read it, and the line the gateway's keys file needs (the key's digest,
//! never the key).

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use imgsearch_proto::api_key;

use crate::error::CliError;

/// Writes a new key to `out` and returns its keys-file line, confining
/// the key to `tenant` when given.
pub fn create(
    name: &str,
    role: &str,
    tenant: Option<&str>,
    out: &Path,
) -> Result<String, CliError> {
    for (what, value) in [("key name", Some(name)), ("tenant", tenant)] {
        if let Some(v) = value.filter(|v| !api_key::valid_name(v)) {
            return Err(CliError::Usage(format!(
                "{v:?} is not a {what} ({})",
                api_key::NAME_RULE
            )));
        }
    }
    let mut random = [0u8; 32];
    getrandom::getrandom(&mut random)
        .map_err(|e| CliError::Usage(format!("no randomness for a key: {e}")))?;
    let key = api_key::new_key(&random);
    let refused =
        |e: std::io::Error| CliError::Usage(format!("cannot write {}: {e}", out.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(refused)?;
    writeln!(file, "{key}").map_err(refused)?;
    let line = format!("{name} {role} {}", api_key::digest(&key));
    Ok(match tenant {
        Some(t) => format!("{line} tenant={t}"),
        None => line,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_line_holds_the_digest_of_the_key_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ci.key");
        let line = create("ci", "read", None, &out).unwrap();
        let key = std::fs::read_to_string(&out).unwrap();
        assert_eq!(line, format!("ci read {}", api_key::digest(key.trim())));
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_existing_key_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ci.key");
        std::fs::write(&out, "keep me").unwrap();
        assert!(create("ci", "read", None, &out).is_err());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    }
}
