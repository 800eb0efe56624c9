//! The CRD's CEL rules, evaluated client-side (`kube/cel`) exactly as the API server would:
//! invalid apps are refused with the message a user reads from `kubectl apply`.

use super::*;
use crate::testing::{app, AppExt};

fn refusal(app: &WasmApp) -> String {
    format!("{:?}", app.validate_cel().expect_err("must be refused"))
}

fn volume(name: &str, path: &str) -> AppVolume {
    AppVolume {
        name: name.into(),
        mount_path: path.into(),
        read_only: false,
        config_map: None,
        secret: None,
        empty_dir: Some(EmptyDir::default()),
        persistent_volume_claim: None,
    }
}

#[test]
fn a_plain_app_and_a_serving_app_with_inherit_are_accepted() {
    app("web").validate_cel().expect("plain app");
    let mut serving = app("web").with_http(8080, "/healthz");
    serving.spec.ports.push(AppPort {
        name: Some("http".into()),
        port: 8080,
        protocol: None,
    });
    serving.validate_cel().expect("serving app");
    app("web")
        .with_volume(volume("a", "/a"))
        .with_volume(volume("b", "/b"))
        .validate_cel()
        .expect("two volumes");
}

#[test]
fn listening_ports_without_network_inherit_are_refused_with_the_fix() {
    let mut a = app("web");
    a.spec.ports.push(AppPort {
        name: None,
        port: 8080,
        protocol: None,
    });
    a.spec.capabilities.network = Network::None;
    let why = refusal(&a);
    assert!(
        why.contains("ports needs capabilities.network: inherit"),
        "{why}"
    );
    assert!(why.contains("wasi:http/proxy component"), "{why}");
}

#[test]
fn a_wasi_http_app_needs_no_network_capability() {
    // The shim serves the component: the module itself opens no socket.
    let mut a = app("web").with_http(8080, "/healthz");
    a.spec.capabilities.network = Network::None;
    a.validate_cel().expect("http alone is valid");
}

#[test]
fn http_port_outside_the_declared_ports_is_refused() {
    let mut a = app("web").with_http(8080, "/healthz");
    a.spec.ports.push(AppPort {
        name: None,
        port: 9090,
        protocol: None,
    });
    assert!(refusal(&a).contains("http.port must be one of ports[].port"));
}

#[test]
fn module_without_tag_or_digest_is_refused_with_an_example() {
    let mut a = app("web");
    a.spec.module = "registry.example/apps/web".into();
    assert!(
        refusal(&a).contains("module must be an OCI reference with a tag or digest"),
        "{}",
        refusal(&a)
    );
    a.spec.module = format!("registry.example/apps/web@sha256:{}", "a".repeat(64));
    a.validate_cel().expect("pinned by digest");
}

#[test]
fn volumes_need_unique_names_paths_and_exactly_one_source() {
    let dup = app("web")
        .with_volume(volume("a", "/a"))
        .with_volume(volume("a", "/b"));
    assert!(refusal(&dup).contains("volume names must be unique"));
    let same_path = app("web")
        .with_volume(volume("a", "/a"))
        .with_volume(volume("b", "/a"));
    assert!(refusal(&same_path).contains("volume mountPaths must be unique"));
    let mut two = volume("a", "/a");
    two.secret = Some("s".into());
    let err = refusal(&app("web").with_volume(two));
    assert!(err.contains("exactly one of configMap, secret"), "{err}");
}
