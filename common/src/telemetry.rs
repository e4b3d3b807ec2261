//! What every call of an imgsearch service gets, in one tower layer so that
//! handlers only validate and delegate:
//! - a span naming the method, the caller's trace id (or a new one) and,
//!   once an auth layer inside has decided, the caller's key name;
//! - the [`TraceContext`] in the request's extensions, for handlers to pass
//!   on to the services they call;
//! - a [`Gate`], where the service has one (the gateway's API keys), that
//!   admits or refuses the call before any handler runs;
//! - [`CallLimits`]: the cap on calls in progress and the request byte
//!   budgets, held until the call's last frame leaves;
//! - `<prefix>_requests_total{method,code}`, `<prefix>_request_seconds{method}`
//!   and one log line saying how the call ended.
//!
//! The outcome is the response's `grpc-status`, read from the headers
//! (refusals) or from the trailers when the last frame leaves, so a stream
//! is counted once, when it ends, with the status its client saw. A body
//! dropped before its trailers is a client that went away: `Cancelled`.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tonic::{
    body::Body,
    codegen::{http, BoxFuture, Service},
    server::NamedService,
    Code, Status,
};
use tracing::{debug, field, info, info_span, Span};

use crate::{
    admission::{CallLimits, Held},
    metrics_http::seconds_buckets,
    trace::TraceContext,
};

/// A check every call passes before its handler, inside the call's span (so
/// what it records there, such as who called, is on every log line of the
/// call). A refusal is answered at once and counted like any outcome.
pub trait Gate: Send + Sync + 'static {
    /// Admits a call to `method`, adding what handlers need to know to
    /// `extensions`, or refuses it.
    fn admit(
        &self,
        method: &str,
        headers: &http::HeaderMap,
        extensions: &mut http::Extensions,
    ) -> Result<(), Status>;
}

/// The method label of calls to methods the service does not have.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The instruments one server's calls are recorded in.
#[derive(Clone)]
pub struct Telemetry {
    calls: IntCounterVec,
    seconds: HistogramVec,
    gate: Option<Arc<dyn Gate>>,
    limits: CallLimits,
    /// The service's methods: any other name is labelled [`UNKNOWN_METHOD`].
    methods: Arc<HashSet<String>>,
    /// Methods whose successes log at debug: those other servers poll.
    polled: &'static [&'static str],
}

impl Telemetry {
    /// Registers `<prefix>_requests_total` and `<prefix>_request_seconds`.
    pub fn new(prefix: &str, registry: &Registry) -> Self {
        let calls = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_requests_total"),
                "Calls by method and gRPC code",
            ),
            &["method", "code"],
        )
        .expect("valid metric");
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                format!("{prefix}_request_seconds"),
                "Call duration by method, to the last response frame",
            )
            .buckets(seconds_buckets()),
            &["method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(calls.clone()))
            .expect("unique metric names");
        registry
            .register(Box::new(seconds.clone()))
            .expect("unique metric names");
        Self {
            calls,
            seconds,
            gate: None,
            limits: CallLimits::default(),
            methods: Arc::default(),
            polled: &[],
        }
    }

    /// Labels calls by the methods of `service` (a full name, as
    /// `imgsearch.v1.ImageSearch`) in the API's descriptors; every other
    /// path the client makes up shares one label, so none can grow the
    /// registry without bound.
    pub fn for_service(mut self, service: &str) -> Self {
        self.methods = Arc::new(imgsearch_proto::methods_of(service).into_iter().collect());
        self
    }

    /// Calls pass `gate` before their handler.
    pub fn gate(mut self, gate: impl Gate) -> Self {
        self.gate = Some(Arc::new(gate));
        self
    }

    /// Calls are admitted by `limits` (after the gate: a refused caller
    /// holds no place).
    pub fn limits(mut self, limits: CallLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Logs successes of `methods` at debug only: a health watcher calling
    /// them every few seconds would drown the log.
    pub fn polled(mut self, methods: &'static [&'static str]) -> Self {
        self.polled = methods;
        self
    }
}

impl<S> tower_layer::Layer<S> for Telemetry {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            telemetry: self.clone(),
            inner,
        }
    }
}

/// The trace context the layer put on this call, or a new one where the
/// service runs without the layer (unit tests).
pub fn trace_of<T>(request: &tonic::Request<T>) -> TraceContext {
    request
        .extensions()
        .get::<TraceContext>()
        .cloned()
        .unwrap_or_else(TraceContext::start)
}

/// The inner service `poll_ready` readied, a clone left in its place: a
/// clone is ready only once polled, so the one polled must make the call.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let fresh = inner.clone();
    std::mem::replace(inner, fresh)
}

/// A service behind [`Telemetry`].
#[derive(Clone)]
pub struct Traced<S> {
    telemetry: Telemetry,
    inner: S,
}

impl<S: NamedService> NamedService for Traced<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Traced<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let trace =
            TraceContext::from_headers(request.headers()).unwrap_or_else(TraceContext::start);
        let span = info_span!(
            "call",
            %method,
            trace_id = %trace.trace_id,
            caller = field::Empty
        );
        request.extensions_mut().insert(trace);
        let mut outcome = Outcome {
            telemetry: self.telemetry.clone(),
            method,
            span: span.clone(),
            started: Instant::now(),
            done: false,
            _held: Held::default(),
        };
        if let Some(gate) = &self.telemetry.gate {
            let (mut parts, body) = request.into_parts();
            let admitted = span
                .in_scope(|| gate.admit(&outcome.method, &parts.headers, &mut parts.extensions));
            request = http::Request::from_parts(parts, body);
            if let Err(refused) = admitted {
                outcome.record(refused.code(), refused.message());
                return Box::pin(async move { Ok(refused.into_http()) });
            }
        }
        let (parts, body) = request.into_parts();
        match self.telemetry.limits.admit(&outcome.method, body) {
            Ok((held, body)) => {
                outcome._held = held;
                request = http::Request::from_parts(parts, body);
            }
            Err(refused) => {
                outcome.record(refused.code(), refused.message());
                return Box::pin(async move { Ok(refused.into_http()) });
            }
        }
        let mut inner = take_ready(&mut self.inner);
        let response = span.in_scope(|| inner.call(request));
        Box::pin(async move {
            let response = tracing::Instrument::instrument(response, span).await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    outcome.record(Code::Unknown, "the service failed");
                    return Err(e);
                }
            };
            // A trailers-only response (a refusal, an error before the first
            // message) carries its status in the headers.
            if let Some(status) = Status::from_header_map(response.headers()) {
                outcome.record(status.code(), status.message());
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(Observed { body, outcome })))
        })
    }
}

/// One call's outcome, recorded once.
struct Outcome {
    telemetry: Telemetry,
    method: String,
    span: Span,
    started: Instant,
    done: bool,
    /// The call's place and request charge, freed when the call ends.
    _held: Held,
}

impl Outcome {
    fn record(&mut self, code: Code, message: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let method = self.method.as_str();
        let label = if self.telemetry.methods.contains(method) {
            method
        } else {
            UNKNOWN_METHOD
        };
        self.telemetry
            .calls
            .with_label_values(&[label, &format!("{code:?}")])
            .inc();
        self.telemetry
            .seconds
            .with_label_values(&[label])
            .observe(self.started.elapsed().as_secs_f64());
        if code == Code::Ok && self.telemetry.polled.contains(&method) {
            debug!(parent: &self.span, method, "ok");
        } else if code == Code::Ok {
            info!(parent: &self.span, method, "ok");
        } else {
            info!(parent: &self.span, method, code = ?code, message, "failed");
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.record(Code::Cancelled, "the client went away");
    }
}

/// A response body that records the call's outcome from its trailers.
struct Observed {
    body: Body,
    outcome: Outcome,
}

impl HttpBody for Observed {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(Status::from_header_map) {
                    self.outcome.record(status.code(), status.message());
                }
            }
            Poll::Ready(Some(Err(e))) => self.outcome.record(Code::Unknown, &e.to_string()),
            Poll::Ready(None) => self.outcome.record(Code::Ok, ""),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(telemetry: &Telemetry, method: &str) -> Outcome {
        Outcome {
            telemetry: telemetry.clone(),
            method: method.into(),
            span: Span::none(),
            started: Instant::now(),
            done: false,
            _held: Held::default(),
        }
    }

    #[test]
    fn made_up_method_names_share_one_label() {
        let registry = Registry::new();
        let telemetry = Telemetry::new("test", &registry).for_service("imgsearch.v1.ImageSearch");
        for i in 0..100 {
            outcome(&telemetry, &format!("Made{i}")).record(Code::Unimplemented, "");
        }
        outcome(&telemetry, "Search").record(Code::Ok, "");
        let text = crate::metrics_http::render(&registry);
        assert!(!text.contains("Made"), "{text}");
        assert!(text.contains(r#"test_requests_total{code="Unimplemented",method="unknown"} 100"#));
        assert!(text.contains(r#"test_requests_total{code="Ok",method="Search"} 1"#));
    }

    #[test]
    fn a_call_is_counted_once_however_it_ends() {
        let registry = Registry::new();
        let telemetry = Telemetry::new("test", &registry).for_service("imgsearch.v1.ImageSearch");
        let mut call = outcome(&telemetry, "Insert");
        call.record(Code::Ok, "");
        // The body dropped after its trailers: already counted.
        drop(call);
        // A body dropped before its trailers: the client went away.
        drop(outcome(&telemetry, "Insert"));
        let text = crate::metrics_http::render(&registry);
        assert!(
            text.contains(r#"test_requests_total{code="Ok",method="Insert"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"test_requests_total{code="Cancelled",method="Insert"} 1"#));
    }
}
