//! Node faults through CRI against a real containerd: containerd restarting while Wasm pods
//! run (the shims keep running their modules, containerd reconnects, logs, stats, new
//! containers and a later stop/remove all work), and a pod's shim killed with SIGKILL (the
//! containers are reported exited, removal works, nothing is left on the node).

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerState;
use wasmkube_e2e::churn::Snapshot;
use wasmkube_e2e::containerd::{alive, parent_pid};
use wasmkube_e2e::cri::{parse_log, ContainerSpec, CriNode, Pod, HANDLER};
use wasmkube_e2e::fixtures::{image, HELLO_P1, PROBE};

/// CRI nodes share this process's bridge name: one at a time.
static NODE: Mutex<()> = Mutex::new(());

fn node() -> (CriNode, std::sync::MutexGuard<'static, ()>) {
    let guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let node = CriNode::start().expect("containerd with CRI starts");
    for name in [PROBE, HELLO_P1] {
        node.import(&image(name)).expect("import");
    }
    (node, guard)
}

/// The `tick N` lines in the container's CRI log.
fn ticks(n: &CriNode, pod: &Pod, name: &str) -> usize {
    parse_log(&n.log(pod, name))
        .iter()
        .filter(|(stream, text)| stream == "stdout" && text.starts_with("tick "))
        .count()
}

/// Waits until `pred` holds, up to `timeout`.
fn eventually(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pred()
}

/// Everything but the module cache (which these runs fill) is as it was in `before`.
fn assert_nothing_left(n: &CriNode, before: &Snapshot) {
    let after = Snapshot::take(n);
    let leaks: Vec<_> = before
        .leaks(&after)
        .into_iter()
        .filter(|(what, d)| *d != 0 && *what != "shim cache files")
        .collect();
    assert!(
        leaks.is_empty(),
        "left on the node: {leaks:?}; cgroups {:?}",
        before.new_cgroups(&after)
    );
}

#[test]
fn wasm_pods_keep_running_across_a_containerd_restart() {
    let (mut n, _guard) = node();
    let before = Snapshot::take(&n);
    let pod = n.run_pod("survivor", HANDLER).unwrap();
    let id = n
        .launch(
            &pod,
            &ContainerSpec::new("ticker", PROBE, &["tick", "100000"]),
        )
        .unwrap();
    n.wait_state(
        &id,
        ContainerState::ContainerRunning,
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || ticks(
        &n, &pod, "ticker"
    ) >= 3));
    let instance = n.ctrd.task_pid(&id).unwrap() as i32;
    let shim = parent_pid(instance).unwrap();
    let old_containerd = n.ctrd.pid();

    n.ctrd.restart().unwrap();
    n.reconnect().unwrap();
    assert_ne!(n.ctrd.pid(), old_containerd, "containerd was restarted");
    assert!(alive(shim) && alive(instance), "shim and module survive");
    assert_eq!(n.ctrd.shim_pids(), vec![shim], "no second shim was started");

    // containerd found the task again (Connect/State) and reads its output again.
    let (state, _, _) = n.container_status(&id).unwrap();
    assert_eq!(state, ContainerState::ContainerRunning);
    assert_eq!(n.ctrd.task_pid(&id).unwrap() as i32, instance);
    let seen = ticks(&n, &pod, "ticker");
    assert!(
        eventually(Duration::from_secs(5), || ticks(&n, &pod, "ticker")
            >= seen + 5),
        "log stopped at {seen} ticks after the restart:\n{}",
        n.log(&pod, "ticker")
    );
    let (cpu, mem) = n.container_stats(&id).unwrap();
    assert!(
        cpu > 0 && mem > 0,
        "stats after the restart: cpu={cpu} mem={mem}"
    );
    // The reconnected shim still takes new containers into its pod.
    let (hello, code) = n
        .run_to_exit(&pod, &ContainerSpec::new("hello", HELLO_P1, &[]))
        .unwrap();
    assert_eq!(code, 0, "{}", n.log(&pod, "hello"));
    assert_eq!(n.ctrd.shim_pids(), vec![shim]);

    n.stop_container(&id, 2).unwrap();
    let (state, code, _) = n.container_status(&id).unwrap();
    assert_eq!((state, code), (ContainerState::ContainerExited, 143));
    n.remove_container(&hello).unwrap();
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
    n.remove_pod_cgroup("survivor");
    assert!(
        eventually(Duration::from_secs(5), || !alive(shim)),
        "shim {shim} outlived its pod"
    );
    assert_nothing_left(&n, &before);
}

#[test]
fn a_pod_whose_shim_is_killed_is_reported_exited_and_removed_cleanly() {
    let (n, _guard) = node();
    let before = Snapshot::take(&n);
    // A neighbour pod, which must not notice.
    let other = n.run_pod("neighbour", HANDLER).unwrap();
    let steady = n
        .launch(
            &other,
            &ContainerSpec::new("steady", PROBE, &["tick", "100000"]),
        )
        .unwrap();
    let pod = n.run_pod("doomed", HANDLER).unwrap();
    let id = n
        .launch(
            &pod,
            &ContainerSpec::new("victim", PROBE, &["sleep", "600"]),
        )
        .unwrap();
    for c in [&id, &steady] {
        n.wait_state(c, ContainerState::ContainerRunning, Duration::from_secs(20))
            .unwrap();
    }
    let instance = n.ctrd.task_pid(&id).unwrap() as i32;
    let sandbox = n.ctrd.task_pid(&pod.id).unwrap() as i32;
    let shim = parent_pid(instance).unwrap();
    let neighbour_shim = parent_pid(n.ctrd.task_pid(&steady).unwrap() as i32).unwrap();
    assert_ne!(shim, neighbour_shim, "one shim per pod");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd sees the shim go, runs `containerd-shim-wasmkube-v1 delete` on the bundle and
    // reports the task exited.
    let code = n
        .wait_state(
            &id,
            ContainerState::ContainerExited,
            Duration::from_secs(20),
        )
        .unwrap();
    assert_ne!(code, 0, "a container whose shim died did not succeed");
    assert!(
        eventually(Duration::from_secs(5), || !alive(instance)
            && !alive(sandbox)),
        "the module ({instance}) or the sandbox ({sandbox}) outlived their shim"
    );
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
    n.remove_pod_cgroup("doomed");

    // The neighbour ran on throughout.
    let seen = ticks(&n, &other, "steady");
    assert!(eventually(Duration::from_secs(5), || ticks(
        &n, &other, "steady"
    ) > seen));
    let (state, _, _) = n.container_status(&steady).unwrap();
    assert_eq!(state, ContainerState::ContainerRunning);
    n.stop_container(&steady, 2).unwrap();
    n.remove_container(&steady).unwrap();
    n.remove_pod(&other).unwrap();
    n.remove_pod_cgroup("neighbour");
    assert_nothing_left(&n, &before);
}
