//! The check in front of `imgsearch.v1.ImageSearch`, a [`Gate`] of the
//! telemetry layer: a call without the right key never reaches a handler,
//! and its refusal is counted like any outcome. A call that gets through
//! carries its [`Caller`] in the request's extensions, for the logs of what
//! it changes.

use imgsearch_common::telemetry::Gate;
use tonic::{codegen::http, Status};
use tracing::{info, warn, Span};

use super::{keys::ApiKeys, required_role, tenant_may_call, Caller};

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
        if let Some(tenant) = caller.tenant.as_ref().filter(|_| !tenant_may_call(method)) {
            return Err(Status::permission_denied(format!(
                "key {:?} is confined to tenant {tenant:?}; {method} changes every tenant's rows",
                caller.key
            )));
        }
        Ok(caller)
    }
}

impl Gate for Guard {
    fn admit(
        &self,
        method: &str,
        headers: &http::HeaderMap,
        extensions: &mut http::Extensions,
    ) -> Result<(), Status> {
        match self.check(method, headers) {
            Ok(caller) => {
                // On the call's span, so every log line of the call says who
                // made it.
                Span::current().record("caller", caller.key.as_str());
                extensions.insert(caller);
                Ok(())
            }
            Err(status) => {
                if status.code() == tonic::Code::PermissionDenied {
                    warn!(%method, reason = status.message(), "call refused");
                } else {
                    info!(%method, reason = status.message(), "call refused");
                }
                Err(status)
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
