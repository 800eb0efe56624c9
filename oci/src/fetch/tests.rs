use std::collections::HashMap;

use super::*;
use crate::media;

/// A containerd-style content store holding one Wasm artifact; returns its manifest digest.
fn content_store(dir: &Path, module: &[u8]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d["sha256:".len()..]), data).expect("write blob");
        d
    };
    let layer = put(module);
    let config = br#"{"architecture":"wasm","os":"wasip1"}"#;
    let config_digest = put(config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::WASM_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": media::WASM_LAYER, "digest": layer, "size": module.len(),
                    "annotations": {media::TITLE_ANNOTATION: "m.wasm"}}],
    });
    put(&serde_json::to_vec(&manifest).expect("json"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Port 1 on loopback: nothing listens, so any registry request fails fast.
const DEAD: &str = "127.0.0.1:1/wasm/m";

#[test]
fn pinned_artifact_in_containerds_content_store_needs_no_registry() {
    let tmp = tempfile::tempdir().expect("tmp");
    let module = b"\0asm\x01\0\0\0";
    let manifest = content_store(&tmp.path().join("content"), module);
    let fetcher = ModuleFetcher::new(
        &tmp.path().join("store"),
        vec![tmp.path().join("content")],
        HashMap::new(),
    );
    let reference = format!("{DEAD}@{manifest}");
    let got = runtime()
        .block_on(fetcher.fetch(&reference))
        .expect("fetch");
    assert_eq!(got.source, Source::Containerd);
    assert_eq!(got.manifest_digest, manifest);
    assert_eq!(got.title.as_deref(), Some("m.wasm"));
    assert_eq!(std::fs::read(&got.path).expect("read"), module);
    assert_eq!(got.digest, sha256(module));
    // Second time: straight from our store, even with the content store gone.
    std::fs::remove_dir_all(tmp.path().join("content")).expect("rm");
    let again = runtime()
        .block_on(fetcher.fetch(&reference))
        .expect("fetch");
    assert_eq!(again.source, Source::Store);
    assert_eq!(again.path, got.path);
}

#[test]
fn corrupt_local_blobs_are_not_used_and_the_registry_error_is_reported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let content = tmp.path().join("content");
    let manifest = content_store(&content, b"\0asm\x01\0\0\0");
    let layer = sha256(b"\0asm\x01\0\0\0");
    std::fs::write(
        content.join("blobs/sha256").join(&layer["sha256:".len()..]),
        b"tampered",
    )
    .expect("tamper");
    let store = tmp.path().join("store");
    let fetcher = ModuleFetcher::new(&store, vec![content], HashMap::new());
    let err = runtime()
        .block_on(fetcher.fetch(&format!("{DEAD}@{manifest}")))
        .expect_err("must not use the tampered layer");
    let text = err.to_string();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{text}");
    assert!(
        text.contains("registry 127.0.0.1:1 is unreachable"),
        "{text}"
    );
    // Only the verified manifest reached the store; no temporary leftovers.
    let names: Vec<String> = std::fs::read_dir(store.join("sha256"))
        .expect("store")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![manifest["sha256:".len()..].to_string()]);
}

#[test]
fn a_non_wasm_layer_is_refused_and_bad_references_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let manifest = content_store(&tmp.path().join("content"), b"#!/bin/sh\necho hi\n");
    let fetcher = ModuleFetcher::new(
        &tmp.path().join("store"),
        vec![tmp.path().join("content")],
        HashMap::new(),
    );
    let err = runtime()
        .block_on(fetcher.fetch(&format!("{DEAD}@{manifest}")))
        .expect_err("not wasm")
        .to_string();
    assert!(err.contains("is not a Wasm artifact"), "{err}");
    assert!(err.contains("does not start with the Wasm magic"), "{err}");
    let err = runtime()
        .block_on(fetcher.fetch("Not A Ref!"))
        .expect_err("bad ref")
        .to_string();
    assert!(
        err.contains("\"Not A Ref!\" is not a valid OCI reference"),
        "{err}"
    );
}

#[test]
fn registry_settings_choose_the_credentials() {
    let basic = RegistryConfig {
        username: Some("u".into()),
        password: Some("p".into()),
        ..Default::default()
    };
    assert!(matches!(basic.auth(), RegistryAuth::Basic(u, p) if u == "u" && p == "p"));
    let token = RegistryConfig {
        token: Some("t".into()),
        ..basic
    };
    assert!(matches!(token.auth(), RegistryAuth::Bearer(t) if t == "t"));
    assert!(matches!(
        RegistryConfig::default().auth(),
        RegistryAuth::Anonymous
    ));
}
