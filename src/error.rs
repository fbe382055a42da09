//! The one error type of the crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    #[error("refusing to {action} {rollout}: {reason}")]
    Refused {
        action: &'static str,
        rollout: String,
        reason: String,
    },

    #[error("{0} has no namespace or name")]
    Unnamed(&'static str),

    #[error("I/O: {0}")]
    Io(String),

    #[error("writing YAML: {0}")]
    Yaml(String),

    #[error("serializing {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, stable label for metrics and Events.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Refused { .. } => "refused",
            Error::Unnamed(_) => "unnamed",
            Error::Serialize { .. } => "serialize",
            Error::Yaml(_) => "yaml",
            Error::Io(_) => "io",
        }
    }
}
