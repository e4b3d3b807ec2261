//! FindDuplicates: groups of rows whose vectors lie within a distance of
//! one another, found by range-searching every row of the collection,
//! page by page in id order, and joining what each search finds
//! ([`groups`]). It holds one page of vectors and the unfinished groups,
//! whatever the collection's size, and sends each group as it finishes.

mod groups;

use std::time::Duration;

use imgsearch_proto::{
    limits::{
        DUPLICATE_PAGE_ROWS, MAX_DUPLICATE_GROUP, MAX_DUPLICATE_OPEN_ROWS, MAX_DUPLICATE_SENT_ROWS,
    },
    v1::{
        find_duplicates_response::Event, DuplicateGroup, DuplicateMember, DuplicateScan,
        FindDuplicatesRequest, FindDuplicatesResponse,
    },
};
use tracing::Instrument;

use self::groups::{Groups, Member, Overflow};
use crate::{
    answers::{self, AnswerSender, AnswerStream},
    error::GatewayError,
    filter::Filter,
    milvus::{freshness::Freshness, reads::SearchShape, MilvusStore},
    search::freshness,
};

/// Answers waiting for a slow reader, at most.
const ANSWER_WINDOW: usize = 16;

/// One scan, checked.
struct Scan {
    store: MilvusStore,
    collection: String,
    max_distance: f32,
    /// The filter and tenant scope, compiled.
    expression: Option<String>,
    freshness: Freshness,
}

/// Checks the request and starts the scan; a request it cannot serve fails
/// before any answer. `patience`: how long a caller that reads nothing is
/// waited for.
pub async fn start(
    store: MilvusStore,
    req: FindDuplicatesRequest,
    tenant: Option<&str>,
    patience: Duration,
) -> Result<AnswerStream<FindDuplicatesResponse>, GatewayError> {
    let d = req.max_distance;
    if !d.is_finite() || d <= 0.0 {
        return Err(GatewayError::InvalidArgument(format!(
            "max_distance {d} must be a finite squared L2 distance above 0 (there is no default: \
             see the README's near-duplicates section for how to choose one)"
        )));
    }
    let filter = Filter::parse(req.filter)?;
    let freshness = freshness(req.consistency, req.write_token)?;
    let spec = store.collection_spec(&req.collection).await?;
    let scan = Scan {
        expression: spec.expression(&filter, tenant)?,
        collection: spec.name.clone(),
        store,
        max_distance: d,
        freshness,
    };
    let (answers, stream) = answers::channel(ANSWER_WINDOW, patience);
    let span = tracing::info_span!("find_duplicates", collection = %scan.collection);
    tokio::spawn(scan.run(answers).instrument(span));
    Ok(stream)
}

/// What the scan has done, as progress reports it.
#[derive(Default)]
struct Tally {
    scanned: u64,
    groups: u64,
    grouped: u64,
    /// Neighbours found of a row whose group was already sent, whose own
    /// search had not found this one (the index is approximate): not
    /// linked.
    late: u64,
    /// The most rows unfinished groups held at once.
    most_open: usize,
}

impl Tally {
    fn progress(&self, done: bool) -> FindDuplicatesResponse {
        FindDuplicatesResponse {
            event: Some(Event::Progress(DuplicateScan {
                rows_scanned: self.scanned,
                groups: self.groups,
                rows_in_groups: self.grouped,
                done,
            })),
        }
    }
}

impl Scan {
    async fn run(self, mut answers: AnswerSender<FindDuplicatesResponse>) {
        let mut tally = Tally::default();
        let error = self.pages(&mut answers, &mut tally).await.err();
        if error.is_none() {
            answers.send(tally.progress(true)).await;
        }
        tracing::info!(
            rows_scanned = tally.scanned,
            groups = tally.groups,
            rows_in_groups = tally.grouped,
            late_neighbours = tally.late,
            most_open_rows = tally.most_open,
            error = error.as_ref().map(tracing::field::display),
            "duplicate scan ended"
        );
        answers.end(error, || {
            format!(
                "{} rows were scanned, {} groups sent",
                tally.scanned, tally.groups
            )
        });
    }

    /// Scans every page; stops early, without error, once the caller left.
    async fn pages(
        &self,
        answers: &mut AnswerSender<FindDuplicatesResponse>,
        tally: &mut Tally,
    ) -> Result<(), GatewayError> {
        let mut groups = Groups::new(
            MAX_DUPLICATE_GROUP,
            MAX_DUPLICATE_OPEN_ROWS,
            MAX_DUPLICATE_SENT_ROWS,
        );
        let mut after = None;
        loop {
            let page = self
                .store
                .rows_after(
                    &self.collection,
                    after,
                    DUPLICATE_PAGE_ROWS,
                    self.expression.clone(),
                    self.freshness,
                )
                .await?;
            let Some(&last) = page.ids.last() else {
                break;
            };
            self.link_page(
                &mut groups,
                &page.ids,
                &page.filepaths,
                &page.vectors,
                tally,
            )
            .await?;
            tally.scanned += page.ids.len() as u64;
            tally.most_open = tally.most_open.max(groups.open_rows());
            after = Some(last);
            if !self.send(answers, groups.finished(last), tally).await {
                return Ok(());
            }
            if !answers.send(tally.progress(false)).await {
                return Ok(());
            }
        }
        // Rows stored while the scan ran may have joined a group past its end.
        self.send(answers, groups.finished(i64::MAX), tally).await;
        Ok(())
    }

    /// Range-searches the page's rows and links each to its neighbours.
    async fn link_page(
        &self,
        groups: &mut Groups,
        ids: &[i64],
        filepaths: &[String],
        vectors: &[Vec<f32>],
        tally: &mut Tally,
    ) -> Result<(), GatewayError> {
        let shape = SearchShape {
            top_k: MAX_DUPLICATE_GROUP as u32,
            max_distance: Some(self.max_distance),
            filter: self.expression.clone(),
            ..Default::default()
        };
        let found = self
            .store
            .search(&self.collection, vectors, &shape, self.freshness)
            .await?;
        let first = ids.first().copied().unwrap_or(i64::MAX);
        for ((&id, filepath), hits) in ids.iter().zip(filepaths).zip(found) {
            if hits.len() >= MAX_DUPLICATE_GROUP {
                return Err(self.overflow(Overflow::Group(MAX_DUPLICATE_GROUP)));
            }
            for h in hits {
                if h.id == id || h.distance > self.max_distance {
                    continue;
                }
                // A row scanned before whose own search missed this one (the
                // index is approximate): linked now, unless its group is gone.
                if h.id < first && !groups.is_open(h.id) && groups.may_be_sent(h.id) {
                    tally.late += 1;
                    continue;
                }
                groups
                    .link((id, filepath), (h.id, &h.filepath), h.distance)
                    .map_err(|o| self.overflow(o))?;
            }
        }
        Ok(())
    }

    fn overflow(&self, o: Overflow) -> GatewayError {
        let d = self.max_distance;
        GatewayError::InvalidArgument(match o {
            Overflow::Group(n) => format!(
                "max_distance {d} links more than {n} rows into one group (MAX_DUPLICATE_GROUP); \
                 choose a smaller distance"
            ),
            Overflow::Open(n) => format!(
                "max_distance {d} leaves more than {n} rows in unfinished groups \
                 (MAX_DUPLICATE_OPEN_ROWS); choose a smaller distance or a filter"
            ),
        })
    }

    /// Sends finished groups; `false` once the caller is gone.
    async fn send(
        &self,
        answers: &mut AnswerSender<FindDuplicatesResponse>,
        finished: Vec<Vec<Member>>,
        tally: &mut Tally,
    ) -> bool {
        for members in finished {
            tally.groups += 1;
            tally.grouped += members.len() as u64;
            let group = DuplicateGroup {
                members: members
                    .into_iter()
                    .map(|m| DuplicateMember {
                        id: m.id,
                        filepath: m.filepath,
                        nearest_distance: m.nearest,
                    })
                    .collect(),
            };
            let event = Some(Event::Group(group));
            if !answers.send(FindDuplicatesResponse { event }).await {
                return false;
            }
        }
        true
    }
}
