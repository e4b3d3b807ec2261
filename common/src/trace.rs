//! W3C trace context (`traceparent`) carried in gRPC metadata, so one
//! request's log lines can be found in the gateway and in the embedder that
//! served it. The gateway takes the caller's `traceparent` or starts one, and
//! forwards it (with its own span id) on every embedder call.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
};

use tonic::codegen::http;

/// The metadata key, as in HTTP.
pub const TRACEPARENT: &str = "traceparent";

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A trace context: 32-hex trace id, 16-hex parent (span) id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
}

impl TraceContext {
    /// A new trace.
    pub fn start() -> Self {
        Self {
            trace_id: format!("{:016x}{:016x}", random_u64(), random_u64()),
            span_id: format!("{:016x}", random_u64()),
        }
    }

    /// The same trace with a new span id, for an outgoing call.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: format!("{:016x}", random_u64()),
        }
    }

    /// Parses `00-<trace id>-<span id>-<flags>`; None when malformed.
    pub fn parse(header: &str) -> Option<Self> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_slice() {
            [version, trace, span, flags]
                if hex(version, 2)
                    && hex(trace, 32)
                    && hex(span, 16)
                    && hex(flags, 2)
                    && trace.bytes().any(|b| b != b'0') =>
            {
                Some(Self {
                    trace_id: trace.to_ascii_lowercase(),
                    span_id: span.to_ascii_lowercase(),
                })
            }
            _ => None,
        }
    }

    /// The caller's context from a request's headers (its gRPC metadata),
    /// if it sent a valid one.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }

    /// The `traceparent` header value (sampled flag set).
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// Adds this context (as a child span) to an outgoing request.
    pub fn inject<T>(&self, request: &mut tonic::Request<T>) {
        if let Ok(v) = self.child().header().parse() {
            request.metadata_mut().insert(TRACEPARENT, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = TraceContext::start();
        assert_eq!(TraceContext::parse(&t.header()), Some(t.clone()));
        assert_eq!(t.child().trace_id, t.trace_id);
        assert_ne!(t.child().span_id, t.span_id);
        assert_eq!(
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .unwrap()
                .span_id,
            "b7ad6b7169203331"
        );
        for bad in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }
}
