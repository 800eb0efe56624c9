//! OCI image layout archives (a tar that `ctr images import`, `skopeo copy oci-archive:` and
//! registries accept): single-layer images whose rootfs holds a module (platform `wasip1/wasm`
//! or `wasip2/wasm`, entrypoint set), native images, the module stub image, and Wasm OCI
//! artifacts. Used by the node installer (stub image), the CLI and the test harness.

use std::path::Path;

use std::io::Result;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{handoff, media};

/// One file in the image's rootfs.
pub struct File {
    /// Path inside the rootfs, without a leading slash (`hello.wasm`).
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Unix mode.
    pub mode: u32,
}

/// An image to build.
pub struct Image {
    /// Full containerd name (`docker.io/wasmkube/hello:test`).
    pub name: String,
    /// Entrypoint (args[0] and more).
    pub entrypoint: Vec<String>,
    /// `os` of the platform (`wasip1`, `wasip2`, or `linux` for native images).
    pub os: String,
    /// `architecture` of the platform (`wasm`, or the host's for native images).
    pub arch: String,
    /// Files of the single layer.
    pub files: Vec<File>,
    /// Symbolic links of the single layer: (path, target).
    pub links: Vec<(String, String)>,
}

impl Image {
    /// An image holding one module at `/<file>` with it as the entrypoint.
    pub fn module(name: &str, file: &str, data: Vec<u8>, os: &str) -> Image {
        Image {
            name: name.to_string(),
            entrypoint: vec![format!("/{file}")],
            os: os.to_string(),
            arch: "wasm".to_string(),
            files: vec![File {
                path: file.to_string(),
                data,
                mode: 0o755,
            }],
            links: Vec::new(),
        }
    }

    /// A native Linux image for the host's architecture with one static executable as its
    /// entrypoint (the pause image, runc containers).
    pub fn native(name: &str, file: &str, data: Vec<u8>) -> Image {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Image {
            os: "linux".to_string(),
            arch: arch.to_string(),
            ..Image::module(name, file, data, "linux")
        }
    }

    /// The module stub image ([`handoff::STUB_IMAGE`]): entrypoint [`handoff::STUB_ENTRYPOINT`],
    /// a marker file there, nothing else. Every node imports it; pods that run a Wasm artifact
    /// use it as their container image.
    pub fn stub() -> Image {
        let file = handoff::STUB_ENTRYPOINT.trim_start_matches('/');
        Image {
            entrypoint: vec![handoff::STUB_ENTRYPOINT.to_string()],
            files: vec![File {
                path: file.to_string(),
                data: handoff::STUB_MARKER.as_bytes().to_vec(),
                mode: 0o644,
            }],
            ..Image::module(handoff::STUB_IMAGE, file, Vec::new(), "wasip1")
        }
    }

    /// Adds a regular file (path without a leading slash).
    pub fn with_file(mut self, path: &str, data: &[u8]) -> Image {
        self.files.push(File {
            path: path.to_string(),
            data: data.to_vec(),
            mode: 0o644,
        });
        self
    }

    /// Adds a symbolic link.
    pub fn with_symlink(mut self, path: &str, target: &str) -> Image {
        self.links.push((path.to_string(), target.to_string()));
        self
    }

    fn layer(&self) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o1777);
        dir.set_size(0);
        dir.set_mtime(0);
        dir.set_cksum();
        builder.append_data(&mut dir.clone(), "tmp/", std::io::empty())?;
        let mut parents: Vec<String> = self
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(self.links.iter().map(|(p, _)| p.as_str()))
            .flat_map(|p| {
                let parts: Vec<&str> = p.split('/').collect();
                (1..parts.len())
                    .map(|i| format!("{}/", parts[..i].join("/")))
                    .collect::<Vec<_>>()
            })
            .collect();
        parents.sort();
        parents.dedup();
        for parent in parents {
            let mut h = dir.clone();
            h.set_mode(0o755);
            h.set_cksum();
            builder.append_data(&mut h, &parent, std::io::empty())?;
        }
        for f in &self.files {
            let mut h = tar::Header::new_gnu();
            h.set_size(f.data.len() as u64);
            h.set_mode(f.mode);
            h.set_mtime(0);
            h.set_cksum();
            builder.append_data(&mut h, &f.path, f.data.as_slice())?;
        }
        for (path, target) in &self.links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_mtime(0);
            builder.append_link(&mut h, path, target)?;
        }
        builder.into_inner()
    }

    /// The image's blobs: one uncompressed tar layer, an image config with the platform and
    /// entrypoint, and the manifest.
    pub fn build(&self) -> Result<Built> {
        let layer = self.layer()?;
        let layer_digest = digest(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": self.arch,
            "os": self.os,
            "config": {"Entrypoint": self.entrypoint, "Env": ["PATH=/"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {
                "mediaType": media::OCI_CONFIG,
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": media::OCI_LAYER_TAR,
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))?;
        Ok(Built {
            manifest,
            config,
            layers: vec![layer],
            platform: json!({"os": self.os, "architecture": self.arch}),
        })
    }

    /// Writes the image as an OCI layout tar archive at `out`.
    pub fn write_archive(&self, out: &Path) -> Result<()> {
        self.build()?.write_archive(out, &self.name)
    }
}

/// A Wasm OCI artifact (the CNCF TAG Runtime format): config
/// `application/vnd.wasm.config.v0+json`, one module layer titled with the file name.
pub struct Artifact {
    /// Full name (`docker.io/wasmkube/hello-artifact:p1`); its tag is the layout's ref name.
    pub name: String,
    /// The layer's contents.
    pub module: Vec<u8>,
    /// `wasip1` or `wasip2`.
    pub os: String,
    /// The layer's `org.opencontainers.image.title`.
    pub title: String,
    /// Layer media type (`application/wasm` unless a test wants another).
    pub layer_media_type: String,
    /// A component's (imports, exports), recorded in the config's `component` field.
    pub component: Option<(Vec<String>, Vec<String>)>,
}

/// The `created` time of every artifact config we write.
pub const ARTIFACT_CREATED: &str = "2026-01-01T00:00:00Z";

impl Artifact {
    /// A module artifact in the standard layout.
    pub fn wasm(name: &str, title: &str, module: Vec<u8>, os: &str) -> Artifact {
        Artifact {
            name: name.to_string(),
            module,
            os: os.to_string(),
            title: title.to_string(),
            layer_media_type: media::WASM_LAYER.to_string(),
            component: None,
        }
    }

    /// An artifact for `module` with its `os` and, for a component, its imports and exports
    /// read from the binary; refuses bytes that are not Wasm (naming `title`).
    pub fn from_module(
        name: &str,
        title: &str,
        module: Vec<u8>,
    ) -> std::result::Result<Artifact, String> {
        let info = crate::wasm::describe(&module, title)?;
        let mut artifact = Artifact::wasm(name, title, module, info.os);
        if info.kind == crate::wasm::Kind::Component {
            artifact.component = Some((info.imports, info.exports));
        }
        Ok(artifact)
    }

    /// Digest of the module layer.
    pub fn layer_digest(&self) -> String {
        digest(&self.module)
    }

    /// The artifact's blobs: the module layer, the Wasm config (`created` is fixed, so the
    /// same module always gets the same digest) and the manifest.
    pub fn build(&self) -> Result<Built> {
        let layer_digest = digest(&self.module);
        let mut config = json!({
            "created": ARTIFACT_CREATED,
            "architecture": "wasm",
            "os": self.os,
            "layerDigests": [layer_digest],
        });
        if let Some((imports, exports)) = &self.component {
            config["component"] = json!({"imports": imports, "exports": exports});
        }
        let config = serde_json::to_vec(&config)?;
        let mut layer = json!({
            "mediaType": self.layer_media_type,
            "digest": layer_digest,
            "size": self.module.len(),
            "annotations": {media::TITLE_ANNOTATION: self.title},
        });
        if self.title.is_empty() {
            layer.as_object_mut().map(|l| l.remove("annotations"));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {
                "mediaType": media::WASM_CONFIG,
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": [layer],
        });
        Ok(Built {
            manifest: serde_json::to_vec(&manifest)?,
            config,
            layers: vec![self.module.clone()],
            platform: json!({"os": self.os, "architecture": "wasm"}),
        })
    }

    /// Writes the artifact as an OCI layout tar archive at `out`; returns the manifest digest
    /// (what a pinned reference names).
    pub fn write_archive(&self, out: &Path) -> Result<String> {
        let built = self.build()?;
        built.write_archive(out, &self.name)?;
        Ok(built.digest())
    }
}

/// The blobs of one single-manifest image or artifact, ready to be written as an OCI layout
/// archive or pushed to a registry.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest's bytes (its digest names the whole).
    pub manifest: Vec<u8>,
    /// The config blob.
    pub config: Vec<u8>,
    /// The layer blobs, in manifest order.
    pub layers: Vec<Vec<u8>>,
    /// The platform, for an index entry.
    pub platform: serde_json::Value,
}

impl Built {
    /// The manifest digest.
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }

    /// Sets manifest annotations (`org.opencontainers.image.source`, …); the digest changes.
    pub fn annotate(
        &mut self,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        if annotations.is_empty() {
            return Ok(());
        }
        let mut manifest: serde_json::Value = serde_json::from_slice(&self.manifest)?;
        manifest["annotations"] = json!(annotations);
        self.manifest = serde_json::to_vec(&manifest)?;
        Ok(())
    }

    /// Writes an OCI layout tar archive at `out` whose index names the manifest `name`.
    pub fn write_archive(&self, out: &Path, name: &str) -> Result<()> {
        let mut blobs: Vec<&[u8]> = self.layers.iter().map(Vec::as_slice).collect();
        blobs.push(&self.config);
        write_layout(out, name, &self.manifest, self.platform.clone(), &blobs)
    }
}

/// Writes an OCI image layout holding one manifest (and `blobs`) as a tar archive.
fn write_layout(
    out: &Path,
    name: &str,
    manifest: &[u8],
    platform: serde_json::Value,
    blobs: &[&[u8]],
) -> Result<()> {
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{
            "mediaType": media::OCI_MANIFEST,
            "digest": digest(manifest),
            "size": manifest.len(),
            "platform": platform,
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;
    let mut archive =
        tar::Builder::new(std::fs::File::create(out).map_err(|e| {
            std::io::Error::new(e.kind(), format!("creating {}: {e}", out.display()))
        })?);
    let mut put = |path: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        archive.append_data(&mut h, path, data)?;
        Ok(())
    };
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    put("index.json", &index)?;
    for blob in blobs.iter().copied().chain([manifest]) {
        let d = digest(blob);
        put(&format!("blobs/sha256/{}", &d["sha256:".len()..]), blob)?;
    }
    archive.into_inner()?;
    Ok(())
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}
