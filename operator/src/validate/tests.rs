use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::api::{AppPort, EmptyDir, HttpSpec, Protocol};
use crate::testing::{app, volume, AppExt};

fn port(name: Option<&str>, number: i32, protocol: Option<Protocol>) -> AppPort {
    AppPort {
        name: name.map(str::to_string),
        port: number,
        protocol,
    }
}

/// The problems of `app`, as `(field, message)`.
fn problems(app: &WasmApp) -> Vec<(String, String)> {
    match check(app) {
        Ok(()) => Vec::new(),
        Err(Invalid(all)) => all.into_iter().map(|p| (p.field, p.message)).collect(),
    }
}

fn none() -> Vec<(String, String)> {
    Vec::new()
}

/// Asserts `app` is refused with a problem on `field` whose message holds `says`.
#[track_caller]
fn refused(app: WasmApp, field: &str, says: &str) {
    let got = problems(&app);
    assert!(
        got.iter().any(|(f, m)| f == field && m.contains(says)),
        "want {field}: …{says}…, got {got:#?}"
    );
}

fn listening(name: &str) -> WasmApp {
    let mut a = app(name).with_http(8080, "/healthz");
    a.spec.ports = vec![port(Some("http"), 8080, None)];
    a
}

#[test]
fn a_plain_app_and_a_listening_http_app_are_valid() {
    assert_eq!(problems(&app("hello")), none());
    let web = listening("web")
        .with_limits("500m", "64Mi")
        .with_volume(volume("data", "/data"));
    assert_eq!(problems(&web), none());
}

#[test]
fn the_crd_cel_rules_are_checked_by_the_operator() {
    let mut a = app("web");
    a.spec.ports = vec![port(None, 8080, None)];
    refused(a, "spec.ports", "capabilities.network: inherit");

    let mut a = listening("web");
    a.spec.http = Some(HttpSpec {
        port: 9090,
        health_path: None,
    });
    refused(
        a,
        "spec.http.port",
        "spec.http.port 9090: http.port must be one of ports[].port",
    );

    let a = app("web")
        .with_volume(volume("data", "/a"))
        .with_volume(volume("data", "/b"));
    refused(
        a,
        "spec.volumes[1].name",
        "volume name data appears twice (also spec.volumes[0])",
    );

    let a = app("web")
        .with_volume(volume("a", "/data"))
        .with_volume(volume("b", "/data"));
    refused(
        a,
        "spec.volumes[1].mountPath",
        "volume mountPaths must be unique",
    );

    let mut two = volume("both", "/data");
    two.config_map = Some("conf".into());
    refused(
        app("web").with_volume(two),
        "spec.volumes[0]",
        "(both) names 2 sources: a volume needs exactly one of",
    );

    let mut a = app("web");
    a.spec.module = "registry.example/team/app".into();
    refused(
        a,
        "spec.module",
        "has no tag or digest: module must be an OCI reference",
    );
}

#[test]
fn duplicate_ports_and_port_names_are_refused_but_tcp_and_udp_may_share_a_number() {
    let mut a = listening("web");
    a.spec
        .ports
        .push(port(Some("again"), 8080, Some(Protocol::Tcp)));
    refused(
        a,
        "spec.ports[1]",
        "port 8080/TCP appears twice (also spec.ports[0])",
    );

    let mut a = listening("web");
    a.spec.ports.push(port(Some("http"), 9090, None));
    refused(
        a,
        "spec.ports[1].name",
        "\"http\": port names must be unique",
    );

    let mut dns = listening("dns");
    dns.spec
        .ports
        .push(port(Some("dns-tcp"), 53, Some(Protocol::Tcp)));
    dns.spec
        .ports
        .push(port(Some("dns"), 53, Some(Protocol::Udp)));
    assert_eq!(problems(&dns), none());
    // Unnamed, both would be the Service port `port-53`.
    dns.spec.ports[1].name = None;
    dns.spec.ports[2].name = None;
    refused(
        dns.clone(),
        "spec.ports[1].name",
        "ports that share a number",
    );
    refused(dns, "spec.ports[2].name", "(port 53/UDP) has no name");
}

#[test]
fn port_and_volume_names_follow_their_grammars() {
    for bad in [
        "HTTP",
        "web_port",
        "8080",
        "a-very-long-port-name",
        "-web",
        "we--b",
    ] {
        let mut a = listening("web");
        a.spec.ports.push(port(Some(bad), 9000, None));
        refused(
            a,
            "spec.ports[1].name",
            "port name must be an IANA service name",
        );
    }
    let long = "v".repeat(64);
    for bad in ["Data", "data_1", "-data", long.as_str()] {
        refused(
            app("web").with_volume(volume(bad, "/data")),
            "spec.volumes[0].name",
            "volume name must be a DNS label",
        );
    }
    refused(
        app("web").with_volume(volume("data", "/a,b")),
        "spec.volumes[0].mountPath",
        "','",
    );
}

#[test]
fn names_too_long_for_a_label_or_invalid_for_a_service_are_refused() {
    let long = "a".repeat(64);
    refused(app(&long), "metadata.name", "must be at most 63 characters");
    assert_eq!(problems(&app(&"a".repeat(63))), none());
    // Without a Service a dotted name is fine; with one it is not a DNS-1035 label.
    assert_eq!(problems(&app("web.v1")), none());
    refused(
        listening("web.v1"),
        "metadata.name",
        "names the app's Service",
    );
}

#[test]
fn quantities_that_do_not_parse_and_requests_above_limits_are_refused() {
    refused(
        app("web").with_limits("lots", "64Mi"),
        "spec.resources.limits.cpu",
        "resources.limits.cpu: \"lots\" is not a quantity",
    );
    refused(
        app("web").with_limits("1", "64MB"),
        "spec.resources.limits.memory",
        "unknown suffix \"MB\"",
    );
    let mut a = app("web").with_limits("100m", "64Mi");
    a.spec.resources.as_mut().unwrap().requests =
        Some([("cpu".to_string(), Quantity("1".into()))].into());
    refused(
        a,
        "spec.resources.requests.cpu",
        "1 is more than the limit 100m",
    );
    let mut v = volume("scratch", "/tmp");
    v.empty_dir = Some(EmptyDir {
        size_limit: Some("big".into()),
    });
    refused(
        app("web").with_volume(v),
        "spec.volumes[0].emptyDir.sizeLimit",
        "emptyDir.sizeLimit: \"big\" is not a quantity",
    );
}

#[test]
fn env_entries_with_value_and_value_from_are_refused() {
    let mut a = app("web");
    a.spec.env = vec![EnvVar {
        name: "TOKEN".into(),
        value: Some("x".into()),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "s".into(),
                key: "k".into(),
                optional: None,
            }),
            ..Default::default()
        }),
    }];
    refused(
        a.clone(),
        "spec.env[0]",
        "either value or valueFrom, not both",
    );
    a.spec.env[0].value = None;
    assert_eq!(problems(&a), none());
    a.spec.env[0].name = "1TOKEN".into();
    refused(a, "spec.env[0].name", "may not start with a digit");
}

#[test]
fn module_references_without_repository_or_with_upper_case_are_refused() {
    let mut a = app("web");
    a.spec.module = "host:5000".into();
    refused(
        a.clone(),
        "spec.module",
        "module must name a registry and a repository",
    );
    a.spec.module = "registry.example/Team/App:1".into();
    refused(a, "spec.module", "module repository must be lower-case");
}

#[test]
fn every_problem_is_reported_at_once_in_field_order() {
    let mut a = app("web").with_limits("lots", "64Mi");
    a.spec.module = "host:5000".into();
    a.spec.ports = vec![port(Some("HTTP"), 8080, None)];
    let fields: Vec<String> = problems(&a).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "spec.module",
            "spec.resources.limits.cpu",
            "spec.ports[0].name",
            "spec.ports"
        ]
    );
    let all = check(&a).unwrap_err().to_string();
    assert!(
        all.starts_with("spec.module \"host:5000\" names no repository")
            && all.contains("; spec.ports: "),
        "{all}"
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The WasmApps in a YAML file (other kinds skipped), with REGISTRY replaced as the examples
/// say; a document that is not a readable WasmApp is `Err` with why.
fn wasmapps(path: &Path) -> Vec<Result<WasmApp, String>> {
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("REGISTRY", "registry.example:5000");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    docs.into_iter()
        .filter(|d| d["kind"] == "WasmApp")
        .map(|d| serde_json::from_value::<WasmApp>(d).map_err(|e| e.to_string()))
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_example_wasmapp_is_valid() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("wasmapp.yaml"))
        .filter(|p| p.exists())
        .collect();
    files.extend(
        yaml_files(&repo().join("e2e/kind/manifests"))
            .into_iter()
            .filter(|p| !p.ends_with("invalid.yaml")),
    );
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        for app in wasmapps(&file) {
            let app = app.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(problems(&app), none(), "{} is refused", file.display());
        }
    }
}

#[test]
fn the_kind_suites_invalid_app_is_refused_without_cel() {
    let file = repo().join("e2e/kind/manifests/invalid.yaml");
    let apps = wasmapps(&file);
    assert_eq!(apps.len(), 1);
    refused(
        apps[0].clone().unwrap(),
        "spec.ports",
        "capabilities.network: inherit",
    );
}

/// The table of bad WasmApps in `e2e/cluster/invalid/` (each file with a `# refused: …` line
/// for the API server and, optionally, `# operator: …` for this validator): every app in it is
/// refused here too, so an API server without CEL never gets it deployed. A document that does
/// not even read as a WasmApp (a wrong type, an unknown enum value) is refused as well: the
/// operator's typed watch cannot take it.
#[test]
fn every_app_of_the_invalid_table_is_refused() {
    let dir = repo().join("e2e/cluster/invalid");
    let files = yaml_files(&dir);
    assert!(
        !dir.exists() || !files.is_empty(),
        "{} holds no YAML",
        dir.display()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("# operator:"))
            .map(|s| s.trim().to_string());
        let apps = wasmapps(&file);
        assert!(!apps.is_empty(), "{}: no WasmApp in it", file.display());
        for app in apps {
            let why = match app {
                Err(unreadable) => unreadable,
                Ok(app) => match check(&app) {
                    Ok(()) => panic!("{}: the operator accepts it", file.display()),
                    Err(invalid) => invalid.to_string(),
                },
            };
            if let Some(want) = &expected {
                // The table quotes as kubectl prints (`\"lots\"`); the condition holds `"lots"`.
                let plain = want.replace("\\\"", "\"");
                assert!(
                    why.contains(want.as_str()) || why.contains(&plain),
                    "{}: want {want:?} in {why:?}",
                    file.display()
                );
            }
        }
    }
}
