//! The images a bench sends. A small set is read once and reused under
//! generated filepaths; a set larger than memory should hold is read from
//! disk as the inserts go, each image once before any repeats, so a long
//! ingest stores distinct images as a real one would.

use std::{path::PathBuf, sync::Arc};

use imgsearch_proto::Bytes;

use crate::{
    error::CliError,
    gateway::MAX_MESSAGE_BYTES,
    ingest::MESSAGE_OVERHEAD,
    sources::{self, Candidate, Reader},
};

/// Images held in memory at most; a larger set is read per insert.
const MAX_IN_MEMORY: usize = 512;

/// The largest image sent: what an ingest would send.
const MAX_IMAGE_BYTES: u64 = (MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD) as u64;

pub struct Images {
    all: Vec<Candidate>,
    /// The first readable ones, up to [`MAX_IN_MEMORY`]: what searches
    /// send, and every insert too when that is the whole set.
    held: Vec<(String, Bytes)>,
}

fn name_of(c: &Candidate) -> String {
    c.filepath.rsplit('/').next().unwrap_or("image").to_string()
}

impl Images {
    pub fn discover(paths: &[PathBuf]) -> Result<Self, CliError> {
        let (all, _) = sources::discover(paths)?;
        let mut reader = Reader::default();
        let held: Vec<_> = all
            .iter()
            .take(MAX_IN_MEMORY)
            .filter_map(|c| {
                let bytes = reader.read(&c.location, MAX_IMAGE_BYTES).ok()?;
                Some((name_of(c), Bytes::from(bytes)))
            })
            .collect();
        if held.is_empty() {
            return Err(CliError::Usage("no readable images to bench with".into()));
        }
        Ok(Images { all, held })
    }

    /// How many distinct images the inserts cycle through.
    pub fn distinct(&self) -> usize {
        if self.all.len() > MAX_IN_MEMORY {
            self.all.len()
        } else {
            self.held.len()
        }
    }

    /// A search's query image, `n`th of the held ones (cycled).
    pub fn query(&self, n: u64) -> &Bytes {
        &self.held[n as usize % self.held.len()].1
    }

    /// The `n`th image of the inserts (cycled): its name and bytes, or why
    /// it could not be read.
    pub async fn insert(self: &Arc<Self>, n: u64) -> Result<(String, Bytes), String> {
        if self.all.len() <= MAX_IN_MEMORY {
            return Ok(self.held[n as usize % self.held.len()].clone());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let c = &this.all[n as usize % this.all.len()];
            let bytes = Reader::default().read(&c.location, MAX_IMAGE_BYTES)?;
            Ok((name_of(c), Bytes::from(bytes)))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
