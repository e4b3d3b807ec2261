//! Free loopback ports, so tests and parallel test binaries never collide.

use std::net::TcpListener;

/// `n` distinct ports free right now. They are held until all are chosen, so
/// they are distinct; another process could still take one before the caller
/// binds it, which port 0 cannot avoid for servers we do not own.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}
