//! The README demo: a private containerd with the wasmkube runtime, the hello example built
//! from source and packaged as an OCI image, run through the shim with `ctr`. Stops everything
//! it started on exit or Ctrl-C.

use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{ensure, Context};
use signal_hook::consts::{SIGINT, SIGTERM};
use wasmkube_e2e::containerd::Containerd;
use wasmkube_e2e::image::Image;
use wasmkube_e2e::wasm::{rust_module, Target};

/// The running containerd, reachable from the signal thread so Ctrl-C can tear it down.
static NODE: Mutex<Option<Containerd>> = Mutex::new(None);

const IMAGE: &str = "docker.io/wasmkube/hello:demo";

fn step(what: &str) {
    println!("\n==> {what}");
}

fn main() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("\ninterrupted: stopping containerd and the shims");
            drop(NODE.lock().map(|mut n| n.take()));
            std::process::exit(128 + sig);
        }
    });
    let result = demo();
    drop(NODE.lock().map(|mut n| n.take()));
    if result.is_ok() {
        println!("\n==> done: containerd, shims and mounts cleaned up");
    }
    result
}

fn demo() -> anyhow::Result<()> {
    step("building examples/hello for wasm32-wasip1");
    let module = rust_module("hello", Target::P1)?;
    println!(
        "    {} ({} bytes)",
        module.display(),
        std::fs::metadata(&module)?.len()
    );

    step("starting a private containerd with runtime io.containerd.wasmkube.v1");
    let ctrd = Containerd::start()?;
    println!("    socket {}", ctrd.address.display());

    step(&format!(
        "packaging and importing {IMAGE} (platform wasip1/wasm)"
    ));
    let archive = ctrd.dir().join("hello.tar");
    Image::module(IMAGE, "hello.wasm", std::fs::read(&module)?, "wasip1")
        .write_archive(&archive)?;
    ctrd.import(&archive)?;
    let mut ctr = ctrd.ctr_run("--rm", "wasip1/wasm");
    *NODE.lock().expect("demo lock") = Some(ctrd);

    step("ctr run --rm --runtime io.containerd.wasmkube.v1 --env DEMO=wasmkube hello /hello.wasm demo");
    let out = ctr
        .args([
            "--env",
            "DEMO=wasmkube",
            IMAGE,
            "hello-demo",
            "/hello.wasm",
            "demo",
        ])
        .stdin(Stdio::null())
        .output()
        .context("running ctr")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "hello exited with {}", out.status);
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("hello from wasmkube"),
        "hello did not print its greeting"
    );
    Ok(())
}
