//! The language examples (issue 12): the word count in C, Zig, AssemblyScript and Go, each
//! compiled from source by `scripts/examples.sh` (which installs its toolchain), packaged as an
//! OCI image, and run through containerd and the shim on a file bind-mounted at `/data`. Each
//! must print what an independent count of the file gives, and report a missing file the way
//! the shared contract (`examples/README.md`) says. The manifests must be valid WasmApps.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::path::PathBuf;
use std::process::Command;

use wasmkube_e2e::containerd::Containerd;
use wasmkube_e2e::fixtures::run;
use wasmkube_e2e::image::Image;
use wasmkube_e2e::{repo_root, target_dir};
use wasmkube_operator::api::WasmApp;

/// The module's path in the image (ctr's arguments replace the whole command line).
const WASM: &str = "/wordcount.wasm";

/// Builds `examples/wordcount-<lang>` with `scripts/examples.sh`; fails with the script's own
/// line when its toolchain could not be installed (a registry unreachable).
fn build(lang: &str) -> Vec<u8> {
    let out = target_dir().join("examples");
    let result = Command::new("bash")
        .arg(repo_root().join("scripts/examples.sh"))
        .arg(&out)
        .arg(lang)
        .output()
        .expect("bash runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        result.status.success(),
        "scripts/examples.sh {lang} exited {:?}:\n{log}",
        result.status.code()
    );
    std::fs::read(out.join(format!("wordcount-{lang}.wasm"))).unwrap()
}

/// `lines words bytes` of `text` by the contract's rules, counted here independently.
fn count(text: &[u8]) -> (usize, usize, usize) {
    let lines = text.iter().filter(|b| **b == b'\n').count();
    let words = text
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .filter(|w| !w.is_empty())
        .count();
    (lines, words, text.len())
}

fn example_runs_through_the_shim(lang: &str) {
    let module = build(lang);
    let ctrd = Containerd::start().unwrap();
    let image = format!("docker.io/wasmkube/wordcount-{lang}:test");
    let archive = ctrd.dir().join("wordcount.tar");
    Image::module(&image, "wordcount.wasm", module, "wasip1")
        .with_file("etc/motd", b"root file\n")
        .write_archive(&archive)
        .unwrap();
    ctrd.import(&archive).unwrap();
    let data: PathBuf = ctrd.dir().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let sample = std::fs::read(repo_root().join("examples/wordcount.txt")).unwrap();
    std::fs::write(data.join("input.txt"), &sample).unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        data.display()
    );
    let flags = ["--mount", mount.as_str()];

    let (l, w, b) = count(&sample);
    let (code, out, err) = run(&ctrd, &flags, &image, "one", &[WASM, "/data/input.txt"]);
    assert_eq!(code, 0, "{lang}: stderr {err}");
    assert_eq!(out, format!("{l} {w} {b} /data/input.txt\n"), "{lang}");
    assert_eq!(err, "", "{lang}");

    // Several files (one from the image's rootfs, one missing): a total, and exit 1.
    let (code, out, err) = run(
        &ctrd,
        &flags,
        &image,
        "many",
        &[WASM, "/data/input.txt", "/data/missing.txt", "/etc/motd"],
    );
    assert_eq!(code, 1, "{lang}: stdout {out} stderr {err}");
    assert_eq!(
        out,
        format!(
            "{l} {w} {b} /data/input.txt\n1 2 10 /etc/motd\n{} {} {} total\n",
            l + 1,
            w + 2,
            b + 10
        ),
        "{lang}"
    );
    assert_eq!(
        err, "wc: /data/missing.txt: No such file or directory\n",
        "{lang}"
    );

    let (code, _, err) = run(&ctrd, &flags, &image, "none", &[WASM]);
    assert_eq!(code, 2, "{lang}: {err}");
    assert!(err.starts_with("usage: wordcount PATH..."), "{lang}: {err}");
}

#[test]
fn c_word_count_runs_through_the_shim() {
    example_runs_through_the_shim("c");
}

#[test]
fn zig_word_count_runs_through_the_shim() {
    example_runs_through_the_shim("zig");
}

#[test]
fn assemblyscript_word_count_runs_through_the_shim() {
    example_runs_through_the_shim("as");
}

#[test]
fn go_word_count_runs_through_the_shim() {
    example_runs_through_the_shim("go");
}

#[test]
fn every_example_manifest_is_a_valid_wasmapp_with_its_input() {
    let sample = std::fs::read_to_string(repo_root().join("examples/wordcount.txt")).unwrap();
    for lang in ["c", "zig", "as", "go"] {
        let path = repo_root().join(format!("examples/wordcount-{lang}/wasmapp.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<&str> = text.split("\n---\n").collect();
        assert_eq!(
            docs.len(),
            2,
            "{}: a ConfigMap and a WasmApp",
            path.display()
        );
        let config_map: serde_json::Value = serde_saphyr::from_str(docs[0]).unwrap();
        assert_eq!(config_map["kind"], "ConfigMap");
        assert_eq!(
            config_map["data"]["input.txt"],
            sample,
            "{}: the ConfigMap holds examples/wordcount.txt",
            path.display()
        );
        let app: WasmApp = serde_saphyr::from_str(docs[1]).unwrap();
        app.validate_cel()
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert_eq!(
            app.spec.module,
            format!("REGISTRY/wasmkube/wordcount-{lang}:1")
        );
        assert_eq!(app.spec.args, vec!["/data/input.txt".to_string()]);
    }
}
