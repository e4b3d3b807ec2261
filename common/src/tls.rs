//! TLS on both servers and their clients, with rustls (ring).
//!
//! tonic's own server TLS reads its certificate once; here each new
//! connection gets the configuration built from the files as they are now
//! ([`crate::reload`]), so a certificate that cert-manager rotates is served
//! without a restart. Handshakes run off the accept loop, each with a
//! deadline, so a client that connects and says nothing holds up no one.

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use clap::Args;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tonic::transport::{
    server::{Connected, TcpConnectInfo},
    Certificate, ClientTlsConfig, Identity,
};
use tracing::{debug, warn};

use crate::reload;

/// Longest TLS handshake a server waits for.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 64;

/// A server's TLS flags, the same on the gateway and the embedder.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerTlsArgs {
    /// PEM certificate chain: with --tls-key, gRPC is served over TLS only.
    /// Re-read when it changes.
    #[arg(long = "tls-cert", env = "IMGSEARCH_SERVER_TLS_CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --tls-cert. Re-read when it changes.
    #[arg(long = "tls-key", env = "IMGSEARCH_SERVER_TLS_KEY", requires = "cert")]
    pub key: Option<PathBuf>,

    /// PEM CA bundle: clients must then present a certificate it signed
    /// (mutual TLS). Re-read when it changes.
    #[arg(
        long = "tls-client-ca",
        env = "IMGSEARCH_SERVER_TLS_CLIENT_CA",
        requires = "cert"
    )]
    pub client_ca: Option<PathBuf>,
}

/// What stops TLS from being set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Unreadable(#[from] reload::ReadError),
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
}

fn invalid(file: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        file: file.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The protocols a port offers in the TLS handshake (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/2 alone: gRPC.
    Http2,
    /// HTTP/2 and HTTP/1.1: the HTTP API, and gRPC-Web from browsers.
    Http2AndHttp1,
}

impl Protocols {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Protocols::Http2 => vec![b"h2".to_vec()],
            Protocols::Http2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// The server's TLS configuration as the files say now.
#[derive(Clone)]
pub struct ServerTls {
    files: Vec<PathBuf>,
    protocols: Protocols,
    /// The files' contents `current` was built from.
    loaded: Vec<Vec<u8>>,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ServerTls {
    /// `None` when no certificate is configured (plaintext).
    pub fn load(args: &ServerTlsArgs, protocols: Protocols) -> Result<Option<Self>, TlsError> {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            return Ok(None);
        };
        let mut files = vec![cert.clone(), key.clone()];
        files.extend(args.client_ca.clone());
        let pems = reload::read_all(&files)?;
        let config = server_config(&files, &pems, protocols)?;
        let tls = Self {
            files,
            protocols,
            loaded: pems,
            current: Arc::new(RwLock::new(Arc::new(config))),
        };
        Ok(Some(tls))
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.len() == 3
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current.read().expect("tls lock").clone()
    }

    fn watch(&self) -> JoinHandle<()> {
        let (files, current, protocols) =
            (self.files.clone(), self.current.clone(), self.protocols);
        reload::watch(
            "TLS certificate",
            files.clone(),
            self.loaded.clone(),
            move |pems| {
                let config = server_config(&files, pems, protocols)?;
                *current.write().expect("tls lock") = Arc::new(config);
                Ok::<_, TlsError>(())
            },
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(file: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(file, e))?;
    if certs.is_empty() {
        return Err(invalid(file, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// `files` are the certificate, its key and optionally the client CA;
/// `pems` their contents.
fn server_config(
    files: &[PathBuf],
    pems: &[Vec<u8>],
    protocols: Protocols,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files[0], e))?;
    let builder = match (files.get(2), pems.get(2)) {
        (Some(file), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(file, pem)? {
                roots.add(ca).map_err(|e| invalid(file, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(file, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let chain = certificates(&files[0], &pems[0])?;
    let key = PrivateKeyDer::from_pem_slice(&pems[1]).map_err(|e| invalid(&files[1], e))?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&files[0], e))?;
    config.alpn_protocols = protocols.alpn();
    Ok(config)
}

/// A client's TLS settings: `ca` to trust (the system's roots when `None`),
/// and a client certificate for servers that ask for one. `domain` names
/// the server when the URI holds an address rather than its name.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    domain: Option<&str>,
) -> Result<ClientTlsConfig, TlsError> {
    let read = |p: &Path| reload::read_all(&[p.to_path_buf()]).map(|mut pems| pems.remove(0));
    let mut config = ClientTlsConfig::new();
    config = match ca {
        Some(ca) => {
            let pem = read(ca)?;
            certificates(ca, &pem)?;
            config.ca_certificate(Certificate::from_pem(pem))
        }
        None => config.with_native_roots(),
    };
    if let Some((cert, key)) = identity {
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        certificates(cert, &cert_pem)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| invalid(key, e))?;
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    Ok(config)
}

/// A connection the server was handed: plain TCP, or TLS over it.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Plain(s) => s.connect_info(),
            Conn::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections a server serves; dropping it stops accepting and
/// reloading.
pub struct Incoming {
    connections: mpsc::Receiver<Conn>,
    tasks: Vec<JoinHandle<()>>,
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Conn>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Accepts on `listener`, with a TLS handshake first when `tls` is set.
pub fn incoming(listener: TcpListener, tls: Option<ServerTls>) -> Incoming {
    let (tx, connections) = mpsc::channel(ACCEPT_QUEUE);
    let mut tasks = Vec::new();
    if let Some(tls) = &tls {
        tasks.push(tls.watch());
    }
    tasks.push(tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: give others time
                    // to close theirs rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &tls else {
                if tx.send(Conn::Plain(tcp)).await.is_err() {
                    return;
                }
                continue;
            };
            let (acceptor, tx) = (TlsAcceptor::from(tls.config()), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Conn::Tls(Box::new(stream))).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    }));
    Incoming { connections, tasks }
}
