//! Resolving a module reference the way the operator needs it: tag → digest, and whether the
//! manifest is a Wasm image (platform `wasip1/wasm`, `wasip2/wasm`) or a Wasm artifact, with
//! its size. Talks to the registry only; nothing is stored.

use std::collections::HashMap;

use oci_client::manifest::{OciImageIndex, OciImageManifest};
use oci_client::Reference;
use serde::{Deserialize, Serialize};

use crate::error::FetchError;
use crate::fetch::{RegistryConfig, Remote};
use crate::media;

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
    let parsed: Reference = reference.parse().map_err(|e| FetchError::BadReference {
        reference: reference.to_string(),
        why: format!("{e}"),
    })?;
    let remote = Remote::new(registries, reference, &parsed);
    let (mut digest, raw) = manifest_checked(&remote, &parsed).await?;
    let mut value: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| remote.other(format!("manifest {digest} is not JSON: {e}")))?;
    if value.get("manifests").is_some() {
        let index: OciImageIndex = serde_json::from_value(value)
            .map_err(|e| remote.other(format!("index {digest} does not parse: {e}")))?;
        let entry = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture.to_string() == "wasm")
            })
            .ok_or_else(|| FetchError::NotWasm {
                reference: reference.to_string(),
                found: format!(
                    "an index of {} manifests, none for architecture wasm",
                    index.manifests.len()
                ),
            })?;
        let (entry_digest, raw) =
            manifest_checked(&remote, &parsed.clone_with_digest(entry.digest.clone())).await?;
        digest = entry_digest;
        value = serde_json::from_slice(&raw)
            .map_err(|e| remote.other(format!("manifest {digest} is not JSON: {e}")))?;
    }
    let manifest: OciImageManifest = serde_json::from_value(value)
        .map_err(|e| remote.other(format!("manifest {digest} does not parse: {e}")))?;
    let pinned = format!("{}/{}@{digest}", parsed.registry(), parsed.repository());
    let is_artifact = manifest.config.media_type == media::WASM_CONFIG
        || manifest
            .layers
            .iter()
            .any(|l| media::MODULE_LAYERS.contains(&l.media_type.as_str()));
    if is_artifact {
        let layer = media::module_layer(reference, &manifest)?;
        return Ok(Resolved {
            pinned,
            digest,
            format: Format::Artifact,
            size: u64::try_from(layer.size).unwrap_or(0),
            os: None,
        });
    }
    let mut config = Vec::new();
    remote
        .pull_blob(&manifest.config.digest, "image config", &mut config)
        .await?;
    let platform: Platform = serde_json::from_slice(&config).map_err(|e| {
        remote.other(format!(
            "image config {} does not parse: {e}",
            manifest.config.digest
        ))
    })?;
    if platform.architecture != "wasm" {
        return Err(FetchError::NotWasm {
            reference: reference.to_string(),
            found: format!(
                "an image for {}/{} (a Wasm image has platform wasip1/wasm or wasip2/wasm)",
                platform.os, platform.architecture
            ),
        });
    }
    Ok(Resolved {
        pinned,
        digest,
        format: Format::Image,
        size: manifest
            .layers
            .iter()
            .map(|l| u64::try_from(l.size).unwrap_or(0))
            .sum(),
        os: Some(platform.os),
    })
}

/// The fields of an image config that say what it runs on.
#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

/// Fetches a manifest and, when the reference pins a digest, checks the bytes against it.
async fn manifest_checked(
    remote: &Remote<'_>,
    parsed: &Reference,
) -> Result<(String, Vec<u8>), FetchError> {
    let (digest, raw) = remote.manifest(parsed).await?;
    if let Some(expected) = parsed.digest() {
        if expected != digest {
            return Err(FetchError::DigestMismatch {
                reference: remote.reference.to_string(),
                what: "manifest".to_string(),
                expected: expected.to_string(),
                actual: digest,
            });
        }
    }
    Ok((digest, raw))
}
