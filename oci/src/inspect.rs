//! What a reference holds, read from its registry: the manifest or index it names, the
//! platforms of an index, and for the Wasm entry its format (image or artifact), layers, size,
//! WASI version and a component's imports and exports. [`pull_module`] also brings the module's
//! bytes back, from an artifact's layer or from an image's rootfs at its entrypoint.

use std::collections::HashMap;
use std::io::Read;

use oci_client::manifest::{OciImageIndex, OciImageManifest};
use oci_client::Reference;
use serde::{Deserialize, Serialize};

use crate::error::FetchError;
use crate::fetch::{RegistryConfig, Remote};
use crate::media;
use crate::push::{Progress, CHUNK};
use crate::resolve::Format;

/// What a reference names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspected {
    /// The reference as given.
    pub reference: String,
    /// Digest of the manifest or index it names.
    pub digest: String,
    /// Media type of that manifest or index.
    pub media_type: String,
    /// `os/architecture` of each entry when it is an index.
    pub platforms: Vec<String>,
    /// The Wasm manifest (the reference's own, or the index entry for architecture `wasm`),
    /// or what was found instead.
    pub module: Result<ModuleManifest, String>,
}

/// A manifest that holds a Wasm module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleManifest {
    /// `registry/repository@sha256:…` of this manifest.
    pub pinned: String,
    /// Its digest.
    pub digest: String,
    /// Image or artifact.
    pub format: Format,
    /// Bytes of the module layer (artifact) or of all layers (image).
    pub size: u64,
    /// `wasip1` or `wasip2`, from the config.
    pub os: Option<String>,
    /// Its layers.
    pub layers: Vec<Layer>,
    /// An image's entrypoint (the module's path in its rootfs).
    pub entrypoint: Vec<String>,
    /// A component artifact's recorded imports and exports.
    pub component: Option<ComponentInfo>,
}

/// One layer of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// `org.opencontainers.image.title`, when set.
    pub title: Option<String>,
}

/// The `component` field of a Wasm artifact config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Imported interfaces.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Exported interfaces.
    #[serde(default)]
    pub exports: Vec<String>,
}

/// The config fields we read (image config and Wasm artifact config alike).
#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: ImageConfig,
    #[serde(default)]
    component: Option<ComponentInfo>,
}

#[derive(Deserialize, Default)]
struct ImageConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
}

/// Reads what `reference` (tag or digest) names, with per-registry settings.
pub async fn inspect(
    reference: &str,
    registries: &HashMap<String, RegistryConfig>,
) -> Result<Inspected, FetchError> {
    let parsed = parse(reference)?;
    let remote = Remote::new(registries, reference, &parsed);
    inspect_with(&remote, &parsed).await
}

/// Fetches the module `reference` holds: an artifact's module layer, or the file an image's
/// entrypoint names in its rootfs. Every blob is verified against its digest.
pub async fn pull_module(
    reference: &str,
    registries: &HashMap<String, RegistryConfig>,
    progress: Option<Progress>,
) -> Result<(Inspected, Vec<u8>), FetchError> {
    let parsed = parse(reference)?;
    let remote = Remote::new(registries, reference, &parsed);
    let inspected = inspect_with(&remote, &parsed).await?;
    let module = inspected
        .module
        .as_ref()
        .map_err(|found| FetchError::NotWasm {
            reference: reference.to_string(),
            found: found.clone(),
        })?;
    let bytes = match module.format {
        Format::Artifact => {
            let layer = module
                .layers
                .iter()
                .find(|l| media::MODULE_LAYERS.contains(&l.media_type.as_str()))
                .ok_or_else(|| remote.other("the artifact has no module layer"))?;
            pull_counted(&remote, layer, "module layer", &progress).await?
        }
        Format::Image => {
            let path = module.entrypoint.first().ok_or_else(|| {
                remote.other("the image has no entrypoint naming its module; set one")
            })?;
            let mut found = None;
            // Later layers override earlier ones.
            for layer in &module.layers {
                let blob = pull_counted(&remote, layer, "image layer", &progress).await?;
                if let Some(bytes) = file_in_layer(&blob, &layer.media_type, path)
                    .map_err(|e| remote.other(format!("layer {}: {e}", layer.digest)))?
                {
                    found = Some(bytes);
                }
            }
            found.ok_or_else(|| {
                remote.other(format!(
                    "the image's entrypoint {path} is not in its layers"
                ))
            })?
        }
    };
    Ok((inspected, bytes))
}

/// Pulls one layer into memory, reporting progress as bytes arrive.
async fn pull_counted(
    remote: &Remote<'_>,
    layer: &Layer,
    what: &str,
    progress: &Option<Progress>,
) -> Result<Vec<u8>, FetchError> {
    let mut out = Counting {
        data: Vec::new(),
        digest: &layer.digest,
        size: layer.size,
        progress,
    };
    remote.pull_blob(&layer.digest, what, &mut out).await?;
    if let Some(report) = progress {
        report(&layer.digest, layer.size, layer.size);
    }
    Ok(out.data)
}

/// A `Vec` writer that reports its length.
struct Counting<'a> {
    data: Vec<u8>,
    digest: &'a str,
    size: u64,
    progress: &'a Option<Progress>,
}

impl tokio::io::AsyncWrite for Counting<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let before = this.data.len() / CHUNK;
        this.data.extend_from_slice(buf);
        if let Some(report) = this.progress {
            if this.data.len() / CHUNK != before {
                report(this.digest, this.data.len() as u64, this.size);
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn parse(reference: &str) -> Result<Reference, FetchError> {
    reference.parse().map_err(|e| FetchError::BadReference {
        reference: reference.to_string(),
        why: format!("{e}"),
    })
}

pub(crate) async fn inspect_with(
    remote: &Remote<'_>,
    parsed: &Reference,
) -> Result<Inspected, FetchError> {
    let (digest, raw) = manifest_checked(remote, parsed).await?;
    let value: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| remote.other(format!("manifest {digest} is not JSON: {e}")))?;
    let media_type = value["mediaType"].as_str().unwrap_or_default().to_string();
    let mut inspected = Inspected {
        reference: remote.reference.to_string(),
        digest: digest.clone(),
        media_type,
        platforms: Vec::new(),
        module: Err(String::new()),
    };
    let (manifest_digest, value) = if value.get("manifests").is_some() {
        let index: OciImageIndex = serde_json::from_value(value)
            .map_err(|e| remote.other(format!("index {digest} does not parse: {e}")))?;
        inspected.platforms = index
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        let wasm = index.manifests.iter().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.architecture.to_string() == "wasm")
        });
        let Some(entry) = wasm else {
            inspected.module = Err(format!(
                "an index of {} manifests ({}), none for architecture wasm",
                index.manifests.len(),
                inspected.platforms.join(", ")
            ));
            return Ok(inspected);
        };
        let (entry_digest, raw) =
            manifest_checked(remote, &parsed.clone_with_digest(entry.digest.clone())).await?;
        let value = serde_json::from_slice(&raw)
            .map_err(|e| remote.other(format!("manifest {entry_digest} is not JSON: {e}")))?;
        (entry_digest, value)
    } else {
        (digest, value)
    };
    let manifest: OciImageManifest = serde_json::from_value(value)
        .map_err(|e| remote.other(format!("manifest {manifest_digest} does not parse: {e}")))?;
    inspected.module = module_manifest(remote, parsed, manifest_digest, &manifest).await?;
    Ok(inspected)
}

/// The Wasm view of one manifest, or what it is instead.
async fn module_manifest(
    remote: &Remote<'_>,
    parsed: &Reference,
    digest: String,
    manifest: &OciImageManifest,
) -> Result<Result<ModuleManifest, String>, FetchError> {
    let layers: Vec<Layer> = manifest
        .layers
        .iter()
        .map(|l| Layer {
            media_type: l.media_type.clone(),
            digest: l.digest.clone(),
            size: u64::try_from(l.size).unwrap_or(0),
            title: media::title(l).map(str::to_string),
        })
        .collect();
    let is_artifact = manifest.config.media_type == media::WASM_CONFIG
        || layers
            .iter()
            .any(|l| media::MODULE_LAYERS.contains(&l.media_type.as_str()));
    let mut raw = Vec::new();
    remote
        .pull_blob(&manifest.config.digest, "config", &mut raw)
        .await?;
    // A Wasm artifact's config may be empty ({}); an image's must parse.
    let config: Config = match serde_json::from_slice(&raw) {
        Ok(c) => c,
        Err(_) if is_artifact => Config::default(),
        Err(e) => {
            return Err(remote.other(format!(
                "image config {} does not parse: {e}",
                manifest.config.digest
            )))
        }
    };
    let pinned = format!("{}/{}@{digest}", parsed.registry(), parsed.repository());
    let os = Some(config.os.clone()).filter(|o| !o.is_empty());
    if is_artifact {
        let layer = match media::module_layer(remote.reference, manifest) {
            Ok(layer) => layer,
            Err(FetchError::NotWasm { found, .. }) => return Ok(Err(found)),
            Err(e) => return Err(e),
        };
        return Ok(Ok(ModuleManifest {
            pinned,
            digest,
            format: Format::Artifact,
            size: u64::try_from(layer.size).unwrap_or(0),
            os,
            layers,
            entrypoint: Vec::new(),
            component: config.component,
        }));
    }
    if config.architecture != "wasm" {
        return Ok(Err(format!(
            "an image for {}/{} (a Wasm image has platform wasip1/wasm or wasip2/wasm)",
            config.os, config.architecture
        )));
    }
    Ok(Ok(ModuleManifest {
        pinned,
        digest,
        format: Format::Image,
        size: layers.iter().map(|l| l.size).sum(),
        os,
        layers,
        entrypoint: config.config.entrypoint.unwrap_or_default(),
        component: None,
    }))
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

/// The contents of the regular file at `path` (absolute, as an entrypoint names it) in a tar
/// layer (plain or gzip), if the layer has it.
fn file_in_layer(blob: &[u8], media_type: &str, path: &str) -> std::io::Result<Option<Vec<u8>>> {
    let reader: Box<dyn Read + '_> =
        if media_type.ends_with("gzip") || blob.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(blob))
        } else {
            Box::new(blob)
        };
    let want = path.trim_start_matches('/');
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name.trim_start_matches("./").trim_start_matches('/') == want
            && entry.header().entry_type().is_file()
        {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}
