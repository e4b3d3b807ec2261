//! A gRPC proxy in front of a real Milvus, for the faults a busy or slow
//! Milvus shows and a healthy test instance never does: inserts, searches,
//! queries or deletes answered with Milvus's own rate-limit refusal for a
//! while, rows refused as Milvus refuses an invalid one, and every reply
//! (or every insert's) held back. Everything else passes through untouched, so the gateway behind
//! it talks to the real Milvus.

use std::{
    collections::HashSet,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use milvus::proto::{
    common::{ErrorCode, Status as MilvusStatus},
    milvus::{
        milvus_service_client::MilvusServiceClient, DeleteRequest, InsertRequest, MutationResult,
        QueryRequest, QueryResults, SearchRequest, SearchResults,
    },
    schema::{field_data::Field, scalar_field::Data},
};
use tonic::{
    body::Body,
    codec::ProstCodec,
    codegen::{http, Service},
    server::{Grpc, NamedService, UnaryService},
    transport::{server::TcpIncoming, Channel, Server},
};

/// The faults in force now.
#[derive(Default)]
struct Faults {
    state: Mutex<State>,
    refused_inserts: AtomicU64,
    refused_searches: AtomicU64,
    /// Queries and deletes refused as throttled.
    refused_reads: AtomicU64,
    inserts_received: AtomicU64,
}

#[derive(Default)]
struct State {
    throttle_until: Option<Instant>,
    throttle_searches_until: Option<Instant>,
    /// Until when queries and deletes are refused as throttled.
    throttle_reads_until: Option<Instant>,
    reply_delay: Duration,
    insert_delay: Duration,
    /// Filepaths whose inserts are refused until one is refused alone.
    refused_rows: HashSet<String>,
}

impl Faults {
    fn throttling(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.throttle_until.is_some_and(|t| Instant::now() < t)
    }

    fn throttling_searches(&self) -> bool {
        let state = self.state.lock().unwrap();
        state
            .throttle_searches_until
            .is_some_and(|t| Instant::now() < t)
    }

    fn throttling_reads(&self) -> bool {
        let state = self.state.lock().unwrap();
        state
            .throttle_reads_until
            .is_some_and(|t| Instant::now() < t)
    }

    /// How long this call's reply is held back.
    fn reply_delay(&self, insert: bool) -> Duration {
        let state = self.state.lock().unwrap();
        match insert {
            true => state.reply_delay.max(state.insert_delay),
            false => state.reply_delay,
        }
    }

    fn inspects_inserts(&self) -> bool {
        !self.state.lock().unwrap().refused_rows.is_empty()
    }

    /// Whether an insert of `filepaths` is refused for what its rows hold;
    /// a filepath refused alone is forgiven from then on.
    fn refuses_rows(&self, filepaths: &[String]) -> bool {
        let mut state = self.state.lock().unwrap();
        let refused = filepaths.iter().any(|p| state.refused_rows.contains(p));
        if refused && filepaths.len() == 1 {
            state.refused_rows.remove(&filepaths[0]);
        }
        refused
    }
}

/// A running proxy; it stops with the test's runtime.
pub struct MilvusProxy {
    uri: String,
    faults: Arc<Faults>,
}

impl MilvusProxy {
    /// A proxy on a free port in front of the Milvus at `upstream`.
    pub async fn start(upstream: &str) -> MilvusProxy {
        let channel = Channel::from_shared(upstream.to_string())
            .expect("upstream uri")
            .connect_lazy();
        let faults = Arc::new(Faults::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let service = Forward {
            upstream: channel,
            faults: faults.clone(),
        };
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        MilvusProxy { uri, faults }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// From now on, for `period`, every insert is refused as Milvus refuses
    /// one over its rate limit.
    pub fn throttle_inserts_for(&self, period: Duration) {
        self.faults.state.lock().unwrap().throttle_until = Some(Instant::now() + period);
    }

    /// From now on, for `period`, every search is refused as Milvus refuses
    /// one over its rate limit.
    pub fn throttle_searches_for(&self, period: Duration) {
        self.faults.state.lock().unwrap().throttle_searches_until = Some(Instant::now() + period);
    }

    /// From now on, for `period`, every query (a row or count lookup) and
    /// every delete is refused as Milvus refuses one over its rate limit.
    pub fn throttle_queries_and_deletes_for(&self, period: Duration) {
        self.faults.state.lock().unwrap().throttle_reads_until = Some(Instant::now() + period);
    }

    /// Queries and deletes refused so far.
    pub fn refused_queries_and_deletes(&self) -> u64 {
        self.faults.refused_reads.load(Ordering::SeqCst)
    }

    /// Holds every insert's reply back by `delay` (zero: none).
    pub fn delay_inserts(&self, delay: Duration) {
        self.faults.state.lock().unwrap().insert_delay = delay;
    }

    /// Inserts that reached the proxy so far, answered or not.
    pub fn inserts_received(&self) -> u64 {
        self.faults.inserts_received.load(Ordering::SeqCst)
    }

    /// Searches refused so far.
    pub fn refused_searches(&self) -> u64 {
        self.faults.refused_searches.load(Ordering::SeqCst)
    }

    /// Holds every reply back by `delay` (zero: none).
    pub fn delay_replies(&self, delay: Duration) {
        self.faults.state.lock().unwrap().reply_delay = delay;
    }

    /// Every insert holding one of `filepaths` is refused as Milvus refuses
    /// an invalid row, until that filepath has been refused alone once.
    pub fn refuse_rows_once(&self, filepaths: impl IntoIterator<Item = String>) {
        self.faults
            .state
            .lock()
            .unwrap()
            .refused_rows
            .extend(filepaths);
    }

    /// Inserts refused so far.
    pub fn refused_inserts(&self) -> u64 {
        self.faults.refused_inserts.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Forward {
    upstream: Channel,
    faults: Arc<Faults>,
}

impl NamedService for Forward {
    const NAME: &'static str = "milvus.proto.milvus.MilvusService";
}

impl Service<http::Request<Body>> for Forward {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut upstream = self.upstream.clone();
        let faults = self.faults.clone();
        Box::pin(async move {
            let path = request.uri().path().to_string();
            let insert = path.ends_with("/Insert");
            if insert {
                faults.inserts_received.fetch_add(1, Ordering::SeqCst);
            }
            if path.ends_with("/Query") && faults.throttling_reads() {
                let refuse = Throttled::<QueryResults>::counting(faults, |f| &f.refused_reads);
                return Ok(unary::<QueryRequest, _, _>(refuse, request).await);
            }
            if path.ends_with("/Delete") && faults.throttling_reads() {
                let refuse = Throttled::<MutationResult>::counting(faults, |f| &f.refused_reads);
                return Ok(unary::<DeleteRequest, _, _>(refuse, request).await);
            }
            if insert && (faults.throttling() || faults.inspects_inserts()) {
                let inspect = Inspect {
                    upstream: upstream.clone(),
                    faults,
                };
                return Ok(unary::<InsertRequest, _, _>(inspect, request).await);
            }
            if path.ends_with("/Search") && faults.throttling_searches() {
                let refuse = Throttled::<SearchResults>::counting(faults, |f| &f.refused_searches);
                return Ok(unary::<SearchRequest, _, _>(refuse, request).await);
            }
            let delay = faults.reply_delay(insert);
            let reply = match std::future::poll_fn(|cx| upstream.poll_ready(cx)).await {
                Ok(()) => upstream.call(request).await,
                Err(e) => Err(e),
            };
            tokio::time::sleep(delay).await;
            Ok(reply.unwrap_or_else(|e| tonic::Status::unavailable(e.to_string()).into_http()))
        })
    }
}

/// An insert read by the proxy: refused as throttled, refused for its rows,
/// or sent on to Milvus.
struct Inspect {
    upstream: Channel,
    faults: Arc<Faults>,
}

impl UnaryService<InsertRequest> for Inspect {
    type Response = MutationResult;
    type Future = Pin<
        Box<dyn Future<Output = Result<tonic::Response<MutationResult>, tonic::Status>> + Send>,
    >;

    #[allow(deprecated)]
    fn call(&mut self, request: tonic::Request<InsertRequest>) -> Self::Future {
        let (upstream, faults) = (self.upstream.clone(), self.faults.clone());
        Box::pin(async move {
            let refusal = if faults.throttling() {
                // As Milvus 2.3 answers over its rate limit: code 8 and the
                // legacy `RateLimit`.
                Some((ErrorCode::RateLimit, 8, "rate limit exceeded[rate=0.1]"))
            } else if faults.refuses_rows(&filepaths(request.get_ref())) {
                // As Milvus answers a value it cannot take: a parameter code.
                Some((
                    ErrorCode::IllegalArgument,
                    1100,
                    "length of varchar field filepath exceeds max length",
                ))
            } else {
                None
            };
            let Some((legacy, code, reason)) = refusal else {
                return MilvusServiceClient::new(upstream).insert(request).await;
            };
            faults.refused_inserts.fetch_add(1, Ordering::SeqCst);
            Ok(tonic::Response::new(MutationResult {
                status: Some(refusal_status(legacy, code, reason)),
                ..Default::default()
            }))
        })
    }
}

/// A Milvus refusal as Milvus writes it; code 8 (rate limit) is retriable.
#[allow(deprecated)]
fn refusal_status(legacy: ErrorCode, code: i32, reason: &str) -> MilvusStatus {
    MilvusStatus {
        error_code: legacy as i32,
        reason: reason.into(),
        code,
        retriable: code == 8,
        ..Default::default()
    }
}

/// Answers one unary Milvus call of type `Req` with `service`.
async fn unary<Req, Resp, S>(service: S, request: http::Request<Body>) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    S: UnaryService<Req, Response = Resp>,
{
    let mut grpc = Grpc::new(ProstCodec::<Resp, Req>::default())
        .apply_max_message_size_config(Some(64 << 20), Some(64 << 20));
    grpc.unary(service, request).await
}

/// Milvus's answers that carry their status in-band.
trait WithStatus: Default {
    fn set_status(&mut self, status: MilvusStatus);
}

macro_rules! with_status {
    ($($t:ty),*) => {$(
        impl WithStatus for $t {
            fn set_status(&mut self, status: MilvusStatus) {
                self.status = Some(status);
            }
        }
    )*};
}
with_status!(QueryResults, MutationResult, SearchResults);

/// A call refused as Milvus 2.3 refuses one over its rate limit, counted.
struct Throttled<Resp> {
    faults: Arc<Faults>,
    counter: fn(&Faults) -> &AtomicU64,
    answer: std::marker::PhantomData<fn() -> Resp>,
}

impl<Resp> Throttled<Resp> {
    fn counting(faults: Arc<Faults>, counter: fn(&Faults) -> &AtomicU64) -> Self {
        Self {
            faults,
            counter,
            answer: std::marker::PhantomData,
        }
    }
}

impl<Req, Resp: WithStatus> UnaryService<Req> for Throttled<Resp> {
    type Response = Resp;
    type Future = std::future::Ready<Result<tonic::Response<Resp>, tonic::Status>>;

    #[allow(deprecated)]
    fn call(&mut self, _: tonic::Request<Req>) -> Self::Future {
        (self.counter)(&self.faults).fetch_add(1, Ordering::SeqCst);
        let mut answer = Resp::default();
        answer.set_status(refusal_status(
            ErrorCode::RateLimit,
            8,
            "rate limit exceeded[rate=0.1]",
        ));
        std::future::ready(Ok(tonic::Response::new(answer)))
    }
}

/// The filepath column of an insert.
fn filepaths(insert: &InsertRequest) -> Vec<String> {
    insert
        .fields_data
        .iter()
        .filter(|f| f.field_name == "filepath")
        .find_map(|f| match &f.field {
            Some(Field::Scalars(s)) => match &s.data {
                Some(Data::StringData(strings)) => Some(strings.data.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_default()
}
