//! The gateway's view of the embedders: one gRPC channel balanced over every
//! endpoint given (power-of-two-choices over the ready ones, so a failed
//! replica is skipped and rejoins when it answers again).

use std::time::Duration;

use imgsearch_proto::v1::{embedder_client::EmbedderClient, InfoRequest, InfoResponse};
use tonic::transport::{Channel, Endpoint};

use crate::error::GatewayError;

/// Client side of `imgsearch.v1.Embedder`, over all configured replicas.
#[derive(Clone)]
pub struct Embedders {
    client: EmbedderClient<Channel>,
    endpoints: usize,
}

impl Embedders {
    /// A lazy, balanced channel to `uris`; nothing is dialled until used.
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
        let endpoints = uris
            .iter()
            .map(|u| {
                Endpoint::from_shared(u.clone())
                    .map(|e| {
                        e.connect_timeout(connect_timeout)
                            .http2_keep_alive_interval(Duration::from_secs(20))
                            .keep_alive_while_idle(true)
                    })
                    .map_err(|e| {
                        GatewayError::InvalidArgument(format!("embedder endpoint {u:?}: {e}"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channel = Channel::balance_list(endpoints.into_iter());
        let client = EmbedderClient::new(channel)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        Ok(Self {
            client,
            endpoints: uris.len(),
        })
    }

    /// A client handle for one call.
    pub fn client(&self) -> EmbedderClient<Channel> {
        self.client.clone()
    }

    /// Number of configured endpoints.
    pub fn endpoints(&self) -> usize {
        self.endpoints
    }

    /// What the embedders run (asks one of them).
    pub async fn info(&self) -> Result<InfoResponse, GatewayError> {
        let mut client = self.client();
        tokio::time::timeout(Duration::from_secs(10), client.info(InfoRequest {}))
            .await
            .map_err(|_| GatewayError::EmbedderUnavailable("Info timed out".into()))?
            .map(|r| r.into_inner())
            .map_err(status_error)
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
