//! What a failed embedder call says about the replica and the request,
//! decided from the status's code and its typed causes, never its text.

use crate::error::GatewayError;

/// A failed call, as far as where to send it next is concerned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// RESOURCE_EXHAUSTED: its queue had no place within the call's wait.
    Busy,
    /// The call never reached the replica's handler: no connection could
    /// be made, or the replica itself answered UNAVAILABLE (loading,
    /// draining, its model failed). Another replica may take it.
    NeverReached,
    /// The replica went away while holding the call. Not retried: the
    /// request may be what killed it, and would take the next one too.
    DiedHolding,
    /// The replica answered with an error of the request's own.
    Answered,
}

/// Sorts a failed call.
pub(super) fn classify(s: &tonic::Status) -> Failure {
    use tonic::Code;
    match s.code() {
        Code::ResourceExhausted => Failure::Busy,
        _ if connection_never_made(s) => Failure::NeverReached,
        // A status the replica sent carries no local cause.
        Code::Unavailable if std::error::Error::source(s).is_none() => Failure::NeverReached,
        Code::Unavailable | Code::Unknown | Code::Cancelled => Failure::DiedHolding,
        _ => Failure::Answered,
    }
}

/// Whether tonic's connector failed (DNS, TCP connect, TLS handshake), or
/// the socket was refused, somewhere in the status's causes.
fn connection_never_made(s: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(s);
    while let Some(e) = cause {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

/// A failed embedder call as a gateway error.
pub(super) fn status_error(s: tonic::Status) -> GatewayError {
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
    use std::io::{Error, ErrorKind};

    fn local(e: Box<dyn std::error::Error + Send + Sync>) -> tonic::Status {
        tonic::Status::from_error(e)
    }

    #[test]
    fn only_calls_that_never_reached_a_handler_may_go_elsewhere() {
        assert_eq!(
            classify(&tonic::Status::unavailable("draining")),
            Failure::NeverReached
        );
        let refused = Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(classify(&local(Box::new(refused))), Failure::NeverReached);
        let connect = tonic::ConnectError(Box::new(Error::other("dns error")));
        assert_eq!(classify(&local(Box::new(connect))), Failure::NeverReached);
        let reset = Error::from(ErrorKind::ConnectionReset);
        assert_eq!(classify(&local(Box::new(reset))), Failure::DiedHolding);
        assert_eq!(
            classify(&tonic::Status::unknown("h2 protocol error")),
            Failure::DiedHolding
        );
        assert_eq!(classify(&tonic::Status::internal("bug")), Failure::Answered);
        assert_eq!(
            classify(&tonic::Status::resource_exhausted("full")),
            Failure::Busy
        );
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_a_connection_never_made() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let channel = tonic::transport::Endpoint::from_shared(uri)
            .unwrap()
            .connect_lazy();
        let mut client = imgsearch_proto::v1::embedder_client::EmbedderClient::new(channel);
        let s = client
            .info(imgsearch_proto::v1::InfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(classify(&s), Failure::NeverReached, "{s:?}");
    }
}
