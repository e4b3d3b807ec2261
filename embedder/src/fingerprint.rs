//! What determines this embedder's vectors, as one string a collection can
//! record: the model, a digest of the weights file, and the preprocessing's
//! version and mode. Two embedders with equal fingerprints give the same vector for
//! the same image (up to precision), so the gateway refuses to mix vectors
//! whose fingerprints differ in one collection.

use std::{io::Read, path::Path};

use sha2::{Digest, Sha256};

use crate::preprocess::{Mode, PREPROCESS_VERSION};

/// Hex digits of the weights digest kept: 64 bits tell weights files apart.
const DIGEST_HEX: usize = 16;

/// `resnet50-no-fc/sha256:<16 hex>/preprocess:<n>` for a weights file, with
/// `-fast` after `<n>` in [`Mode::Fast`]. Exact keeps the form it had before
/// there were modes, so collections filled before still take its vectors.
pub fn fingerprint(model: &str, weights: &Path, mode: Mode) -> std::io::Result<String> {
    let mut file = std::fs::File::open(weights)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mode = match mode {
        Mode::Exact => "",
        Mode::Fast => "-fast",
    };
    Ok(format!(
        "{model}/sha256:{}/preprocess:{PREPROCESS_VERSION}{mode}",
        &hex[..DIGEST_HEX]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_byte_changes_the_fingerprint() {
        let dir = tempfile_dir("weights");
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"weights").unwrap();
        std::fs::write(&b, b"weightz").unwrap();
        let fa = fingerprint("m", &a, Mode::Exact).unwrap();
        assert_eq!(fa, fingerprint("m", &a, Mode::Exact).unwrap());
        assert_ne!(fa, fingerprint("m", &b, Mode::Exact).unwrap());
        assert!(fa.starts_with("m/sha256:"), "{fa}");
        assert!(fa.ends_with(&format!("/preprocess:{PREPROCESS_VERSION}")));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fast_preprocessing_changes_the_fingerprint() {
        let dir = tempfile_dir("mode");
        let a = dir.join("a");
        std::fs::write(&a, b"weights").unwrap();
        let exact = fingerprint("m", &a, Mode::Exact).unwrap();
        let fast = fingerprint("m", &a, Mode::Fast).unwrap();
        assert_eq!(fast, format!("{exact}-fast"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fp-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
