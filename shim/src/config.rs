//! Node-level shim configuration: built-in defaults, overridden by the TOML file that the
//! containerd runtime options name (`ConfigPath`) or carry inline (`ConfigBody`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::{well_known_types::any::Any, CodedInputStream};
use serde::Deserialize;
use wasmkube_oci::RegistryConfig;

use crate::error::{Error, Result};

/// Where the compiled-module cache lives when nothing else is configured.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wasmkube/cache";
/// containerd's content store in its default root (the same path in 1.6, 1.7 and 2.x).
pub const DEFAULT_CONTENT_STORE: &str = "/var/lib/containerd/io.containerd.content.v1.content";

/// The shim's settings for one node. Plain data: loaded and validated once per runtime-options
/// value, then passed down.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShimConfig {
    /// Directory of the compiled-module cache (precompiled artifacts keyed by module digest and
    /// engine fingerprint). Created on first use.
    pub cache_dir: PathBuf,
    /// containerd content stores searched for artifact blobs (by digest) before the registry.
    pub content_stores: Vec<PathBuf>,
    /// Per-registry settings for artifacts the shim fetches itself, keyed by `host[:port]`:
    /// `insecure` (plain HTTP), `username`/`password` or `token`.
    pub registries: HashMap<String, RegistryConfig>,
}

impl Default for ShimConfig {
    fn default() -> Self {
        ShimConfig {
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            content_stores: vec![PathBuf::from(DEFAULT_CONTENT_STORE)],
            registries: HashMap::new(),
        }
    }
}

impl ShimConfig {
    /// Parses the TOML form, e.g. `cache_dir = "/var/lib/wasmkube/cache"`.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: ShimConfig = toml::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("shim config {origin}: {e}")))?;
        if !config.cache_dir.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "shim config {origin}: cache_dir {:?} must be an absolute path",
                config.cache_dir
            )));
        }
        Ok(config)
    }

    /// Where fetched artifact blobs are kept: `blobs/` under the cache directory.
    pub fn blob_store(&self) -> PathBuf {
        self.cache_dir.join("blobs")
    }

    /// Loads the configuration a containerd runtime-options message selects: the defaults when
    /// there are no options, otherwise the inline body or the file they name.
    pub fn from_runtime_options(options: Option<&Any>) -> Result<Self> {
        let Some(options) = options.filter(|o| !o.value.is_empty()) else {
            return Ok(ShimConfig::default());
        };
        let opts = RuntimeOptions::decode(&options.value).map_err(|e| {
            Error::InvalidArgument(format!(
                "runtime options of type {:?} could not be decoded: {e}; configure the wasmkube \
                 runtime with ConfigPath = \"/etc/wasmkube/shim.toml\"",
                options.type_url
            ))
        })?;
        if !opts.config_body.is_empty() {
            let body = String::from_utf8(opts.config_body)
                .map_err(|_| Error::InvalidArgument("runtime ConfigBody is not UTF-8".into()))?;
            return Self::from_toml(&body, "ConfigBody");
        }
        if opts.config_path.is_empty() {
            return Ok(ShimConfig::default());
        }
        let path = Path::new(&opts.config_path);
        let text = std::fs::read_to_string(path).map_err(Error::io(format!(
            "failed to read shim config {}",
            path.display()
        )))?;
        Self::from_toml(&text, &opts.config_path)
    }
}

/// containerd's generic `runtimeoptions.v1.Options` (what CRI and `ctr --runtime-config-path`
/// send to non-runc runtimes): field 2 `config_path`, field 3 `config_body`.
#[derive(Debug, Default, PartialEq, Eq)]
struct RuntimeOptions {
    config_path: String,
    config_body: Vec<u8>,
}

impl RuntimeOptions {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut input = CodedInputStream::from_bytes(bytes);
        let mut out = RuntimeOptions::default();
        while let Some(tag) = input.read_raw_tag_or_eof().map_err(|e| e.to_string())? {
            match tag >> 3 {
                2 if tag & 7 == 2 => {
                    out.config_path = input.read_string().map_err(|e| e.to_string())?
                }
                3 if tag & 7 == 2 => {
                    out.config_body = input.read_bytes().map_err(|e| e.to_string())?
                }
                _ => input
                    .skip_field(wire_type(tag)?)
                    .map_err(|e| e.to_string())?,
            }
        }
        Ok(out)
    }
}

fn wire_type(tag: u32) -> Result<containerd_shim::protos::protobuf::rt::WireType, String> {
    containerd_shim::protos::protobuf::rt::WireType::new(tag & 7)
        .ok_or_else(|| format!("unknown protobuf wire type {}", tag & 7))
}

#[cfg(test)]
mod tests;
