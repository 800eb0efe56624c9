//! `wasmkube manifest`: a WasmApp for a module, pinned to the digest its tag names now, checked
//! against the CRD's rules (the same CEL the API server runs) before it is printed.

use clap::{Args, ValueEnum};
use serde_json::json;
use wasmkube_operator::api::WasmApp;

use crate::credentials::RegistryArgs;
use crate::output::Failure;
use crate::Output;

/// `wasmkube manifest`.
#[derive(Args, Debug)]
pub struct ManifestArgs {
    /// The module: registry/repository:tag or @sha256:….
    pub reference: String,
    /// The WasmApp's name.
    #[arg(long)]
    pub name: String,
    /// Namespace to put in metadata.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Serve HTTP on this port (adds the port, the Service and network: inherit).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub http: Option<u16>,
    /// With --http: the path readiness and liveness probes check.
    #[arg(long, value_name = "PATH", requires = "http")]
    pub health_path: Option<String>,
    /// Edge nodes: require (only edge), prefer, avoid or ignore.
    #[arg(long, value_enum)]
    pub edge: Option<Edge>,
    /// Pods.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Memory limit (and request), e.g. 64Mi.
    #[arg(long, value_name = "QUANTITY")]
    pub memory: Option<String>,
    /// Arguments for the module (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `--edge`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Edge {
    /// Only edge nodes.
    Require,
    /// Edge nodes when there is room.
    Prefer,
    /// Other nodes when there is room.
    Avoid,
    /// No preference.
    Ignore,
}

/// Resolves the module and prints the WasmApp (YAML, or JSON with `-o json`).
pub async fn manifest(
    args: ManifestArgs,
    registry: &RegistryArgs,
    output: Output,
) -> Result<(), Failure> {
    let registries = registry.registries(&args.reference)?;
    let resolved = wasmkube_oci::resolve(&args.reference, &registries).await?;
    let doc = document(&args, &resolved.pinned);
    let app: WasmApp = serde_json::from_value(doc)
        .map_err(|e| Failure::input(format!("the WasmApp does not parse: {e}")))?;
    app.validate_cel()
        .map_err(|e| Failure::input(format!("the API server would refuse this WasmApp: {e:?}")))?;
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&app).map_err(|e| e.to_string()),
        Output::Text => serde_saphyr::to_string(&app).map_err(|e| e.to_string()),
    }
    .map_err(|e| Failure::other(format!("cannot print the WasmApp: {e}")))?;
    println!("{}", text.trim_end());
    Ok(())
}

/// The WasmApp as JSON: only what the flags set, the CRD's defaults for the rest.
fn document(args: &ManifestArgs, pinned: &str) -> serde_json::Value {
    let mut spec = json!({ "module": pinned, "replicas": args.replicas });
    if !args.args.is_empty() {
        spec["args"] = json!(args.args);
    }
    if let Some(port) = args.http {
        spec["ports"] = json!([{ "name": "http", "port": port }]);
        spec["http"] = json!({ "port": port });
        if let Some(path) = &args.health_path {
            spec["http"]["healthPath"] = json!(path);
        }
        spec["capabilities"] = json!({ "network": "inherit" });
    }
    if let Some(edge) = args.edge {
        let edge = match edge {
            Edge::Require => "Require",
            Edge::Prefer => "Prefer",
            Edge::Avoid => "Avoid",
            Edge::Ignore => "Ignore",
        };
        spec["placement"] = json!({ "edge": edge });
    }
    if let Some(memory) = &args.memory {
        spec["resources"] =
            json!({ "limits": { "memory": memory }, "requests": { "memory": memory } });
    }
    let mut metadata = json!({ "name": args.name });
    if let Some(ns) = &args.namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "wasmkube.dev/v1alpha1",
        "kind": "WasmApp",
        "metadata": metadata,
        "spec": spec,
    })
}
