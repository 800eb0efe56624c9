//! Exec into Wasm containers, through containerd (`ctr tasks exec`) and through CRI (ExecSync,
//! and Exec over the streaming server as kubectl uses it): a tool from the container's rootfs
//! runs beside the module in its cgroup with its own args and stdio and its own exit code;
//! non-Wasm commands are refused with the message that says what can be exec'd; exec processes
//! are announced by events and die, reaped, with their container.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::process::Stdio;
use std::time::{Duration, Instant};

use wasmkube_e2e::containerd::{alive, Containerd};
use wasmkube_e2e::cri::{parse_log, ContainerSpec, CriNode, Pod, HANDLER};
use wasmkube_e2e::fixtures::{image, node, start, Events, DECOY_PASSWD, TOOLS};
use wasmkube_e2e::stream::ExecStream;

/// `ctr tasks exec` of `args` in `id`; (exit code, stdout, stderr).
fn exec(ctrd: &Containerd, id: &str, exec_id: &str, args: &[&str]) -> (i32, String, String) {
    let out = ctrd
        .ctr_command()
        .args(["tasks", "exec", "--exec-id", exec_id, id])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ctr tasks exec --detach` of a module that sleeps, as exec `exec_id` in `id`.
fn exec_sleeper(ctrd: &Containerd, id: &str, exec_id: &str) {
    let out = ctrd
        .ctr_command()
        .args(["tasks", "exec", "--detach", "--exec-id", exec_id, id])
        .args(["/probe.wasm", "sleep", "600"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pids `ctr tasks ps` lists for `id`.
fn task_pids(ctrd: &Containerd, id: &str) -> Vec<i32> {
    ctrd.ctr_ok(&["tasks", "ps", id])
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn running_tools(ctrd: &Containerd, id: &str) {
    start(
        ctrd,
        &["--env", "ROLE=app"],
        TOOLS,
        id,
        &["/probe.wasm", "sleep", "600"],
    );
    ctrd.wait_status(id, "RUNNING", Duration::from_secs(10))
        .unwrap();
}

#[test]
fn exec_runs_a_tool_from_the_rootfs_beside_the_module() {
    let ctrd = node(&[TOOLS]);
    running_tools(&ctrd, "app");

    let (code, out, err) = exec(&ctrd, "app", "ls", &["/tools/ls.wasm", "/tools"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "cat.wasm\nenv.wasm\nls.wasm\nwsh.wasm\n");
    let (code, out, _) = exec(&ctrd, "app", "cat", &["/tools/cat.wasm", "/etc/passwd"]);
    assert_eq!(
        (code, out.as_str()),
        (0, DECOY_PASSWD),
        "the container's rootfs"
    );
    // The container's environment, as a process exec'd in it sees it.
    let (code, out, _) = exec(&ctrd, "app", "env", &["/tools/env.wasm"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "ROLE=app"), "{out}");
    // Its own exit code and stderr.
    let (code, out, err) = exec(&ctrd, "app", "bad", &["/tools/ls.wasm", "/nope"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.starts_with("ls: /nope: "), "{err}");

    // A running exec is a process of the container, in its cgroup.
    exec_sleeper(&ctrd, "app", "bg");
    let pids = task_pids(&ctrd, "app");
    assert_eq!(pids.len(), 2, "module and exec: {pids:?}");
    let module = ctrd.task_pid("app").unwrap() as i32;
    let exec_pid = *pids.iter().find(|p| **p != module).unwrap();
    let cgroup = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap()
            .lines()
            .find(|l| l.contains(":memory:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(cgroup(exec_pid), cgroup(module));

    // What cannot be exec'd is refused, naming what can.
    for (args, why) in [
        (&["ls"][..], "no such file in the container rootfs"),
        (&["/etc/passwd"][..], "not a WebAssembly program"),
    ] {
        let (code, _, err) = exec(&ctrd, "app", "refused", args);
        assert_ne!(code, 0, "{args:?}");
        assert!(
            err.contains(why) && err.contains("the wasmkube shim execs WebAssembly programs only"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(ctrd.task_status("app").unwrap().as_deref(), Some("RUNNING"));
    ctrd.ctr_ok(&["tasks", "kill", "--signal", "SIGKILL", "app"])
        .unwrap();
    // The shim's log lines reach containerd's log (where the troubleshooting guide looks).
    let log = ctrd.log();
    assert!(
        log.lines()
            .any(|l| l.contains("exec created") && l.contains("exec_id=ls")),
        "{log}"
    );
}

#[test]
fn exec_processes_are_announced_and_die_with_their_container() {
    let ctrd = node(&[TOOLS]);
    let events = Events::subscribe(&ctrd);
    running_tools(&ctrd, "main");
    exec_sleeper(&ctrd, "main", "waiter");
    let module = ctrd.task_pid("main").unwrap() as i32;
    let exec_pid = *task_pids(&ctrd, "main")
        .iter()
        .find(|p| **p != module)
        .unwrap();
    assert!(alive(exec_pid));

    ctrd.ctr_ok(&["tasks", "kill", "--signal", "SIGTERM", "main"])
        .unwrap();
    ctrd.wait_status("main", "STOPPED", Duration::from_secs(10))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(exec_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(exec_pid),
        "exec process {exec_pid} outlived its container"
    );
    ctrd.ctr_ok(&["tasks", "delete", "main"]).unwrap();
    // Not even a zombie is left.
    assert!(
        !std::path::Path::new(&format!("/proc/{exec_pid}")).exists(),
        "exec process {exec_pid} was not reaped"
    );
    assert!(
        ctrd.instance_pids().is_empty(),
        "{:?}",
        ctrd.instance_pids()
    );

    let text = events.stop();
    let topics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"main\"") && l.contains("/tasks/"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    for want in ["/tasks/exec-added", "/tasks/exec-started"] {
        assert!(topics.contains(&want), "{want} missing: {text}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("/tasks/exit") && l.contains("\"waiter\"")),
        "no exit event for the exec: {text}"
    );
}

/// CRI nodes share this process's bridge name: one at a time.
static NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cri_node() -> (CriNode, std::sync::MutexGuard<'static, ()>) {
    let guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let n = CriNode::start().expect("containerd with CRI starts");
    n.import(&image(TOOLS)).expect("import");
    (n, guard)
}

fn tools_pod(n: &CriNode, name: &str) -> (Pod, String) {
    let pod = n.run_pod(name, HANDLER).unwrap();
    let spec = ContainerSpec {
        name: "app".into(),
        image: TOOLS.into(),
        args: ["sleep", "600"].iter().map(|s| s.to_string()).collect(),
        env: vec![("ROLE".into(), "app".into())],
        ..Default::default()
    };
    let id = n.launch_running(&pod, &spec).unwrap();
    (pod, id)
}

#[test]
fn cri_exec_sync_and_exec_run_a_tool_in_a_running_wasm_container() {
    let (n, _guard) = cri_node();
    let (pod, id) = tools_pod(&n, "tooled");

    // ExecSync: `kubectl exec` without a stream, and exec probes.
    let (code, out, err) = n.exec_sync(&id, &["/tools/ls.wasm", "/tools"], 10).unwrap();
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "cat.wasm\nenv.wasm\nls.wasm\nwsh.wasm\n", "")
    );
    let (code, out, err) = n.exec_sync(&id, &["/tools/ls.wasm", "/nope"], 10).unwrap();
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.starts_with("ls: /nope: "), "{err}");
    let (code, out, _) = n.exec_sync(&id, &["/tools/env.wasm"], 10).unwrap();
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "ROLE=app"), "{out}");
    let refused = n.exec_sync(&id, &["ls", "/"], 10).unwrap_err();
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("the wasmkube shim execs WebAssembly programs only"),
        "{refused}"
    );

    // Exec: the streaming path kubectl uses.
    let url = n
        .exec_url(&id, &["/tools/cat.wasm", "/etc/passwd"], false, false)
        .unwrap();
    let done = ExecStream::connect(&url)
        .unwrap()
        .finish(Duration::from_secs(10))
        .unwrap();
    assert_eq!((done.exit_code, done.stdout.as_str()), (0, DECOY_PASSWD));
    let url = n
        .exec_url(&id, &["/tools/ls.wasm", "/nope"], false, false)
        .unwrap();
    let done = ExecStream::connect(&url)
        .unwrap()
        .finish(Duration::from_secs(10))
        .unwrap();
    assert_eq!(done.exit_code, 1, "{done:?}");
    assert!(done.stderr.starts_with("ls: /nope: "), "{done:?}");

    // A long exec dies with the container; nothing is left once the pod is gone.
    let url = n
        .exec_url(&id, &["/probe.wasm", "sleep", "600"], false, false)
        .unwrap();
    let stream = ExecStream::connect(&url).unwrap();
    let module = n.ctrd.task_pid(&id).unwrap() as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    let exec_pid = loop {
        let others: Vec<i32> = n
            .ctrd
            .instance_pids()
            .into_iter()
            .filter(|p| *p != module && Some(*p) != n.ctrd.task_pid(&pod.id).ok().map(|p| p as i32))
            .collect();
        if let [one] = others[..] {
            break one;
        }
        assert!(
            Instant::now() < deadline,
            "exec process not found: {others:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    n.stop_container(&id, 2).unwrap();
    let done = stream.finish(Duration::from_secs(10)).unwrap();
    assert_eq!(done.exit_code, 137, "killed with its container: {done:?}");
    assert!(
        !alive(exec_pid),
        "exec process {exec_pid} outlived its container"
    );
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
    assert!(
        n.ctrd.instance_pids().is_empty(),
        "{:?}",
        n.ctrd.instance_pids()
    );
}

/// The terminal size of the pty that is `pid`'s stdin.
fn terminal_size(pid: i32) -> (u16, u16) {
    use std::os::fd::AsRawFd;
    let tty = std::fs::File::open(format!("/proc/{pid}/fd/0")).unwrap();
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    assert_eq!(rc, 0, "{pid}'s stdin is not a terminal");
    (size.ws_col, size.ws_row)
}

#[test]
fn cri_exec_with_a_tty_drives_an_interactive_module() {
    let (n, _guard) = cri_node();
    let (pod, id) = tools_pod(&n, "interactive");
    let known: Vec<i32> = n.ctrd.instance_pids();
    let url = n.exec_url(&id, &["/tools/wsh.wasm"], true, true).unwrap();
    let mut s = ExecStream::connect(&url).unwrap();
    s.expect("wsh> ", Duration::from_secs(10)).unwrap();
    // The terminal echoes the typed line (CR becomes CR LF), then the module answers.
    s.send_stdin(b"echo hello tty\r").unwrap();
    s.expect(
        "wsh> echo hello tty\r\nhello tty\r\nwsh> ",
        Duration::from_secs(10),
    )
    .unwrap();

    // ResizePty reaches the exec's terminal.
    let exec_pid = *n
        .ctrd
        .instance_pids()
        .iter()
        .find(|p| !known.contains(p))
        .expect("the exec's instance process");
    s.resize(100, 40).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while terminal_size(exec_pid) != (100, 40) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(terminal_size(exec_pid), (100, 40));

    s.send_stdin(b"exit 3\r").unwrap();
    let done = s.finish(Duration::from_secs(10)).unwrap();
    assert_eq!(done.exit_code, 3, "{done:?}");
    assert!(!alive(exec_pid));

    // A container created with a terminal runs on one too: what the module writes to stderr
    // (here a panic message) arrives on the terminal's one stream.
    let ticker = ContainerSpec {
        name: "ticker".into(),
        image: TOOLS.into(),
        args: ["write", "/no/such/dir", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        tty: true,
        ..Default::default()
    };
    let (ticker_id, code) = n.run_to_exit(&pod, &ticker).unwrap();
    assert_ne!(code, 0);
    let log = n.log(&pod, "ticker");
    let lines = parse_log(&log);
    assert!(lines.iter().any(|(_, t)| t.contains("panicked")), "{log:?}");
    assert!(
        lines.iter().all(|(stream, _)| stream == "stdout"),
        "{log:?}"
    );

    n.stop_container(&id, 2).unwrap();
    n.remove_container(&ticker_id).unwrap();
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
}

#[test]
fn cri_attach_reaches_a_running_module_stdio() {
    let (n, _guard) = cri_node();
    let pod = n.run_pod("attached", HANDLER).unwrap();
    let spec = ContainerSpec {
        name: "echo".into(),
        image: TOOLS.into(),
        command: vec!["/tools/cat.wasm".into()],
        stdin: true,
        ..Default::default()
    };
    let id = n.launch_running(&pod, &spec).unwrap();
    let url = n.attach_url(&id, true).unwrap();
    let mut s = ExecStream::connect(&url).unwrap();
    s.send_stdin(b"hello through attach\n").unwrap();
    s.expect("hello through attach\n", Duration::from_secs(10))
        .unwrap();
    // The module kept running: a second session sees what a new line brings.
    drop(s);
    let mut again = ExecStream::connect(&n.attach_url(&id, true).unwrap()).unwrap();
    again.send_stdin(b"second\n").unwrap();
    again.expect("second\n", Duration::from_secs(10)).unwrap();
    let log = n.log(&pod, "echo");
    assert!(log.contains("stdout F hello through attach"), "{log}");
    n.stop_container(&id, 2).unwrap();
    n.remove_container(&id).unwrap();
    n.remove_pod(&pod).unwrap();
}
