//! The CLI's one error type: every failure becomes a message a person can
//! act on and an exit status a script can test.

use tonic::{Code, Status};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The gateway did not answer at all.
    #[error(
        "cannot reach the imgsearch gateway at {address}: {reason}\n\
         Is it running? Point --gateway (or IMGSEARCH_GATEWAY) at it."
    )]
    GatewayDown { address: String, reason: String },
    /// The command line names something that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The gateway answered with an error.
    #[error("{}", describe(.0))]
    Rpc(Status),
    /// An Insert stream stopped part-way; what it committed is kept.
    #[error(
        "ingest stopped: {}\n{inserted} images were stored before it stopped \
         (each acknowledged by the gateway); run the same command with \
         --skip-existing to resume",
        describe(.status)
    )]
    IngestStopped { status: Status, inserted: u64 },
    /// The result picture could not be written.
    #[error("cannot write {path}: {reason}")]
    Picture { path: String, reason: String },
}

impl CliError {
    /// 2 for a wrong command line (as clap does), 3 when the gateway cannot
    /// be reached, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::GatewayDown { .. } => 3,
            CliError::Rpc(s) | CliError::IngestStopped { status: s, .. }
                if s.code() == Code::Unavailable =>
            {
                3
            }
            CliError::Rpc(_) | CliError::IngestStopped { .. } | CliError::Picture { .. } => 1,
        }
    }
}

impl From<Status> for CliError {
    fn from(s: Status) -> Self {
        CliError::Rpc(s)
    }
}

/// A status as a sentence, with the hint its code calls for.
fn describe(s: &Status) -> String {
    let hint = match s.code() {
        Code::NotFound => " (list collections with `imgsearch collection list`)",
        Code::Unavailable => " (the gateway, Milvus or the embedders are down or restarting; try again)",
        Code::ResourceExhausted => " (the service is overloaded or the message too large; retry later or send less at once)",
        _ => "",
    };
    format!("{:?}: {}{hint}", s.code(), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_exit_3_with_a_hint() {
        let e = CliError::Rpc(Status::unavailable("Milvus is unavailable"));
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("try again"));
        assert_eq!(CliError::Rpc(Status::not_found("x")).exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
    }
}
