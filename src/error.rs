//! The controller's error type: what can end a reconcile (and is retried) or stop the process.
//! Each layer below has its own: [`crate::compile::CompileError`] for specs,
//! [`crate::evidence::credentials::SecretError`], [`crate::evidence::http::ClientError`] and the
//! sources' own for evidence (which becomes NoData or Error evidence, never an `Error` here).

use thiserror::Error;

use crate::evidence::http::ClientError;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A promote or abort tollgate will not send (see [`crate::controller::actuate::patch`]).
    #[error("refusing to {action} {rollout}: {reason}")]
    Refused {
        action: &'static str,
        rollout: String,
        reason: String,
    },
    #[error("{0} has no namespace or name")]
    Unnamed(&'static str),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    #[error("starting the controller: {0}")]
    Startup(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, stable label for metrics and Events.
    /// Every [`Error::kind`], so `/metrics` can show each at 0 before its first error.
    pub const KINDS: [&'static str; 7] = [
        "kube", "refused", "unnamed", "client", "io", "yaml", "startup",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Refused { .. } => "refused",
            Error::Unnamed(_) => "unnamed",
            Error::Client(_) => "client",
            Error::Io(_) => "io",
            Error::Yaml(_) => "yaml",
            Error::Startup(_) => "startup",
        }
    }
}
