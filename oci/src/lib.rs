//! Wasm modules in OCI registries, shared by the shim, the operator and the CLI: the media types
//! of the two packagings (an image whose rootfs holds the `.wasm`, and the CNCF Wasm artifact),
//! the hand-off by which a pod names an artifact for the shim to fetch, and the digest-verified
//! fetch into the node's blob store, and the operator's tag → digest resolution.

pub mod auth;
pub mod error;
pub mod fetch;
pub mod handoff;
pub mod inspect;
pub mod layout;
pub mod media;
pub mod push;
pub mod resolve;
pub mod wasm;

pub use error::FetchError;
pub use fetch::{Fetched, ModuleFetcher, RegistryConfig};
pub use inspect::{inspect, pull_module, Inspected, ModuleManifest};
pub use oci_client::Reference;
pub use push::push;
pub use resolve::{resolve, Format, Resolved};
