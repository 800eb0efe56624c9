//! `wasmkube`: gets a `.wasm` into a registry in a form the cluster runs (push), shows what a
//! reference holds (inspect), brings a module back (pull), runs a module with the shim's engine
//! (run) and writes the WasmApp for a module (manifest).
//!
//! Exit codes: 0 success; 1 failure (including a module that could not be loaded by `run`);
//! 2 bad usage or input (not Wasm, a reference that does not parse); 3 registry unreachable;
//! 4 registry denied access; 5 not found. `run` otherwise exits with the module's status
//! (134 for a trap).

mod credentials;
mod manifest;
mod output;
mod progress;
mod run;
mod transfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::output::Failure;

/// Package, push, inspect and run WebAssembly modules for wasmkube.
#[derive(Parser, Debug)]
#[command(name = "wasmkube", version, about, long_about = None)]
struct Cli {
    /// Output format: human-readable text or JSON for scripts.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    registry: credentials::RegistryArgs,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Push FILE.wasm to REF as a Wasm OCI artifact (default) or as an OCI image.
    Push(transfer::PushArgs),
    /// Show what REF holds: format, digest, size, WASI version, imports/exports, platforms.
    Inspect(transfer::InspectArgs),
    /// Fetch the module REF holds into a file (verified against its digests).
    Pull(transfer::PullArgs),
    /// Run REF or FILE locally with the shim's engine, limits and WASI setup.
    Run(run::RunArgs),
    /// Print a WasmApp for REF, pinned to the digest the registry has now.
    Manifest(manifest::ManifestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return output::fail(&Failure::other(format!("cannot start: {e}"))),
    };
    let result = match cli.command {
        Command::Push(args) => runtime.block_on(transfer::push(args, &cli.registry, cli.output)),
        Command::Inspect(args) => {
            runtime.block_on(transfer::inspect(args, &cli.registry, cli.output))
        }
        Command::Pull(args) => runtime.block_on(transfer::pull(args, &cli.registry, cli.output)),
        Command::Run(args) => {
            // The module runs on this thread; the runtime is only needed to fetch it.
            let module = runtime.block_on(run::fetch(&args, &cli.registry));
            drop(runtime);
            return match module {
                Ok(module) => ExitCode::from(run::run(args, module)),
                Err(failure) => output::fail(&failure),
            };
        }
        Command::Manifest(args) => {
            runtime.block_on(manifest::manifest(args, &cli.registry, cli.output))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => output::fail(&failure),
    }
}
