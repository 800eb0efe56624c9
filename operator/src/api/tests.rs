//! The CRD's CEL rules, evaluated client-side (`kube/cel`) exactly as the API server would:
//! invalid apps are refused with the message a user reads from `kubectl apply`.

use super::*;
use crate::testing::{app, volume, AppExt};
use kube::CustomResourceExt;

fn refusal(app: &WasmApp) -> String {
    format!("{:?}", app.validate_cel().expect_err("must be refused"))
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
fn volumes_need_unique_paths_dns_label_names_and_exactly_one_source() {
    let same_path = app("web")
        .with_volume(volume("a", "/a"))
        .with_volume(volume("b", "/a"));
    assert!(refusal(&same_path).contains(refusal::MOUNT_PATHS_NOT_UNIQUE));
    let mut two = volume("a", "/a");
    two.secret = Some("s".into());
    let err = refusal(&app("web").with_volume(two));
    assert!(err.contains("exactly one of configMap, secret"), "{err}");
    for bad in ["Input", "in_put", "-input", "input-"] {
        let err = refusal(&app("web").with_volume(volume(bad, "/a")));
        assert!(err.contains(refusal::VOLUME_NAME), "{bad}: {err}");
    }
    app("web")
        .with_volume(volume("input-2", "/a"))
        .validate_cel()
        .expect("a DNS label");
}

fn port(name: Option<&str>, number: i32, protocol: Option<Protocol>) -> AppPort {
    AppPort {
        name: name.map(Into::into),
        port: number,
        protocol,
    }
}

fn listening(ports: Vec<AppPort>) -> WasmApp {
    let mut a = app("web");
    a.spec.capabilities.network = Network::Inherit;
    a.spec.ports = ports;
    a
}

#[test]
fn port_names_are_iana_service_names_unique_in_the_app() {
    for bad in ["Web", "web_port", "-web", "web-", "w--b", "8080"] {
        let err = refusal(&listening(vec![port(Some(bad), 8080, None)]));
        assert!(err.contains(refusal::PORT_NAME), "{bad}: {err}");
    }
    for good in ["http", "web-2", "h2c", "a1"] {
        listening(vec![port(Some(good), 8080, None)])
            .validate_cel()
            .unwrap_or_else(|e| panic!("{good}: {e:?}"));
    }
    let err = refusal(&listening(vec![
        port(Some("web"), 8080, None),
        port(Some("web"), 8081, None),
    ]));
    assert!(err.contains(refusal::PORT_NAMES_NOT_UNIQUE), "{err}");
}

#[test]
fn a_tcp_and_a_udp_port_on_one_number_need_names() {
    let unnamed = listening(vec![
        port(None, 53, Some(Protocol::Tcp)),
        port(None, 53, Some(Protocol::Udp)),
    ]);
    assert!(refusal(&unnamed).contains(refusal::SHARED_PORT_UNNAMED));
    listening(vec![
        port(Some("dns-tcp"), 53, Some(Protocol::Tcp)),
        port(Some("dns-udp"), 53, Some(Protocol::Udp)),
    ])
    .validate_cel()
    .expect("named");
}

#[test]
fn module_references_need_a_repository_in_lower_case_and_a_tag_or_digest() {
    let digest = format!("sha256:{}", "0a".repeat(32));
    for good in [
        "registry.example/apps/web:1".to_string(),
        "127.0.0.1:5000/wasmkube/hello:p1".to_string(),
        "localhost/hello:V1.0_rc-2".to_string(),
        "Registry.Example:5000/team/app__x/a-b.c:1".to_string(),
        format!("[::1]:5000/team/app@{digest}"),
        format!("registry.example/team/app:1@{digest}"),
    ] {
        let mut a = app("web");
        a.spec.module = good.clone();
        a.validate_cel()
            .unwrap_or_else(|e| panic!("{good} must be accepted: {e:?}"));
    }
    let cases = [
        ("registry.example:5000", refusal::MODULE_WITHOUT_REPOSITORY),
        ("hello:1", refusal::MODULE_WITHOUT_REPOSITORY),
        (
            "registry.example:5000/Team/Hello:1",
            refusal::MODULE_UPPER_CASE,
        ),
        ("registry.example/team/app", refusal::MODULE_NOT_A_REFERENCE),
        (
            "registry.example/team//app:1",
            refusal::MODULE_NOT_A_REFERENCE,
        ),
        (
            "registry.example/team/app:",
            refusal::MODULE_NOT_A_REFERENCE,
        ),
        (
            "registry.example/team/app@sha256:abc",
            refusal::MODULE_NOT_A_REFERENCE,
        ),
        (
            "https://registry.example/team/app:1",
            refusal::MODULE_NOT_A_REFERENCE,
        ),
    ];
    for (bad, why) in cases {
        let mut a = app("web");
        a.spec.module = bad.into();
        let err = refusal(&a);
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn an_env_variable_with_value_and_value_from_is_refused() {
    use k8s_openapi::api::core::v1::{EnvVarSource, ObjectFieldSelector};
    let mut a = app("web");
    a.spec.env.push(EnvVar {
        name: "NODE".into(),
        value: Some("x".into()),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    });
    assert!(refusal(&a).contains(refusal::ENV_VALUE_AND_VALUE_FROM));
    a.spec.env[0].value = None;
    a.validate_cel().expect("valueFrom alone");
}

#[test]
fn an_app_name_longer_than_a_label_value_is_refused() {
    let long = "a".repeat(64);
    assert!(refusal(&app(&long)).contains(refusal::NAME_TOO_LONG));
    app(&"a".repeat(63)).validate_cel().expect("63 characters");
}

/// The schema of `spec` in the generated CRD.
fn schema() -> serde_json::Value {
    let crd = serde_json::to_value(WasmApp::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every path in `value` at which `key` is set.
fn paths_with(value: &serde_json::Value, key: &str, at: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    found.push(at.to_string());
                }
                paths_with(v, key, &format!("{at}.{k}"), found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                paths_with(v, key, &format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn status_fields_carry_no_default() {
    // Kubernetes 1.20 refuses the CRD over `default: ""` in status.
    let mut found = Vec::new();
    paths_with(
        &schema()["properties"]["status"],
        "default",
        "status",
        &mut found,
    );
    assert!(found.is_empty(), "defaults in status: {found:?}");
    // Deserialisation still fills them.
    let status: WasmAppStatus = serde_json::from_str("{}").unwrap();
    assert_eq!(status.replicas, 0);
    assert_eq!(status.selector, "");
}

#[test]
fn lists_are_bounded_and_keyed_so_the_rules_fit_the_cost_budget() {
    let spec = &schema()["properties"]["spec"]["properties"];
    assert_eq!(spec["ports"]["maxItems"], MAX_PORTS);
    assert_eq!(spec["ports"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        spec["ports"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["port", "protocol"])
    );
    let port = &spec["ports"]["items"]["properties"];
    assert_eq!(
        port["protocol"]["default"], "TCP",
        "a list-map key needs a default"
    );
    assert_eq!(port["name"]["maxLength"], 15);
    assert_eq!(spec["volumes"]["maxItems"], MAX_VOLUMES);
    assert_eq!(spec["volumes"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        spec["volumes"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    let volume = &spec["volumes"]["items"]["properties"];
    assert_eq!(volume["name"]["maxLength"], 63);
    assert_eq!(volume["mountPath"]["maxLength"], MAX_PATH);
    assert_eq!(
        volume["emptyDir"]["properties"]["sizeLimit"]["pattern"],
        QUANTITY
    );
    assert_eq!(spec["env"]["maxItems"], MAX_ENV);
    assert_eq!(spec["module"]["maxLength"], 512);
    let resources = &spec["resources"]["properties"];
    for key in ["limits", "requests"] {
        assert_eq!(
            resources[key]["additionalProperties"]["pattern"], QUANTITY,
            "{key}"
        );
    }
    assert!(resources.get("claims").is_none());
}
