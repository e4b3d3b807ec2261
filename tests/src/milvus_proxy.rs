//! A gRPC proxy in front of a real Milvus, for the faults a busy or slow
//! Milvus shows and a healthy test instance never does: inserts answered
//! with Milvus's own rate-limit refusal for a while, and every reply held
//! back. Everything else passes through untouched, so the gateway behind it
//! talks to the real Milvus.

use std::{
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
    milvus::{InsertRequest, MutationResult},
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
}

#[derive(Default)]
struct State {
    throttle_until: Option<Instant>,
    reply_delay: Duration,
}

impl Faults {
    fn throttling(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.throttle_until.is_some_and(|t| Instant::now() < t)
    }

    fn reply_delay(&self) -> Duration {
        self.state.lock().unwrap().reply_delay
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

    /// Holds every reply back by `delay` (zero: none).
    pub fn delay_replies(&self, delay: Duration) {
        self.faults.state.lock().unwrap().reply_delay = delay;
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
            if request.uri().path().ends_with("/Insert") && faults.throttling() {
                faults.refused_inserts.fetch_add(1, Ordering::SeqCst);
                let mut grpc = Grpc::new(ProstCodec::<MutationResult, InsertRequest>::default())
                    .apply_max_message_size_config(Some(64 << 20), Some(64 << 20));
                return Ok(grpc.unary(RateLimited, request).await);
            }
            let delay = faults.reply_delay();
            let reply = match std::future::poll_fn(|cx| upstream.poll_ready(cx)).await {
                Ok(()) => upstream.call(request).await,
                Err(e) => Err(e),
            };
            tokio::time::sleep(delay).await;
            Ok(reply.unwrap_or_else(|e| tonic::Status::unavailable(e.to_string()).into_http()))
        })
    }
}

/// Answers an insert as Milvus 2.3 does over its rate limit: a reply whose
/// status carries code 8 and the legacy `RateLimit`.
struct RateLimited;

impl UnaryService<InsertRequest> for RateLimited {
    type Response = MutationResult;
    type Future = std::future::Ready<Result<tonic::Response<MutationResult>, tonic::Status>>;

    #[allow(deprecated)]
    fn call(&mut self, _: tonic::Request<InsertRequest>) -> Self::Future {
        let status = MilvusStatus {
            error_code: ErrorCode::RateLimit as i32,
            reason: "rate limit exceeded[rate=0.1]".into(),
            code: 8,
            retriable: true,
            ..Default::default()
        };
        std::future::ready(Ok(tonic::Response::new(MutationResult {
            status: Some(status),
            ..Default::default()
        })))
    }
}
