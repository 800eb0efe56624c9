//! The module stub image on the node (`wasmkube.dev/module-stub:v1`, the container image of every
//! pod that runs a Wasm OCI artifact): written by the shim being installed
//! (`--write-stub-image`, so stub and shim always come from the same build), imported into
//! containerd's `k8s.io` namespace with the host's `ctr`, and removed again by `uninstall`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use tracing::info;

use crate::error::Failure;
use crate::node::{Host, CRI_NAMESPACE};

/// The stub image's name (the shim's `wasmkube_oci::handoff::STUB_IMAGE`; an archive that names
/// another image is refused).
pub const STUB_IMAGE: &str = "wasmkube.dev/module-stub:v1";

/// Writes the stub archive with `shim --write-stub-image` at `archive` (installer's view), makes
/// sure containerd's `k8s.io` namespace holds it (importing `archive_on_host`, the same file as
/// the host sees it, unless the same manifest is already there) and deletes the archive again.
/// Returns whether containerd's image store changed.
pub fn import(
    shim: &Path,
    archive: &Path,
    archive_on_host: &Path,
    host: &Host,
) -> Result<bool, Failure> {
    write_archive(shim, archive)?;
    let result = import_written(archive, archive_on_host, host);
    let _ = std::fs::remove_file(archive);
    result
}

fn write_archive(shim: &Path, archive: &Path) -> Result<(), Failure> {
    let fail = |why: String| Failure::new("write module stub", archive, why);
    if let Some(dir) = archive.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let out = Command::new(shim)
        .arg("--write-stub-image")
        .arg(archive)
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", shim.display())))?;
    if !out.status.success() {
        return Err(fail(format!(
            "`{} --write-stub-image {}` exited with {}: {}",
            shim.display(),
            archive.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn import_written(archive: &Path, archive_on_host: &Path, host: &Host) -> Result<bool, Failure> {
    let fail = |why: String| Failure::new("import module stub", archive, why);
    let bytes = std::fs::read(archive).map_err(|e| fail(e.to_string()))?;
    let (name, digest) = layout_manifest(&bytes).map_err(fail)?;
    if name != STUB_IMAGE {
        return Err(fail(format!(
            "the shim writes the stub image {name} but this installer expects {STUB_IMAGE}: \
             run the installer image the shim came with"
        )));
    }
    if host.image_digest(&name).map_err(fail)?.as_deref() == Some(digest.as_str()) {
        info!(image = %name, %digest, "module stub already imported");
        return Ok(false);
    }
    host.ctr(&[
        OsStr::new("images"),
        OsStr::new("import"),
        OsStr::new("--all-platforms"),
        archive_on_host.as_os_str(),
    ])
    .map_err(fail)?;
    match host.image_digest(&name).map_err(fail)? {
        Some(now) if now == digest => {
            info!(image = %name, %digest, "module stub imported");
            Ok(true)
        }
        now => Err(fail(format!(
            "node {}: after `ctr images import` containerd's {CRI_NAMESPACE} namespace holds \
             {name} as {}, not {digest}; import it by hand: `containerd-shim-wasmkube-v1 \
             --write-stub-image stub.tar && ctr -n {CRI_NAMESPACE} images import \
             --all-platforms stub.tar`",
            host.node,
            now.as_deref().unwrap_or("nothing")
        ))),
    }
}

/// Removes the stub image record from containerd's `k8s.io` namespace, whether or not a
/// container still uses it (uninstall removes the runtime too; a container keeps its rootfs
/// snapshot, and containerd frees the content once nothing references it). Returns whether it
/// was there.
pub fn remove(host: &Host) -> Result<bool, Failure> {
    let fail = |why: String| Failure::new("remove module stub", Path::new(STUB_IMAGE), why);
    if host.image_digest(STUB_IMAGE).map_err(fail)?.is_none() {
        return Ok(false);
    }
    host.ctr(&[
        OsStr::new("images"),
        OsStr::new("rm"),
        OsStr::new(STUB_IMAGE),
    ])
    .map_err(fail)?;
    info!(image = STUB_IMAGE, "module stub removed");
    Ok(true)
}

/// The image name (`io.containerd.image.name`) and manifest digest the `index.json` of an OCI
/// layout tar archive names (the archive holds one manifest).
pub fn layout_manifest(archive: &[u8]) -> Result<(String, String), String> {
    let index = tar_entry(archive, "index.json")
        .ok_or("the archive has no index.json: it is not an OCI layout")?;
    let index: serde_json::Value =
        serde_json::from_slice(index).map_err(|e| format!("index.json: {e}"))?;
    let manifest = &index["manifests"][0];
    let digest = manifest["digest"]
        .as_str()
        .ok_or("index.json names no manifest digest")?;
    let name = manifest["annotations"]["io.containerd.image.name"]
        .as_str()
        .ok_or("index.json names no image (annotation io.containerd.image.name)")?;
    Ok((name.to_string(), digest.to_string()))
}

/// The contents of regular file `wanted` in a tar archive (ustar or GNU headers, short names).
fn tar_entry<'a>(archive: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    let mut at = 0;
    while let Some(header) = archive.get(at..at + 512) {
        if header.iter().all(|&b| b == 0) {
            return None;
        }
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).trim().to_string()
        };
        let name = field(0..100);
        let size = usize::from_str_radix(&field(124..136), 8).ok()?;
        let data = archive.get(at + 512..at + 512 + size)?;
        if name.trim_start_matches("./") == wanted && matches!(header[156], b'0' | 0) {
            return Some(data);
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    None
}

#[cfg(test)]
mod tests;
