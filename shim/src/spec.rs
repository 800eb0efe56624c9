//! OCI bundle → [`RunSpec`]: what one container asks of the engine (entrypoint, args, env, cwd,
//! rootfs). Pure apart from resolving the entrypoint inside the rootfs; table-tested.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;
use wasmkube_oci::handoff;

use crate::error::{Error, Result};
use crate::isolation::{NetNs, Sandbox};

/// The CRI annotation that says whether a container is the pod sandbox or an app container.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// The CRI annotation that names the pod sandbox a container belongs to.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// What a container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// The pod's sandbox ("pause") container: holds the pod, runs no module.
    Sandbox,
    /// A Wasm artifact the shim fetches from a registry: the container runs the module stub
    /// image and a pod annotation names the artifact (see `wasmkube_oci::handoff`).
    Artifact {
        /// The OCI reference from the annotation.
        reference: String,
    },
    /// A Wasm module or component.
    Module {
        /// The entrypoint as the image names it (`args[0]`), for messages.
        guest_path: String,
        /// The entrypoint resolved to a host path inside the rootfs.
        host_path: PathBuf,
    },
}

/// One container's run request, derived from its OCI spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// What the container runs.
    pub workload: Workload,
    /// `args`, including `args[0]`.
    pub args: Vec<String>,
    /// Environment as `(name, value)`.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (absolute).
    pub cwd: String,
    /// Host path of the container's root filesystem.
    pub rootfs: PathBuf,
    /// Whether a terminal was requested.
    pub terminal: bool,
}

/// Reads `config.json` from a bundle directory.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path)
        .map_err(|e| Error::Bundle(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::Bundle(format!("cannot parse {}: {e}", path.display())))
}

/// The pod this container belongs to, if CRI created it.
pub fn sandbox_id(spec: &Spec) -> Option<&str> {
    spec.annotations()
        .as_ref()?
        .get(SANDBOX_ID_ANNOTATION)
        .map(String::as_str)
}

/// Builds the run request for container `id` from its spec and bundle.
pub fn run_spec(id: &str, spec: &Spec, bundle: &Path) -> Result<RunSpec> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    let rootfs = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    let process = spec.process().as_ref().ok_or_else(|| {
        Error::Bundle(format!(
            "container {id}: config.json has no process section"
        ))
    })?;
    let args = process.args().clone().unwrap_or_default();
    let env = parse_env(process.env().as_deref().unwrap_or_default());
    let cwd = process.cwd().to_string_lossy().into_owned();
    let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
    let is_sandbox = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(CONTAINER_TYPE_ANNOTATION))
        .is_some_and(|t| t == "sandbox");
    let workload = if is_sandbox {
        Workload::Sandbox
    } else {
        let entry = args.first().filter(|a| !a.is_empty()).ok_or_else(|| {
            Error::Module(format!(
                "container {id} has no entrypoint: set the image entrypoint (args[0]) to the \
                 .wasm file inside the image"
            ))
        })?;
        if entry == handoff::STUB_ENTRYPOINT {
            let annotations = spec.annotations().clone().unwrap_or_default();
            let reference = handoff::module_reference(&annotations).ok_or_else(|| {
                let name = annotations
                    .get(handoff::CONTAINER_NAME_ANNOTATION)
                    .map(String::as_str)
                    .unwrap_or("<container>");
                Error::Module(format!(
                    "container {id} runs the wasmkube module stub ({entry}) but no annotation \
                     names its module: set the pod annotation {}{name} (or {}) to the artifact's \
                     OCI reference",
                    handoff::MODULE_ANNOTATION_PREFIX,
                    handoff::MODULE_ANNOTATION
                ))
            })?;
            Workload::Artifact {
                reference: reference.to_string(),
            }
        } else {
            let host_path = find_entrypoint(&rootfs, entry, &cwd, &env).map_err(|why| {
                Error::Module(format!("container {id}: entrypoint {entry}: {why}"))
            })?;
            Workload::Module {
                guest_path: entry.clone(),
                host_path,
            }
        }
    };
    Ok(RunSpec {
        workload,
        args,
        env,
        cwd,
        rootfs,
        terminal: process.terminal().unwrap_or(false),
    })
}

/// The instance process's sandbox from the spec: its network namespace and its user.
pub fn sandbox(spec: &Spec) -> Sandbox {
    use oci_spec::runtime::LinuxNamespaceType;
    let netns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network))
        .map(|n| match n.path() {
            Some(path) => NetNs::Join(path.clone()),
            None => NetNs::New,
        })
        .unwrap_or(NetNs::Host);
    let user = spec.process().as_ref().map(|p| p.user().clone());
    Sandbox {
        netns,
        uid: user.as_ref().map(|u| u.uid()).unwrap_or(0),
        gid: user.as_ref().map(|u| u.gid()).unwrap_or(0),
        additional_gids: user
            .and_then(|u| u.additional_gids().clone())
            .unwrap_or_default(),
    }
}

/// Splits `NAME=value` strings; entries without `=` get an empty value.
pub fn parse_env(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// Resolves the entrypoint the way an exec inside the container would: absolute paths from the
/// rootfs, paths with a slash from `cwd`, bare names through `PATH`. Symlinks are followed inside
/// the rootfs only, so an image cannot point the shim at a host file.
pub fn find_entrypoint(
    rootfs: &Path,
    entry: &str,
    cwd: &str,
    env: &[(String, String)],
) -> std::result::Result<PathBuf, String> {
    let candidates: Vec<String> = if entry.starts_with('/') {
        vec![entry.to_string()]
    } else if entry.contains('/') {
        vec![format!("{}/{entry}", cwd.trim_end_matches('/'))]
    } else {
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/");
        let mut c: Vec<String> = path
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{entry}", d.trim_end_matches('/')))
            .collect();
        c.push(format!("/{entry}"));
        c
    };
    for candidate in &candidates {
        let host = resolve_in_root(rootfs, Path::new(candidate))?;
        if host.is_file() {
            return Ok(host);
        }
    }
    Err(format!(
        "no such file in the container rootfs (looked for {})",
        candidates.join(", ")
    ))
}

/// Maps a container path to a host path under `root`, resolving `..` and symlinks as if `root`
/// were `/` (chroot semantics): nothing can escape `root`.
pub fn resolve_in_root(root: &Path, path: &Path) -> std::result::Result<PathBuf, String> {
    const MAX_LINKS: usize = 40;
    let mut resolved = PathBuf::new(); // relative to root
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut links = 0;
    while let Some(next) = pending.pop() {
        let mut comps: Vec<Component> = next.components().collect();
        comps.reverse();
        while let Some(comp) = comps.pop() {
            match comp {
                Component::RootDir | Component::Prefix(_) => resolved = PathBuf::new(),
                Component::CurDir => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    let host = root.join(&candidate);
                    match std::fs::symlink_metadata(&host) {
                        Ok(meta) if meta.file_type().is_symlink() => {
                            links += 1;
                            if links > MAX_LINKS {
                                return Err("too many levels of symbolic links".into());
                            }
                            let target = std::fs::read_link(&host).map_err(|e| e.to_string())?;
                            let rest: PathBuf = comps.iter().rev().collect();
                            comps.clear();
                            pending.push(rest);
                            pending.push(target);
                        }
                        _ => resolved = candidate,
                    }
                }
            }
        }
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests;
