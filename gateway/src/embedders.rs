//! The gateway's view of the embedders: one lazy channel per replica, picked
//! round-robin among those not marked down. A call that finds its replica
//! unreachable marks it down for a cool-down and, if the call never reached
//! that replica's handler, goes to the next one, so a dead replica costs at
//! most one retry, not a share of every later call. A call whose replica died
//! while holding it is not retried: the request may be what killed it, and
//! retrying would take the next replica down too. The health watcher marks
//! replicas up again.
//!
//! Each replica's `Info` is kept from the last health check, so a call can
//! go only to replicas whose model fingerprint matches the collection's
//! without asking first; a call no replica matches is FAILED_PRECONDITION,
//! naming both fingerprints. Every call has a deadline.
//!
//! With DNS discovery on, each configured hostname stands for every address
//! it resolves to (a Kubernetes headless Service names all ready pods), and
//! [`Embedders::refresh`] re-resolves it: one HTTP/2 connection per pod, so
//! streams spread over pods instead of all riding the one connection a
//! single name would get.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use imgsearch_common::trace::TraceContext;
use imgsearch_proto::v1::{
    embedder_client::EmbedderClient, EmbedBatchRequest, EmbedBatchResponse, EmbedRequest,
    EmbedResponse, InfoRequest, InfoResponse,
};
use imgsearch_proto::{
    limits::{DNS_LOOKUP_TIMEOUT, EMBEDDER_PROBE_TIMEOUT},
    Bytes,
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{
    codegen::http::Uri,
    transport::{Channel, ClientTlsConfig, Endpoint},
};
use tracing::{info, warn};

use crate::{error::GatewayError, milvus::CollectionSpec};

/// The answers of an Embed stream, in the order the embedder sends them.
pub type EmbedAnswers =
    std::pin::Pin<Box<dyn Stream<Item = Result<EmbedResponse, GatewayError>> + Send>>;

/// How long a replica that failed a call is skipped.
const COOL_DOWN: Duration = Duration::from_secs(5);

struct Replica {
    uri: String,
    /// Index of the configured endpoint it came from.
    target: usize,
    /// For Embed streams (bulk).
    client: EmbedderClient<Channel>,
    /// For EmbedBatch (searches) and Info, on a connection of its own: bulk
    /// images waiting in the streams' HTTP/2 windows would otherwise hold
    /// the shared connection's window, and a search's bytes would queue
    /// behind them on the wire.
    unary: EmbedderClient<Channel>,
    /// Milliseconds since `epoch` until which the replica is skipped.
    down_until_ms: AtomicU64,
    /// Its last `Info` answer.
    info: RwLock<Option<InfoResponse>>,
}

/// A configured endpoint; `name` is set when it is a hostname to resolve.
struct Target {
    uri: String,
    name: Option<DnsName>,
}

/// The parts of `http://host:port` that resolution needs.
#[derive(Debug, PartialEq)]
struct DnsName {
    scheme: String,
    host: String,
    port: u16,
}

/// `Some` for a URI whose host is a name (not an IP literal).
fn dns_name(uri: &str) -> Option<DnsName> {
    let parsed: Uri = uri.parse().ok()?;
    let host = parsed.host()?;
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return None;
    }
    let scheme = parsed.scheme_str().unwrap_or("http").to_string();
    let port = parsed
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(DnsName {
        scheme,
        host: host.to_string(),
        port,
    })
}

/// What one configured endpoint resolved to this time.
type Resolution = Result<Vec<SocketAddr>, String>;

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

/// Whether a failed call means the replica itself is unreachable.
fn unreachable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

/// Whether a failed call never reached the embedder's handler, so trying it
/// on another replica cannot carry a request that kills replicas on to the
/// next one and the next. Two cases: the replica itself answered UNAVAILABLE
/// (loading, draining, its model failed: a status it sent has no local
/// cause), or no connection could be made. A call cut off midway, by a
/// process that died holding it, is not retried.
fn never_reached_handler(s: &tonic::Status) -> bool {
    use std::error::Error;
    if s.code() == tonic::Code::Unavailable && s.source().is_none() {
        return true;
    }
    let mut cause: Option<&(dyn Error + 'static)> = s.source();
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        // hyper-util's and tonic's errors for a connection never made.
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("dns error") {
            return true;
        }
        cause = e.source();
    }
    false
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
        Ok(Arc::new(Replica {
            uri,
            target,
            client: client(endpoint.connect_lazy()),
            unary: client(endpoint.connect_lazy()),
            down_until_ms: AtomicU64::new(0),
            info: RwLock::new(None),
        }))
    }

    /// The replicas now; the lock is never held across an await.
    fn snapshot(&self) -> Arc<Vec<Arc<Replica>>> {
        self.replicas.read().expect("replicas lock").clone()
    }

    /// How many replicas calls are spread over.
    pub fn replica_count(&self) -> usize {
        self.snapshot().len()
    }

    /// Re-resolves the hostnames (DNS discovery); a no-op without it.
    pub async fn refresh(&self) {
        if self.targets.iter().all(|t| t.name.is_none()) {
            return;
        }
        let lookups = self.targets.iter().map(|t| async move {
            match &t.name {
                // Not read: `apply` keeps a static target as configured.
                None => Ok(Vec::new()),
                Some(n) => {
                    let lookup = tokio::net::lookup_host((n.host.as_str(), n.port));
                    match tokio::time::timeout(DNS_LOOKUP_TIMEOUT, lookup).await {
                        Ok(found) => found.map(|a| a.collect()).map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "no answer within {} s",
                            DNS_LOOKUP_TIMEOUT.as_secs()
                        )),
                    }
                }
            }
        });
        let resolved = futures::future::join_all(lookups).await;
        self.apply(resolved);
    }

    /// Rebuilds the replica list from one resolution per target. A replica
    /// whose address stays keeps its channel and its down mark; a target
    /// that failed to resolve keeps the replicas it had; a name that
    /// resolved to nothing is dialled as given.
    fn apply(&self, resolved: Vec<Resolution>) {
        let current = self.snapshot();
        let mut uris: Vec<(usize, String)> = Vec::new();
        for (i, (t, r)) in self.targets.iter().zip(resolved).enumerate() {
            let Some(name) = &t.name else {
                uris.push((i, t.uri.clone()));
                continue;
            };
            match r {
                Ok(addrs) if !addrs.is_empty() => {
                    let mut found: Vec<String> = addrs
                        .iter()
                        .map(|a| format!("{}://{a}", name.scheme))
                        .collect();
                    found.sort();
                    found.dedup();
                    uris.extend(found.into_iter().map(|u| (i, u)));
                }
                Ok(_) => uris.push((i, t.uri.clone())),
                Err(e) => {
                    warn!(embedder = %t.uri, error = %e, "cannot resolve; keeping its replicas");
                    let kept: Vec<_> = current.iter().filter(|r| r.target == i).collect();
                    if kept.is_empty() {
                        uris.push((i, t.uri.clone()));
                    }
                    uris.extend(kept.into_iter().map(|r| (i, r.uri.clone())));
                }
            }
        }
        let same = uris.len() == current.len()
            && uris
                .iter()
                .zip(current.iter())
                .all(|((_, u), r)| *u == r.uri);
        if same {
            return;
        }
        let next: Vec<Arc<Replica>> = uris
            .into_iter()
            .filter_map(|(i, uri)| match current.iter().find(|r| r.uri == uri) {
                Some(r) => Some(r.clone()),
                None => self
                    .replica(i, uri)
                    .map_err(|e| warn!(error = %e, "skipping an embedder address"))
                    .ok(),
            })
            .collect();
        info!(replicas = ?next.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(), "embedder replicas");
        *self.replicas.write().expect("replicas lock") = Arc::new(next);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The replicas in the order a call should try them: from the next in
    /// turn, those not marked down first (the others may be back).
    fn order(&self) -> Vec<Arc<Replica>> {
        let replicas = self.snapshot();
        let n = replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let (mut up, down): (Vec<_>, Vec<_>) = (0..n)
            .map(|i| replicas[(start + i) % n].clone())
            .partition(|r| r.down_until_ms.load(Ordering::Relaxed) <= now);
        up.extend(down);
        up
    }

    /// The next replica in turn that is not marked down (or, when all are,
    /// the next one anyway: it may be back).
    #[cfg(test)]
    fn pick(&self) -> Arc<Replica> {
        self.order().remove(0)
    }

    /// A replica's model fingerprint: from its last `Info`, or asked now.
    async fn fingerprint_of(&self, replica: &Replica) -> Result<String, GatewayError> {
        if let Some(info) = replica.info.read().expect("info lock").as_ref() {
            return Ok(info.fingerprint.clone());
        }
        Ok(self.ask_info(replica).await?.fingerprint)
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

    fn mark(&self, replica: &Replica, up: bool) {
        let until = if up {
            0
        } else {
            self.now_ms() + COOL_DOWN.as_millis() as u64
        };
        replica.down_until_ms.store(until, Ordering::Relaxed);
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
            Ok(Ok(answers)) => Ok((
                Box::pin(answers.into_inner().map(|a| a.map_err(status_error))),
                replica,
            )),
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
        for replica in self.order() {
            match self.mismatch(&replica, spec).await {
                Ok(None) => {
                    return Ok((
                        replica.client.clone(),
                        ReplicaHandle {
                            embedders: self.clone(),
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

    /// Embeds `images` with as few `EmbedBatch` calls as the message limit
    /// allows (a stream's batch may hold more bytes than one message), in
    /// order, each call tagged with `trace`.
    pub async fn embed_images(
        &self,
        spec: &CollectionSpec,
        trace: &TraceContext,
        images: Vec<Bytes>,
    ) -> Result<Vec<EmbedResponse>, GatewayError> {
        // Room for the framing of each image in the request.
        let room = self.max_message_bytes.saturating_sub(64 << 10).max(1);
        let mut results = Vec::with_capacity(images.len());
        let mut chunk: Vec<Bytes> = Vec::new();
        let mut bytes = 0;
        let mut images = images.into_iter().peekable();
        while let Some(image) = images.next() {
            bytes += image.len() + 16;
            chunk.push(image);
            let full = images
                .peek()
                .is_none_or(|next| bytes + next.len() + 16 > room);
            if full {
                let mut request = tonic::Request::new(EmbedBatchRequest {
                    images: std::mem::take(&mut chunk),
                });
                trace.inject(&mut request);
                results.extend(self.embed_batch(spec, request).await?.results);
                bytes = 0;
            }
        }
        Ok(results)
    }

    /// `EmbedBatch` on a reachable replica whose model matches the
    /// collection's: an unreachable one is marked down, and the call goes to
    /// the next when it never reached the first's handler (see
    /// [`never_reached_handler`]). A replica that answers RESOURCE_EXHAUSTED
    /// (its queue had no place within the wait the call allowed) is marked
    /// busy for a moment and the call goes to the next; when every replica
    /// is busy the call waits a jittered, growing backoff and tries again,
    /// until `--embed-timeout-secs` has passed since it began.
    pub async fn embed_batch(
        &self,
        spec: &CollectionSpec,
        request: tonic::Request<EmbedBatchRequest>,
    ) -> Result<EmbedBatchResponse, GatewayError> {
        let deadline = Instant::now() + self.call_timeout;
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let mut round = 0u32;
        loop {
            let busy = match self
                .embed_batch_round(spec, &metadata, &body, deadline)
                .await
            {
                Round::Answered(result) => return result,
                Round::Busy(busy) => busy,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let pause = backoff(round);
            if pause >= left {
                return Err(GatewayError::Overloaded(format!(
                    "every embedder stayed busy for {} s (--embed-timeout-secs): {busy}",
                    self.call_timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            round += 1;
        }
    }

    /// One try of every replica in turn.
    async fn embed_batch_round(
        &self,
        spec: &CollectionSpec,
        metadata: &tonic::metadata::MetadataMap,
        body: &EmbedBatchRequest,
        deadline: Instant,
    ) -> Round {
        let mut last = None;
        let mut refused = None;
        let mut busy = None;
        for replica in self.order() {
            match self.mismatch(&replica, spec).await {
                Ok(None) => {}
                Ok(Some(found)) => {
                    refused = Some(found);
                    continue;
                }
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut req = tonic::Request::new(body.clone());
            *req.metadata_mut() = metadata.clone();
            // The embedder learns the deadline (grpc-timeout) and waits for
            // a queue place only within it; the local timeout, a second
            // later, speaks only for an embedder that does not answer.
            req.set_timeout(left);
            let mut client = replica.unary.clone();
            let call = tokio::time::timeout(left + Duration::from_secs(1), client.embed_batch(req));
            let answer = match call.await {
                Ok(answer) => answer,
                Err(_) => Err(tonic::Status::deadline_exceeded("no answer")),
            };
            let silent = |s: &tonic::Status| {
                matches!(
                    s.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) && Instant::now() >= deadline
            };
            match answer {
                Ok(r) => return Round::Answered(Ok(r.into_inner())),
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    self.mark_busy(&replica);
                    busy = Some(s.message().to_string());
                }
                Err(s) if silent(&s) => {
                    warn!(embedder = %replica.uri, "embedder did not answer in time; not retried elsewhere");
                    self.mark(&replica, false);
                    return Round::Answered(Err(GatewayError::EmbedderUnavailable(format!(
                        "{} did not answer within {} s (--embed-timeout-secs)",
                        replica.uri,
                        self.call_timeout.as_secs()
                    ))));
                }
                Err(s) if never_reached_handler(&s) => {
                    warn!(embedder = %replica.uri, status = %s, "embedder unreachable; trying another");
                    self.mark(&replica, false);
                    last = Some(status_error(s));
                }
                Err(s) if unreachable(&s) => {
                    warn!(embedder = %replica.uri, status = %s,
                        "embedder failed while holding the call; not retried elsewhere");
                    self.mark(&replica, false);
                    return Round::Answered(Err(status_error(s)));
                }
                Err(s) => return Round::Answered(Err(status_error(s))),
            }
        }
        Round::Answered(Err(match (busy, refused, last) {
            (Some(busy), _, _) => return Round::Busy(busy),
            (None, Some(found), _) => Self::mismatch_error(spec, found),
            (None, None, Some(e)) => e,
            (None, None, None) => GatewayError::EmbedderUnavailable("no embedder".into()),
        }))
    }

    /// A replica that said it is busy goes to the back of the order for a
    /// moment (the pushback it would have suggested), not down.
    fn mark_busy(&self, replica: &Replica) {
        let until = self.now_ms() + imgsearch_proto::limits::RETRY_PUSHBACK_MS;
        replica.down_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// `Info` from one replica, kept for later calls; marks it up or down.
    async fn ask_info(&self, r: &Replica) -> Result<InfoResponse, GatewayError> {
        let call =
            tokio::time::timeout(EMBEDDER_PROBE_TIMEOUT, r.unary.clone().info(InfoRequest {}))
                .await;
        match call {
            Ok(Ok(info)) => {
                let info = info.into_inner();
                *r.info.write().expect("info lock") = Some(info.clone());
                if info.stalled_for_ms > 0 {
                    // It answers, but its model finishes nothing: down,
                    // until it says it finishes batches again.
                    self.mark(r, false);
                    return Err(GatewayError::EmbedderUnavailable(format!(
                        "{}: its model finished no batch for {} s while images waited",
                        r.uri,
                        info.stalled_for_ms / 1000
                    )));
                }
                self.mark(r, true);
                Ok(info)
            }
            Ok(Err(s)) => {
                self.mark(r, false);
                Err(status_error(s))
            }
            Err(_) => {
                self.mark(r, false);
                Err(GatewayError::EmbedderUnavailable(format!(
                    "{}: Info timed out",
                    r.uri
                )))
            }
        }
    }

    /// Asks every replica for `Info` at once, marking each up or down; the
    /// first answer in replica order, or why none came.
    pub async fn info(&self) -> Result<InfoResponse, GatewayError> {
        let mut answer = None;
        let mut error = None;
        let replicas = self.snapshot();
        let answers = futures::future::join_all(replicas.iter().map(|r| self.ask_info(r))).await;
        for result in answers {
            match result {
                Ok(info) => {
                    answer.get_or_insert(info);
                }
                Err(e) => error = Some(e),
            }
        }
        answer.ok_or_else(|| {
            error.unwrap_or_else(|| GatewayError::EmbedderUnavailable("no embedder".into()))
        })
    }
}

/// How one round of [`Embedders::embed_batch`] ended.
enum Round {
    Answered(Result<EmbedBatchResponse, GatewayError>),
    /// Every replica that could serve it was busy; the last one's words.
    Busy(String),
}

/// The pause before round `round + 1`: 50 ms doubling to 1 s, jittered.
fn backoff(round: u32) -> Duration {
    imgsearch_common::backoff::jittered(Duration::from_millis(50), round, Duration::from_secs(1))
}

/// The replica a streaming call went to.
pub struct ReplicaHandle {
    embedders: Embedders,
    replica: Arc<Replica>,
}

impl ReplicaHandle {
    /// Reports the replica unreachable, so later calls skip it for a while.
    pub fn mark_down(&self) {
        self.embedders.mark(&self.replica, false);
    }
}

/// A failed embedder call as a gateway error.
fn status_error(s: tonic::Status) -> GatewayError {
    match s.code() {
        tonic::Code::ResourceExhausted => GatewayError::Overloaded(s.message().to_string()),
        tonic::Code::InvalidArgument => GatewayError::InvalidArgument(s.message().to_string()),
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Cancelled
        | tonic::Code::Unknown => GatewayError::EmbedderUnavailable(s.message().to_string()),
        _ => GatewayError::Embedder(format!("{:?}: {}", s.code(), s.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedders(uris: &[&str], dns: bool) -> Embedders {
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

    fn uris(e: &Embedders) -> Vec<String> {
        e.snapshot().iter().map(|r| r.uri.clone()).collect()
    }

    fn addrs(list: &[&str]) -> Resolution {
        Ok(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn only_calls_that_never_reached_a_handler_are_retried() {
        use std::io::{Error, ErrorKind};
        let local = |kind: ErrorKind| tonic::Status::from_error(Box::new(Error::from(kind)));
        assert!(never_reached_handler(&tonic::Status::unavailable(
            "draining"
        )));
        assert!(never_reached_handler(&local(ErrorKind::ConnectionRefused)));
        assert!(!never_reached_handler(&local(ErrorKind::ConnectionReset)));
        assert!(!never_reached_handler(&tonic::Status::unknown(
            "h2 protocol error: connection reset"
        )));
        assert!(!never_reached_handler(&tonic::Status::internal("bug")));
    }

    #[test]
    fn backoff_grows_to_a_second_with_jitter() {
        assert!((25..=50).contains(&backoff(0).as_millis()));
        assert!((500..=1000).contains(&backoff(9).as_millis()));
    }

    #[test]
    fn only_hostnames_are_resolved() {
        assert_eq!(
            dns_name("http://embedder.imgsearch.svc:50052"),
            Some(DnsName {
                scheme: "http".into(),
                host: "embedder.imgsearch.svc".into(),
                port: 50052
            })
        );
        assert_eq!(dns_name("https://embedder").unwrap().port, 443);
        assert_eq!(dns_name("http://10.0.0.7:50052"), None);
        assert_eq!(dns_name("http://[::1]:50052"), None);
    }

    #[tokio::test]
    async fn a_name_stands_for_every_address_it_resolves_to() {
        let e = embedders(&["http://embedder:50052", "http://10.0.0.9:50052"], true);
        assert_eq!(uris(&e), ["http://embedder:50052", "http://10.0.0.9:50052"]);

        e.apply(vec![
            addrs(&["10.1.1.2:50052", "10.1.1.1:50052", "10.1.1.2:50052"]),
            Ok(vec![]),
        ]);
        assert_eq!(
            uris(&e),
            [
                "http://10.1.1.1:50052",
                "http://10.1.1.2:50052",
                "http://10.0.0.9:50052"
            ]
        );

        // A pod goes, another comes: the one that stays keeps its channel
        // and its down mark.
        let stays = e.snapshot()[1].clone();
        e.mark(&stays, false);
        e.apply(vec![
            addrs(&["10.1.1.2:50052", "10.1.1.3:50052"]),
            Ok(vec![]),
        ]);
        assert_eq!(
            uris(&e),
            [
                "http://10.1.1.2:50052",
                "http://10.1.1.3:50052",
                "http://10.0.0.9:50052"
            ]
        );
        assert!(Arc::ptr_eq(&e.snapshot()[0], &stays));
        for _ in 0..6 {
            assert_ne!(e.pick().uri, stays.uri, "a replica marked down is skipped");
        }

        // A failed lookup keeps what the name had; no answer dials the name.
        e.apply(vec![Err("no such host".into()), Ok(vec![])]);
        assert_eq!(e.replica_count(), 3);
        e.apply(vec![Ok(vec![]), Ok(vec![])]);
        assert_eq!(uris(&e), ["http://embedder:50052", "http://10.0.0.9:50052"]);
    }

    #[tokio::test]
    async fn hung_replicas_cost_one_probe_timeout_a_round_not_one_each() {
        // Listeners that take connections and never answer: a frozen pod.
        let mut held = Vec::new();
        let mut uris = Vec::new();
        for _ in 0..3 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            uris.push(format!("http://{}", l.local_addr().unwrap()));
            held.push(tokio::spawn(async move {
                let mut open = Vec::new();
                while let Ok((conn, _)) = l.accept().await {
                    open.push(conn);
                }
            }));
        }
        let e = embedders(&uris.iter().map(String::as_str).collect::<Vec<_>>(), false);
        let started = Instant::now();
        assert!(e.info().await.is_err());
        let took = started.elapsed();
        assert!(
            took >= EMBEDDER_PROBE_TIMEOUT && took < EMBEDDER_PROBE_TIMEOUT * 2,
            "three hung replicas took {took:?}"
        );
        for h in held {
            h.abort();
        }
    }

    #[tokio::test]
    async fn without_dns_names_are_dialled_as_given() {
        let e = embedders(&["http://localhost:50052"], false);
        e.refresh().await;
        assert_eq!(uris(&e), ["http://localhost:50052"]);
    }

    #[tokio::test]
    async fn refresh_resolves_a_real_name() {
        let e = embedders(&["http://localhost:50052"], true);
        e.refresh().await;
        let found = uris(&e);
        assert!(!found.is_empty());
        assert!(
            found
                .iter()
                .all(|u| u == "http://127.0.0.1:50052" || u == "http://[::1]:50052"),
            "{found:?}"
        );
    }
}
