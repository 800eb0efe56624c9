//! The node e2e suite: the kubelet's CRI calls against a real containerd with the `wasmkube`
//! handler (issue 4, first part: pods, logs, stats, limits, grace periods, clean-up, and a runc
//! pod beside Wasm pods), images and Wasm OCI artifacts from a real registry. Images are
//! imported into containerd's `k8s.io` namespace or pulled through CRI.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::sync::Mutex;
use std::time::Duration;

use k8s_cri::v1::ContainerState;
use std::os::unix::fs::PermissionsExt;
use wasmkube_e2e::containerd::{alive, parent_pid};
use wasmkube_e2e::cri::{native_binary, parse_log, ContainerSpec, CriNode, HostMount, HANDLER};

use wasmkube_e2e::fixtures::{
    hello_artifact, image, HELLO_P1, HELLO_P2, NOT_WASM, PROBE, PROBE_P2, STUB,
};
use wasmkube_e2e::image::{Artifact, Image};
use wasmkube_e2e::registry::Registry;

/// CRI nodes share this process's bridge name: one at a time.
static NODE: Mutex<()> = Mutex::new(());

fn node(images: &[&str]) -> (CriNode, std::sync::MutexGuard<'static, ()>) {
    let guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let node = CriNode::start().expect("containerd with CRI starts");
    for name in images {
        node.import(&image(name)).expect("import");
    }
    (node, guard)
}

#[test]
fn wasm_pod_runs_hello_and_its_logs_are_in_cri_format() {
    let (n, _guard) = node(&[HELLO_P1]);
    let pod = n.run_pod("hello", HANDLER).unwrap();
    let mut hello = ContainerSpec::new("hello", HELLO_P1, &["through", "cri", "--exit", "3"]);
    hello.env.push(("POD".into(), "hello".into()));
    let (id, code) = n.run_to_exit(&pod, &hello).unwrap();
    assert_eq!(code, 3);
    let log = n.log(&pod, "hello");
    let lines = parse_log(&log);
    let has = |stream: &str, text: &str| lines.iter().any(|(s, t)| s == stream && t == text);
    assert!(has("stdout", "hello from wasmkube"), "{log}");
    assert!(
        has("stdout", "arg[1]=through") && has("stdout", "arg[2]=cri"),
        "{log}"
    );
    assert!(has("stdout", "env POD=hello"), "{log}");
    assert!(has("stderr", "exiting with 3"), "{log}");
    // Every line carries an RFC 3339 timestamp.
    for line in log.lines() {
        let ts = line.split(' ').next().unwrap();
        assert!(
            ts.len() > 20 && ts.contains('T') && ts.ends_with('Z'),
            "{line}"
        );
    }
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
}

#[test]
fn containers_running_as_a_non_root_user_load_and_run_their_modules() {
    // The node's module cache and the bundle's rootfs path are root's: the instance process
    // opens both before it takes the container's user.
    let (n, _guard) = node(&[HELLO_P1, HELLO_P2, PROBE]);
    let pod = n.run_pod("nonroot", HANDLER).unwrap();
    for (name, image) in [("core", HELLO_P1), ("component", HELLO_P2)] {
        let mut hello = ContainerSpec::new(name, image, &["--exit", "3"]);
        hello.run_as_user = Some(1000);
        let (id, code) = n.run_to_exit(&pod, &hello).unwrap();
        let log = n.log(&pod, name);
        // A component built by Rust's wasm32-wasip2 std reports any failure as 1.
        let want = if image == HELLO_P1 { 3 } else { 1 };
        assert_eq!(code, want, "{name}: {log}");
        assert!(log.contains("hello from wasmkube"), "{name}: {log}");
        n.remove_container(&id).unwrap();
    }
    // The rootfs is preopened as `/`: the module reads its image's files as that user.
    let mut reader = ContainerSpec::new("reader", PROBE, &["read", "/etc/passwd"]);
    reader.run_as_user = Some(1000);
    let (id, code) = n.run_to_exit(&pod, &reader).unwrap();
    let log = n.log(&pod, "reader");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("decoy:x:1:1"), "{log}");
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
}

#[test]
fn two_wasm_containers_share_the_pod_shim_and_removal_leaves_nothing() {
    let (n, _guard) = node(&[PROBE]);
    let pod = n.run_pod("pair", HANDLER).unwrap();
    let ip = n.pod_ip(&pod).unwrap();
    assert!(
        ip.starts_with("10.77."),
        "pod got IP {ip:?} from the CNI bridge"
    );
    let netns_path = n.pod_netns(&pod.id).unwrap();
    assert!(netns_path.exists());
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let id = n
            .launch_running(&pod, &ContainerSpec::new(name, PROBE, &["sleep", "600"]))
            .unwrap();
        ids.push(id);
    }
    let pids: Vec<i32> = ids
        .iter()
        .map(|id| n.ctrd.task_pid(id).unwrap() as i32)
        .collect();
    let sandbox_pid = n.ctrd.task_pid(&pod.id).unwrap() as i32;
    let shim = parent_pid(pids[0]).unwrap();
    assert_eq!(parent_pid(pids[1]), Some(shim));
    assert_eq!(
        parent_pid(sandbox_pid),
        Some(shim),
        "the sandbox runs in the same shim"
    );
    assert_eq!(n.ctrd.shim_pids(), vec![shim]);

    let (cpu, mem) = n.container_stats(&ids[0]).unwrap();
    assert!(cpu > 0 && mem > 0, "ContainerStats cpu={cpu} mem={mem}");
    // PodSandboxStats: the pod cgroup holds both instance processes; each container is listed.
    let stats = n.pod_stats(&pod).unwrap();
    assert!(stats.cpu >= cpu && stats.memory > 0, "{stats:?}");
    for id in &ids {
        let listed = stats.containers.iter().find(|(c, _, _)| c == id);
        assert!(
            listed.is_some_and(|(_, cpu, mem)| *cpu > 0 && *mem > 0),
            "{id} in {stats:?}"
        );
    }

    // The kubelet stops containers with their grace period, then the sandbox.
    let started = std::time::Instant::now();
    for id in &ids {
        n.stop_container(id, 2).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    for id in &ids {
        let (state, code, _) = n.container_status(id).unwrap();
        assert_eq!((state, code), (ContainerState::ContainerExited, 143));
        n.remove_container(id).unwrap();
    }
    n.remove_pod(&pod).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for pid in pids.iter().chain([&sandbox_pid, &shim]) {
        assert!(!alive(*pid), "process {pid} survived RemovePodSandbox");
    }
    let dir = n.ctrd.dir().to_string_lossy().into_owned();
    let mounts: Vec<String> = n
        .ctrd
        .mounts()
        .into_iter()
        .filter(|m| m.contains("io.containerd.runtime.v2.task"))
        .collect();
    assert!(
        mounts.is_empty(),
        "task mounts left under {dir}: {mounts:?}"
    );
    assert!(!netns_path.exists(), "{} left behind", netns_path.display());
    let pod_cgroups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/memory")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("wasmkube-e2e-"))
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy() == "pod-pair")
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(
        pod_cgroups.is_empty(),
        "container cgroups left: {pod_cgroups:?}"
    );
}

#[test]
fn pod_limits_reach_the_cgroup_and_the_engine_and_update_resizes() {
    let (n, _guard) = node(&[PROBE]);
    let pod = n.run_pod("limited", HANDLER).unwrap();
    let mut greedy = ContainerSpec::new("greedy", PROBE, &["grow"]);
    greedy.memory_limit = 64 << 20;
    let (_, code) = n.run_to_exit(&pod, &greedy).unwrap();
    assert_eq!(code, 3, "{}", n.log(&pod, "greedy"));
    let log = n.log(&pod, "greedy");
    let grown: u64 = parse_log(&log)
        .iter()
        .find_map(|(_, t)| {
            t.strip_prefix("grow failed at ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{log}"));
    assert!(grown < 64, "{log}");

    let mut resized = ContainerSpec::new("resized", PROBE, &["grow-to", "100"]);
    resized.memory_limit = 64 << 20;
    resized.cpu_quota = 50_000;
    let id = n.create_container(&pod, &resized).unwrap();
    // CRI creates the task (and its bundle) at StartContainer.
    n.start_container(&id).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(n.ctrd.bundle(&id).join("config.json")).unwrap())
            .unwrap();
    let cgroup = config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let limit_file = format!("/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes");
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        (64u64 << 20).to_string()
    );
    let quota = format!("/sys/fs/cgroup/cpu/{cgroup}/cpu.cfs_quota_us");
    assert_eq!(std::fs::read_to_string(&quota).unwrap().trim(), "50000");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !n.log(&pod, "resized").contains("grow failed at") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            n.log(&pod, "resized")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    n.update_memory(&id, 256 << 20).unwrap();
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        (256u64 << 20).to_string()
    );
    let code = n
        .wait_state(
            &id,
            ContainerState::ContainerExited,
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(code, 0, "{}", n.log(&pod, "resized"));
    assert!(n.log(&pod, "resized").contains("grew to"));
    n.remove_pod(&pod).unwrap();
}

#[test]
fn a_runc_pod_runs_beside_a_wasm_pod() {
    let (n, _guard) = node(&[PROBE]);
    let native = native_binary("hello-native", n.ctrd.dir()).unwrap();
    n.import(&Image::native(
        "docker.io/wasmkube/hello-native:test",
        "hello",
        native,
    ))
    .unwrap();
    let wasm = n.run_pod("wasm", HANDLER).unwrap();
    let runc = n.run_pod("linux", "runc").unwrap();
    let w = n
        .create_container(&wasm, &ContainerSpec::new("ticker", PROBE, &["tick", "5"]))
        .unwrap();
    let r = n
        .create_container(
            &runc,
            &ContainerSpec::new("native", "docker.io/wasmkube/hello-native:test", &[]),
        )
        .unwrap();
    n.start_container(&r).unwrap();
    n.start_container(&w).unwrap();
    n.wait_state(
        &r,
        ContainerState::ContainerRunning,
        Duration::from_secs(20),
    )
    .unwrap();
    let code = n
        .wait_state(&w, ContainerState::ContainerExited, Duration::from_secs(20))
        .unwrap();
    assert_eq!(code, 0);
    assert!(n.log(&wasm, "ticker").contains("tick 4"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !n.log(&runc, "native").contains("hello from runc") {
        assert!(
            std::time::Instant::now() < deadline,
            "runc container printed nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    n.stop_container(&r, 5).unwrap();
    let (state, code, _) = n.container_status(&r).unwrap();
    assert_eq!((state, code), (ContainerState::ContainerExited, 0));
    n.remove_pod(&runc).unwrap();
    n.remove_pod(&wasm).unwrap();
}

#[test]
fn a_tcp_server_module_answers_on_the_pod_ip() {
    let (n, _guard) = node(&[PROBE_P2]);
    let pod = n.run_pod("server", HANDLER).unwrap();
    let ip = n.pod_ip(&pod).unwrap();
    let mut server = ContainerSpec::new("server", PROBE_P2, &["serve", "8080"]);
    server
        .annotations
        .insert("wasmkube.dev/network".into(), "inherit".into());
    n.launch_running(&pod, &server).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let addr: std::net::SocketAddr = format!("{ip}:8080").parse().unwrap();
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(mut s) => {
                std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut s, &mut text).unwrap();
                break text;
            }
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no answer from {addr}: {e}\n{}",
                    n.log(&pod, "server")
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer:?}");
    assert!(
        answer.ends_with("\r\n\r\nhello from a wasm pod\n"),
        "{answer:?}"
    );
    assert!(n.log(&pod, "server").contains("listening on 8080"));
    n.remove_pod(&pod).unwrap();
}

#[test]
fn without_the_network_annotation_a_module_cannot_listen() {
    let (n, _guard) = node(&[PROBE_P2]);
    let pod = n.run_pod("closed", HANDLER).unwrap();
    let (_, code) = n
        .run_to_exit(
            &pod,
            &ContainerSpec::new("closed", PROBE_P2, &["serve", "8080"]),
        )
        .unwrap();
    assert_ne!(code, 0);
    let log = n.log(&pod, "closed");
    assert!(log.contains("bind 0.0.0.0:8080"), "{log}");
    n.remove_pod(&pod).unwrap();
}

#[test]
fn pod_annotation_mounts_reach_the_app_container_and_do_not_fail_the_sandbox() {
    // A WasmApp's volumes travel as the POD annotation wasmkube.dev/mounts. containerd copies
    // pod annotations (pod_annotations = ["wasmkube.dev/*"]) onto the sandbox container as well
    // as onto each app container; the sandbox has none of the app's mounts and runs no module.
    let (n, _guard) = node(&[PROBE]);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("greeting"), "hello from a host path\n").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("secret"), "not for the module\n").unwrap();
    let pod = n
        .run_pod_annotated("mounted", HANDLER, &[("wasmkube.dev/mounts", "/data:ro")])
        .expect("the sandbox starts with a mounts annotation meant for its app containers");
    let mounts = vec![
        HostMount {
            host: data.path().to_path_buf(),
            container: "/data".into(),
            read_only: false,
        },
        HostMount {
            host: scratch.path().to_path_buf(),
            container: "/scratch".into(),
            read_only: false,
        },
    ];
    let run = |name: &str, args: &[&str]| {
        let mut spec = ContainerSpec::new(name, PROBE, args);
        spec.mounts = mounts.clone();
        let (id, code) = n.run_to_exit(&pod, &spec).unwrap();
        let log = n.log(&pod, name);
        n.remove_container(&id).unwrap();
        (code, log)
    };
    let (code, log) = run("reader", &["read", "/data/greeting"]);
    assert_eq!(code, 0, "{log}");
    assert!(
        parse_log(&log)
            .iter()
            .any(|(s, t)| s == "stdout" && t == "hello from a host path"),
        "{log}"
    );
    // The pod annotation restricts the app container: /data only, and read-only although the
    // mount is writable; /scratch is mounted but not preopened.
    let (code, log) = run("writer", &["write", "/data/new", "x"]);
    assert_ne!(code, 0, "{log}");
    assert!(!data.path().join("new").exists(), "{log}");
    let (code, log) = run("snoop", &["read", "/scratch/secret"]);
    assert_eq!(code, 4, "{log}");
    assert!(log.contains("read /scratch/secret failed"), "{log}");
    n.remove_pod(&pod).unwrap();
}

#[test]
fn images_pulled_from_a_registry_run_as_pods() {
    let registry = Registry::start(None).unwrap();
    let (n, _guard) = node(&[]);
    n.trust_registry(&registry.host).unwrap();
    let archive = n.ctrd.dir().join("hello.tar");
    image(HELLO_P1).write_archive(&archive).unwrap();
    let reference = registry.push(&archive, "wasmkube/hello:p1").unwrap();
    let image_ref = n.pull(&reference, None).unwrap();
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let pod = n.run_pod("pulled", HANDLER).unwrap();
    let (_, code) = n
        .run_to_exit(
            &pod,
            &ContainerSpec::new("hello", &reference, &["from", "registry"]),
        )
        .unwrap();
    assert_eq!(code, 0);
    let lines = parse_log(&n.log(&pod, "hello"));
    assert!(
        lines.contains(&("stdout".into(), "arg[1]=from".into())),
        "{lines:?}"
    );
    n.remove_pod(&pod).unwrap();

    let err = n
        .pull(&format!("{}/wasmkube/missing:tag", registry.host), None)
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[test]
fn a_registry_with_basic_auth_needs_the_pull_secret() {
    let registry = Registry::start(Some(("puller", "s3cret"))).unwrap();
    let (n, _guard) = node(&[]);
    n.trust_registry(&registry.host).unwrap();
    let archive = n.ctrd.dir().join("hello.tar");
    image(HELLO_P1).write_archive(&archive).unwrap();
    let reference = registry.push(&archive, "private/hello:p1").unwrap();

    // Without credentials containerd 1.6 reports the registry's 401; 1.7 and 2.x stop before
    // asking ("pull access denied ... authorization failed: no basic auth credentials").
    let err = n.pull(&reference, None).unwrap_err().to_string();
    assert!(
        err.contains("401") || err.to_lowercase().contains("authoriz"),
        "{err}"
    );
    let err = n
        .pull(&reference, Some(("puller", "wrong")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    n.pull(&reference, Some(("puller", "s3cret"))).unwrap();

    let pod = n.run_pod("private", HANDLER).unwrap();
    let (_, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("hello", &reference, &[]))
        .unwrap();
    assert_eq!(code, 0);
    assert!(n.log(&pod, "hello").contains("hello from wasmkube"));
    n.remove_pod(&pod).unwrap();
}

#[test]
fn pull_and_start_failures_carry_a_clear_reason() {
    let registry = Registry::start(None).unwrap();
    let host = registry.host.clone();
    let (n, _guard) = node(&[NOT_WASM]);
    n.trust_registry(&host).unwrap();
    // A registry that is down.
    drop(registry);
    let err = n
        .pull(&format!("{host}/wasmkube/hello:p1"), None)
        .unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
    // An image whose entrypoint is not Wasm fails its container, naming the file.
    let pod = n.run_pod("broken", HANDLER).unwrap();
    let id = n
        .create_container(&pod, &ContainerSpec::new("broken", NOT_WASM, &[]))
        .unwrap();
    let err = n.start_container(&id).unwrap_err();
    assert!(
        format!("{err:#}").contains("/app.wasm is not a WebAssembly module"),
        "{err:#}"
    );
    n.remove_pod(&pod).unwrap();
}

/// Pushes `artifact` as `<registry>/<repo>:<tag>`; returns the reference pinned by digest, as the
/// operator writes it into the pod annotation.
fn push_artifact(n: &CriNode, registry: &Registry, artifact: &Artifact, repo: &str) -> String {
    let archive = n
        .ctrd
        .dir()
        .join(format!("{}.tar", repo.replace(['/', ':'], "-")));
    let digest = artifact.write_archive(&archive).unwrap();
    let tagged = registry.push(&archive, repo).unwrap();
    let (name, _tag) = tagged.rsplit_once(':').unwrap();
    format!("{name}@{digest}")
}

/// What the blob store holds: only complete, verified blobs named by their digest.
fn stored_blobs(n: &CriNode) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(n.blob_store())
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in &names {
        assert!(
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "the blob store holds a partial or foreign file {name}"
        );
    }
    names
}

fn insecure(registry: &Registry) -> String {
    format!("[registries.\"{}\"]\ninsecure = true\n", registry.host)
}

#[test]
fn a_wasm_artifact_runs_as_a_pod_and_logs_like_the_same_module_as_an_image() {
    let registry = Registry::start(None).unwrap();
    let (n, _guard) = node(&[]);
    n.import_stub_image().unwrap();
    n.trust_registry(&registry.host).unwrap();
    n.configure_shim(&insecure(&registry)).unwrap();
    let archive = n.ctrd.dir().join("hello.tar");
    image(HELLO_P1).write_archive(&archive).unwrap();
    let image_ref = registry.push(&archive, "wasmkube/hello:p1").unwrap();
    n.pull(&image_ref, None).unwrap();
    let artifact = hello_artifact("docker.io/wasmkube/hello-artifact:p1");
    let pinned = push_artifact(&n, &registry, &artifact, "wasmkube/hello-artifact:p1");

    // One pod, the same module twice: from the image, and from the artifact via the stub.
    let pod = n
        .run_pod_annotated(
            "same",
            HANDLER,
            &[("wasmkube.dev/module.artifact", pinned.as_str())],
        )
        .unwrap();
    let args = ["same", "args"];
    let (_, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("image", &image_ref, &args))
        .unwrap();
    assert_eq!(code, 0);
    let (_, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("artifact", STUB, &args))
        .unwrap();
    assert_eq!(code, 0);
    let from_image = parse_log(&n.log(&pod, "image"));
    let from_artifact = parse_log(&n.log(&pod, "artifact"));
    assert!(
        from_image.contains(&("stdout".into(), "arg[0]=/hello.wasm".into()))
            && from_image.contains(&("stdout".into(), "arg[2]=args".into())),
        "{from_image:?}"
    );
    assert_eq!(from_image, from_artifact);
    // Cached on the node by digest (module layer and manifest), world-readable.
    let layer = artifact.layer_digest();
    let layer_hex = layer.trim_start_matches("sha256:");
    let manifest_hex = pinned.rsplit_once("sha256:").unwrap().1;
    let stored = stored_blobs(&n);
    assert!(
        stored.iter().any(|b| b == layer_hex) && stored.iter().any(|b| b == manifest_hex),
        "{stored:?}"
    );
    let mode = std::fs::metadata(n.blob_store().join(layer_hex))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    n.remove_pod(&pod).unwrap();

    // Pinned by digest and cached, the module starts with the registry gone (pod-wide key).
    drop(registry);
    let pod = n
        .run_pod_annotated(
            "offline",
            HANDLER,
            &[("wasmkube.dev/module", pinned.as_str())],
        )
        .unwrap();
    let (_, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("any-name", STUB, &["offline"]))
        .unwrap();
    assert_eq!(code, 0);
    let lines = parse_log(&n.log(&pod, "any-name"));
    assert!(
        lines.contains(&("stdout".into(), "arg[1]=offline".into())),
        "{lines:?}"
    );
    n.remove_pod(&pod).unwrap();
}

#[test]
fn artifacts_already_in_containerds_content_store_need_no_registry() {
    let registry = Registry::start(None).unwrap();
    let (n, _guard) = node(&[]);
    n.import_stub_image().unwrap();
    n.configure_shim(&insecure(&registry)).unwrap();
    let artifact = hello_artifact("docker.io/wasmkube/hello-artifact:p1");
    let pinned = push_artifact(&n, &registry, &artifact, "wasmkube/hello-artifact:p1");
    // What containerd keeps after fetching the artifact (a CRI pull on 1.6 fetches every blob
    // before it fails to unpack; `ctr content fetch` does the same without the failure).
    n.ctrd
        .ctr_ok(&["content", "fetch", "--plain-http", &pinned])
        .unwrap();
    drop(registry);
    assert!(stored_blobs(&n).is_empty());
    let pod = n
        .run_pod_annotated(
            "local",
            HANDLER,
            &[("wasmkube.dev/module", pinned.as_str())],
        )
        .unwrap();
    let (_, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("hello", STUB, &[]))
        .unwrap();
    assert_eq!(code, 0);
    assert!(n.log(&pod, "hello").contains("hello from wasmkube"));
    let layer = artifact.layer_digest();
    assert!(stored_blobs(&n).contains(&layer.trim_start_matches("sha256:").to_string()));
    n.remove_pod(&pod).unwrap();
}

#[test]
fn artifact_failures_give_the_container_a_clear_reason_and_store_nothing_partial() {
    let registry = Registry::start(None).unwrap();
    let host = registry.host.clone();
    let (mut n, _guard) = node(&[]);
    n.import_stub_image().unwrap();
    n.configure_shim(&insecure(&registry)).unwrap();
    let archive = n.ctrd.dir().join("hello.tar");
    image(HELLO_P1).write_archive(&archive).unwrap();
    let plain_image = registry.push(&archive, "wasmkube/hello:p1").unwrap();
    let mut script = hello_artifact("docker.io/wasmkube/script:1");
    script.module = b"#!/bin/sh\necho not wasm\n".to_vec();
    let script = push_artifact(&n, &registry, &script, "wasmkube/script:1");
    let corrupt = hello_artifact("docker.io/wasmkube/corrupt:1");
    let corrupt_layer = corrupt.layer_digest();
    let corrupt_ref = push_artifact(&n, &registry, &corrupt, "wasmkube/corrupt:1");
    registry.corrupt_blob(&corrupt_layer).unwrap();

    let missing = format!("{host}/wasmkube/hello-artifact:missing");
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "missing",
            missing.as_str(),
            "not found in the registry".into(),
        ),
        (
            "image",
            plain_image.as_str(),
            "is not a Wasm artifact: config application/vnd.oci.image.config.v1+json".into(),
        ),
        (
            "script",
            script.as_str(),
            "does not start with the Wasm magic".into(),
        ),
        (
            "corrupt",
            corrupt_ref.as_str(),
            format!("module layer {corrupt_layer} failed digest verification"),
        ),
    ];
    let annotations: Vec<(String, String)> = cases
        .iter()
        .map(|(name, reference, _)| (format!("wasmkube.dev/module.{name}"), reference.to_string()))
        .collect();
    let annotations: Vec<(&str, &str)> = annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let pod = n
        .run_pod_annotated("failures", HANDLER, &annotations)
        .unwrap();
    let start_error = |n: &mut CriNode, name: &str| {
        let id = n
            .create_container(&pod, &ContainerSpec::new(name, STUB, &[]))
            .unwrap();
        format!("{:#}", n.start_container(&id).unwrap_err())
    };
    for (name, reference, want) in &cases {
        let err = start_error(&mut n, name);
        assert!(
            err.contains(want.as_str()) && err.contains(reference),
            "{name}: {err}"
        );
    }
    let err = start_error(&mut n, "unnamed");
    assert!(
        err.contains("no annotation names its module")
            && err.contains("wasmkube.dev/module.unnamed"),
        "{err}"
    );
    // Nothing of the corrupt or non-Wasm layers was kept.
    let stored = stored_blobs(&n);
    assert!(
        !stored.contains(&corrupt_layer.trim_start_matches("sha256:").to_string()),
        "{stored:?}"
    );
    drop(registry);
    let pod2 = n
        .run_pod_annotated(
            "down",
            HANDLER,
            &[("wasmkube.dev/module", &format!("{host}/wasmkube/other:1"))],
        )
        .unwrap();
    let id = n
        .create_container(&pod2, &ContainerSpec::new("down", STUB, &[]))
        .unwrap();
    let err = format!("{:#}", n.start_container(&id).unwrap_err());
    assert!(
        err.contains(&format!("registry {host} is unreachable")),
        "{err}"
    );
    n.remove_pod(&pod2).unwrap();
    n.remove_pod(&pod).unwrap();
}

#[test]
fn artifacts_from_a_registry_with_basic_auth_use_the_node_credentials() {
    let registry = Registry::start(Some(("puller", "s3cret"))).unwrap();
    let (n, _guard) = node(&[]);
    n.import_stub_image().unwrap();
    n.configure_shim(&insecure(&registry)).unwrap();
    let pinned = push_artifact(
        &n,
        &registry,
        &hello_artifact("docker.io/private/hello:1"),
        "private/hello:1",
    );
    let pod = n
        .run_pod_annotated("auth", HANDLER, &[("wasmkube.dev/module", pinned.as_str())])
        .unwrap();
    let id = n
        .create_container(&pod, &ContainerSpec::new("anon", STUB, &[]))
        .unwrap();
    let err = format!("{:#}", n.start_container(&id).unwrap_err());
    assert!(
        err.contains(&format!("registry {} denied access", registry.host))
            && err.contains("add credentials"),
        "{err}"
    );
    n.configure_shim(&format!(
        "{}username = \"puller\"\npassword = \"s3cret\"\n",
        insecure(&registry)
    ))
    .unwrap();
    let (_, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("authed", STUB, &[]))
        .unwrap();
    assert_eq!(code, 0);
    assert!(n.log(&pod, "authed").contains("hello from wasmkube"));
    n.remove_pod(&pod).unwrap();
}

#[test]
fn a_module_pushed_by_the_cli_runs_as_a_pod_and_wasmkube_run_prints_the_same() {
    let registry = Registry::start(None).unwrap();
    let (n, _guard) = node(&[]);
    n.import_stub_image().unwrap();
    n.trust_registry(&registry.host).unwrap();
    n.configure_shim(&insecure(&registry)).unwrap();
    let module = wasmkube_e2e::wasm::rust_module("hello", wasmkube_e2e::wasm::Target::P1).unwrap();
    let reference = format!("{}/cli/hello:1", registry.host);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(wasmkube_e2e::cli_binary())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wasmkube {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let pushed = cli(&[
        "push",
        module.to_str().unwrap(),
        &reference,
        "--format",
        "artifact",
        "--insecure",
    ]);
    let pinned = format!("{}/cli/hello@{}", registry.host, pushed.trim());
    let pod = n
        .run_pod_annotated("cli", HANDLER, &[("wasmkube.dev/module", pinned.as_str())])
        .unwrap();
    let args = ["from", "the cli"];
    let (_, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("hello", STUB, &args))
        .unwrap();
    assert_eq!(code, 0);
    let from_pod: Vec<String> = parse_log(&n.log(&pod, "hello"))
        .into_iter()
        .filter(|(stream, _)| stream == "stdout")
        .map(|(_, line)| line)
        .collect();
    assert!(
        from_pod.contains(&"arg[0]=/hello.wasm".to_string()),
        "{from_pod:?}"
    );
    // The same reference, args and environment (what the pod got from CRI and the stub
    // image), run locally with the shim's engine.
    let mut run = vec!["run".to_string(), pinned.clone(), "--insecure".into()];
    for line in from_pod.iter().filter_map(|l| l.strip_prefix("env ")) {
        run.extend(["--env".to_string(), line.to_string()]);
    }
    assert!(run.len() > 3, "the pod has an environment: {from_pod:?}");
    run.extend(["--".into(), "from".into(), "the cli".into()]);
    let local = cli(&run.iter().map(String::as_str).collect::<Vec<_>>());
    let from_cli: Vec<String> = local.lines().map(str::to_string).collect();
    assert_eq!(from_cli, from_pod);
    n.remove_pod(&pod).unwrap();
}
