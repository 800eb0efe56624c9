//! `containerd-shim-wasmkube-v1`: the binary containerd starts for runtime
//! `io.containerd.wasmkube.v1`. It is also each container's instance process
//! (`--wasmkube-instance`) and the zygote they are forked from (`--wasmkube-instance --zygote`).

use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use wasmkube_shim::service::{Service, RUNTIME_ID};
use wasmkube_shim::{worker, zygote};

const BINARY: &str = "containerd-shim-wasmkube-v1";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(worker::WORKER_FLAG) {
        if args.get(2).map(String::as_str) == Some(zygote::ZYGOTE_ARG) {
            zygote::main();
        }
        worker::main();
    }
    if args.get(1).map(String::as_str) == Some("--run") {
        std::process::exit(wasmkube_shim::local::run(&args[2..]));
    }
    if args.get(1).map(String::as_str) == Some("--engine-info") {
        print_engine_info();
        return;
    }
    if args.get(1).map(String::as_str) == Some("--write-stub-image") {
        write_stub_image(args.get(2));
        return;
    }
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("{BINARY}: {e}");
            std::process::exit(2);
        }
    };
    if flags.version {
        println!("{BINARY}:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID}");
        println!("  Engine:   wasmtime 48 (cranelift)");
        return;
    }
    if flags.info {
        print_info();
        return;
    }
    if flags.action.is_empty() && zygote::enabled() {
        // The serving shim, still single-threaded: the zygote shares its pages.
        zygote::fork_early();
    }
    // The shim handles one pod's calls: one thread runs them (blocking work goes to tokio's
    // blocking pool), and its threads share one malloc arena, which keeps its private memory
    // (paid once per pod) small. The zygote, forked above, and HTTP instances keep glibc's
    // default arenas.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    runtime.block_on(containerd_shim::asynchronous::run::<Service>(
        RUNTIME_ID, None,
    ));
}

/// `--write-stub-image OUT.tar`: the module stub image every node imports
/// (`ctr -n k8s.io images import OUT.tar`), so pods can run Wasm OCI artifacts.
fn write_stub_image(out: Option<&String>) {
    let Some(out) = out else {
        eprintln!("usage: {BINARY} --write-stub-image OUT.tar");
        std::process::exit(2);
    };
    if let Err(e) = wasmkube_oci::layout::Image::stub().write_archive(std::path::Path::new(out)) {
        eprintln!("{BINARY}: cannot write the stub image to {out}: {e}");
        std::process::exit(1);
    }
    println!("{}", wasmkube_oci::handoff::STUB_IMAGE);
}

/// `--engine-info`: the engine this node gets (allocator, why, cache fingerprint), as JSON.
fn print_engine_info() {
    let (engine, setup) = wasmkube_shim::engine::EngineSetup::detect();
    let info = serde_json::json!({
        "allocator": setup.allocator,
        "reason": setup.reason,
        "fingerprint": wasmkube_shim::engine::fingerprint(&engine),
    });
    println!("{info}");
}

/// `-info`: the RuntimeInfo protobuf containerd 2.x asks shims for.
fn print_info() {
    let info = RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    match info.write_to_bytes() {
        Ok(bytes) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&bytes);
        }
        Err(e) => {
            eprintln!("{BINARY}: cannot encode runtime info: {e}");
            std::process::exit(1);
        }
    }
}
