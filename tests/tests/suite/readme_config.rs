//! The README's configuration tables cover every flag and environment
//! variable the three binaries accept, as their own `--help` lists them.

use std::process::Command;

use imgsearch_tests::server_process::workspace_binary;

/// Long flags and env vars from a clap `--help` text.
fn options(help: &str) -> (Vec<String>, Vec<String>) {
    let mut flags = Vec::new();
    let mut envs = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            for word in t.split([' ', ',', '<', '[']) {
                if let Some(name) = word.strip_prefix("--") {
                    if !name.is_empty() && !matches!(name, "help" | "version") {
                        flags.push(format!("--{name}"));
                    }
                }
            }
        }
        let mut rest = line;
        while let Some(i) = rest.find("[env: ") {
            let after = &rest[i + 6..];
            // `NAME=value`, or `NAME` alone where clap hides a secret's value.
            let end = after
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(after.len());
            envs.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    (flags, envs)
}

#[test]
fn every_flag_and_env_var_is_documented() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let commands: [(&str, &[&str]); 12] = [
        ("imgsearch-embedder", &[]),
        ("imgsearch-gateway", &[]),
        ("imgsearch", &[]),
        ("imgsearch", &["ingest"]),
        ("imgsearch", &["search"]),
        ("imgsearch", &["collection", "create"]),
        ("imgsearch", &["collection", "describe"]),
        ("imgsearch", &["collection", "list"]),
        ("imgsearch", &["collection", "drop"]),
        ("imgsearch", &["health"]),
        ("imgsearch", &["key", "create"]),
        ("imgsearch", &["bench"]),
    ];
    let mut missing = Vec::new();
    let mut seen = 0;
    for (bin, sub) in commands {
        let out = Command::new(workspace_binary(bin))
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} {sub:?} --help");
        let (flags, envs) = options(&String::from_utf8_lossy(&out.stdout));
        seen += flags.len();
        for f in flags {
            if !readme.contains(&format!("`{f}`")) {
                missing.push(format!("{bin} {sub:?}: {f}"));
            }
        }
        for e in envs {
            if !readme.contains(&format!("`{e}`")) && !readme.contains(&format!("{e}`")) {
                missing.push(format!("{bin} {sub:?}: env {e}"));
            }
        }
    }
    assert!(
        seen > 30,
        "found only {seen} flags: is --help parsed right?"
    );
    assert!(
        missing.is_empty(),
        "not in the README's tables: {missing:#?}"
    );
}
