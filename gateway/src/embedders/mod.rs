//! The gateway's view of the embedders: one lazy channel per replica, each
//! call sent to the replica expected to answer it soonest (least work in
//! flight times smoothed latency; replicas within 2x of the best take turns).
//!
//! A replica a real call failed on is out for a cool-down, then gets one
//! trial call at a time until a call succeeds on it: `Info` answering is
//! not enough (a process can answer `Info` and fail every embedding). A
//! call that never reached a replica's handler goes to the next one, so a
//! dead replica costs at most one retry; a call whose replica died while
//! holding it is not retried: the request may be what killed it. The health
//! probes take a replica out while its `Info` does not answer or says its
//! model is stalled.
//!
//! Each replica's `Info` is kept from the last probe, so a call can go only
//! to replicas whose model fingerprint matches the collection's without
//! asking first; a call no replica matches is FAILED_PRECONDITION, naming
//! both fingerprints. Every call has a deadline.

mod batch;
mod discovery;
mod failure;
mod probe;
mod replica;

use std::{
    sync::{atomic::AtomicUsize, atomic::Ordering, Arc, RwLock},
    time::{Duration, Instant},
};

use imgsearch_common::trace::TraceContext;
use imgsearch_proto::{
    limits::EMBEDDER_COOL_DOWN,
    v1::{embedder_client::EmbedderClient, EmbedRequest, EmbedResponse},
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::{error::GatewayError, milvus::CollectionSpec};
use discovery::{dns_name, Target};
use failure::status_error;
use replica::{Attempt, Replica, Standing, Work};

/// The answers of an Embed stream, in the order the embedder sends them.
pub type EmbedAnswers =
    std::pin::Pin<Box<dyn Stream<Item = Result<EmbedResponse, GatewayError>> + Send>>;

/// Client side of `imgsearch.v1.Embedder`, over all replicas.
#[derive(Clone)]
pub struct Embedders {
    targets: Arc<Vec<Target>>,
    replicas: Arc<RwLock<Arc<Vec<Arc<Replica>>>>>,
    max_message_bytes: usize,
    connect_timeout: Duration,
    /// Deadline of a unary call, and of each answer on a stream.
    call_timeout: Duration,
    next: Arc<AtomicUsize>,
    epoch: Instant,
    /// For `https://` endpoints.
    tls: Option<ClientTlsConfig>,
}

impl Embedders {
    /// Lazy channels to `uris`; nothing is dialled until used. With `dns`,
    /// hostnames are resolved by [`Embedders::refresh`]; until its first
    /// run they are dialled as given.
    pub fn new(
        uris: &[String],
        dns: bool,
        tls: Option<ClientTlsConfig>,
        max_message_bytes: usize,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, GatewayError> {
        if uris.is_empty() {
            return Err(GatewayError::InvalidArgument(
                "no embedder endpoint configured".into(),
            ));
        }
        let targets = uris
            .iter()
            .map(|u| Target {
                uri: u.clone(),
                name: if dns { dns_name(u) } else { None },
            })
            .collect();
        let embedders = Self {
            targets: Arc::new(targets),
            replicas: Arc::default(),
            max_message_bytes,
            connect_timeout,
            call_timeout,
            next: Arc::default(),
            epoch: Instant::now(),
            tls,
        };
        let replicas = uris
            .iter()
            .enumerate()
            .map(|(target, uri)| embedders.replica(target, uri.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        *embedders.replicas.write().expect("replicas lock") = Arc::new(replicas);
        Ok(embedders)
    }

    fn replica(&self, target: usize, uri: String) -> Result<Arc<Replica>, GatewayError> {
        let invalid = |e: &dyn std::fmt::Display| {
            GatewayError::InvalidArgument(format!("embedder endpoint {uri:?}: {e}"))
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| invalid(&e))?
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if uri.starts_with("https://") {
            let mut tls = self.tls.clone().unwrap_or_default();
            // A resolved replica is dialled by address; its certificate
            // names the configured host.
            if let Some(name) = &self.targets[target].name {
                tls = tls.domain_name(name.host.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| invalid(&e))?;
        }
        let client = |channel| {
            EmbedderClient::new(channel)
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes)
        };
        Ok(Arc::new(Replica::new(
            uri,
            target,
            client(endpoint.connect_lazy()),
            client(endpoint.connect_lazy()),
        )))
    }

    /// The replicas now; the lock is never held across an await.
    fn snapshot(&self) -> Arc<Vec<Arc<Replica>>> {
        self.replicas.read().expect("replicas lock").clone()
    }

    /// How many replicas calls are spread over.
    pub fn replica_count(&self) -> usize {
        self.snapshot().len()
    }

    /// How many replicas a call would go to first (not out, not on trial).
    pub fn ready_count(&self) -> usize {
        let now = self.now_ms();
        self.snapshot()
            .iter()
            .filter(|r| r.standing(now) == Standing::Ready)
            .count()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The replicas in the order a call should try them: a suspect due its
    /// trial, then the ready ones cheapest first (those within 2x of the
    /// cheapest take turns), then the ones out (they may be back).
    fn order(&self, work: Work) -> Vec<Arc<Replica>> {
        let replicas = self.snapshot();
        let n = replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let mut order: Vec<_> = (0..n)
            .map(|i| {
                let r = replicas[(start + i) % n].clone();
                (r.standing(now), r.cost(work), r)
            })
            .collect();
        let cheapest = order
            .iter()
            .filter(|(standing, ..)| *standing != Standing::Out)
            .map(|(_, cost, _)| *cost)
            .min()
            .unwrap_or(1)
            .max(1);
        // Stable: equals keep the round-robin turn.
        order.sort_by_key(|(standing, cost, _)| {
            // An out replica may cost less than the cheapest ready one.
            let class = (cost / cheapest).checked_ilog2().unwrap_or(0);
            (*standing, class)
        });
        order.into_iter().map(|(.., r)| r).collect()
    }

    /// A real call failed on `replica` after `took`.
    fn failed(&self, replica: &Replica, took: Duration) {
        replica.failed(self.now_ms() + EMBEDDER_COOL_DOWN.as_millis() as u64, took);
    }

    /// A replica that said it is busy goes to the back of the order for a
    /// moment (the pushback it would have suggested), not down.
    fn mark_busy(&self, replica: &Replica) {
        replica.busy(self.now_ms() + imgsearch_proto::limits::RETRY_PUSHBACK_MS);
    }

    /// Whether `replica` may serve `spec`: `Ok(None)` when it may, the
    /// replica's fingerprint when it differs from the collection's.
    async fn mismatch(
        &self,
        replica: &Replica,
        spec: &CollectionSpec,
    ) -> Result<Option<String>, GatewayError> {
        let Some(recorded) = &spec.fingerprint else {
            return Ok(None);
        };
        let found = self.fingerprint_of(replica).await?;
        Ok((found != *recorded).then_some(found))
    }

    fn mismatch_error(spec: &CollectionSpec, found: String) -> GatewayError {
        GatewayError::ModelMismatch {
            collection: spec.name.clone(),
            recorded: spec.fingerprint.clone().unwrap_or_default(),
            found,
        }
    }

    /// Deadline of a unary call, and of each answer on a stream.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Opens an Embed stream on a replica whose model matches the
    /// collection's: `images` go out as they come, the answers come back
    /// (a failure of the stream as its [`GatewayError`]), with a way to
    /// report that replica down.
    pub async fn open_stream(
        &self,
        spec: &CollectionSpec,
        trace: &TraceContext,
        images: mpsc::Receiver<EmbedRequest>,
    ) -> Result<(EmbedAnswers, ReplicaHandle), GatewayError> {
        let (mut client, replica) = self.stream_client(spec).await?;
        let mut request = tonic::Request::new(ReceiverStream::new(images));
        trace.inject(&mut request);
        // An embedder that takes the connection but never answers the call
        // must not hold the Insert at its start for ever.
        let opened = tokio::time::timeout(self.call_timeout, client.embed(request)).await;
        match opened {
            Ok(Ok(answers)) => {
                replica.replica.succeeded(None);
                Ok((
                    Box::pin(answers.into_inner().map(|a| a.map_err(status_error))),
                    replica,
                ))
            }
            Ok(Err(s)) => {
                replica.mark_down();
                Err(status_error(s))
            }
            Err(_) => {
                replica.mark_down();
                Err(GatewayError::EmbedderUnavailable(format!(
                    "{} did not open the Embed stream within {} s (--embed-timeout-secs)",
                    replica.replica.uri,
                    self.call_timeout.as_secs()
                )))
            }
        }
    }

    /// A client for one streaming call on a replica whose model matches the
    /// collection's, and a way to report that replica down.
    async fn stream_client(
        &self,
        spec: &CollectionSpec,
    ) -> Result<(EmbedderClient<Channel>, ReplicaHandle), GatewayError> {
        let mut refused = None;
        let mut last = None;
        for replica in self.order(Work::Stream) {
            match self.mismatch(&replica, spec).await {
                Ok(None) => {
                    return Ok((
                        replica.client.clone(),
                        ReplicaHandle {
                            embedders: self.clone(),
                            _attempt: replica.begin(Work::Stream),
                            replica,
                        },
                    ))
                }
                Ok(Some(found)) => refused = Some(found),
                Err(e) => last = Some(e),
            }
        }
        Err(match (refused, last) {
            (Some(found), _) => Self::mismatch_error(spec, found),
            (None, Some(e)) => e,
            (None, None) => GatewayError::EmbedderUnavailable("no embedder".into()),
        })
    }
}

/// The replica a streaming call went to; the stream counts as its work
/// until this is dropped.
pub struct ReplicaHandle {
    embedders: Embedders,
    replica: Arc<Replica>,
    _attempt: Attempt,
}

impl ReplicaHandle {
    /// Reports the replica failed, so later calls skip it until one
    /// succeeds on it.
    pub fn mark_down(&self) {
        self.embedders.failed(&self.replica, Duration::ZERO);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn embedders(uris: &[&str], dns: bool) -> Embedders {
        let uris: Vec<String> = uris.iter().map(|u| u.to_string()).collect();
        Embedders::new(
            &uris,
            dns,
            None,
            1 << 20,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn calls_take_turns_over_equal_replicas_and_avoid_one_holding_calls() {
        let e = embedders(&["http://127.0.0.1:1", "http://127.0.0.1:2"], false);
        let firsts: Vec<String> = (0..4)
            .map(|_| e.order(Work::Call).remove(0).uri.clone())
            .collect();
        assert_ne!(firsts[0], firsts[1], "equal replicas take turns");
        let hung = e.snapshot()[0].clone();
        let _held = hung.begin(Work::Call);
        for _ in 0..4 {
            assert_ne!(e.order(Work::Call).remove(0).uri, hung.uri);
        }
        // Streams are weighed apart from calls.
        let streams: Vec<String> = (0..2)
            .map(|_| e.order(Work::Stream).remove(0).uri.clone())
            .collect();
        assert_ne!(streams[0], streams[1]);
    }

    #[tokio::test]
    async fn an_out_replica_cheaper_than_every_ready_one_is_still_ordered_last() {
        let e = embedders(&["http://127.0.0.1:1", "http://127.0.0.1:2"], false);
        let (out, busy) = (e.snapshot()[0].clone(), e.snapshot()[1].clone());
        e.failed(&out, Duration::ZERO);
        let _held: Vec<_> = (0..10).map(|_| busy.begin(Work::Call)).collect();
        assert!(out.cost(Work::Call) < busy.cost(Work::Call));
        assert_eq!(e.order(Work::Call)[1].uri, out.uri);
    }

    #[tokio::test]
    async fn a_failed_replica_is_tried_last_until_its_cool_down_ends() {
        let e = embedders(&["http://127.0.0.1:1", "http://127.0.0.1:2"], false);
        let failed = e.snapshot()[1].clone();
        e.failed(&failed, Duration::ZERO);
        for _ in 0..4 {
            let order = e.order(Work::Call);
            assert_eq!(order[1].uri, failed.uri, "tried last, not dropped");
        }
    }
}
