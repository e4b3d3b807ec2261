//! `imgsearch duplicates`: the gateway's near-duplicate groups, as a list,
//! JSON, and optionally a picture with one group a row.

use std::io::Write;

use imgsearch_proto::v1::{find_duplicates_response::Event, Filter, FindDuplicatesRequest};
use serde::Serialize;

use crate::{busy::Patience, error::CliError, gateway::Client};

/// One row of a group.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: i64,
    pub filepath: String,
    /// Squared L2 distance to the nearest other member.
    pub nearest_distance: f32,
}

/// What the scan found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub collection: String,
    pub max_distance: f32,
    pub rows_scanned: u64,
    /// Oldest row first in each.
    pub groups: Vec<Vec<Member>>,
}

impl Report {
    pub fn rows_in_groups(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, g) in self.groups.iter().enumerate() {
            out += &format!("group {} ({} rows)\n", i + 1, g.len());
            for m in g {
                out += &format!(
                    "  {:>20}  {:>12.3}  {}\n",
                    m.id, m.nearest_distance, m.filepath
                );
            }
        }
        out += &format!(
            "{} groups, {} rows in them, of {} rows scanned in {} (max distance {})\n",
            self.groups.len(),
            self.rows_in_groups(),
            self.rows_scanned,
            self.collection,
            self.max_distance
        );
        out
    }
}

/// Runs the scan, telling progress on stderr when `progress`.
pub async fn run(
    client: &Client,
    collection: &str,
    max_distance: f32,
    filter: Option<Filter>,
    (patience, progress): (&Patience, bool),
) -> Result<Report, CliError> {
    let request = FindDuplicatesRequest {
        collection: collection.to_string(),
        max_distance,
        filter,
        ..Default::default()
    };
    // A busy gateway is waited for until the scan starts; a scan that
    // fails part-way is reported, not begun again.
    let mut answers = patience
        .clone()
        .retry(|| {
            let (mut client, request) = (client.clone(), request.clone());
            async move { Ok(client.find_duplicates(request).await?.into_inner()) }
        })
        .await?;
    let mut report = Report {
        collection: collection.to_string(),
        max_distance,
        rows_scanned: 0,
        groups: Vec::new(),
    };
    let mut done = false;
    while let Some(answer) = answers.message().await? {
        match answer.event {
            Some(Event::Group(g)) => report.groups.push(
                g.members
                    .into_iter()
                    .map(|m| Member {
                        id: m.id,
                        filepath: m.filepath,
                        nearest_distance: m.nearest_distance,
                    })
                    .collect(),
            ),
            Some(Event::Progress(p)) => {
                report.rows_scanned = p.rows_scanned;
                done = p.done;
                if progress {
                    let mut e = std::io::stderr();
                    let _ = write!(e, "\rscanned {} rows, {} groups", p.rows_scanned, p.groups);
                    let _ = e.flush();
                }
            }
            None => {}
        }
    }
    if progress {
        eprintln!();
    }
    if !done {
        return Err(CliError::Rpc(tonic::Status::unknown(
            "the gateway ended the scan without saying it was done",
        )));
    }
    Ok(report)
}
