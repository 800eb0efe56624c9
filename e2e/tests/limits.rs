//! Cgroup-mapped limits and isolation under a real containerd (issue 3's acceptance): memory
//! limits reach the cgroup and the engine, CPU quota holds, Update resizes both, Stats reads
//! the cgroup, hostile modules stay contained, and the instance process is sandboxed.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use wasmkube_e2e::containerd::Containerd;
use wasmkube_e2e::fixtures::{
    node, run, sleeper, start, DECOY_PASSWD, PROBE, RECURSE, SPIN, UNKNOWN_IMPORT,
};

const MIB: u64 = 1 << 20;

/// The container's cgroup directory for `controller` (v1 layout, as on this machine).
fn cgroup_dir(ctrd: &Containerd, id: &str, controller: &str) -> PathBuf {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ctrd.bundle(id).join("config.json")).unwrap())
            .unwrap();
    let path = config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap()
        .trim_start_matches('/');
    PathBuf::from("/sys/fs/cgroup").join(controller).join(path)
}

fn require_cgroup_v1() {
    assert!(
        std::path::Path::new("/sys/fs/cgroup/memory").is_dir(),
        "these checks read cgroup v1 files (/sys/fs/cgroup/memory); this host has none"
    );
}

/// `ctr run --rm` in the background, with its stdout lines on a channel.
fn spawn_run(
    ctrd: &Containerd,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> (Child, Receiver<String>) {
    let mut child = ctrd
        .ctr_run("--rm", "wasip1/wasm")
        .args(flags)
        .args([image, id])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn expect_line(rx: &Receiver<String>, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line starting with {prefix:?}: {e}"),
        }
    }
}

fn mib_in(line: &str) -> u64 {
    line.split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MiB figure in {line:?}"))
}

#[test]
fn memory_limit_caps_linear_memory_growth_below_the_cgroup_limit() {
    require_cgroup_v1();
    let ctrd = node(&[PROBE]);
    let limit = 64 * MIB;
    let flags = ["--memory-limit", &limit.to_string()];
    let (mut child, rx) = spawn_run(
        &ctrd,
        &flags,
        PROBE,
        "grower",
        &["/probe.wasm", "grow-to", "200"],
    );
    let line = expect_line(&rx, "grow failed at", Duration::from_secs(20));
    let grown = mib_in(&line) * MIB;
    assert!(grown < limit, "grew to {grown} bytes under a {limit} limit");
    assert!(grown >= limit / 2, "cap far too low: {grown}");
    let file = cgroup_dir(&ctrd, "grower", "memory").join("memory.limit_in_bytes");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        limit.to_string()
    );
    ctrd.ctr_ok(&["tasks", "kill", "--signal", "SIGKILL", "grower"])
        .unwrap();
    let _ = child.wait();

    // The module that gives up exits with its own code, not an OOM kill.
    let (code, out, err) = run(&ctrd, &flags, PROBE, "giver", &["/probe.wasm", "grow"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("grow failed at"), "{out}");
}

#[test]
fn update_raises_the_memory_limit_of_a_running_container() {
    require_cgroup_v1();
    let ctrd = node(&[PROBE]);
    let flags = ["--memory-limit", &(64 * MIB).to_string()];
    let (mut child, rx) = spawn_run(
        &ctrd,
        &flags,
        PROBE,
        "resized",
        &["/probe.wasm", "grow-to", "100"],
    );
    expect_line(&rx, "grow failed at", Duration::from_secs(20));
    let new_limit = (256 * MIB).to_string();
    ctrd.shim_update(
        "resized",
        &serde_json::json!({"memory": {"limit": 256 * MIB}}),
    )
    .unwrap();
    let file = cgroup_dir(&ctrd, "resized", "memory").join("memory.limit_in_bytes");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), new_limit);
    let line = expect_line(&rx, "grew to", Duration::from_secs(20));
    assert!(mib_in(&line) >= 100, "{line}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn cpu_quota_of_a_fifth_holds_a_spinning_module_near_twenty_percent() {
    require_cgroup_v1();
    let ctrd = node(&[SPIN]);
    start(
        &ctrd,
        &["--cpu-quota", "20000", "--cpu-period", "100000"],
        SPIN,
        "spinner",
        &[],
    );
    ctrd.wait_status("spinner", "RUNNING", Duration::from_secs(10))
        .unwrap();
    let dirs: Vec<PathBuf> = ["memory", "cpu", "cpuacct", "pids"]
        .iter()
        .map(|c| cgroup_dir(&ctrd, "spinner", c))
        .collect();
    let usage = cgroup_dir(&ctrd, "spinner", "cpuacct").join("cpuacct.usage");
    let read = || {
        std::fs::read_to_string(&usage)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let quota = cgroup_dir(&ctrd, "spinner", "cpu").join("cpu.cfs_quota_us");
    assert_eq!(std::fs::read_to_string(quota).unwrap().trim(), "20000");
    let (u0, t0) = (read(), Instant::now());
    // The shim answers promptly while its module spins.
    for _ in 0..10 {
        let asked = Instant::now();
        ctrd.ctr_ok(&["tasks", "ls"]).unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "shim slow to answer"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let share = (read() - u0) as f64 / t0.elapsed().as_nanos() as f64;
    assert!((0.1..=0.3).contains(&share), "used {share:.3} of a core");

    let metrics = ctrd.ctr_ok(&["tasks", "metrics", "spinner"]).unwrap();
    let value = |key: &str| {
        metrics
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    assert!(value("memory.usage_in_bytes") > 0, "{metrics}");
    assert!(value("cpuacct.usage") > 0, "{metrics}");
    ctrd.ctr_ok(&["tasks", "kill", "--signal", "SIGKILL", "spinner"])
        .unwrap();
    ctrd.wait_status("spinner", "STOPPED", Duration::from_secs(5))
        .unwrap();
    ctrd.ctr_ok(&["tasks", "delete", "spinner"]).unwrap();
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn hostile_modules_are_contained_and_the_neighbour_is_untouched() {
    let ctrd = node(&[PROBE, RECURSE, UNKNOWN_IMPORT]);
    let (mut neighbour, ticks) = spawn_run(
        &ctrd,
        &["--annotation", "io.kubernetes.cri.sandbox-id=pod"],
        PROBE,
        "neighbour",
        &["/probe.wasm", "tick", "40"],
    );
    expect_line(&ticks, "tick 0", Duration::from_secs(10));
    let pod = ["--annotation", "io.kubernetes.cri.sandbox-id=pod"];
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let first_host_line = host_passwd.lines().next().unwrap().to_string();

    // `/` is the image's rootfs; paths that climb out of it are refused.
    let (code, out, _) = run(
        &ctrd,
        &pod,
        PROBE,
        "abs",
        &["/probe.wasm", "read", "/etc/passwd"],
    );
    assert_eq!((code, out.as_str()), (0, DECOY_PASSWD));
    let (code, out, _) = run(
        &ctrd,
        &pod,
        PROBE,
        "dotdot",
        &["/probe.wasm", "read", "../../etc/passwd"],
    );
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("not permitted") && !out.contains(&first_host_line),
        "{out}"
    );
    // An absolute symlink to / is not followed out of the preopen.
    let (code, out, _) = run(
        &ctrd,
        &pod,
        PROBE,
        "symlink",
        &["/probe.wasm", "read", "/escape/etc/passwd"],
    );
    assert!(!out.contains(&first_host_line), "host file leaked: {out}");
    assert_eq!(code, 4, "{out}");
    // The host's /proc is not there.
    let (code, out, _) = run(
        &ctrd,
        &pod,
        PROBE,
        "environ",
        &["/probe.wasm", "read", "/proc/self/environ"],
    );
    assert_eq!(code, 4, "{out}");
    assert!(!out.contains("PATH="), "{out}");
    // Exhausting memory ends in a failed grow the module handles.
    let (code, out, _) = run(
        &ctrd,
        &[&pod[..], &["--memory-limit", "67108864"]].concat(),
        PROBE,
        "hog",
        &["/probe.wasm", "grow"],
    );
    assert_eq!(code, 3, "{out}");
    // Unbounded recursion traps.
    let (code, _, err) = run(&ctrd, &pod, RECURSE, "recurse", &[]);
    assert_eq!(code, 134);
    assert!(err.contains("trapped") && err.contains("stack"), "{err}");
    // A malformed import fails its own Create.
    let (code, _, err) = run(&ctrd, &pod, UNKNOWN_IMPORT, "import", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("launch_missiles"), "{err}");

    let mut seen = vec!["tick 0".to_string()];
    seen.extend(ticks.iter());
    assert!(neighbour.wait().unwrap().success());
    let want: Vec<String> = (0..40).map(|i| format!("tick {i}")).collect();
    assert_eq!(seen, want, "the neighbour's output was disturbed");
}

#[test]
fn the_instance_process_has_no_privileges_and_its_own_namespaces() {
    let ctrd = node(&[PROBE]);
    let pid = sleeper(&ctrd, "iso", "iso");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in status"))
            .to_string()
    };
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");
    for ns in ["net", "mnt"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "{ns} namespace is the host's");
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup
            .lines()
            .any(|l| l.contains(":memory:") && l.ends_with("/iso")),
        "{cgroup}"
    );
}

#[test]
fn an_invalid_wasmkube_annotation_fails_create_by_name() {
    let ctrd = node(&[PROBE]);
    let (code, _, err) = run(
        &ctrd,
        &["--annotation", "wasmkube.dev/network=everything"],
        PROBE,
        "bad-annotation",
        &["/probe.wasm", "sleep", "1"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("wasmkube.dev/network") && err.contains("none, outbound or inherit"),
        "{err}"
    );
}
