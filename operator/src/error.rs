//! The operator's errors. Each variant's `kind()` doubles as the metric label.

use thiserror::Error;

/// A failed reconcile step.
#[derive(Debug, Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API call failed while {doing}: {source}")]
    Kube {
        /// What the reconciler was doing.
        doing: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The object lacks something the API server always sets.
    #[error("wasmapp {0} has no namespace")]
    NoNamespace(String),
    /// A pull secret could not be used.
    #[error("pull secret {name} of wasmapp {app}: {why}")]
    PullSecret {
        /// The app.
        app: String,
        /// The secret.
        name: String,
        /// What is wrong with it.
        why: String,
    },
}

impl Error {
    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::NoNamespace(_) => "no_namespace",
            Error::PullSecret { .. } => "pull_secret",
        }
    }

    /// Wraps a client error with what was being done.
    pub fn kube(doing: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let doing = doing.into();
        move |source| Error::Kube { doing, source }
    }
}
