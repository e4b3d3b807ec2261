//! A gRPC status as an HTTP answer: the HTTP status gRPC's own mapping
//! gives its code (the one Google's APIs and grpc-gateway use), and a JSON
//! body naming the code, so an HTTP caller can branch on the same names a
//! gRPC caller does. A refusal's retry hint becomes `Retry-After`, a missing
//! key `WWW-Authenticate`.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::{Code, Status};

/// The HTTP status of a gRPC code. Exhaustive: a new code must choose.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // nginx's "client closed request": no standard status says it.
        Code::Cancelled => StatusCode::from_u16(499).expect("valid status"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The code's name as the gRPC spec and the protos write it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// How a call ended, as the JSON an error body (`{"error": ...}`) and a
/// stream's last line (`{"status": ...}`) carry.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// The HTTP status.
    pub code: u16,
    /// The gRPC code's name: `NOT_FOUND`.
    pub status: &'static str,
    pub message: String,
    /// Where the call was refused for being busy: when to try again.
    #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Outcome {
    pub fn of(status: &Status) -> Self {
        Self {
            code: http_status(status.code()).as_u16(),
            status: code_name(status.code()),
            message: status.message().to_string(),
            retry_after_ms: imgsearch_common::grpc::pushback_of(status)
                .map(|d| d.as_millis() as u64),
        }
    }

    pub fn ok() -> Self {
        Self::of(&Status::ok(""))
    }
}

/// An answer that is an error.
#[derive(Debug)]
pub struct Problem {
    status: Status,
    /// Where HTTP has a more precise status than the code's (413).
    http: StatusCode,
}

impl Problem {
    /// The body was larger than any request may be.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: Status::out_of_range(format!(
                "the request body is over {limit} bytes, the most this gateway reads \
                 (--max-message-bytes, plus base64's third and 1 MiB of JSON)"
            )),
            http: StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The body did not arrive within `limit`.
    pub fn slow_body(limit: std::time::Duration) -> Self {
        Self {
            status: Status::deadline_exceeded(format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            )),
            http: StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The path exists, not for this method.
    pub fn method_not_allowed(message: String) -> Self {
        Self {
            status: Status::unimplemented(message),
            http: StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Status::invalid_argument(message).into()
    }
}

impl From<Status> for Problem {
    fn from(status: Status) -> Self {
        Self {
            http: http_status(status.code()),
            status,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: Outcome,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut outcome = Outcome::of(&self.status);
        outcome.code = self.http.as_u16();
        let mut response = (self.http, axum::Json(ErrorBody { error: outcome })).into_response();
        let headers = response.headers_mut();
        if let Some(wait) = imgsearch_common::grpc::pushback_of(&self.status) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status.code() == Code::Unauthenticated {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"imgsearch\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_http_statuses_grpc_gateway_uses() {
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
    }

    #[test]
    fn a_busy_refusal_says_when_to_retry() {
        let mut busy = Status::resource_exhausted("busy");
        imgsearch_common::grpc::retry_pushback(&mut busy);
        let response = Problem::from(busy).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
