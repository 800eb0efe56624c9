//! OCI archives for tests: the product's own layout builder (`wasmkube_oci::layout`), so the
//! suite imports and pushes exactly what the installer and CLI write.

pub use wasmkube_oci::layout::*;
