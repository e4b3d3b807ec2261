//! The HTTP port's connections, as axum takes them: the same accept loop
//! as the gRPC port (TLS handshakes off the loop, each with a deadline, and
//! a certificate re-read when it changes).

use std::{io, net::SocketAddr};

use futures::StreamExt;
use imgsearch_common::tls::{Conn, Incoming};
use tonic::transport::server::Connected;

pub struct Connections {
    incoming: Incoming,
    local: SocketAddr,
}

impl Connections {
    pub fn new(incoming: Incoming, local: SocketAddr) -> Self {
        Self { incoming, local }
    }
}

impl axum::serve::Listener for Connections {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.connect_info().remote_addr().unwrap_or(self.local);
                    return (conn, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop stops only when the port is dropped.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
