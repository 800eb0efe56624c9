//! The container root filesystem: mounting what containerd passes in Create at
//! `<bundle>/rootfs`, and unmounting it on Delete. The only file that mounts.

use std::path::{Path, PathBuf};

use containerd_shim::protos::api::Mount;

use crate::error::{Error, Result};

/// Mounts `mounts` (in order) at `<bundle>/rootfs`. With no mounts the bundle's own `rootfs`
/// directory is used as it is (pre-populated bundles, `ctr run --rootfs`). Returns the mount
/// point when something was mounted.
pub fn mount(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(Error::io(format!("failed to create {}", target.display())))?;
    for (i, m) in mounts.iter().enumerate() {
        let result = containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()),
            Some(m.source.as_str()),
            &m.options,
            &target,
        );
        if let Err(e) = result {
            if i > 0 {
                unmount(&target);
            }
            return Err(Error::Bundle(format!(
                "failed to mount {} ({}) at {}: {e}",
                m.source,
                m.type_,
                target.display()
            )));
        }
    }
    Ok(Some(target))
}

/// Unmounts everything at and below `target`; errors are logged, never fatal (Delete must
/// always be able to finish).
pub fn unmount(target: &Path) {
    let Some(path) = target.to_str() else {
        return;
    };
    if let Err(e) = containerd_shim::mount::umount_recursive(Some(path), libc::MNT_DETACH) {
        tracing::warn!(target = path, error = %e, "failed to unmount rootfs");
    }
}
