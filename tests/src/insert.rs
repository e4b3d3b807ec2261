//! Insert streams as tests drive them: items in, every answer collected.

use imgsearch_proto::v1::{
    image_search_client::ImageSearchClient, insert_response::Event, InsertAck, InsertRequest,
    InsertSummary, ItemFailure, StoredItem,
};
use tonic::{transport::Channel, Status};

/// Everything an Insert stream answered.
#[derive(Debug, Default)]
pub struct Answers {
    pub acks: Vec<InsertAck>,
    pub summary: Option<InsertSummary>,
    /// How the stream ended, when not OK.
    pub error: Option<Status>,
}

impl Answers {
    pub fn stored(&self) -> Vec<StoredItem> {
        self.acks.iter().flat_map(|a| a.stored.clone()).collect()
    }

    /// The id the item at `index` was stored under.
    pub fn id_of(&self, index: u64) -> i64 {
        self.stored()
            .iter()
            .find(|s| s.index == index)
            .unwrap_or_else(|| panic!("item {index} was not stored"))
            .id
    }

    /// Stored ids, sorted.
    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.stored().iter().map(|s| s.id).collect();
        ids.sort();
        ids
    }

    pub fn failures(&self) -> Vec<ItemFailure> {
        self.acks.iter().flat_map(|a| a.failures.clone()).collect()
    }

    pub fn skipped(&self) -> Vec<u64> {
        self.acks.iter().flat_map(|a| a.skipped.clone()).collect()
    }

    /// The summary; panics (with the error) when none came.
    pub fn summary(&self) -> &InsertSummary {
        self.summary
            .as_ref()
            .unwrap_or_else(|| panic!("no summary; the stream ended {:?}", self.error))
    }

    /// Every received item settled exactly once, as the summary counts them.
    pub fn assert_every_item_settled_once(&self) {
        let s = self.summary();
        let mut seen: Vec<u64> = self.stored().iter().map(|s| s.index).collect();
        seen.extend(self.failures().iter().map(|f| f.index));
        seen.extend(self.skipped());
        seen.sort();
        let expected: Vec<u64> = (0..s.received).collect();
        assert_eq!(seen, expected, "items settled: {s:?}");
        assert_eq!(self.stored().len() as u64, s.inserted);
        assert_eq!(self.failures().len() as u64, s.failed);
        assert_eq!(self.skipped().len() as u64, s.skipped);
    }
}

/// Reads a stream's answers to the end.
pub async fn collect(
    answers: Result<tonic::Response<tonic::Streaming<imgsearch_proto::v1::InsertResponse>>, Status>,
) -> Answers {
    let mut out = Answers::default();
    let mut stream = match answers {
        Ok(r) => r.into_inner(),
        Err(s) => {
            out.error = Some(s);
            return out;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(m)) => match m.event {
                Some(Event::Ack(a)) => out.acks.push(a),
                Some(Event::Summary(s)) => out.summary = Some(s),
                None => panic!("an empty InsertResponse"),
            },
            Ok(None) => return out,
            Err(s) => {
                out.error = Some(s);
                return out;
            }
        }
    }
}

/// One message per item; the first names the collection and carries
/// `skip_existing`.
pub fn requests(
    collection: &str,
    items: Vec<(String, Vec<u8>)>,
    skip_existing: bool,
) -> Vec<InsertRequest> {
    items
        .into_iter()
        .map(|(filepath, image)| InsertRequest {
            collection: collection.to_string(),
            filepath,
            image: image.into(),
            skip_existing,
            ..Default::default()
        })
        .collect()
}

/// Sends `items` on one stream and collects the answers.
pub async fn insert(
    client: &mut ImageSearchClient<Channel>,
    collection: &str,
    items: Vec<(String, Vec<u8>)>,
) -> Answers {
    let reqs = requests(collection, items, false);
    collect(client.insert(tokio_stream::iter(reqs)).await).await
}

/// Like [`insert`], skipping filepaths already stored.
pub async fn insert_skipping_existing(
    client: &mut ImageSearchClient<Channel>,
    collection: &str,
    items: Vec<(String, Vec<u8>)>,
) -> Answers {
    let reqs = requests(collection, items, true);
    collect(client.insert(tokio_stream::iter(reqs)).await).await
}

/// Creates (or re-creates) `name` through the gateway.
pub async fn create(client: &mut ImageSearchClient<Channel>, name: &str) {
    client
        .create_collection(imgsearch_proto::v1::CreateCollectionRequest {
            name: name.into(),
            drop_if_exists: Some(true),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("create {name}: {s:?}"));
}

/// [`distinct_pngs`] as items named `{prefix}{i}.png`.
pub fn named_pngs(prefix: &str, first: u64, n: u64) -> Vec<(String, Vec<u8>)> {
    distinct_pngs(first, n)
        .into_iter()
        .enumerate()
        .map(|(i, png)| (format!("{prefix}{i}.png"), png))
        .collect()
}

/// `n` distinct small PNGs (noise of seeds `first..first + n`).
pub fn distinct_pngs(first: u64, n: u64) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|seed| crate::hostile::png(&crate::hostile::noise(48, 40, seed)))
        .collect()
}
