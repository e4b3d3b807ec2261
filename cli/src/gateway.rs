//! The connection to the gateway.

use std::time::Duration;

use imgsearch_proto::v1::image_search_client::ImageSearchClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::CliError;

/// The gateway's default message limit: an image travels in one message.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

pub type Client = ImageSearchClient<Channel>;

/// `host:port` gets `http://` in front; a full URI is kept as given.
pub fn normalize(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// Connects, failing fast with a clear message when nothing answers.
pub async fn connect(address: &str, timeout: Duration) -> Result<Client, CliError> {
    Ok(ImageSearchClient::new(channel(address, timeout).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A channel to the gateway, for [`connect`] and the health check.
pub async fn channel(address: &str, timeout: Duration) -> Result<Channel, CliError> {
    let uri = normalize(address);
    let down = |reason: String| CliError::GatewayDown {
        address: uri.clone(),
        reason,
    };
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| CliError::Usage(format!("invalid gateway address {address:?}: {e}")))?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|e| {
        // tonic's error says "transport error"; its source says why.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        down(reason)
    })?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(normalize("localhost:50051"), "http://localhost:50051");
        assert_eq!(normalize("https://g.example:443"), "https://g.example:443");
    }

    #[tokio::test]
    async fn a_closed_port_is_gateway_down() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The listener is dropped: nothing listens there now.
        let err = connect(&format!("127.0.0.1:{port}"), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, CliError::GatewayDown { .. }), "{err}");
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("IMGSEARCH_GATEWAY"));
    }
}
