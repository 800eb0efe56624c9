//! How a pod names a Wasm artifact for the shim: the container runs the node-local stub image
//! (entrypoint [`STUB_ENTRYPOINT`]) and a pod annotation names the module by reference. This
//! works on every containerd version, because containerd only ever pulls and unpacks the stub;
//! the shim fetches the artifact itself.

/// The entrypoint that marks a container as "run the artifact named by annotation".
pub const STUB_ENTRYPOINT: &str = "/wasmkube-module";
/// Name of the stub image the node installer imports (tiny, one marker file).
pub const STUB_IMAGE: &str = "wasmkube.dev/module-stub:v1";
/// Pod annotation: the module of every stub container in the pod.
pub const MODULE_ANNOTATION: &str = "wasmkube.dev/module";
/// Pod annotation prefix: `wasmkube.dev/module.<container-name>` names one container's module
/// and wins over [`MODULE_ANNOTATION`].
pub const MODULE_ANNOTATION_PREFIX: &str = "wasmkube.dev/module.";
/// The CRI annotation holding the container's name.
pub const CONTAINER_NAME_ANNOTATION: &str = "io.kubernetes.cri.container-name";
/// Contents of the marker file at [`STUB_ENTRYPOINT`] in the stub image.
pub const STUB_MARKER: &str = "wasmkube module stub: the shim runs the module named by the pod \
annotation wasmkube.dev/module[.<container>]; this file is never executed.\n";

/// The module reference for a stub container, from its annotations.
pub fn module_reference(annotations: &std::collections::HashMap<String, String>) -> Option<&str> {
    let specific = annotations
        .get(CONTAINER_NAME_ANNOTATION)
        .and_then(|name| annotations.get(&format!("{MODULE_ANNOTATION_PREFIX}{name}")));
    specific
        .or_else(|| annotations.get(MODULE_ANNOTATION))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}
