//! Why a module could not be fetched, worded for the container's error reason.

use thiserror::Error;

/// A failed fetch. Every variant names the reference and says what to do.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The reference does not parse.
    #[error("module {reference:?} is not a valid OCI reference ({why}); write registry/repository:tag or registry/repository@sha256:<digest>")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// Parser message.
        why: String,
    },
    /// The registry could not be reached.
    #[error("module {reference}: registry {registry} is unreachable ({why}); check that it is up and that the shim config lists it as insecure if it speaks plain HTTP")]
    Unreachable {
        /// The reference.
        reference: String,
        /// Registry host.
        registry: String,
        /// Transport error.
        why: String,
    },
    /// The registry refused our credentials or wanted some.
    #[error("module {reference}: registry {registry} denied access ({why}); add credentials for {registry} under [registries] in the shim config")]
    Unauthorized {
        /// The reference.
        reference: String,
        /// Registry host.
        registry: String,
        /// Registry message.
        why: String,
    },
    /// No such tag, digest or repository.
    #[error("module {reference}: not found in the registry ({why}); push it or fix the tag")]
    NotFound {
        /// The reference.
        reference: String,
        /// Registry message.
        why: String,
    },
    /// Content did not hash to its digest.
    #[error("module {reference}: {what} failed digest verification (expected {expected}, got {actual}); the content was discarded")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// Which blob (manifest, layer sha256:…).
        what: String,
        /// Digest asked for.
        expected: String,
        /// Digest of what arrived.
        actual: String,
    },
    /// The manifest is not a Wasm artifact, or its layer is not Wasm.
    #[error("module {reference} is not a Wasm artifact: {found}; push the module as a Wasm OCI artifact (config application/vnd.wasm.config.v0+json, one application/wasm layer) or use a Wasm image as the container image")]
    NotWasm {
        /// The reference.
        reference: String,
        /// What it is instead.
        found: String,
    },
    /// Any other registry or local failure.
    #[error("module {reference}: {why}")]
    Other {
        /// The reference.
        reference: String,
        /// What went wrong.
        why: String,
    },
}
