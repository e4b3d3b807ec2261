//! DNS discovery: each configured hostname stands for every address it
//! resolves to (a Kubernetes headless Service names all ready pods), and
//! [`Embedders::refresh`] re-resolves it: one HTTP/2 connection per pod, so
//! streams spread over pods instead of all riding the one connection a
//! single name would get.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use imgsearch_proto::limits::DNS_LOOKUP_TIMEOUT;
use tonic::codegen::http::Uri;
use tracing::{info, warn};

use super::{replica::Replica, Embedders};

/// A configured endpoint; `name` is set when it is a hostname to resolve.
pub(super) struct Target {
    pub uri: String,
    pub name: Option<DnsName>,
}

/// The parts of `http://host:port` that resolution needs.
#[derive(Debug, PartialEq)]
pub(super) struct DnsName {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// `Some` for a URI whose host is a name (not an IP literal).
pub(super) fn dns_name(uri: &str) -> Option<DnsName> {
    let parsed: Uri = uri.parse().ok()?;
    let host = parsed.host()?;
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return None;
    }
    let scheme = parsed.scheme_str().unwrap_or("http").to_string();
    let port = parsed
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(DnsName {
        scheme,
        host: host.to_string(),
        port,
    })
}

/// What one configured endpoint resolved to this time.
type Resolution = Result<Vec<SocketAddr>, String>;

impl Embedders {
    /// Re-resolves the hostnames (DNS discovery); a no-op without it.
    pub async fn refresh(&self) {
        if self.targets.iter().all(|t| t.name.is_none()) {
            return;
        }
        let lookups = self.targets.iter().map(|t| async move {
            match &t.name {
                // Not read: `apply` keeps a static target as configured.
                None => Ok(Vec::new()),
                Some(n) => {
                    let lookup = tokio::net::lookup_host((n.host.as_str(), n.port));
                    match tokio::time::timeout(DNS_LOOKUP_TIMEOUT, lookup).await {
                        Ok(found) => found.map(|a| a.collect()).map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "no answer within {} s",
                            DNS_LOOKUP_TIMEOUT.as_secs()
                        )),
                    }
                }
            }
        });
        let resolved = futures::future::join_all(lookups).await;
        self.apply(resolved);
    }

    /// Rebuilds the replica list from one resolution per target. A replica
    /// whose address stays keeps its channel and its down mark; a target
    /// that failed to resolve keeps the replicas it had; a name that
    /// resolved to nothing is dialled as given.
    fn apply(&self, resolved: Vec<Resolution>) {
        let current = self.snapshot();
        let mut uris: Vec<(usize, String)> = Vec::new();
        for (i, (t, r)) in self.targets.iter().zip(resolved).enumerate() {
            let Some(name) = &t.name else {
                uris.push((i, t.uri.clone()));
                continue;
            };
            match r {
                Ok(addrs) if !addrs.is_empty() => {
                    let mut found: Vec<String> = addrs
                        .iter()
                        .map(|a| format!("{}://{a}", name.scheme))
                        .collect();
                    found.sort();
                    found.dedup();
                    uris.extend(found.into_iter().map(|u| (i, u)));
                }
                Ok(_) => uris.push((i, t.uri.clone())),
                Err(e) => {
                    warn!(embedder = %t.uri, error = %e, "cannot resolve; keeping its replicas");
                    let kept: Vec<_> = current.iter().filter(|r| r.target == i).collect();
                    if kept.is_empty() {
                        uris.push((i, t.uri.clone()));
                    }
                    uris.extend(kept.into_iter().map(|r| (i, r.uri.clone())));
                }
            }
        }
        let same = uris.len() == current.len()
            && uris
                .iter()
                .zip(current.iter())
                .all(|((_, u), r)| *u == r.uri);
        if same {
            return;
        }
        let next: Vec<Arc<Replica>> = uris
            .into_iter()
            .filter_map(|(i, uri)| match current.iter().find(|r| r.uri == uri) {
                Some(r) => Some(r.clone()),
                None => self
                    .replica(i, uri)
                    .map_err(|e| warn!(error = %e, "skipping an embedder address"))
                    .ok(),
            })
            .collect();
        info!(replicas = ?next.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(), "embedder replicas");
        *self.replicas.write().expect("replicas lock") = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedders::tests::embedders;

    fn uris(e: &Embedders) -> Vec<String> {
        e.snapshot().iter().map(|r| r.uri.clone()).collect()
    }

    fn addrs(list: &[&str]) -> Resolution {
        Ok(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn only_hostnames_are_resolved() {
        assert_eq!(
            dns_name("http://embedder.imgsearch.svc:50052"),
            Some(DnsName {
                scheme: "http".into(),
                host: "embedder.imgsearch.svc".into(),
                port: 50052
            })
        );
        assert_eq!(dns_name("https://embedder").unwrap().port, 443);
        assert_eq!(dns_name("http://10.0.0.7:50052"), None);
        assert_eq!(dns_name("http://[::1]:50052"), None);
    }

    #[tokio::test]
    async fn a_name_stands_for_every_address_it_resolves_to() {
        let e = embedders(&["http://embedder:50052", "http://10.0.0.9:50052"], true);
        assert_eq!(uris(&e), ["http://embedder:50052", "http://10.0.0.9:50052"]);

        e.apply(vec![
            addrs(&["10.1.1.2:50052", "10.1.1.1:50052", "10.1.1.2:50052"]),
            Ok(vec![]),
        ]);
        assert_eq!(
            uris(&e),
            [
                "http://10.1.1.1:50052",
                "http://10.1.1.2:50052",
                "http://10.0.0.9:50052"
            ]
        );

        // A pod goes, another comes: the one that stays keeps its channel
        // and its down mark.
        let stays = e.snapshot()[1].clone();
        e.failed(&stays, std::time::Duration::ZERO);
        e.apply(vec![
            addrs(&["10.1.1.2:50052", "10.1.1.3:50052"]),
            Ok(vec![]),
        ]);
        assert_eq!(
            uris(&e),
            [
                "http://10.1.1.2:50052",
                "http://10.1.1.3:50052",
                "http://10.0.0.9:50052"
            ]
        );
        assert!(Arc::ptr_eq(&e.snapshot()[0], &stays));
        for _ in 0..6 {
            let first = e.order(super::super::replica::Work::Call).remove(0);
            assert_ne!(first.uri, stays.uri, "a replica marked down is skipped");
        }

        // A failed lookup keeps what the name had; no answer dials the name.
        e.apply(vec![Err("no such host".into()), Ok(vec![])]);
        assert_eq!(e.replica_count(), 3);
        e.apply(vec![Ok(vec![]), Ok(vec![])]);
        assert_eq!(uris(&e), ["http://embedder:50052", "http://10.0.0.9:50052"]);
    }

    #[tokio::test]
    async fn without_dns_names_are_dialled_as_given() {
        let e = embedders(&["http://localhost:50052"], false);
        e.refresh().await;
        assert_eq!(uris(&e), ["http://localhost:50052"]);
    }

    #[tokio::test]
    async fn refresh_resolves_a_real_name() {
        let e = embedders(&["http://localhost:50052"], true);
        e.refresh().await;
        let found = uris(&e);
        assert!(!found.is_empty());
        assert!(
            found
                .iter()
                .all(|u| u == "http://127.0.0.1:50052" || u == "http://[::1]:50052"),
            "{found:?}"
        );
    }
}
