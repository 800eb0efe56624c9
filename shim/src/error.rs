//! The shim's one error type, and its single mapping onto ttrpc status codes.

use containerd_shim::protos::ttrpc::{self, Code};

/// Everything that can go wrong inside the shim, named by what the user must fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (a bad id, an unsupported option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The named container or process does not exist in this shim.
    #[error("{0} not found")]
    NotFound(String),
    /// A container with this id was already created in this shim.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The call is legal, but not in the container's current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The call is part of the shim API but wasmkube does not offer it (yet).
    #[error("{0} is not implemented by the wasmkube shim")]
    Unimplemented(&'static str),
    /// The container's module cannot run: not Wasm, missing, malformed, unknown import.
    #[error("{0}")]
    Module(String),
    /// The OCI bundle (config.json, rootfs, mounts) is unusable.
    #[error("bad bundle: {0}")]
    Bundle(String),
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the shim was doing, naming the object.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A bug or an impossible state; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for the shim.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the action and object it concerns.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// The gRPC status code containerd sees for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) | Error::Module(_) | Error::Bundle(_) => {
                Code::INVALID_ARGUMENT
            }
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Io { .. } | Error::Internal(_) => Code::INTERNAL,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(err: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(err.code(), err.to_string()))
    }
}

impl From<containerd_shim::Error> for Error {
    fn from(err: containerd_shim::Error) -> Self {
        Error::Internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_the_documented_code() {
        let cases = [
            (Error::InvalidArgument("x".into()), Code::INVALID_ARGUMENT),
            (Error::Module("x".into()), Code::INVALID_ARGUMENT),
            (Error::NotFound("x".into()), Code::NOT_FOUND),
            (Error::AlreadyExists("x".into()), Code::ALREADY_EXISTS),
            (
                Error::FailedPrecondition("x".into()),
                Code::FAILED_PRECONDITION,
            ),
            (Error::Unimplemented("Pause"), Code::UNIMPLEMENTED),
            (Error::Internal("x".into()), Code::INTERNAL),
        ];
        for (err, code) in cases {
            let msg = err.to_string();
            match ttrpc::Error::from(err) {
                ttrpc::Error::RpcStatus(status) => {
                    assert_eq!(status.code(), code, "{msg}");
                    assert_eq!(status.message(), msg);
                }
                other => panic!("unexpected ttrpc error {other:?}"),
            }
        }
    }
}
