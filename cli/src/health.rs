//! `imgsearch health`: whether the gateway can serve, i.e. its Milvus and an
//! embedder answer (`grpc.health.v1` for `imgsearch.v1.ImageSearch`). With
//! `--wait`, scripts use it to start work only once everything is up: the
//! gateway's port opens before its embedders have warmed up.

use std::time::{Duration, Instant};

use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::{
    error::CliError,
    gateway::{self, GatewayArgs},
};

const SERVICE: &str = "imgsearch.v1.ImageSearch";

/// One check: `Ok(true)` when SERVING.
async fn check(gateway: &GatewayArgs) -> Result<bool, CliError> {
    let mut client = HealthClient::new(gateway::channel(gateway).await?);
    let status = client
        .check(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await?
        .into_inner()
        .status;
    Ok(status == ServingStatus::Serving as i32)
}

/// Checks, then re-checks every half second for up to `wait`; an error (exit
/// 3) when the gateway is unreachable or not serving by then.
pub async fn run(gateway: &GatewayArgs, wait: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + wait;
    loop {
        let last = check(gateway).await;
        if let Ok(true) = last {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Err(e) => e,
                Ok(_) => CliError::Rpc(tonic::Status::unavailable(
                    "the gateway is up but NOT_SERVING: its Milvus or every embedder does not answer yet",
                )),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
