//! Files re-read while the server runs: certificates that cert-manager
//! rotates and API key files an operator edits take effect without a
//! restart.
//!
//! Contents are polled and compared rather than watched with inotify: a
//! Kubernetes Secret volume changes by swapping a symlink, which a watch on
//! the file itself never sees, and a few small reads every couple of seconds
//! cost nothing.

use std::{path::PathBuf, time::Duration};

use tracing::{info, warn};

/// How often watched files are read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// A watched file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Reads every path; the first failure names its file.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, ReadError> {
    paths
        .iter()
        .map(|p| {
            std::fs::read(p).map_err(|source| ReadError {
                path: p.clone(),
                source,
            })
        })
        .collect()
}

/// Re-reads `paths` every [`RELOAD_INTERVAL`] and calls `apply` with their
/// contents whenever they differ from what was last seen (`loaded` is what
/// the caller started with). When `apply` refuses new contents, the old
/// setting stays in force; the refusal is logged once per change.
pub fn watch<F, E>(
    what: &'static str,
    paths: Vec<PathBuf>,
    loaded: Vec<Vec<u8>>,
    apply: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(&[Vec<u8>]) -> Result<(), E> + Send + 'static,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut seen = loaded;
        loop {
            tokio::time::sleep(RELOAD_INTERVAL).await;
            // A rotation may be half done: an unreadable file is tried
            // again next time.
            let Ok(now) = read_all(&paths) else { continue };
            if now == seen {
                continue;
            }
            match apply(&now) {
                Ok(()) => info!(what, "reloaded"),
                Err(e) => warn!(what, error = %e, "not reloaded; the previous one stays in force"),
            }
            seen = now;
        }
    })
}
