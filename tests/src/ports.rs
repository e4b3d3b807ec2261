//! Free loopback ports, so tests and parallel test binaries never collide.
//!
//! Not port 0: the kernel hands those out of the same range it takes the
//! local ports of outgoing connections from, and with Milvus, embedders and
//! gateways all connecting at once, a port chosen free could be taken by a
//! connection before its server bound it ("Address already in use"). Ports
//! are chosen below that range instead, each one tried by binding it, and
//! never handed out twice by one test process.

use std::{
    net::TcpListener,
    sync::atomic::{AtomicU32, Ordering},
};

/// Lowest port handed out.
const FIRST: u32 = 10_000;

/// The lowest port the kernel uses for outgoing connections.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&low: &u32| low > FIRST + 1_000)
        .unwrap_or(32_768)
}

/// `n` distinct ports free right now. They are held until all are chosen, so
/// they are distinct; another process could still take one before the caller
/// binds it, which no choice can avoid for servers we do not own.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Each process starts somewhere else in the range, so concurrent test
    // binaries seldom try the same ports.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = ephemeral_start() - FIRST;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut held = Vec::with_capacity(n);
    for _ in 0..span {
        if held.len() == n {
            break;
        }
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    assert_eq!(held.len(), n, "no {n} free ports below the ephemeral range");
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}
