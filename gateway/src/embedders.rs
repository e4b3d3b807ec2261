//! The gateway's view of the embedders: one lazy channel per endpoint, picked
//! round-robin among those not marked down. A call that finds its replica
//! unreachable marks it down for a cool-down and (for idempotent calls) goes
//! to the next one, so a dead replica costs at most one retry, not a share of
//! every later call. The health watcher marks replicas up again.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use imgsearch_proto::v1::{
    embedder_client::EmbedderClient, EmbedBatchRequest, EmbedBatchResponse, InfoRequest,
    InfoResponse,
};
use tonic::transport::{Channel, Endpoint};
use tracing::warn;

use crate::error::GatewayError;

/// How long a replica that failed a call is skipped.
const COOL_DOWN: Duration = Duration::from_secs(5);

struct Replica {
    uri: String,
    client: EmbedderClient<Channel>,
    /// Milliseconds since `epoch` until which the replica is skipped.
    down_until_ms: AtomicU64,
}

/// Client side of `imgsearch.v1.Embedder`, over all configured replicas.
#[derive(Clone)]
pub struct Embedders {
    replicas: Arc<Vec<Replica>>,
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

impl Embedders {
    /// Lazy channels to `uris`; nothing is dialled until used.
    pub fn new(
        uris: &[String],
        max_message_bytes: usize,
        connect_timeout: Duration,
    ) -> Result<Self, GatewayError> {
        if uris.is_empty() {
            return Err(GatewayError::InvalidArgument(
                "no embedder endpoint configured".into(),
            ));
        }
        let replicas = uris
            .iter()
            .map(|u| {
                let endpoint = Endpoint::from_shared(u.clone())
                    .map_err(|e| {
                        GatewayError::InvalidArgument(format!("embedder endpoint {u:?}: {e}"))
                    })?
                    .connect_timeout(connect_timeout)
                    .http2_keep_alive_interval(Duration::from_secs(20))
                    .keep_alive_while_idle(true);
                let client = EmbedderClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(max_message_bytes)
                    .max_encoding_message_size(max_message_bytes);
                Ok(Replica {
                    uri: u.clone(),
                    client,
                    down_until_ms: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        Ok(Self {
            replicas: Arc::new(replicas),
            next: Arc::default(),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next replica in turn that is not marked down (or, when all are,
    /// the next one anyway: it may be back).
    fn pick(&self) -> usize {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.replicas[i].down_until_ms.load(Ordering::Relaxed) <= now)
            .unwrap_or(start % n)
    }

    fn mark(&self, i: usize, up: bool) {
        let until = if up {
            0
        } else {
            self.now_ms() + COOL_DOWN.as_millis() as u64
        };
        self.replicas[i]
            .down_until_ms
            .store(until, Ordering::Relaxed);
    }

    /// A client for one streaming call, and a way to report its replica down.
    pub fn client(&self) -> (EmbedderClient<Channel>, ReplicaHandle) {
        let i = self.pick();
        (
            self.replicas[i].client.clone(),
            ReplicaHandle {
                embedders: self.clone(),
                index: i,
            },
        )
    }

    /// `EmbedBatch` on a reachable replica: an unreachable one is marked down
    /// and the call goes to the next (it is idempotent).
    pub async fn embed_batch(
        &self,
        request: tonic::Request<EmbedBatchRequest>,
    ) -> Result<EmbedBatchResponse, GatewayError> {
        let metadata = request.metadata().clone();
        let body = request.into_inner();
        let mut last = None;
        for _ in 0..self.replicas.len() {
            let i = self.pick();
            let mut req = tonic::Request::new(body.clone());
            *req.metadata_mut() = metadata.clone();
            match self.replicas[i].client.clone().embed_batch(req).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if unreachable(&s) => {
                    warn!(embedder = %self.replicas[i].uri, status = %s, "embedder unreachable; trying another");
                    self.mark(i, false);
                    last = Some(s);
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
        for (i, r) in self.replicas.iter().enumerate() {
            let call = tokio::time::timeout(
                Duration::from_secs(5),
                r.client.clone().info(InfoRequest {}),
            )
            .await;
            match call {
                Ok(Ok(info)) => {
                    self.mark(i, true);
                    answer.get_or_insert(info.into_inner());
                }
                Ok(Err(s)) => {
                    self.mark(i, false);
                    error = Some(status_error(s));
                }
                Err(_) => {
                    self.mark(i, false);
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
    index: usize,
}

impl ReplicaHandle {
    /// Reports the replica unreachable, so later calls skip it for a while.
    pub fn mark_down(&self) {
        self.embedders.mark(self.index, false);
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
