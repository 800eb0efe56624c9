//! Pushing a built image or artifact ([`crate::layout::Built`]) to a registry: blobs the
//! registry already has are skipped, the rest are streamed in chunks with progress, then the
//! manifest is put under the reference's tag.

use std::collections::HashMap;
use std::sync::Arc;

use oci_client::Reference;
use oci_client::RegistryOperation;

use crate::error::FetchError;
use crate::fetch::{RegistryConfig, Remote};
use crate::layout::{digest, Built};
use crate::media;

/// Bytes per upload chunk (and per progress report).
pub const CHUNK: usize = 1 << 20;

/// Told `(blob digest, bytes sent, blob size)` as a push proceeds; a skipped blob is reported
/// once as complete.
pub type Progress = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// Pushes `built` to `reference` (`registry/repository:tag`); returns the manifest digest.
pub async fn push(
    reference: &str,
    built: &Built,
    registries: &HashMap<String, RegistryConfig>,
    progress: Option<Progress>,
) -> Result<String, FetchError> {
    let parsed: Reference = reference.parse().map_err(|e| FetchError::BadReference {
        reference: reference.to_string(),
        why: format!("{e}"),
    })?;
    if parsed.digest().is_some() {
        return Err(FetchError::BadReference {
            reference: reference.to_string(),
            why: "a push needs a tag, not a digest".into(),
        });
    }
    let remote = Remote::new(registries, reference, &parsed);
    remote.authorize(RegistryOperation::Push).await?;
    for blob in built.layers.iter().chain([&built.config]) {
        let blob_digest = digest(blob);
        let size = blob.len() as u64;
        if !remote.has_blob(&blob_digest).await? {
            remote
                .push_blob(blob, &blob_digest, progress.clone())
                .await?;
        }
        if let Some(report) = &progress {
            report(&blob_digest, size, size);
        }
    }
    remote
        .push_manifest(&built.manifest, media::OCI_MANIFEST)
        .await?;
    Ok(built.digest())
}

impl Remote<'_> {
    /// Asks the registry for a token for `operation` (a no-op where none is needed).
    pub(crate) async fn authorize(&self, operation: RegistryOperation) -> Result<(), FetchError> {
        self.client
            .auth(self.parsed, &self.auth, operation)
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e, "login"))
    }

    async fn has_blob(&self, blob_digest: &str) -> Result<bool, FetchError> {
        self.client
            .blob_exists(self.parsed, blob_digest)
            .await
            .map_err(|e| self.classify(e, "blob check"))
    }

    async fn push_blob(
        &self,
        blob: &[u8],
        blob_digest: &str,
        progress: Option<Progress>,
    ) -> Result<(), FetchError> {
        let data = bytes::Bytes::copy_from_slice(blob);
        let size = data.len() as u64;
        let what = blob_digest.to_string();
        let chunks: Vec<bytes::Bytes> = (0..data.len())
            .step_by(CHUNK)
            .map(|at| data.slice(at..(at + CHUNK).min(data.len())))
            .collect();
        let mut sent = 0u64;
        let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
            if let Some(report) = &progress {
                report(&what, sent, size);
            }
            sent += chunk.len() as u64;
            Ok(chunk)
        }));
        self.client
            .push_blob_stream(self.parsed, stream, blob_digest, Some(size))
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e, "blob upload"))
    }

    async fn push_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), FetchError> {
        let content_type = media_type
            .parse()
            .map_err(|_| self.other(format!("bad media type {media_type}")))?;
        self.client
            .push_manifest_raw(self.parsed, manifest.to_vec(), content_type)
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e, "manifest upload"))
    }
}
