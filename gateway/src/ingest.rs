//! Streaming ingest: images in, vectors out of the embedders, rows into
//! Milvus in batches of `batch_size`, a flush at the end.
//!
//! Three stages run at once: reading the caller's stream and forwarding
//! images to one embedder stream; gathering vectors into a batch; inserting a
//! full batch into Milvus. Every channel is bounded, so a slow Milvus stops
//! us reading vectors, which stops the embedder reading images, which stops
//! us reading the caller: backpressure end to end and memory bounded by
//! about `batch_size` rows plus the embedder's in-flight window.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{Stream, StreamExt};
use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    embed_response, EmbedRequest, ErrorKind, InsertRequest, InsertSummary, ItemError, ItemFailure,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, instrument, warn};

use crate::{
    embedders::{status_error, Embedders},
    error::GatewayError,
    milvus::MilvusStore,
    schema::FILEPATH_MAX_LENGTH,
};

/// Images forwarded to the embedder and not yet answered, at most.
const EMBED_WINDOW: usize = 64;

/// Largest batch a caller may ask for: 4096 rows of 2048 floats are 32 MiB,
/// half of Milvus's 64 MiB message limit.
pub const MAX_BATCH_SIZE: u32 = 4096;

/// An Insert that stopped early: what was committed, and why it stopped.
#[derive(Debug)]
pub struct Interrupted {
    pub error: GatewayError,
    pub summary: InsertSummary,
}

fn failure(
    index: u64,
    filepath: String,
    kind: ErrorKind,
    message: impl Into<String>,
) -> ItemFailure {
    ItemFailure {
        index,
        filepath,
        error: Some(ItemError {
            kind: kind as i32,
            message: message.into(),
        }),
    }
}

/// Runs one Insert stream to the end.
#[instrument(skip_all, fields(collection))]
pub async fn insert_stream<S>(
    store: &MilvusStore,
    embedders: &Embedders,
    batch_size: usize,
    trace: &TraceContext,
    mut requests: S,
) -> Result<InsertSummary, Interrupted>
where
    S: Stream<Item = Result<InsertRequest, tonic::Status>> + Send + Unpin + 'static,
{
    let mut summary = InsertSummary::default();
    let fail_early = |error| Interrupted {
        error,
        summary: InsertSummary::default(),
    };
    let first = match requests.next().await {
        None => {
            return Err(fail_early(GatewayError::InvalidArgument(
                "empty Insert stream".into(),
            )))
        }
        Some(Err(s)) => {
            return Err(fail_early(GatewayError::InvalidArgument(
                s.message().to_string(),
            )))
        }
        Some(Ok(first)) => first,
    };
    let collection = first.collection.clone();
    tracing::Span::current().record("collection", collection.as_str());
    if collection.is_empty() {
        return Err(fail_early(GatewayError::InvalidArgument(
            "the first Insert message must name the collection".into(),
        )));
    }
    let batch_size = match first.batch_size {
        0 => batch_size,
        n if n <= MAX_BATCH_SIZE => n as usize,
        n => {
            return Err(fail_early(GatewayError::InvalidArgument(format!(
                "batch_size {n} is over {MAX_BATCH_SIZE}"
            ))))
        }
    };
    let dimension = store.dimension(&collection).await.map_err(fail_early)?;

    // Stage 1: the caller's stream to the embedder stream.
    let pending: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let (embed_tx, embed_rx) = mpsc::channel::<EmbedRequest>(EMBED_WINDOW);
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<ItemFailure>();
    let reader = {
        let (pending, collection) = (pending.clone(), collection.clone());
        tokio::spawn(async move {
            let mut index = 0u64;
            let mut item = Some(Ok(first));
            while let Some(next) = item.take() {
                let req = match next {
                    Ok(r) => r,
                    Err(status) => return (index, Some(status)),
                };
                let i = index;
                index += 1;
                if !req.collection.is_empty() && req.collection != collection {
                    let msg = format!(
                        "message names collection {:?}, the stream is for {collection:?}",
                        req.collection
                    );
                    let _ = fail_tx.send(failure(i, req.filepath, ErrorKind::InvalidArgument, msg));
                } else if req.filepath.is_empty()
                    || req.filepath.chars().count() > FILEPATH_MAX_LENGTH as usize
                {
                    let msg = format!("filepath must have 1 to {FILEPATH_MAX_LENGTH} characters");
                    let _ = fail_tx.send(failure(i, req.filepath, ErrorKind::InvalidArgument, msg));
                } else {
                    pending
                        .lock()
                        .expect("pending lock")
                        .insert(i, req.filepath);
                    if embed_tx
                        .send(EmbedRequest {
                            id: i.to_string(),
                            image: req.image,
                        })
                        .await
                        .is_err()
                    {
                        // The embedder stream is gone; the main loop reports it.
                        pending.lock().expect("pending lock").remove(&i);
                        return (index, None);
                    }
                }
                item = requests.next().await;
            }
            (index, None)
        })
    };

    // Stage 2 and 3: vectors into batches, batches into Milvus.
    let started = Instant::now();
    let mut embed_request = tonic::Request::new(ReceiverStream::new(embed_rx));
    trace.inject(&mut embed_request);
    let (mut client, replica) = embedders.client();
    let mut responses = match client.embed(embed_request).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            reader.abort();
            replica.mark_down();
            return Err(fail_early(status_error(s)));
        }
    };
    let mut batch: (Vec<u64>, Vec<String>, Vec<Vec<f32>>) = Default::default();
    let mut stop: Option<GatewayError> = None;
    loop {
        let next = responses.message().await;
        match next {
            Ok(Some(r)) => {
                let i: u64 = r.id.parse().unwrap_or(u64::MAX);
                let filepath = pending
                    .lock()
                    .expect("pending lock")
                    .remove(&i)
                    .unwrap_or_default();
                match r.result {
                    Some(embed_response::Result::Vector(v))
                        if v.values.len() == dimension as usize =>
                    {
                        batch.0.push(i);
                        batch.1.push(filepath);
                        batch.2.push(v.values);
                    }
                    Some(embed_response::Result::Vector(v)) => summary.failures.push(failure(
                        i,
                        filepath,
                        ErrorKind::InvalidArgument,
                        format!(
                            "embedder returned {} values; the collection holds {dimension}",
                            v.values.len()
                        ),
                    )),
                    Some(embed_response::Result::Error(e)) => summary.failures.push(ItemFailure {
                        index: i,
                        filepath,
                        error: Some(e),
                    }),
                    None => summary.failures.push(failure(
                        i,
                        filepath,
                        ErrorKind::Internal,
                        "empty embedder answer",
                    )),
                }
            }
            Ok(None) => break,
            Err(status) => {
                warn!(%status, "embedder stream failed");
                replica.mark_down();
                stop = Some(status_error(status));
                break;
            }
        }
        if batch.0.len() >= batch_size {
            if let Err(e) = flush_batch(store, &collection, &mut batch, &mut summary).await {
                stop = Some(e);
                break;
            }
        }
    }
    drop(responses);
    // On a stop the reader may wait on an idle caller forever: abort it. It
    // has no await between reading an item and recording it (in `pending` or
    // as a failure), so every item read is accounted for below.
    let (received, stream_error) = match stop {
        Some(_) => {
            reader.abort();
            (0, None)
        }
        None => reader.await.unwrap_or((0, None)),
    };
    // Rows already embedded are good: commit them even when stopping.
    if let Err(e) = flush_batch(store, &collection, &mut batch, &mut summary).await {
        stop.get_or_insert(e);
    }
    let t = Instant::now();
    if summary.inserted > 0 {
        if let Err(e) = store.flush(&collection).await {
            stop.get_or_insert(e);
        }
    }
    summary.insert_seconds += t.elapsed().as_secs_f64();
    summary.embed_seconds = (started.elapsed().as_secs_f64() - summary.insert_seconds).max(0.0);
    while let Ok(f) = fail_rx.try_recv() {
        summary.failures.push(f);
    }
    // Images sent to the embedder and never answered.
    let kind = if stop.is_some() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    };
    for (i, filepath) in pending.lock().expect("pending lock").drain() {
        summary.failures.push(failure(
            i,
            filepath,
            kind,
            "not embedded: the embedder stream ended",
        ));
    }
    summary.failures.sort_by_key(|f| f.index);
    summary.received = received.max(summary.inserted + summary.failures.len() as u64);
    if let Some(status) = stream_error {
        stop.get_or_insert(GatewayError::InvalidArgument(format!(
            "Insert stream failed: {}",
            status.message()
        )));
    }
    info!(
        received = summary.received,
        inserted = summary.inserted,
        failed = summary.failures.len(),
        "insert done"
    );
    match stop {
        None => Ok(summary),
        Some(error) => Err(Interrupted { error, summary }),
    }
}

/// Inserts the gathered rows; on failure they become per-item failures.
async fn flush_batch(
    store: &MilvusStore,
    collection: &str,
    batch: &mut (Vec<u64>, Vec<String>, Vec<Vec<f32>>),
    summary: &mut InsertSummary,
) -> Result<(), GatewayError> {
    if batch.0.is_empty() {
        return Ok(());
    }
    let (indices, paths, vectors) = std::mem::take(batch);
    let t = Instant::now();
    let result = store.insert(collection, paths.clone(), vectors).await;
    summary.insert_seconds += t.elapsed().as_secs_f64();
    match result {
        Ok(ids) => {
            summary.inserted += ids.len() as u64;
            summary.ids.extend(ids);
            Ok(())
        }
        Err(e) => {
            for (i, p) in indices.into_iter().zip(paths) {
                summary.failures.push(failure(
                    i,
                    p,
                    ErrorKind::Unavailable,
                    format!("not inserted: {e}"),
                ));
            }
            Err(e)
        }
    }
}
