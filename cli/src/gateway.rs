//! The connection to the gateway: TLS for `https://` URIs, and the API key
//! sent with every call.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use imgsearch_proto::v1::image_search_client::ImageSearchClient;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Channel, Endpoint},
    Request, Status,
};

use crate::{busy::Patience, error::CliError};

pub use imgsearch_proto::limits::MAX_MESSAGE_BYTES;

/// The variable a key may come in when no file names it.
const API_KEY_ENV: &str = "IMGSEARCH_API_KEY";

pub type Client = ImageSearchClient<InterceptedService<Channel, Bearer>>;

/// How to reach the gateway; every command takes these.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Address of the imgsearch gateway (`host:port` or a URI; `https://`
    /// for TLS).
    #[arg(
        long,
        global = true,
        env = "IMGSEARCH_GATEWAY",
        default_value = "http://127.0.0.1:50051"
    )]
    pub gateway: String,

    /// Seconds to wait for the gateway to accept the connection.
    #[arg(
        long,
        global = true,
        env = "IMGSEARCH_CONNECT_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub connect_timeout_secs: u64,

    /// PEM CA bundle to verify an https:// gateway with (the system's roots
    /// when unset).
    #[arg(long, global = true, env = "IMGSEARCH_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate, for a gateway that requires one (mTLS).
    #[arg(long, global = true, env = "IMGSEARCH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, global = true, env = "IMGSEARCH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Seconds a command keeps sending again a call the gateway refused as
    /// busy (RESOURCE_EXHAUSTED with a retry hint), in all for each call;
    /// 0 fails at once.
    #[arg(
        long,
        global = true,
        env = "IMGSEARCH_BUSY_WAIT_SECS",
        default_value_t = 60
    )]
    pub busy_wait_secs: u64,

    /// File holding the API key sent with every call (else the key itself
    /// in IMGSEARCH_API_KEY; never a flag, where `ps` would show it).
    #[arg(long, global = true, env = "IMGSEARCH_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
}

impl GatewayArgs {
    /// How long the command may wait out a busy gateway.
    pub fn patience(&self) -> Patience {
        Patience::new(Duration::from_secs(self.busy_wait_secs))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The `authorization` value to send, if a key is configured.
    fn bearer(&self) -> Result<Bearer, CliError> {
        let key = match &self.api_key_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        CliError::Usage(format!("cannot read API key {}: {e}", file.display()))
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty()),
        };
        let Some(key) = key else {
            return Ok(Bearer(None));
        };
        let value = MetadataValue::try_from(format!("Bearer {key}"))
            .map_err(|_| CliError::Usage("the API key has characters no key has".into()))?;
        Ok(Bearer(Some(value)))
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// `host:port` gets `http://` in front; a full URI is kept as given.
pub fn normalize(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// Connects, failing fast with a clear message when nothing answers.
pub async fn connect(args: &GatewayArgs) -> Result<Client, CliError> {
    let bearer = args.bearer()?;
    Ok(
        ImageSearchClient::with_interceptor(channel(args).await?, bearer)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// A channel to the gateway, for [`connect`] and the health check.
pub async fn channel(args: &GatewayArgs) -> Result<Channel, CliError> {
    let address = &args.gateway;
    let uri = normalize(address);
    let down = |reason: String| CliError::GatewayDown {
        address: uri.clone(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| CliError::Usage(format!("invalid gateway address {address:?}: {e}")))?
        .connect_timeout(args.timeout())
        .tcp_nodelay(true);
    let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    if uri.starts_with("https://") {
        let tls = imgsearch_common::tls::client_config(args.tls_ca.as_deref(), identity, None)
            .map_err(|e| CliError::Usage(format!("TLS: {e}")))?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| CliError::Usage(format!("TLS: {e}")))?;
    } else if args.tls_ca.is_some() || identity.is_some() {
        return Err(CliError::Usage(format!(
            "TLS options need an https:// gateway address, not {uri}"
        )));
    }
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
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    fn args(argv: &[&str]) -> GatewayArgs {
        Cli::parse_from([&["imgsearch"], argv].concat()).gateway
    }

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
        let address = format!("127.0.0.1:{port}");
        let err = connect(&args(&[
            "--gateway",
            &address,
            "--connect-timeout-secs",
            "2",
        ]))
        .await
        .unwrap_err();
        assert!(matches!(err, CliError::GatewayDown { .. }), "{err}");
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("IMGSEARCH_GATEWAY"));
    }

    #[tokio::test]
    async fn a_ca_with_a_plaintext_address_is_a_usage_error() {
        let err = channel(&args(&["--gateway", "127.0.0.1:1", "--tls-ca", "ca.pem"]))
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }
}
