//! Resolving a module reference the way the operator needs it: tag → digest, and whether the
//! manifest is a Wasm image (platform `wasip1/wasm`, `wasip2/wasm`) or a Wasm artifact, with
//! its size. Talks to the registry only; nothing is stored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::FetchError;
use crate::fetch::RegistryConfig;

/// How a module is packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// An OCI image whose rootfs holds the `.wasm`: the pod runs it as its image.
    Image,
    /// A Wasm OCI artifact: the pod runs the module stub and names it by annotation.
    Artifact,
}

/// A module reference resolved against its registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `registry/repository@sha256:…` of the manifest that holds the module.
    pub pinned: String,
    /// That manifest's digest.
    pub digest: String,
    /// Image or artifact.
    pub format: Format,
    /// Bytes of the module layer (artifact) or of all layers (image).
    pub size: u64,
    /// The platform `os` (`wasip1`, `wasip2`) when the registry says.
    pub os: Option<String>,
}

/// Resolves `reference` (tag or digest) with per-registry settings.
pub async fn resolve(
    reference: &str,
    registries: &HashMap<String, RegistryConfig>,
) -> Result<Resolved, FetchError> {
    let inspected = crate::inspect::inspect(reference, registries).await?;
    let module = inspected.module.map_err(|found| FetchError::NotWasm {
        reference: reference.to_string(),
        found,
    })?;
    Ok(Resolved {
        pinned: module.pinned,
        digest: module.digest,
        format: module.format,
        size: module.size,
        os: module.os,
    })
}
