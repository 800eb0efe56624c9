//! Digest-verified fetch of a Wasm artifact's module into the node's blob store
//! (`<dir>/sha256/<hex>`, written atomically, never partially). Blobs already on the node — in
//! our store or in containerd's content store — are used without asking the registry when the
//! reference pins a digest.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Once;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::error::FetchError;
use crate::media;

/// How the node reaches one registry (the shim config's `[registries."host:port"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Speak plain HTTP to this registry (only for registries listed here).
    pub insecure: bool,
    /// Basic-auth user (with `password`); also used for a registry's token service.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// A bearer token sent as is (instead of `username`/`password`).
    pub token: Option<String>,
}

impl RegistryConfig {
    fn auth(&self) -> RegistryAuth {
        match (&self.token, &self.username, &self.password) {
            (Some(token), _, _) => RegistryAuth::Bearer(token.clone()),
            (None, Some(user), password) => {
                RegistryAuth::Basic(user.clone(), password.clone().unwrap_or_default())
            }
            _ => RegistryAuth::Anonymous,
        }
    }
}

/// Where a fetched module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Already in our blob store.
    Store,
    /// Copied from containerd's content store.
    Containerd,
    /// Downloaded from the registry.
    Registry,
}

/// A module on local disk, verified against its digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Path of the module in the blob store.
    pub path: PathBuf,
    /// Digest of the module layer (`sha256:…`).
    pub digest: String,
    /// Digest of the artifact manifest.
    pub manifest_digest: String,
    /// The module's file name, from the layer's title annotation.
    pub title: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Where the module layer came from.
    pub source: Source,
}

/// Fetches Wasm artifacts for one node.
pub struct ModuleFetcher {
    store: PathBuf,
    content_stores: Vec<PathBuf>,
    registries: HashMap<String, RegistryConfig>,
}

impl ModuleFetcher {
    /// A fetcher writing to `store` (blobs go to `store/sha256/<hex>`), reading containerd content
    /// stores (`<dir>/blobs/sha256/<hex>`) first, with per-registry settings.
    pub fn new(
        store: &Path,
        content_stores: Vec<PathBuf>,
        registries: HashMap<String, RegistryConfig>,
    ) -> Self {
        ModuleFetcher {
            store: store.to_path_buf(),
            content_stores,
            registries,
        }
    }

    /// Fetches the module of the artifact `reference` (`registry/repo:tag` or `…@sha256:…`).
    pub async fn fetch(&self, reference: &str) -> Result<Fetched, FetchError> {
        let parsed: Reference = reference.parse().map_err(|e| FetchError::BadReference {
            reference: reference.to_string(),
            why: format!("{e}"),
        })?;
        let remote = Remote::new(&self.registries, reference, &parsed);
        let (manifest_digest, raw) = match parsed.digest() {
            Some(digest) => (
                digest.to_string(),
                self.blob(&remote, digest, "manifest").await?,
            ),
            None => remote.manifest(&parsed).await?,
        };
        let (manifest_digest, manifest) =
            self.image_manifest(&remote, manifest_digest, &raw).await?;
        let layer = media::module_layer(reference, &manifest)?;
        let what = format!("module layer {}", layer.digest);
        let (path, source) = self.blob_file(&remote, &layer.digest, &what).await?;
        let mut magic = [0u8; 4];
        let magic_ok = std::fs::File::open(&path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && &magic == media::WASM_MAGIC;
        if !magic_ok {
            return Err(FetchError::NotWasm {
                reference: reference.to_string(),
                found: format!(
                    "layer {} ({}) does not start with the Wasm magic \\0asm",
                    layer.digest, layer.media_type
                ),
            });
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        info!(reference, digest = %layer.digest, ?source, size, "module fetched");
        Ok(Fetched {
            path,
            digest: layer.digest.clone(),
            manifest_digest,
            title: media::title(layer).map(str::to_string),
            size,
            source,
        })
    }

    /// Parses a manifest, following an index to its Wasm entry.
    async fn image_manifest(
        &self,
        remote: &Remote<'_>,
        digest: String,
        raw: &[u8],
    ) -> Result<(String, OciImageManifest), FetchError> {
        let value: serde_json::Value = serde_json::from_slice(raw)
            .map_err(|e| remote.other(format!("manifest {digest} is not JSON: {e}")))?;
        let media_type = value
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        let is_index = media_type == media::OCI_INDEX
            || media_type == media::DOCKER_LIST
            || (media_type.is_empty() && value.get("manifests").is_some());
        if !is_index {
            let manifest = serde_json::from_value(value)
                .map_err(|e| remote.other(format!("manifest {digest} does not parse: {e}")))?;
            return Ok((digest, manifest));
        }
        let index: OciImageIndex = serde_json::from_value(value)
            .map_err(|e| remote.other(format!("index {digest} does not parse: {e}")))?;
        let wasm = index.manifests.iter().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.architecture.to_string() == "wasm")
        });
        let entry = match (wasm, index.manifests.as_slice()) {
            (Some(entry), _) | (None, [entry]) => entry,
            _ => {
                return Err(FetchError::NotWasm {
                    reference: remote.reference.to_string(),
                    found: format!(
                        "an index of {} manifests, none for architecture wasm",
                        index.manifests.len()
                    ),
                })
            }
        };
        let raw = self.blob(remote, &entry.digest, "manifest").await?;
        let manifest = serde_json::from_slice(&raw)
            .map_err(|e| remote.other(format!("manifest {} does not parse: {e}", entry.digest)))?;
        Ok((entry.digest.clone(), manifest))
    }

    /// A manifest by digest: from the node if it is there, otherwise from the registry's
    /// manifests endpoint, verified and kept.
    async fn blob(
        &self,
        remote: &Remote<'_>,
        digest: &str,
        what: &str,
    ) -> Result<Vec<u8>, FetchError> {
        let target = self.store_path(remote, digest, what)?;
        if let Some((path, _)) = self.local(&target, digest) {
            return std::fs::read(&path)
                .map_err(|e| remote.other(format!("reading {}: {e}", path.display())));
        }
        let pinned = remote.parsed.clone_with_digest(digest.to_string());
        let (actual, raw) = remote.manifest(&pinned).await?;
        if actual != digest {
            return Err(FetchError::DigestMismatch {
                reference: remote.reference.to_string(),
                what: what.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        let dir = self.store.join("sha256");
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| remote.other(format!("temporary file in {}: {e}", dir.display())))?;
        std::io::Write::write_all(tmp.as_file_mut(), &raw)
            .map_err(|e| remote.other(format!("writing {}: {e}", tmp.path().display())))?;
        persist(tmp, &target).map_err(|e| remote.other(e))?;
        Ok(raw)
    }

    /// Where blob `digest` lives in our store (creating the directory).
    fn store_path(
        &self,
        remote: &Remote<'_>,
        digest: &str,
        what: &str,
    ) -> Result<PathBuf, FetchError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| remote.other(format!("{what}: unsupported digest {digest:?}")))?;
        let dir = self.store.join("sha256");
        std::fs::create_dir_all(&dir)
            .map_err(|e| remote.other(format!("creating {}: {e}", dir.display())))?;
        Ok(dir.join(hex))
    }

    /// Blob `digest` from the node: our store, or a containerd content store (copied into ours).
    /// Only content that hashes to its digest is used.
    fn local(&self, target: &Path, digest: &str) -> Option<(PathBuf, Source)> {
        if file_digest(target).is_ok_and(|d| d == digest) {
            return Some((target.to_path_buf(), Source::Store));
        }
        let hex = target.file_name()?;
        let dir = target.parent()?;
        for store in &self.content_stores {
            let candidate = store.join("blobs/sha256").join(hex);
            if candidate.is_file() {
                if let Ok(tmp) = copy_verified(&candidate, dir, digest) {
                    if persist(tmp, target).is_ok() {
                        return Some((target.to_path_buf(), Source::Containerd));
                    }
                }
            }
        }
        None
    }

    /// A layer by digest as a verified file in our store: already there, copied from
    /// containerd's content store, or downloaded.
    async fn blob_file(
        &self,
        remote: &Remote<'_>,
        digest: &str,
        what: &str,
    ) -> Result<(PathBuf, Source), FetchError> {
        let target = self.store_path(remote, digest, what)?;
        if let Some(found) = self.local(&target, digest) {
            return Ok(found);
        }
        let dir = self.store.join("sha256");
        let tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| remote.other(format!("temporary file in {}: {e}", dir.display())))?;
        let out = tokio::fs::File::from_std(
            tmp.reopen()
                .map_err(|e| remote.other(format!("temporary file: {e}")))?,
        );
        remote.pull_blob(digest, what, out).await?;
        // oci-client verified the digest while streaming; check the file as written, too.
        let written = file_digest(tmp.path()).map_err(|e| remote.other(e.to_string()))?;
        if written != digest {
            return Err(FetchError::DigestMismatch {
                reference: remote.reference.to_string(),
                what: what.to_string(),
                expected: digest.to_string(),
                actual: written,
            });
        }
        persist(tmp, &target).map_err(|e| remote.other(e))?;
        Ok((target, Source::Registry))
    }
}

/// The registry side of one fetch or resolution: client, auth and error wording.
pub(crate) struct Remote<'a> {
    pub(crate) reference: &'a str,
    pub(crate) parsed: &'a Reference,
    pub(crate) client: Client,
    pub(crate) auth: RegistryAuth,
}

impl<'a> Remote<'a> {
    pub(crate) fn new(
        registries: &HashMap<String, RegistryConfig>,
        reference: &'a str,
        parsed: &'a Reference,
    ) -> Self {
        install_crypto_provider();
        let insecure: Vec<String> = registries
            .iter()
            .filter(|(_, c)| c.insecure)
            .map(|(host, _)| host.clone())
            .collect();
        let config = registries
            .get(parsed.registry())
            .or_else(|| registries.get(parsed.resolve_registry()))
            .cloned()
            .unwrap_or_default();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure),
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            platform_resolver: None,
            ..ClientConfig::default()
        });
        Remote {
            reference,
            parsed,
            client,
            auth: config.auth(),
        }
    }

    pub(crate) fn other(&self, why: impl Into<String>) -> FetchError {
        FetchError::Other {
            reference: self.reference.to_string(),
            why: why.into(),
        }
    }

    /// A manifest (or index) by tag or digest: (sha256 of the bytes, bytes).
    pub(crate) async fn manifest(
        &self,
        parsed: &Reference,
    ) -> Result<(String, Vec<u8>), FetchError> {
        let accepted = [
            media::OCI_MANIFEST,
            media::OCI_INDEX,
            media::DOCKER_MANIFEST,
            media::DOCKER_LIST,
        ];
        let (raw, _) = self
            .client
            .pull_manifest_raw(parsed, &self.auth, &accepted)
            .await
            .map_err(|e| self.classify(e, "manifest"))?;
        Ok((sha256(&raw), raw.to_vec()))
    }

    /// Streams blob `digest` into `out`, verifying it.
    pub(crate) async fn pull_blob<W: tokio::io::AsyncWrite>(
        &self,
        digest: &str,
        what: &str,
        out: W,
    ) -> Result<(), FetchError> {
        self.client
            .store_auth_if_needed(self.parsed.resolve_registry(), &self.auth)
            .await;
        let descriptor = oci_client::manifest::OciDescriptor {
            digest: digest.to_string(),
            ..Default::default()
        };
        self.client
            .pull_blob(self.parsed, &descriptor, out)
            .await
            .map_err(|e| self.classify(e, what))
    }

    /// Turns a client error into the reason a user can act on.
    pub(crate) fn classify(&self, error: OciDistributionError, what: &str) -> FetchError {
        let reference = self.reference.to_string();
        let registry = self.parsed.registry().to_string();
        let not_found = |why: String| FetchError::NotFound {
            reference: reference.clone(),
            why,
        };
        let denied = |why: String| FetchError::Unauthorized {
            reference: reference.clone(),
            registry: registry.clone(),
            why,
        };
        match error {
            // A response with an error status (a HEAD has no body to parse) is the registry
            // answering, not being unreachable.
            OciDistributionError::RequestError(e) => match e.status().map(|s| s.as_u16()) {
                Some(401 | 403) => denied(e.to_string()),
                Some(404) => not_found(e.to_string()),
                Some(code) => self.other(format!("{what}: registry answered {code}: {e}")),
                None => FetchError::Unreachable {
                    reference: reference.clone(),
                    registry: registry.clone(),
                    why: error_chain(&e),
                },
            },
            OciDistributionError::AuthenticationFailure(why) => denied(why),
            OciDistributionError::UnauthorizedError { url } => {
                denied(format!("401 Unauthorized for {url}"))
            }
            OciDistributionError::ImageManifestNotFoundError(why) => not_found(why),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let text = envelope.to_string();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found(text)
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    denied(text)
                } else {
                    self.other(format!("{what}: registry error {text}"))
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                404 => not_found(format!("404 {message}")),
                401 | 403 => denied(format!("{code} {message}")),
                _ => self.other(format!("{what}: registry answered {code}: {message}")),
            },
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => FetchError::DigestMismatch {
                reference,
                what: what.to_string(),
                expected,
                actual,
            },
            other => self.other(format!("{what}: {other}")),
        }
    }
}

/// reqwest hides the cause ("error sending request"); walk the source chain for it.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// reqwest is built without a default TLS crypto provider (to avoid aws-lc); use ring.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The sha256 digest of a file's contents.
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("sha256:{:x}", hasher.finalize()))
}

/// Copies `from` into a temporary file in `dir`, returning it only if it hashes to `digest`.
fn copy_verified(
    from: &Path,
    dir: &Path,
    digest: &str,
) -> std::io::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::copy(&mut std::fs::File::open(from)?, tmp.as_file_mut())?;
    if file_digest(tmp.path())? != digest {
        return Err(std::io::Error::other(
            "content-store blob does not match its digest",
        ));
    }
    Ok(tmp)
}

/// Makes a verified temporary file the store's copy: world-readable, atomically renamed.
fn persist(tmp: tempfile::NamedTempFile, target: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("chmod {}: {e}", tmp.path().display()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| format!("sync {}: {e}", tmp.path().display()))?;
    tmp.persist(target)
        .map_err(|e| format!("storing {}: {}", target.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests;
