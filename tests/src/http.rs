//! A minimal blocking HTTP/1.0 GET for health and metrics endpoints.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

/// The body of `GET path` on loopback `port` when it answers 200, else None.
pub fn get(port: u16, path: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .contains(" 200 ")
        .then(|| body.to_string())
}

/// A Prometheus metric on loopback `port`, summed over its label sets
/// (`name` alone) or for one label set (`name{labels}` as rendered).
pub fn metric(port: u16, name: &str) -> f64 {
    let body = get(port, "/metrics").expect("metrics endpoint answers");
    body.lines()
        .filter(|l| {
            l.starts_with(name) && (name.ends_with('}') || l[name.len()..].starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
