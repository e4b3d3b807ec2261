//! Health probes: `Info` from every replica at once, each within its own
//! deadline, so hung replicas cost one probe timeout a round, not one each.
//! A probe only says whether a replica may be tried; a replica a real call
//! failed on waits for a real call to succeed (see [`super::replica`]).

use imgsearch_proto::{
    limits::EMBEDDER_PROBE_TIMEOUT,
    v1::{InfoRequest, InfoResponse},
};

use super::{failure::status_error, replica::Replica, Embedders};
use crate::error::GatewayError;

impl Embedders {
    /// A replica's model fingerprint: from its last `Info`, or asked now.
    pub(super) async fn fingerprint_of(&self, replica: &Replica) -> Result<String, GatewayError> {
        if let Some(info) = replica.info.read().expect("info lock").as_ref() {
            return Ok(info.fingerprint.clone());
        }
        Ok(self.ask_info(replica).await?.fingerprint)
    }

    /// `Info` from one replica, kept for later calls; records whether the
    /// replica may be tried.
    async fn ask_info(&self, r: &Replica) -> Result<InfoResponse, GatewayError> {
        let call =
            tokio::time::timeout(EMBEDDER_PROBE_TIMEOUT, r.unary.clone().info(InfoRequest {}))
                .await;
        let answer = match call {
            Ok(Ok(info)) => info.into_inner(),
            Ok(Err(s)) => {
                r.probed(false);
                return Err(status_error(s));
            }
            Err(_) => {
                r.probed(false);
                return Err(GatewayError::EmbedderUnavailable(format!(
                    "{}: Info timed out",
                    r.uri
                )));
            }
        };
        *r.info.write().expect("info lock") = Some(answer.clone());
        // It answers, but its model finishes nothing: out, until it says it
        // finishes batches again.
        let stalled = answer.stalled_for_ms > 0;
        r.probed(!stalled);
        if stalled {
            return Err(GatewayError::EmbedderUnavailable(format!(
                "{}: its model finished no batch for {} s while images waited",
                r.uri,
                answer.stalled_for_ms / 1000
            )));
        }
        Ok(answer)
    }

    /// Asks every replica for `Info` at once; the first answer in replica
    /// order, or why none came.
    pub async fn info(&self) -> Result<InfoResponse, GatewayError> {
        let mut answer = None;
        let mut error = None;
        let replicas = self.snapshot();
        let answers = futures::future::join_all(replicas.iter().map(|r| self.ask_info(r))).await;
        for result in answers {
            match result {
                Ok(info) => {
                    answer.get_or_insert(info);
                }
                Err(e) => error = Some(e),
            }
        }
        answer.ok_or_else(|| {
            error.unwrap_or_else(|| GatewayError::EmbedderUnavailable("no embedder".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::embedders::tests::embedders;

    #[tokio::test]
    async fn hung_replicas_cost_one_probe_timeout_a_round_not_one_each() {
        // Listeners that take connections and never answer: a frozen pod.
        let mut held = Vec::new();
        let mut uris = Vec::new();
        for _ in 0..3 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            uris.push(format!("http://{}", l.local_addr().unwrap()));
            held.push(tokio::spawn(async move {
                let mut open = Vec::new();
                while let Ok((conn, _)) = l.accept().await {
                    open.push(conn);
                }
            }));
        }
        let e = embedders(&uris.iter().map(String::as_str).collect::<Vec<_>>(), false);
        let started = Instant::now();
        assert!(e.info().await.is_err());
        let took = started.elapsed();
        assert!(
            took >= EMBEDDER_PROBE_TIMEOUT && took < EMBEDDER_PROBE_TIMEOUT * 2,
            "three hung replicas took {took:?}"
        );
        for h in held {
            h.abort();
        }
    }
}
