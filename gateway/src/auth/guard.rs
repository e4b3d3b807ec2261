//! The check in front of `imgsearch.v1.ImageSearch`, as a tower service
//! wrapped around it: a call without the right key never reaches a handler.
//! A call that gets through carries its [`Caller`] in the request's
//! extensions, for the logs of what it changes.

use imgsearch_common::telemetry::take_ready;
use tonic::{
    body::Body,
    codegen::{http, BoxFuture, Context, Poll, Service},
    server::NamedService,
    Status,
};
use tracing::{info, warn, Span};

use super::{keys::ApiKeys, required_role, Caller};

/// Decides who a call comes from and whether they may make it.
#[derive(Clone)]
pub struct Guard {
    /// `None`: no keys are checked and every caller is
    /// [`Caller::anonymous`].
    keys: Option<ApiKeys>,
}

/// The key in `authorization: Bearer <key>`, if the header is there and
/// well formed.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

impl Guard {
    pub fn new(keys: Option<ApiKeys>) -> Self {
        Self { keys }
    }

    /// The caller of `method`, or why they may not call it.
    pub fn check(&self, method: &str, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let Some(keys) = &self.keys else {
            return Ok(Caller::anonymous());
        };
        let key = bearer(headers).ok_or_else(|| {
            Status::unauthenticated("no API key: send the metadata `authorization: Bearer <key>`")
        })?;
        let caller = keys
            .caller(key)
            .ok_or_else(|| Status::unauthenticated("unknown API key"))?;
        let needed = required_role(method);
        if caller.role < needed {
            return Err(Status::permission_denied(format!(
                "key {:?} has role {}; {method} needs {needed}",
                caller.key, caller.role
            )));
        }
        Ok(caller)
    }

    pub fn wrap<S>(self, inner: S) -> Guarded<S> {
        Guarded { guard: self, inner }
    }
}

/// A service behind a [`Guard`].
#[derive(Clone)]
pub struct Guarded<S> {
    guard: Guard,
    inner: S,
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        match self.guard.check(method, request.headers()) {
            Ok(caller) => {
                // The call's span (opened by the telemetry layer outside)
                // says who made it, so every log line of the call does.
                Span::current().record("caller", caller.key.as_str());
                request.extensions_mut().insert(caller);
                Box::pin(take_ready(&mut self.inner).call(request))
            }
            Err(status) => {
                // Counted by the telemetry layer, like every other outcome.
                if status.code() == tonic::Code::PermissionDenied {
                    warn!(%method, reason = status.message(), "call refused");
                } else {
                    info!(%method, reason = status.message(), "call refused");
                }
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(&headers("bearer isk_x")), Some("isk_x"));
        assert_eq!(bearer(&headers("Bearer isk_x")), Some("isk_x"));
    }

    #[test]
    fn other_schemes_carry_no_key() {
        assert_eq!(bearer(&headers("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer(&http::HeaderMap::new()), None);
    }
}
