//! WebAssembly proposals through the shim: one module per proposal the engine enables (tail
//! calls, SIMD, relaxed SIMD, multi-memory, typed function references, extended constants,
//! memory64), each proving it ran by its exit code, and one per proposal it leaves off (GC,
//! exception handling, threads), each refused at create with the proposal named.
//! Modules are `e2e/fixtures/proposals/*.wat`, compiled by the test.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use wasmkube_e2e::containerd::Containerd;
use wasmkube_e2e::fixtures::run;
use wasmkube_e2e::image::Image;
use wasmkube_e2e::repo_root;

/// Imports `e2e/fixtures/proposals/<name>.wat` as image `docker.io/wasmkube/<name>:proposal`.
fn import(ctrd: &Containerd, name: &str) -> String {
    let path = repo_root().join(format!("e2e/fixtures/proposals/{name}.wat"));
    let module = wat::parse_file(&path).unwrap();
    let image = format!("docker.io/wasmkube/{name}:proposal");
    let archive = ctrd.dir().join(format!("{name}.tar"));
    Image::module(&image, "app.wasm", module, "wasip1")
        .write_archive(&archive)
        .unwrap();
    ctrd.import(&archive).unwrap();
    image
}

/// Runs `e2e/fixtures/proposals/<name>.wat` through the shim; it proves the proposal worked
/// by exiting with `want`.
fn enabled_proposal_runs(name: &str, want: i32) {
    let ctrd = Containerd::start().unwrap();
    let image = import(&ctrd, name);
    let (code, out, err) = run(&ctrd, &[], &image, name, &[]);
    assert_eq!(code, want, "{name}: stdout {out} stderr {err}");
}

#[test]
fn tail_calls_run_through_the_shim() {
    enabled_proposal_runs("tail-call", 39);
}

#[test]
fn simd_runs_through_the_shim() {
    enabled_proposal_runs("simd", 44);
}

#[test]
fn relaxed_simd_runs_through_the_shim() {
    enabled_proposal_runs("relaxed-simd", 17);
}

#[test]
fn multi_memory_runs_through_the_shim() {
    enabled_proposal_runs("multi-memory", 79);
}

#[test]
fn typed_function_references_run_through_the_shim() {
    enabled_proposal_runs("function-references", 42);
}

#[test]
fn extended_constant_expressions_run_through_the_shim() {
    enabled_proposal_runs("extended-const", 43);
}

#[test]
fn memory64_runs_through_the_shim() {
    enabled_proposal_runs("memory64", 64);
}

#[test]
fn disabled_proposals_are_refused_with_their_name() {
    let ctrd = Containerd::start().unwrap();
    for (name, proposal) in [
        ("gc", "GC (struct and array types)"),
        ("exceptions", "exception handling"),
        ("threads", "threads (shared memory, atomics)"),
    ] {
        let image = import(&ctrd, name);
        let (code, _, err) = run(&ctrd, &[], &image, name, &[]);
        assert_ne!(code, 0, "{name} must not run");
        let want = format!("uses the WebAssembly {proposal} proposal");
        assert!(err.contains(&want), "{name}: {want:?} missing from: {err}");
        assert!(
            err.contains("/app.wasm"),
            "{name}: the module is named: {err}"
        );
    }
}
