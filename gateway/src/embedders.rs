//! The gateway's view of the embedders: one lazy channel per replica, picked
//! round-robin among those not marked down. A call that finds its replica
//! unreachable marks it down for a cool-down and, if the call never reached
//! that replica's handler, goes to the next one, so a dead replica costs at
//! most one retry, not a share of every later call. A call whose replica died
//! while holding it is not retried: the request may be what killed it, and
//! retrying would take the next replica down too. The health watcher marks
//! replicas up again.
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

use imgsearch_proto::v1::{
    embedder_client::EmbedderClient, EmbedBatchRequest, EmbedBatchResponse, InfoRequest,
    InfoResponse,
};
use tonic::{
    codegen::http::Uri,
    transport::{Channel, Endpoint},
};
use tracing::{info, warn};

use crate::error::GatewayError;

/// How long a replica that failed a call is skipped.
const COOL_DOWN: Duration = Duration::from_secs(5);

struct Replica {
    uri: String,
    /// Index of the configured endpoint it came from.
    target: usize,
    client: EmbedderClient<Channel>,
    /// Milliseconds since `epoch` until which the replica is skipped.
    down_until_ms: AtomicU64,
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
    next: Arc<AtomicUsize>,
    epoch: Instant,
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
        max_message_bytes: usize,
        connect_timeout: Duration,
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
            next: Arc::default(),
            epoch: Instant::now(),
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
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| GatewayError::InvalidArgument(format!("embedder endpoint {uri:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let client = EmbedderClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        Ok(Arc::new(Replica {
            uri,
            target,
            client,
            down_until_ms: AtomicU64::new(0),
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
        let mut resolved = Vec::with_capacity(self.targets.len());
        for t in self.targets.iter() {
            resolved.push(match &t.name {
                // Not read: `apply` keeps a static target as configured.
                None => Ok(Vec::new()),
                Some(n) => tokio::net::lookup_host((n.host.as_str(), n.port))
                    .await
                    .map(|a| a.collect())
                    .map_err(|e| e.to_string()),
            });
        }
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

    /// The next replica in turn that is not marked down (or, when all are,
    /// the next one anyway: it may be back).
    fn pick(&self) -> Arc<Replica> {
        let replicas = self.snapshot();
        let n = replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let i = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| replicas[i].down_until_ms.load(Ordering::Relaxed) <= now)
            .unwrap_or(start % n);
        replicas[i].clone()
    }

    fn mark(&self, replica: &Replica, up: bool) {
        let until = if up {
            0
        } else {
            self.now_ms() + COOL_DOWN.as_millis() as u64
        };
        replica.down_until_ms.store(until, Ordering::Relaxed);
    }

    /// A client for one streaming call, and a way to report its replica down.
    pub fn client(&self) -> (EmbedderClient<Channel>, ReplicaHandle) {
        let replica = self.pick();
        (
            replica.client.clone(),
            ReplicaHandle {
                embedders: self.clone(),
                replica,
            },
        )
    }

    /// `EmbedBatch` on a reachable replica: an unreachable one is marked down,
    /// and the call goes to the next when it never reached the first's
    /// handler (see [`never_reached_handler`]).
    pub async fn embed_batch(
        &self,
        request: tonic::Request<EmbedBatchRequest>,
    ) -> Result<EmbedBatchResponse, GatewayError> {
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let mut last = None;
        for _ in 0..self.replica_count() {
            let replica = self.pick();
            let mut req = tonic::Request::new(body.clone());
            *req.metadata_mut() = metadata.clone();
            match replica.client.clone().embed_batch(req).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if never_reached_handler(&s) => {
                    warn!(embedder = %replica.uri, status = %s, "embedder unreachable; trying another");
                    self.mark(&replica, false);
                    last = Some(s);
                }
                Err(s) if unreachable(&s) => {
                    warn!(embedder = %replica.uri, status = %s,
                        "embedder failed while holding the call; not retried elsewhere");
                    self.mark(&replica, false);
                    return Err(status_error(s));
                }
                Err(s) => return Err(status_error(s)),
            }
        }
        Err(status_error(last.unwrap_or_else(|| {
            tonic::Status::unavailable("no embedder")
        })))
    }

    /// Asks every replica for `Info`, marking each up or down; the first
    /// answer, or why none came.
    pub async fn info(&self) -> Result<InfoResponse, GatewayError> {
        let mut answer = None;
        let mut error = None;
        for r in self.snapshot().iter() {
            let call = tokio::time::timeout(
                Duration::from_secs(5),
                r.client.clone().info(InfoRequest {}),
            )
            .await;
            match call {
                Ok(Ok(info)) => {
                    self.mark(r, true);
                    answer.get_or_insert(info.into_inner());
                }
                Ok(Err(s)) => {
                    self.mark(r, false);
                    error = Some(status_error(s));
                }
                Err(_) => {
                    self.mark(r, false);
                    error = Some(GatewayError::EmbedderUnavailable(format!(
                        "{}: Info timed out",
                        r.uri
                    )));
                }
            }
        }
        answer.ok_or_else(|| {
            error.unwrap_or_else(|| GatewayError::EmbedderUnavailable("no embedder".into()))
        })
    }
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
pub fn status_error(s: tonic::Status) -> GatewayError {
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
        Embedders::new(&uris, dns, 1 << 20, Duration::from_secs(1)).unwrap()
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
