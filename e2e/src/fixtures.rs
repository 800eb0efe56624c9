//! The test images every suite uses, built from the fixtures' sources and imported into a
//! private containerd on demand.

use std::process::Stdio;

use crate::containerd::Containerd;
use crate::image::{Artifact, Image};
use crate::wasm::{rust_module, wat_fixture, Target};

/// hello as a WASI preview 1 core module.
pub const HELLO_P1: &str = "docker.io/wasmkube/hello:p1";
/// hello as a WASI 0.2 component.
pub const HELLO_P2: &str = "docker.io/wasmkube/hello:p2";
/// The probe fixture (see `e2e/fixtures/probe`), with a decoy `/etc/passwd` and a symlink
/// `/escape` → `/` in its rootfs.
pub const PROBE: &str = "docker.io/wasmkube/probe:test";
/// The probe fixture built as a WASI 0.2 component (for `serve`).
pub const PROBE_P2: &str = "docker.io/wasmkube/probe:p2";
/// The probe image with the tools (`examples/tools`: ls, cat, env, wsh) under `/tools`, as a
/// pod's image gets them from the tools layer.
pub const TOOLS: &str = "docker.io/wasmkube/probe:tools";
/// The wasi:http example (`examples/http-hello`), a component served on the pod's port.
pub const HTTP_HELLO: &str = "docker.io/wasmkube/http-hello:test";
/// Loops forever.
pub const SPIN: &str = "docker.io/wasmkube/spin:test";
/// Traps at once.
pub const TRAP: &str = "docker.io/wasmkube/trap:test";
/// Recurses until the stack overflows.
pub const RECURSE: &str = "docker.io/wasmkube/recurse:test";
/// Imports a function no runtime provides.
pub const UNKNOWN_IMPORT: &str = "docker.io/wasmkube/unknown-import:test";
/// A shell script where the module should be.
pub const NOT_WASM: &str = "docker.io/wasmkube/not-wasm:test";
/// The node-local module stub image (written by `containerd-shim-wasmkube-v1
/// --write-stub-image`, see [`crate::cri::CriNode::import_stub_image`]): runs the artifact that
/// the pod annotation `wasmkube.dev/module[.<container>]` names.
pub const STUB: &str = wasmkube_oci::handoff::STUB_IMAGE;
/// The decoy password file inside the probe image.
pub const DECOY_PASSWD: &str = "decoy:x:1:1:inside the image:/:/nologin\n";

fn read(path: anyhow::Result<std::path::PathBuf>) -> Vec<u8> {
    std::fs::read(path.expect("module builds")).expect("module readable")
}

fn wat(name: &str) -> Vec<u8> {
    wat_fixture(name).expect("wat fixture compiles")
}

/// The image called `name`.
pub fn image(name: &str) -> Image {
    match name {
        HELLO_P1 => Image::module(
            name,
            "hello.wasm",
            read(rust_module("hello", Target::P1)),
            "wasip1",
        ),
        HELLO_P2 => Image::module(
            name,
            "hello.wasm",
            read(rust_module("hello", Target::P2)),
            "wasip2",
        ),
        PROBE => Image::module(
            name,
            "probe.wasm",
            read(rust_module("probe", Target::P1)),
            "wasip1",
        )
        .with_file("etc/passwd", DECOY_PASSWD.as_bytes())
        .with_symlink("escape", "/"),
        TOOLS => {
            let mut img = Image::module(
                name,
                "probe.wasm",
                read(rust_module("probe", Target::P1)),
                "wasip1",
            )
            .with_file("etc/passwd", DECOY_PASSWD.as_bytes());
            for tool in ["ls", "cat", "env", "wsh"] {
                img = img.with_file(
                    &format!("tools/{tool}.wasm"),
                    &read(rust_module(tool, Target::P1)),
                );
            }
            img
        }
        PROBE_P2 => Image::module(
            name,
            "probe.wasm",
            read(rust_module("probe", Target::P2)),
            "wasip2",
        ),
        HTTP_HELLO => Image::module(
            name,
            "http-hello.wasm",
            read(rust_module("http_hello", Target::P2)),
            "wasip2",
        ),
        SPIN => Image::module(name, "spin.wasm", wat("spin"), "wasip1"),
        TRAP => Image::module(name, "trap.wasm", wat("trap"), "wasip1"),
        RECURSE => Image::module(name, "recurse.wasm", wat("recurse"), "wasip1"),
        UNKNOWN_IMPORT => Image::module(name, "app.wasm", wat("unknown-import"), "wasip1"),
        NOT_WASM => Image::module(name, "app.wasm", b"#!/bin/sh\necho hi\n".to_vec(), "wasip1"),
        other => panic!("no such test image {other}"),
    }
}

/// hello (WASI preview 1) as a Wasm OCI artifact named `name`, layer titled `hello.wasm`.
pub fn hello_artifact(name: &str) -> Artifact {
    Artifact::wasm(
        name,
        "hello.wasm",
        read(rust_module("hello", Target::P1)),
        "wasip1",
    )
}

/// A private containerd with `images` imported.
pub fn node(images: &[&str]) -> Containerd {
    let ctrd = Containerd::start().expect("containerd starts");
    for name in images {
        let archive = ctrd.dir().join("image.tar");
        image(name).write_archive(&archive).expect("image archive");
        ctrd.import(&archive).expect("ctr images import");
    }
    ctrd
}

/// `ctr run --rm` of `image` as `id` with extra ctr flags before the image and args after
/// it; returns (exit code, stdout, stderr).
pub fn run(
    ctrd: &Containerd,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> (i32, String, String) {
    let out = ctrd
        .ctr_run("--rm", "wasip1/wasm")
        .args(flags)
        .args([image, id])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ctr runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ctr run -d` of `image` as `id` with extra ctr flags; panics with ctr's message if the
/// container does not start.
pub fn start(ctrd: &Containerd, flags: &[&str], image: &str, id: &str, args: &[&str]) {
    let out = detached(ctrd, flags, image, id, args);
    assert!(
        out.status.success(),
        "ctr run -d {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn detached(
    ctrd: &Containerd,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> std::process::Output {
    ctrd.ctr_run("-d", "wasip1/wasm")
        .args(flags)
        .args([image, id])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ctr runs")
}

/// `ctr run -d` of `image` as `id` in the pod `sandbox` (by the CRI sandbox-id annotation).
pub fn run_in_sandbox(
    ctrd: &Containerd,
    sandbox: &str,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> std::process::Output {
    let annotation = format!("io.kubernetes.cri.sandbox-id={sandbox}");
    let flags = [&["--annotation", annotation.as_str()][..], flags].concat();
    detached(ctrd, &flags, image, id, args)
}

/// Starts the probe sleeping for a minute as `id` in pod `sandbox`, waits until it runs, and
/// returns its pid.
pub fn sleeper(ctrd: &Containerd, sandbox: &str, id: &str) -> u32 {
    let out = run_in_sandbox(
        ctrd,
        sandbox,
        &[],
        PROBE,
        id,
        &["/probe.wasm", "sleep", "60"],
    );
    assert!(
        out.status.success(),
        "ctr run -d {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Err(e) = ctrd.wait_status(id, "RUNNING", std::time::Duration::from_secs(10)) {
        panic!("{e}\ncontainerd log:\n{}", ctrd.log());
    }
    ctrd.task_pid(id).expect("the sleeper has a pid")
}

/// `ctr events`, subscribed (it has had time to connect) until [`Events::stop`].
pub struct Events(std::process::Child);

impl Events {
    /// Subscribes to `ctrd`'s events.
    pub fn subscribe(ctrd: &Containerd) -> Events {
        let child = ctrd
            .ctr_command()
            .arg("events")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events starts");
        std::thread::sleep(std::time::Duration::from_millis(300));
        Events(child)
    }

    /// Lets late events arrive, stops, and returns every event line.
    pub fn stop(mut self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = self.0.kill();
        let out = self.0.wait_with_output().expect("ctr events output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
