//! `push`, `inspect` and `pull`: modules to and from registries, in both packagings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::json;
use wasmkube_oci::layout::{digest, Artifact, Image};
use wasmkube_oci::wasm::describe;
use wasmkube_oci::Format;

use crate::credentials::RegistryArgs;
use crate::output::Failure;
use crate::{progress, Output};

/// How `push` packages a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PushFormat {
    /// The CNCF Wasm OCI artifact (config application/vnd.wasm.config.v0+json, one
    /// application/wasm layer).
    Artifact,
    /// An OCI image whose rootfs holds the module, platform wasip1/wasm or wasip2/wasm, with
    /// the module as its entrypoint.
    Image,
}

/// `wasmkube push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// The module (.wasm, a core module or a component).
    pub file: PathBuf,
    /// Where to push it: registry/repository:tag.
    pub reference: String,
    /// Packaging.
    #[arg(long, value_enum, default_value_t = PushFormat::Artifact)]
    pub format: PushFormat,
    /// Manifest annotation KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
}

/// `wasmkube inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// registry/repository:tag or registry/repository@sha256:….
    pub reference: String,
}

/// `wasmkube pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// registry/repository:tag or registry/repository@sha256:….
    pub reference: String,
    /// Where to write the module [default: its file name, in the current directory].
    #[arg(long, short = 'O', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Pushes a module; prints the manifest digest.
pub async fn push(args: PushArgs, registry: &RegistryArgs, output: Output) -> Result<(), Failure> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Failure::input(format!("cannot read {}: {e}", args.file.display())))?;
    let title = file_name(&args.file);
    let info = describe(&bytes, &args.file.display().to_string()).map_err(Failure::input)?;
    let annotations = parse_annotations(&args.annotations)?;
    let size = bytes.len();
    let mut built = match args.format {
        PushFormat::Artifact => Artifact::from_module(&args.reference, &title, bytes)
            .map_err(Failure::input)?
            .build(),
        PushFormat::Image => Image::module(&args.reference, &title, bytes, info.os).build(),
    }
    .map_err(|e| Failure::other(format!("cannot package {}: {e}", args.file.display())))?;
    built
        .annotate(&annotations)
        .map_err(|e| Failure::other(format!("cannot annotate the manifest: {e}")))?;
    let registries = registry.registries(&args.reference)?;
    let progress = progress::reporter("pushing", output == Output::Text);
    let digest = wasmkube_oci::push(&args.reference, &built, &registries, progress).await?;
    let format = match args.format {
        PushFormat::Artifact => "artifact",
        PushFormat::Image => "image",
    };
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "reference": args.reference,
                "digest": digest,
                "format": format,
                "os": info.os,
                "kind": info.kind,
                "size": size,
            })
        ),
        Output::Text => {
            eprintln!(
                "pushed {} to {} as a Wasm {format} ({}, {size} bytes)",
                args.file.display(),
                args.reference,
                info.os
            );
            println!("{digest}");
        }
    }
    Ok(())
}

/// Prints what a reference holds.
pub async fn inspect(
    args: InspectArgs,
    registry: &RegistryArgs,
    output: Output,
) -> Result<(), Failure> {
    let registries = registry.registries(&args.reference)?;
    let got = wasmkube_oci::inspect(&args.reference, &registries).await?;
    if output == Output::Json {
        let module = match &got.module {
            Ok(m) => json!(m),
            Err(_) => serde_json::Value::Null,
        };
        println!(
            "{}",
            json!({
                "reference": got.reference,
                "digest": got.digest,
                "mediaType": got.media_type,
                "platforms": got.platforms,
                "module": module,
                "notWasm": got.module.as_ref().err(),
            })
        );
        return Ok(());
    }
    println!("reference:  {}", got.reference);
    println!("digest:     {}", got.digest);
    println!("media type: {}", got.media_type);
    if !got.platforms.is_empty() {
        println!("platforms:  {}", got.platforms.join(", "));
    }
    let module = match &got.module {
        Ok(m) => m,
        Err(found) => {
            println!("wasm:       none ({found})");
            return Ok(());
        }
    };
    let format = match module.format {
        Format::Artifact => "Wasm OCI artifact",
        Format::Image => "OCI image with a Wasm rootfs",
    };
    println!("format:     {format}");
    if module.digest != got.digest {
        println!("module:     {}", module.pinned);
    }
    println!("wasi:       {}", module.os.as_deref().unwrap_or("unknown"));
    println!("size:       {} bytes", module.size);
    if !module.entrypoint.is_empty() {
        println!("entrypoint: {}", module.entrypoint.join(" "));
    }
    for layer in &module.layers {
        let title = layer
            .title
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        println!(
            "layer:      {} {} {} bytes{title}",
            layer.media_type, layer.digest, layer.size
        );
    }
    if let Some(component) = &module.component {
        for import in &component.imports {
            println!("import:     {import}");
        }
        for export in &component.exports {
            println!("export:     {export}");
        }
    }
    Ok(())
}

/// Writes the module a reference holds to a file.
pub async fn pull(args: PullArgs, registry: &RegistryArgs, output: Output) -> Result<(), Failure> {
    let registries = registry.registries(&args.reference)?;
    let progress = progress::reporter("pulling", output == Output::Text);
    let (got, bytes) = wasmkube_oci::pull_module(&args.reference, &registries, progress).await?;
    let out = match args.out {
        Some(out) => out,
        None => PathBuf::from(module_file_name(&got).unwrap_or_else(|| "module.wasm".into())),
    };
    std::fs::write(&out, &bytes)
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", out.display())))?;
    let file_digest = digest(&bytes);
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "reference": args.reference,
                "file": out,
                "digest": file_digest,
                "size": bytes.len(),
            })
        ),
        Output::Text => {
            eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
            println!("{file_digest}");
        }
    }
    Ok(())
}

/// The module's file name as the reference records it: the artifact layer's title or the
/// image entrypoint's last component.
pub fn module_file_name(got: &wasmkube_oci::Inspected) -> Option<String> {
    let module = got.module.as_ref().ok()?;
    match module.format {
        Format::Artifact => module.layers.iter().find_map(|l| l.title.clone()),
        Format::Image => module
            .entrypoint
            .first()
            .and_then(|e| e.rsplit('/').next())
            .map(str::to_string),
    }
    .filter(|name| !name.is_empty() && name != "." && name != "..")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module.wasm".into())
}

fn parse_annotations(items: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(Failure::input(format!(
                "annotation {item:?} is not KEY=VALUE; write e.g. \
                 --annotation org.opencontainers.image.source=https://example.com/app"
            ))),
        })
        .collect()
}
