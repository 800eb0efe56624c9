//! Per-workload capabilities from `wasmkube.dev/*` annotations (containerd passes them through
//! from the pod and container): the network policy for WASI sockets, and which of the spec's
//! mounts the module gets as preopened directories, with what access. Defaults are safe: no
//! network, every bind-mounted directory preopened with the access the spec gives it. Pod
//! annotations reach the sandbox container too: their syntax is checked there (they are the
//! same for every container of the pod), what they say about mounts is not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;
use serde::{Deserialize, Serialize};

use wasmkube_oci::handoff;

use crate::engine::run::Preopen;
use crate::engine::serve;
use crate::error::{Error, Result};
use crate::spec::Workload;

/// Annotation: `none` (default), `outbound` or `inherit`.
pub const NETWORK: &str = "wasmkube.dev/network";
/// Annotation: comma-separated mount destinations to preopen, each optionally `:ro` or `:rw`
/// (`/data:ro,/cache`). When set, only the listed mounts are preopened.
pub const MOUNTS: &str = "wasmkube.dev/mounts";
/// The annotations the shim reads; any other `wasmkube.dev/` key is refused as a likely typo.
pub const KNOWN: &[&str] = &[
    NETWORK,
    MOUNTS,
    serve::PORT,
    serve::CONCURRENCY,
    serve::QUEUE,
    serve::TIMEOUT,
    serve::LOG,
];

/// What WASI sockets may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No sockets at all.
    #[default]
    None,
    /// Connect out (TCP, UDP, name lookup); no listening.
    Outbound,
    /// Everything the container's network namespace allows, listening included.
    Inherit,
}

/// Requested access for a preopened mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    ReadOnly,
    /// Read and write (only where the mount itself is writable).
    ReadWrite,
    /// As the mount is.
    AsMounted,
}

/// The parsed capabilities of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Socket policy.
    pub network: Network,
    /// Mounts to preopen, when restricted by annotation.
    pub mounts: Option<Vec<(String, Access)>>,
}

impl Policy {
    /// Reads the `wasmkube.dev/*` annotations of container `id`.
    pub fn from_annotations(annotations: &HashMap<String, String>, id: &str) -> Result<Policy> {
        let bad = |key: &str, value: &str, why: &str| {
            Error::InvalidArgument(format!("container {id}: annotation {key}={value:?} {why}"))
        };
        for key in annotations.keys() {
            let module_key = key == handoff::MODULE_ANNOTATION
                || key.starts_with(handoff::MODULE_ANNOTATION_PREFIX);
            if key.starts_with("wasmkube.dev/") && !KNOWN.contains(&key.as_str()) && !module_key {
                return Err(bad(
                    key,
                    &annotations[key],
                    &format!(
                        "is not a wasmkube annotation (known: {}, {}, {}<container>)",
                        KNOWN.join(", "),
                        handoff::MODULE_ANNOTATION,
                        handoff::MODULE_ANNOTATION_PREFIX
                    ),
                ));
            }
        }
        let network = match annotations.get(NETWORK).map(|v| v.trim()) {
            None | Some("none") => Network::None,
            Some("outbound") => Network::Outbound,
            Some("inherit") => Network::Inherit,
            Some(v) => return Err(bad(NETWORK, v, "must be none, outbound or inherit")),
        };
        let mounts = match annotations.get(MOUNTS) {
            None => None,
            Some(value) => {
                let mut list = Vec::new();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (dest, access) = match item.rsplit_once(':') {
                        Some((d, "ro")) => (d, Access::ReadOnly),
                        Some((d, "rw")) => (d, Access::ReadWrite),
                        Some((_, other)) => {
                            return Err(bad(
                                MOUNTS,
                                value,
                                &format!("has access {other:?}; use ro or rw"),
                            ))
                        }
                        None => (item, Access::AsMounted),
                    };
                    if !dest.starts_with('/') {
                        return Err(bad(
                            MOUNTS,
                            value,
                            &format!("names {dest:?}; use absolute mount destinations"),
                        ));
                    }
                    list.push((dest.to_string(), access));
                }
                Some(list)
            }
        };
        Ok(Policy { network, mounts })
    }

    /// The preopened directories of container `id`, which runs `workload`: none for the pod
    /// sandbox, else [`Policy::preopens`]. The sandbox runs no module, and the mounts
    /// annotation it carries is the pod's, copied onto every container of the pod by
    /// containerd (`pod_annotations`): it names the app containers' mounts, not the sandbox's.
    pub fn preopens_for(
        &self,
        id: &str,
        workload: &Workload,
        rootfs: &Path,
        rootfs_read_only: bool,
        mounts: &[Mount],
    ) -> Result<Vec<Preopen>> {
        match workload {
            Workload::Sandbox => Ok(Vec::new()),
            Workload::Module { .. } | Workload::Artifact { .. } => {
                self.preopens(id, rootfs, rootfs_read_only, mounts)
            }
        }
    }

    /// The preopened directories: the rootfs as `/`, then the spec's bind-mounted directories
    /// (files such as `/etc/hosts` cannot be preopened and are skipped), filtered and
    /// restricted by the mounts annotation.
    pub fn preopens(
        &self,
        id: &str,
        rootfs: &Path,
        rootfs_read_only: bool,
        mounts: &[Mount],
    ) -> Result<Vec<Preopen>> {
        let mut out = vec![Preopen {
            host: rootfs.to_path_buf(),
            guest: "/".into(),
            read_only: rootfs_read_only,
        }];
        let binds: Vec<(String, PathBuf, bool)> = mounts
            .iter()
            .filter(|m| is_bind(m))
            .filter_map(|m| {
                let source = m.source().clone()?;
                let dest = m.destination().to_string_lossy().into_owned();
                let ro = m
                    .options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x == "ro"));
                source.is_dir().then_some((dest, source, ro))
            })
            .collect();
        match &self.mounts {
            None => out.extend(binds.into_iter().map(|(dest, host, ro)| Preopen {
                host,
                guest: dest,
                read_only: ro,
            })),
            Some(wanted) => {
                for (dest, access) in wanted {
                    let Some((_, host, ro)) = binds.iter().find(|(d, _, _)| d == dest) else {
                        return Err(Error::InvalidArgument(format!(
                            "container {id}: annotation {MOUNTS} names {dest}, which is not a \
                             directory mount of this container"
                        )));
                    };
                    if *ro && *access == Access::ReadWrite {
                        return Err(Error::InvalidArgument(format!(
                            "container {id}: annotation {MOUNTS} asks for {dest}:rw, but the \
                             mount is read-only"
                        )));
                    }
                    out.push(Preopen {
                        host: host.clone(),
                        guest: dest.clone(),
                        read_only: *ro || *access == Access::ReadOnly,
                    });
                }
            }
        }
        Ok(out)
    }
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

#[cfg(test)]
mod tests;
