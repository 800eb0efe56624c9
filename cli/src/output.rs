//! How the CLI fails: one line on stderr naming the problem and the fix, and an exit code a
//! script can branch on (see the crate docs for the table).

use std::process::ExitCode;

use wasmkube_oci::FetchError;

/// Exit code: something failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad usage or input.
pub const EXIT_INPUT: u8 = 2;
/// Exit code: the registry could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: the registry denied access.
pub const EXIT_DENIED: u8 = 4;
/// Exit code: no such repository, tag or digest.
pub const EXIT_NOT_FOUND: u8 = 5;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// The problem and the fix, in one line.
    pub message: String,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn input(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_INPUT,
            message: message.into(),
        }
    }

    /// Any other failure (exit 1).
    pub fn other(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }
}

impl From<FetchError> for Failure {
    fn from(error: FetchError) -> Self {
        let (code, message) = match error {
            FetchError::BadReference { reference, why } => (
                EXIT_INPUT,
                format!(
                    "{reference:?} is not a valid OCI reference ({why}); write \
                     registry/repository:tag, e.g. localhost:5000/apps/hello:1"
                ),
            ),
            FetchError::Unreachable { registry, why, .. } => (
                EXIT_UNREACHABLE,
                format!(
                    "registry {registry} is unreachable ({why}); check the address, and pass \
                     --insecure if it speaks plain HTTP"
                ),
            ),
            FetchError::Unauthorized { registry, why, .. } => (
                EXIT_DENIED,
                format!(
                    "registry {registry} denied access ({why}); pass --username and \
                     --password-stdin, or log in so that ~/.docker/config.json has {registry}"
                ),
            ),
            FetchError::NotFound { reference, why } => (
                EXIT_NOT_FOUND,
                format!("{reference} was not found ({why}); check the repository and tag"),
            ),
            FetchError::NotWasm { reference, found } => (
                EXIT_INPUT,
                format!("{reference} holds no Wasm module: {found}; push one with `wasmkube push`"),
            ),
            other @ FetchError::DigestMismatch { .. } => (EXIT_FAILURE, other.to_string()),
            FetchError::Other { reference, why } => (EXIT_FAILURE, format!("{reference}: {why}")),
        };
        Failure { code, message }
    }
}

/// Prints `failure` and gives its exit code.
pub fn fail(failure: &Failure) -> ExitCode {
    eprintln!("wasmkube: error: {}", failure.message);
    ExitCode::from(failure.code)
}
