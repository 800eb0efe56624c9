use super::*;
use containerd_shim::protos::protobuf::CodedOutputStream;

fn options(path: &str, body: &str) -> Any {
    let mut value = Vec::new();
    {
        let mut out = CodedOutputStream::vec(&mut value);
        out.write_string(1, "wasmkube").unwrap();
        if !path.is_empty() {
            out.write_string(2, path).unwrap();
        }
        if !body.is_empty() {
            out.write_bytes(3, body.as_bytes()).unwrap();
        }
        out.flush().unwrap();
    }
    Any {
        type_url: "runtimeoptions.v1.Options".into(),
        value,
        ..Default::default()
    }
}

#[test]
fn no_options_give_the_defaults() {
    assert_eq!(
        ShimConfig::from_runtime_options(None).unwrap(),
        ShimConfig::default()
    );
    assert_eq!(
        ShimConfig::default().cache_dir,
        PathBuf::from("/var/lib/wasmkube/cache")
    );
}

#[test]
fn config_path_in_runtime_options_selects_the_cache_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shim.toml");
    std::fs::write(&file, "cache_dir = \"/srv/wasm-cache\"\n").unwrap();
    let config =
        ShimConfig::from_runtime_options(Some(&options(file.to_str().unwrap(), ""))).unwrap();
    assert_eq!(config.cache_dir, PathBuf::from("/srv/wasm-cache"));
}

#[test]
fn inline_config_body_wins_over_the_path() {
    let config = ShimConfig::from_runtime_options(Some(&options(
        "/does/not/exist",
        "cache_dir = \"/inline\"",
    )))
    .unwrap();
    assert_eq!(config.cache_dir, PathBuf::from("/inline"));
}

#[test]
fn relative_cache_dir_is_rejected_with_the_key_name() {
    let err = ShimConfig::from_toml("cache_dir = \"cache\"", "shim.toml").unwrap_err();
    assert!(err.to_string().contains("cache_dir"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let err = ShimConfig::from_toml("cachedir = \"/x\"", "shim.toml").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn missing_config_file_names_the_file() {
    let err = ShimConfig::from_runtime_options(Some(&options("/nope/shim.toml", ""))).unwrap_err();
    assert!(err.to_string().contains("/nope/shim.toml"), "{err}");
}

#[test]
fn registries_and_content_stores_come_from_the_toml() {
    let config = ShimConfig::from_toml(
        r#"
cache_dir = "/c"
content_stores = ["/srv/containerd/io.containerd.content.v1.content"]
[registries."127.0.0.1:5000"]
insecure = true
username = "ci"
password = "secret"
[registries."ghcr.io"]
token = "t0k"
"#,
        "shim.toml",
    )
    .unwrap();
    assert_eq!(config.blob_store(), PathBuf::from("/c/blobs"));
    assert_eq!(
        config.content_stores,
        [PathBuf::from(
            "/srv/containerd/io.containerd.content.v1.content"
        )]
    );
    let local = &config.registries["127.0.0.1:5000"];
    assert!(local.insecure);
    assert_eq!(local.username.as_deref(), Some("ci"));
    assert_eq!(config.registries["ghcr.io"].token.as_deref(), Some("t0k"));
    assert!(!config.registries["ghcr.io"].insecure);
    let err = ShimConfig::from_toml("[registries.\"r\"]\ninsecur = true", "shim.toml").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    assert_eq!(
        ShimConfig::default().content_stores,
        [PathBuf::from(DEFAULT_CONTENT_STORE)]
    );
}
