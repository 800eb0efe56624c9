//! The shim under a real containerd, driven with `ctr`: output, exit codes, traps, kill,
//! stdin, rootfs writes, one shim per sandbox, and bad modules (issue 2's acceptance).

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use wasmkube_e2e::containerd::{alive, parent_pid};
use wasmkube_e2e::fixtures::{
    node, run, run_in_sandbox, sleeper, start, Events, HELLO_P1, HELLO_P2, NOT_WASM, PROBE, SPIN,
    TRAP, UNKNOWN_IMPORT,
};

#[test]
fn hello_prints_args_and_env_and_exits_with_its_code() {
    let ctrd = node(&[HELLO_P1]);
    let (code, out, err) = run(
        &ctrd,
        &["--env", "GREETING=hi there"],
        HELLO_P1,
        "hello-0",
        &["/hello.wasm", "one", "two"],
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("hello from wasmkube"), "{out}");
    assert!(out.contains("arg[0]=/hello.wasm"), "{out}");
    assert!(
        out.contains("arg[1]=one") && out.contains("arg[2]=two"),
        "{out}"
    );
    assert!(out.contains("env GREETING=hi there"), "{out}");

    let (code, _, err) = run(
        &ctrd,
        &["--env", "GREETING=hi there"],
        HELLO_P1,
        "hello-3",
        &["/hello.wasm", "--exit", "3"],
    );
    assert_eq!(code, 3);
    assert!(
        err.contains("exiting with 3"),
        "module stderr reaches ctr: {err}"
    );
}

#[test]
fn wasi_p2_component_runs_like_the_core_module() {
    let ctrd = node(&[HELLO_P2]);
    let out = ctrd
        .ctr_run("--rm", "wasip2/wasm")
        .args([
            HELLO_P2,
            "hello-p2",
            "/hello.wasm",
            "component",
            "--exit",
            "5",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("arg[1]=component"), "{stdout}");
    // Rust's wasip2 std reports exit codes through wasi:cli/exit.exit(result), which carries
    // only success or failure: any non-zero code arrives as 1 (exit-with-code, WASI 0.2.12, is
    // linked too, for components that import it).
    assert_eq!(out.status.code(), Some(1));
    let ok = ctrd
        .ctr_run("--rm", "wasip2/wasm")
        .args([HELLO_P2, "hello-p2-ok"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
}

#[test]
fn trap_gives_status_134_and_a_one_line_reason() {
    let ctrd = node(&[TRAP]);
    let (code, _, err) = run(&ctrd, &["--env", "GREETING=hi there"], TRAP, "trap", &[]);
    assert_eq!(code, 134, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("trapped"))
        .unwrap_or_else(|| panic!("no trap line in {err:?}"));
    assert!(
        line.starts_with("wasmkube: container trap: module /trap.wasm trapped"),
        "{line}"
    );
    assert!(line.contains("unreachable"), "{line}");
}

fn kill_spinning_module(signal: &str, expected_status: i32) {
    let ctrd = node(&[SPIN]);
    // `ctr run --rm` waits for the task, deletes it, and exits with the task's status.
    let mut run = ctrd
        .ctr_run("--rm", "wasip1/wasm")
        .args([SPIN, "spin"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    ctrd.wait_status("spin", "RUNNING", Duration::from_secs(10))
        .unwrap();
    let pid = ctrd.task_pid("spin").unwrap() as i32;
    assert!(!ctrd.task_mounts("spin").is_empty(), "rootfs not mounted");
    let cgroups: Vec<String> = ["memory", "cpu", "pids"]
        .iter()
        .map(|c| format!("/sys/fs/cgroup/{c}/{}/spin", ctrd.namespace))
        .collect();
    assert!(cgroups.iter().all(|c| std::path::Path::new(c).is_dir()));

    let started = Instant::now();
    ctrd.ctr_ok(&["tasks", "kill", "--signal", signal, "spin"])
        .unwrap();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{signal} did not stop the spinning module within 2 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(expected_status), "{signal}");
    assert!(!alive(pid), "instance process {pid} survived delete");
    assert!(
        ctrd.task_mounts("spin").is_empty(),
        "rootfs still mounted: {:?}",
        ctrd.task_mounts("spin")
    );
    for cg in cgroups {
        assert!(!std::path::Path::new(&cg).exists(), "{cg} left behind");
    }
}

#[test]
fn sigterm_stops_a_spinning_module_within_two_seconds_and_delete_cleans_up() {
    kill_spinning_module("SIGTERM", 143);
}

#[test]
fn sigkill_stops_a_spinning_module_within_two_seconds_and_delete_cleans_up() {
    kill_spinning_module("SIGKILL", 137);
}

#[test]
fn stdin_piped_into_ctr_run_reaches_the_module() {
    let ctrd = node(&[PROBE]);
    let mut child = ctrd
        .ctr_run("--rm", "wasip1/wasm")
        .args([PROBE, "cat", "/probe.wasm", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through the fifo\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("through the fifo\nread 17 bytes"),
        "{stdout}"
    );
}

#[test]
fn file_written_under_tmp_is_in_the_rootfs_after_exit() {
    let ctrd = node(&[PROBE]);
    start(
        &ctrd,
        &[],
        PROBE,
        "writer",
        &["/probe.wasm", "write", "/tmp/out.txt", "persisted"],
    );
    ctrd.wait_status("writer", "STOPPED", Duration::from_secs(10))
        .unwrap();
    let file = ctrd.bundle("writer").join("rootfs/tmp/out.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "persisted");
    ctrd.ctr_ok(&["tasks", "delete", "writer"]).unwrap();
}

#[test]
fn two_containers_of_one_sandbox_share_one_shim_process() {
    let ctrd = node(&[PROBE]);
    for id in ["pod-a", "pod-b"] {
        sleeper(&ctrd, "sandbox-1", id);
    }
    sleeper(&ctrd, "sandbox-2", "other");

    let shim_of = |id: &str| parent_pid(ctrd.task_pid(id).unwrap() as i32).unwrap();
    assert_eq!(shim_of("pod-a"), shim_of("pod-b"));
    assert_ne!(shim_of("pod-a"), shim_of("other"));
    assert_eq!(ctrd.shim_pids().len(), 2, "{:?}", ctrd.shim_pids());
}

#[test]
fn bad_modules_fail_their_own_create_and_the_shim_keeps_serving() {
    let ctrd = node(&[PROBE, NOT_WASM, UNKNOWN_IMPORT]);
    sleeper(&ctrd, "pod", "good");
    let shim = parent_pid(ctrd.task_pid("good").unwrap() as i32).unwrap();

    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "not-wasm",
            NOT_WASM,
            &[],
            &["/app.wasm", "not a WebAssembly module"],
        ),
        (
            "bad-import",
            UNKNOWN_IMPORT,
            &[],
            &["/app.wasm", "env", "launch_missiles"],
        ),
        (
            "missing",
            PROBE,
            &["/nope.wasm"],
            &["/nope.wasm", "no such file"],
        ),
    ];
    for (id, image, args, expect) in cases {
        let out = run_in_sandbox(&ctrd, "pod", &[], image, id, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{id} should fail");
        for needle in *expect {
            assert!(err.contains(needle), "{id}: {needle:?} not in {err}");
        }
        assert!(alive(shim), "shim died after {id}");
        assert_eq!(
            ctrd.task_status("good").unwrap().as_deref(),
            Some("RUNNING")
        );
    }
    let again = run_in_sandbox(
        &ctrd,
        "pod",
        &[],
        PROBE,
        "good-2",
        &["/probe.wasm", "sleep", "60"],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    ctrd.wait_status("good-2", "RUNNING", Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        parent_pid(ctrd.task_pid("good-2").unwrap() as i32),
        Some(shim)
    );
}

#[test]
fn task_events_are_published_in_lifecycle_order() {
    let ctrd = node(&[HELLO_P1]);
    let events = Events::subscribe(&ctrd);
    let (code, _, err) = run(
        &ctrd,
        &["--env", "GREETING=hi there"],
        HELLO_P1,
        "evented",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let text = events.stop();
    let topics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"evented\"") && l.contains("/tasks/"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{text}"
    );
}

#[test]
fn pids_and_metrics_describe_the_running_module() {
    let ctrd = node(&[PROBE]);
    sleeper(&ctrd, "m", "busy");
    let pid = ctrd.task_pid("busy").unwrap();
    let ps = ctrd.ctr_ok(&["tasks", "ps", "busy"]).unwrap();
    assert!(ps.contains(&pid.to_string()), "{ps}");
    let metrics = ctrd.ctr_ok(&["tasks", "metrics", "busy"]).unwrap();
    let usage = metrics
        .lines()
        .find(|l| l.starts_with("memory.usage_in_bytes"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no memory usage in {metrics}"));
    assert!(usage > 0, "{metrics}");
}

#[test]
fn unsupported_calls_answer_not_implemented() {
    let ctrd = node(&[PROBE]);
    sleeper(&ctrd, "u", "plain");
    for args in [
        &["tasks", "pause", "plain"][..],
        &["tasks", "resume", "plain"][..],
    ] {
        let out = ctrd.ctr(args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("not implemented by the wasmkube shim"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        ctrd.task_status("plain").unwrap().as_deref(),
        Some("RUNNING")
    );
}

#[test]
fn a_lost_shim_is_cleaned_up_by_delete() {
    let ctrd = node(&[PROBE]);
    sleeper(&ctrd, "lost", "orphan");
    let pid = ctrd.task_pid("orphan").unwrap() as i32;
    let shim = parent_pid(pid).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd notices the dead shim and runs `containerd-shim-wasmkube-v1 delete`.
    ctrd.wait_status("orphan", "STOPPED", Duration::from_secs(10))
        .or_else(|_| {
            // Some containerd versions drop the task instead of listing it as stopped.
            match ctrd.task_status("orphan")? {
                None => Ok(()),
                Some(s) => anyhow::bail!("orphan is {s}"),
            }
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(pid),
        "instance process {pid} outlived its shim's clean-up"
    );
    let _ = ctrd.ctr(&["tasks", "delete", "orphan"]);
    assert!(
        ctrd.task_mounts("orphan").is_empty(),
        "rootfs still mounted: {:?}",
        ctrd.task_mounts("orphan")
    );
}
