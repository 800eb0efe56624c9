//! Module resolution (what the operator does for every WasmApp) against a real registry:
//! tag → digest, image vs artifact, size, credentials from a `.dockerconfigjson`, and the
//! failures a user must be able to tell apart.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::collections::HashMap;

use wasmkube_e2e::cri::native_binary;
use wasmkube_e2e::fixtures::{hello_artifact, image, HELLO_P1, HELLO_P2};
use wasmkube_e2e::image::Image;
use wasmkube_e2e::registry::Registry;
use wasmkube_oci::{FetchError, Format, RegistryConfig};

fn plain_http(registry: &Registry) -> HashMap<String, RegistryConfig> {
    HashMap::from([(
        registry.host.clone(),
        RegistryConfig {
            insecure: true,
            ..Default::default()
        },
    )])
}

fn resolve(
    reference: &str,
    registries: &HashMap<String, RegistryConfig>,
) -> Result<wasmkube_oci::Resolved, FetchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(wasmkube_oci::resolve(reference, registries))
}

#[test]
fn images_and_artifacts_resolve_to_digests_with_their_format_and_size() {
    let registry = Registry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = plain_http(&registry);

    let hello = image(HELLO_P1);
    hello.write_archive(&dir.path().join("image.tar")).unwrap();
    let tagged = registry
        .push(&dir.path().join("image.tar"), "apps/hello:1")
        .unwrap();
    let got = resolve(&tagged, &http).unwrap();
    assert_eq!(got.format, Format::Image);
    assert_eq!(got.os.as_deref(), Some("wasip1"));
    // skopeo compresses the layer on push: the size is what the registry stores.
    assert!(got.size > 1000, "the layer's size: {got:?}");
    assert_eq!(
        got.pinned,
        format!("{}/apps/hello@{}", registry.host, got.digest)
    );
    // Resolving the pinned reference gives the same answer.
    assert_eq!(resolve(&got.pinned, &http).unwrap(), got);

    let artifact = hello_artifact("docker.io/apps/hello-artifact:1");
    let manifest = artifact
        .write_archive(&dir.path().join("artifact.tar"))
        .unwrap();
    let tagged = registry
        .push(&dir.path().join("artifact.tar"), "apps/hello-artifact:1")
        .unwrap();
    let got = resolve(&tagged, &http).unwrap();
    assert_eq!(got.format, Format::Artifact);
    assert_eq!(got.digest, manifest);
    assert_eq!(got.size, artifact.module.len() as u64);
}

#[test]
fn a_tag_that_moves_resolves_to_the_new_digest() {
    let registry = Registry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = plain_http(&registry);
    image(HELLO_P1)
        .write_archive(&dir.path().join("p1.tar"))
        .unwrap();
    image(HELLO_P2)
        .write_archive(&dir.path().join("p2.tar"))
        .unwrap();
    let tagged = registry
        .push(&dir.path().join("p1.tar"), "apps/hello:latest")
        .unwrap();
    let first = resolve(&tagged, &http).unwrap();
    registry
        .push(&dir.path().join("p2.tar"), "apps/hello:latest")
        .unwrap();
    let second = resolve(&tagged, &http).unwrap();
    assert_ne!(first.digest, second.digest);
    assert_eq!(second.os.as_deref(), Some("wasip2"));
}

#[test]
fn failures_are_told_apart() {
    let registry = Registry::start(Some(("puller", "s3cret"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut http = plain_http(&registry);
    let native = native_binary("hello-native", dir.path()).unwrap();
    Image::native("docker.io/apps/native:1", "hello", native)
        .write_archive(&dir.path().join("native.tar"))
        .unwrap();
    let native = registry
        .push(&dir.path().join("native.tar"), "apps/native:1")
        .unwrap();
    image(HELLO_P1)
        .write_archive(&dir.path().join("hello.tar"))
        .unwrap();
    let hello = registry
        .push(&dir.path().join("hello.tar"), "apps/hello:1")
        .unwrap();

    let err = resolve(&hello, &http).unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized { .. }), "{err}");

    // Credentials as an imagePullSecret carries them.
    let secret = format!(
        r#"{{"auths": {{"{}": {{"username": "puller", "password": "s3cret"}}}}}}"#,
        registry.host
    );
    for (host, mut config) in wasmkube_oci::auth::from_docker_config(secret.as_bytes()).unwrap() {
        config.insecure = true;
        http.insert(host, config);
    }
    assert_eq!(resolve(&hello, &http).unwrap().format, Format::Image);

    let err = resolve(&native, &http).unwrap_err().to_string();
    assert!(
        err.contains("is not a Wasm artifact: an image for linux/"),
        "{err}"
    );
    let err = resolve(&format!("{}/apps/hello:2", registry.host), &http).unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err}");
    let host = registry.host.clone();
    drop(registry);
    let err = resolve(&format!("{host}/apps/hello:1"), &http).unwrap_err();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err}");
}
