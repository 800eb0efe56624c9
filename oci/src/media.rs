//! Media types and the pure rules that pick the module out of a manifest.

use oci_client::manifest::{OciDescriptor, OciImageManifest};

use crate::error::FetchError;

/// Config of the CNCF TAG Runtime Wasm artifact.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The artifact's module layer (core module or component).
pub const WASM_LAYER: &str = "application/wasm";
/// The Bytecode Alliance component layer type (`wkg`), accepted as well.
pub const COMPONENT_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
/// The layer type Spin tooling writes, accepted as well.
pub const SPIN_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Every layer media type read as a module.
pub const MODULE_LAYERS: &[&str] = &[WASM_LAYER, COMPONENT_LAYER, SPIN_LAYER];
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI tar layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip-compressed OCI tar layer.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest (accepted so the error for a plain image can say what it is).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The layer annotation that carries the module's file name.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The first four bytes of every Wasm binary (modules and components).
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// The module layer of a Wasm artifact manifest, or why the manifest is not one.
///
/// A Wasm artifact has the Wasm config type or exactly one layer of a module type; anything else
/// (a container image, a Helm chart, a signature) is refused with what it is instead.
pub fn module_layer<'m>(
    reference: &str,
    manifest: &'m OciImageManifest,
) -> Result<&'m OciDescriptor, FetchError> {
    let modules: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| MODULE_LAYERS.contains(&l.media_type.as_str()))
        .collect();
    let describe = || {
        let layers: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        format!(
            "config {}, layers [{}]",
            manifest.config.media_type,
            layers.join(", ")
        )
    };
    match modules.as_slice() {
        [one] => Ok(one),
        [] => Err(FetchError::NotWasm {
            reference: reference.to_string(),
            found: describe(),
        }),
        _ => Err(FetchError::NotWasm {
            reference: reference.to_string(),
            found: format!("{} module layers ({})", modules.len(), describe()),
        }),
    }
}

/// The module's file name as the artifact records it (the layer's title), if any.
pub fn title(layer: &OciDescriptor) -> Option<&str> {
    layer
        .annotations
        .as_ref()?
        .get(TITLE_ANNOTATION)
        .map(String::as_str)
        .filter(|t| !t.is_empty() && !t.contains('/'))
}

#[cfg(test)]
mod tests;
