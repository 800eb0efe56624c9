//! OCI image archives for tests: a single-layer image whose rootfs holds the module, written as
//! an OCI image layout in a tar that `ctr images import` accepts. Platform `wasip1/wasm` or
//! `wasip2/wasm`, entrypoint set, as `DESIGN.md` prescribes for the image format.

use std::path::Path;

use anyhow::Context;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Result;

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
        Ok(builder.into_inner()?)
    }

    /// Writes the image as an OCI layout tar archive at `out`.
    pub fn write_archive(&self, out: &Path) -> Result<()> {
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
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))?;
        let tag = self
            .name
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest),
                "size": manifest.len(),
                "platform": {"os": self.os, "architecture": self.arch},
                "annotations": {
                    "io.containerd.image.name": self.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }))?;
        let mut archive = tar::Builder::new(
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
        );
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
        for blob in [&layer, &config, &manifest] {
            let d = digest(blob);
            put(&format!("blobs/sha256/{}", &d["sha256:".len()..]), blob)?;
        }
        archive.into_inner()?;
        Ok(())
    }
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}
