//! The wasmkube node installer: registers the shim with the node's containerd (config
//! layouts of containerd 1.6, 1.7 and 2.x), restarts it, imports the module stub image, and
//! labels the node.

pub mod containerd;
pub mod error;
pub mod install;
pub mod node;
pub mod stub;
