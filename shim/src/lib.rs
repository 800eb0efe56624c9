//! wasmkube's containerd shim v2: runs OCI-packaged WebAssembly modules and components as
//! containerd tasks, one shim process per pod and one instance process per container.

pub mod cgroup;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod exits;
pub mod instance;
pub mod isolation;
pub mod local;
pub mod policy;
pub mod rootfs;
pub mod service;
pub mod spec;
pub mod stdio;
pub mod task;
pub mod worker;
pub mod zygote;
