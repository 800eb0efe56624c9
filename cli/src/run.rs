//! `wasmkube run`: a module from a registry or a file, run here with the shim's engine: the same
//! compiled-code settings, the same mapping of a memory limit onto linear memory, the same WASI
//! setup (argv\[0\] as the pod sees it, env, preopened directories, socket policy).

use std::path::{Path, PathBuf};

use clap::Args;
use wasmkube_shim::engine::limits::EngineLimits;
use wasmkube_shim::engine::run::{Preopen, WasiSetup};
use wasmkube_shim::engine::serve::HttpSettings;
use wasmkube_shim::policy::Network;

use crate::credentials::RegistryArgs;
use crate::output::Failure;
use crate::transfer::module_file_name;

/// `wasmkube run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// A module file, or a registry reference (artifact or image).
    pub target: String,
    /// Arguments after argv\[0\] (write them after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Memory limit as in a pod's resources (128Mi, 1Gi, 500M, bytes): caps linear memory by
    /// the shim's formula.
    #[arg(long, value_name = "QUANTITY", value_parser = parse_quantity)]
    pub memory: Option<u64>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Preopen host directory HOST at GUEST (default: the same path); `:ro` for read-only
    /// (repeatable).
    #[arg(long = "dir", value_name = "HOST[:GUEST][:ro]")]
    pub dirs: Vec<String>,
    /// WASI sockets: none, outbound (connect only) or inherit (listen too).
    #[arg(long, value_enum, default_value = "none")]
    pub network: NetworkArg,
}

/// `--network`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum NetworkArg {
    /// No sockets.
    None,
    /// Outgoing connections only.
    Outbound,
    /// Everything, listening included.
    Inherit,
}

/// A module ready to run.
pub struct Module {
    path: PathBuf,
    argv0: String,
    _download: Option<tempfile::TempDir>,
}

/// Finds the module: a file as is, a reference pulled into a temporary directory.
pub async fn fetch(args: &RunArgs, registry: &RegistryArgs) -> Result<Module, Failure> {
    let local = Path::new(&args.target);
    if local.is_file() {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(Module {
            path: local.to_path_buf(),
            // As a pod sees it when this file is packaged (image or artifact): /<file name>.
            argv0: format!("/{name}"),
            _download: None,
        });
    }
    if args.target.ends_with(".wasm") && !args.target.contains(':') {
        return Err(Failure::input(format!(
            "{} is neither a file nor a registry reference; give a path to a .wasm file or \
             registry/repository:tag",
            args.target
        )));
    }
    let registries = registry.registries(&args.target)?;
    let (got, bytes) = wasmkube_oci::pull_module(&args.target, &registries, None).await?;
    let name = module_file_name(&got).unwrap_or_else(|| "module.wasm".into());
    let argv0 = match got.module.as_ref().map(|m| m.entrypoint.first()) {
        Ok(Some(entrypoint)) => entrypoint.clone(),
        _ => format!("/{name}"),
    };
    let dir = tempfile::tempdir()
        .map_err(|e| Failure::other(format!("no temporary directory for the module: {e}")))?;
    let path = dir.path().join(&name);
    std::fs::write(&path, bytes)
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))?;
    Ok(Module {
        path,
        argv0,
        _download: Some(dir),
    })
}

/// Runs the module; gives its exit status (134 for a trap, 1 when it could not be loaded,
/// 2 for bad flags).
pub fn run(args: RunArgs, module: Module) -> u8 {
    let setup = match wasi_setup(&args, &module) {
        Ok(s) => s,
        Err(failure) => {
            eprintln!("wasmkube: error: {}", failure.message);
            return failure.code;
        }
    };
    let status = wasmkube_shim::local::run_module(&module.path, setup, args.memory);
    u8::try_from(status.clamp(0, 255)).unwrap_or(1)
}

fn wasi_setup(args: &RunArgs, module: &Module) -> Result<WasiSetup, Failure> {
    let env = args
        .env
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Failure::input(format!(
                "--env {item:?} is not KEY=VALUE; write e.g. --env GREETING=hello"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // An HTTP component is served on the port its env names (PORT or WASMKUBE_HTTP_PORT), as
    // in a pod without the annotation.
    let http = HttpSettings::from_container(&Default::default(), &env, "wasmkube run")
        .map_err(|e| Failure::input(e.to_string()))?;
    let preopens = args
        .dirs
        .iter()
        .map(|item| parse_dir(item))
        .collect::<Result<_, _>>()?;
    Ok(WasiSetup {
        args: std::iter::once(module.argv0.clone())
            .chain(args.args.iter().cloned())
            .collect(),
        env,
        preopens,
        network: match args.network {
            NetworkArg::None => Network::None,
            NetworkArg::Outbound => Network::Outbound,
            NetworkArg::Inherit => Network::Inherit,
        },
        limits: EngineLimits::for_memory_limit(None, 0),
        http,
    })
}

/// `HOST[:GUEST][:ro]`.
fn parse_dir(item: &str) -> Result<Preopen, Failure> {
    let (rest, read_only) = match item.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (item, false),
    };
    let (host, guest) = match rest.split_once(':') {
        Some((host, guest)) => (host, guest),
        None => (rest, rest),
    };
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(Failure::input(format!(
            "--dir {item}: {} is not a directory; give an existing host directory",
            host.display()
        )));
    }
    Ok(Preopen {
        host,
        guest: guest.to_string(),
        read_only,
    })
}

/// A Kubernetes memory quantity in bytes: plain, or with Ki/Mi/Gi/Ti or k/M/G/T.
pub fn parse_quantity(text: &str) -> Result<u64, String> {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1));
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a memory quantity; write e.g. 128Mi or 1Gi"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_dirs_parse_like_pod_fields() {
        assert_eq!(parse_quantity("128Mi"), Ok(128 << 20));
        assert_eq!(parse_quantity("1Gi"), Ok(1 << 30));
        assert_eq!(parse_quantity("500M"), Ok(500_000_000));
        assert_eq!(parse_quantity("4096"), Ok(4096));
        assert!(parse_quantity("lots").unwrap_err().contains("128Mi"));
        let tmp = std::env::temp_dir();
        let host = tmp.to_str().unwrap();
        let p = parse_dir(&format!("{host}:/data:ro")).unwrap();
        assert_eq!((p.guest.as_str(), p.read_only), ("/data", true));
        let p = parse_dir(host).unwrap();
        assert_eq!((p.guest.as_str(), p.read_only), (host, false));
        assert!(parse_dir("/no/such/dir")
            .unwrap_err()
            .message
            .contains("not a directory"));
    }
}
