//! Node faults through CRI against a real containerd: containerd restarting while Wasm pods
//! run (the shims keep running their modules, containerd reconnects, logs, stats, new
//! containers and a later stop/remove all work), a pod's shim killed with SIGKILL (the
//! containers are reported exited, removal works, nothing is left on the node), and a storm of
//! faulty modules in one pod (traps, stack overflows, memory-limit failures, kills) that a
//! neighbour pod must not notice. Also the pod's zygote: instances forked from it and
//! reparented to the shim, distinct randomness per container, the zygote killed (containers
//! run on, the next spawn execs and replaces it), gone with its pod, and `WASMKUBE_SPAWN=exec`.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerState;
use wasmkube_e2e::churn::Snapshot;
use wasmkube_e2e::containerd::{alive, parent_pid, processes};
use wasmkube_e2e::cri::{parse_log, ContainerSpec, CriNode, Pod, HANDLER};
use wasmkube_e2e::fixtures::{image, HELLO_P1, PROBE, RECURSE, SPIN, TRAP};

/// CRI nodes share this process's bridge name: one at a time.
static NODE: Mutex<()> = Mutex::new(());

fn node() -> (CriNode, std::sync::MutexGuard<'static, ()>) {
    let guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let node = CriNode::start().expect("containerd with CRI starts");
    for name in [PROBE, HELLO_P1, TRAP, RECURSE, SPIN] {
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

/// The zygote `shim` started: its child `--wasmkube-instance --zygote` whose fd 3 is its
/// socket (the instances forked from it share its argv and parent, but their fd 3 is a pipe).
fn zygote_of(shim: i32) -> Option<i32> {
    processes()
        .find(|(pid, argv)| {
            argv.get(2).is_some_and(|a| a == "--zygote")
                && parent_pid(*pid) == Some(shim)
                && std::fs::read_link(format!("/proc/{pid}/fd/3"))
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .map(|(pid, _)| pid)
}

/// argv[1..] of `pid`: `--wasmkube-instance --zygote` for an instance forked from a zygote,
/// `--wasmkube-instance <container id>` for an exec'd one.
fn instance_args(pid: i32) -> Vec<String> {
    processes()
        .find(|(p, _)| *p == pid)
        .map(|(_, argv)| argv[1..].to_vec())
        .unwrap_or_default()
}

/// The line the container's module printed that starts with `prefix`, once it has.
fn printed(n: &CriNode, pod: &Pod, name: &str, prefix: &str) -> String {
    let mut found = None;
    eventually(Duration::from_secs(10), || {
        found = parse_log(&n.log(pod, name))
            .into_iter()
            .find(|(_, text)| text.starts_with(prefix))
            .map(|(_, text)| text);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("{name} printed no {prefix:?} line"))
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
        .launch_running(
            &pod,
            &ContainerSpec::new("ticker", PROBE, &["tick", "100000"]),
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
    let zygote = zygote_of(shim).expect("the shim runs a zygote");

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
            && !alive(sandbox)
            && !alive(zygote)),
        "the module ({instance}), the sandbox ({sandbox}) or the zygote ({zygote}) outlived \
         their shim"
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

/// Seconds since midnight of a CRI log line's RFC 3339 timestamp.
fn seconds_of_day(line: &str) -> Option<f64> {
    let time = line
        .split(' ')
        .next()?
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

#[test]
fn faulty_modules_in_one_pod_do_not_disturb_a_neighbour() {
    let (n, _guard) = node();
    let before = Snapshot::take(&n);
    let calm = n.run_pod("calm", HANDLER).unwrap();
    let ticker = n
        .launch_running(
            &calm,
            &ContainerSpec::new("ticker", PROBE, &["tick", "100000"]),
        )
        .unwrap();
    let storm = n.run_pod("storm", HANDLER).unwrap();
    let started = ticks(&n, &calm, "ticker");
    for round in 0..5 {
        for (name, image, args, want) in [
            ("trap", TRAP, &[][..], 134),
            ("recurse", RECURSE, &[][..], 134),
            ("grow", PROBE, &["grow"][..], 3),
        ] {
            let mut spec = ContainerSpec::new(name, image, args);
            spec.memory_limit = 32 << 20;
            let (id, code) = n.run_to_exit(&storm, &spec).unwrap();
            assert_eq!(code, want, "{name} round {round}");
            n.remove_container(&id).unwrap();
        }
        // A kill storm: spinning modules started and killed at once.
        let spinners: Vec<String> = (0..4)
            .map(|i| {
                n.launch(&storm, &ContainerSpec::new(&format!("spin-{i}"), SPIN, &[]))
                    .unwrap()
            })
            .collect();
        for id in &spinners {
            n.stop_container(id, 0).unwrap();
            n.remove_container(id).unwrap();
        }
    }
    n.remove_pod(&storm).unwrap();
    n.remove_pod_cgroup("storm");
    let ended = ticks(&n, &calm, "ticker");
    assert!(
        ended > started + 5,
        "the neighbour kept ticking ({started} → {ended})"
    );

    // Every tick is there, in order, and none came late by more than noise.
    let log = n.log(&calm, "ticker");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" stdout F tick "))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.ends_with(&format!(" tick {i}")),
            "tick {i} is {line:?}"
        );
    }
    let times: Vec<f64> = lines.iter().filter_map(|l| seconds_of_day(l)).collect();
    let worst = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|gap| *gap >= 0.0)
        .fold(0.0, f64::max);
    assert!(
        worst < 0.6,
        "a tick came {worst:.3} s after the one before (nominal 0.1 s)"
    );

    n.stop_container(&ticker, 2).unwrap();
    n.remove_container(&ticker).unwrap();
    n.remove_pod(&calm).unwrap();
    n.remove_pod_cgroup("calm");
    assert_nothing_left(&n, &before);
}

#[test]
fn instances_are_forked_from_the_pods_zygote_which_goes_with_the_pod() {
    let (n, _guard) = node();
    let before = Snapshot::take(&n);
    let pod = n.run_pod("forked", HANDLER).unwrap();
    let ids: Vec<String> = ["a", "b"]
        .iter()
        .map(|name| {
            n.launch_running(&pod, &ContainerSpec::new(name, PROBE, &["random"]))
                .unwrap()
        })
        .collect();
    let pids: Vec<i32> = ids
        .iter()
        .chain([&pod.id])
        .map(|id| n.ctrd.task_pid(id).unwrap() as i32)
        .collect();
    let shim = parent_pid(pids[0]).unwrap();
    let zygote = zygote_of(shim).expect("the shim runs a zygote");
    // Forked from the shim before its runtime started, without containerd's environment.
    let environ = |pid: i32| std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!environ(shim).is_empty());
    assert!(
        environ(zygote).iter().all(|b| *b == 0),
        "the zygote shows containerd's environment"
    );
    for pid in &pids {
        // Reparented from the zygote's short-lived intermediate to the shim (a subreaper),
        // whose reaper reports its exit.
        assert_eq!(parent_pid(*pid), Some(shim), "parent of instance {pid}");
        assert_eq!(
            instance_args(*pid),
            ["--wasmkube-instance", "--zygote"],
            "instance {pid} was forked from the zygote, not exec'd"
        );
    }
    // Each forked instance draws its own randomness (the generator is reseeded after fork).
    let (a, b) = (
        printed(&n, &pod, "a", "random "),
        printed(&n, &pod, "b", "random "),
    );
    assert_ne!(a, b, "two forked containers drew the same random numbers");

    for id in &ids {
        n.stop_container(id, 2).unwrap();
        n.remove_container(id).unwrap();
    }
    n.remove_pod(&pod).unwrap();
    n.remove_pod_cgroup("forked");
    assert!(
        eventually(Duration::from_secs(5), || !alive(zygote)),
        "the zygote {zygote} outlived its pod"
    );
    assert_nothing_left(&n, &before);
}

#[test]
fn a_killed_zygote_leaves_its_containers_running_and_is_replaced() {
    let (n, _guard) = node();
    let before = Snapshot::take(&n);
    let pod = n.run_pod("zygote-killed", HANDLER).unwrap();
    let tick = |name: &str| ContainerSpec::new(name, PROBE, &["tick", "100000"]);
    let first = n.launch_running(&pod, &tick("first")).unwrap();
    let shim = parent_pid(n.ctrd.task_pid(&first).unwrap() as i32).unwrap();
    let zygote = zygote_of(shim).expect("the shim runs a zygote");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(zygote)));
    let seen = ticks(&n, &pod, "first");
    assert!(
        eventually(Duration::from_secs(5), || ticks(&n, &pod, "first") > seen),
        "a container forked from the zygote stopped when the zygote died"
    );

    // The next container finds the zygote gone: it is exec'd and a new zygote starts; the
    // one after is forked from that.
    let second = n.launch_running(&pod, &tick("second")).unwrap();
    let second_pid = n.ctrd.task_pid(&second).unwrap() as i32;
    assert_eq!(
        instance_args(second_pid),
        ["--wasmkube-instance", second.as_str()]
    );
    let replacement = zygote_of(shim).expect("a new zygote was started");
    assert_ne!(replacement, zygote);
    let third = n.launch_running(&pod, &tick("third")).unwrap();
    assert_eq!(
        instance_args(n.ctrd.task_pid(&third).unwrap() as i32),
        ["--wasmkube-instance", "--zygote"]
    );
    for name in ["first", "second", "third"] {
        let seen = ticks(&n, &pod, name);
        assert!(
            eventually(Duration::from_secs(5), || ticks(&n, &pod, name) > seen),
            "{name} is not running"
        );
    }
    for id in [&first, &second, &third] {
        n.stop_container(id, 2).unwrap();
        n.remove_container(id).unwrap();
    }
    n.remove_pod(&pod).unwrap();
    n.remove_pod_cgroup("zygote-killed");
    assert!(eventually(Duration::from_secs(5), || !alive(replacement)));
    assert_nothing_left(&n, &before);
}

#[test]
fn with_wasmkube_spawn_exec_every_instance_is_execd_and_no_zygote_runs() {
    let _guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    // containerd passes its environment to the shims it starts; tests of this file hold NODE,
    // so none starts a containerd while the variable is set.
    std::env::set_var("WASMKUBE_SPAWN", "exec");
    let n = CriNode::start();
    std::env::remove_var("WASMKUBE_SPAWN");
    let n = n.expect("containerd with CRI starts");
    n.import(&image(PROBE)).unwrap();
    let pod = n.run_pod("execd", HANDLER).unwrap();
    let id = n
        .launch_running(&pod, &ContainerSpec::new("a", PROBE, &["tick", "100000"]))
        .unwrap();
    let pid = n.ctrd.task_pid(&id).unwrap() as i32;
    assert_eq!(instance_args(pid), ["--wasmkube-instance", id.as_str()]);
    let shim = parent_pid(pid).unwrap();
    assert_eq!(zygote_of(shim), None, "no zygote with WASMKUBE_SPAWN=exec");
    n.stop_container(&id, 2).unwrap();
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
}
