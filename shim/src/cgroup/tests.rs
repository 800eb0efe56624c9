use super::*;

#[test]
fn cgroups_path_forms_table() {
    let cases = [
        ("/k8s.io/abc", "k8s.io/abc"),
        ("/kubepods/burstable/pod1/abc", "kubepods/burstable/pod1/abc"),
        ("default/abc", "default/abc"),
        (
            "kubepods-burstable-pod1.slice:cri-containerd:abc",
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope",
        ),
        ("system.slice:docker:abc", "system.slice/docker-abc.scope"),
        (":cri-containerd:abc", "system.slice/cri-containerd-abc.scope"),
        ("-.slice:cri-containerd:abc", "cri-containerd-abc.scope"),
        ("kubepods.slice::abc", "kubepods.slice/abc.scope"),
        ("kubepods.slice:x:sub.slice", "kubepods.slice/sub.slice"),
        ("", "wasmkube/c1"),
    ];
    for (input, want) in cases {
        assert_eq!(
            relative_path(input, "c1").unwrap(),
            PathBuf::from(want),
            "{input}"
        );
    }
}

#[test]
fn bad_cgroups_paths_are_rejected_with_the_container_named() {
    for bad in [
        "/a/../../etc",
        "/",
        "kubepods:x:abc",
        "bad--name.slice:p:abc",
        "a.slice:p:",
    ] {
        let err = relative_path(bad, "c7").unwrap_err().to_string();
        assert!(
            err.contains("c7") && err.contains("cgroupsPath"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn shares_convert_to_weight_like_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(0), 100);
}

fn resources(json: serde_json::Value) -> LinuxResources {
    serde_json::from_value(json).unwrap()
}

#[test]
fn limits_come_from_linux_resources() {
    let r = resources(serde_json::json!({
        "memory": {"limit": 134217728},
        "cpu": {"quota": 20000, "period": 100000, "shares": 512},
        "pids": {"limit": 64}
    }));
    let l = Limits::from_resources(&r);
    assert_eq!(
        l,
        Limits {
            memory: Some(134_217_728),
            cpu_quota: Some(20_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(512),
            pids: Some(64),
        }
    );
    assert_eq!(l.memory_bytes(), Some(134_217_728));
    assert_eq!(Limits::default().memory_bytes(), None);
}

fn fake_v1() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for c in ["memory", "cpu", "cpuacct", "pids"] {
        std::fs::create_dir_all(root.path().join(c)).unwrap();
    }
    root
}

#[test]
fn v1_limits_land_in_each_controller() {
    let root = fake_v1();
    let cg = Cgroup::new(root.path(), PathBuf::from("default/c1"));
    assert_eq!(cg.version(), Version::V1);
    cg.create().unwrap();
    cg.apply(&Limits {
        memory: Some(64 << 20),
        cpu_quota: Some(20_000),
        cpu_period: Some(100_000),
        cpu_shares: Some(256),
        pids: Some(0),
    })
    .unwrap();
    let read = |f: &str| std::fs::read_to_string(root.path().join(f)).unwrap();
    assert_eq!(read("memory/default/c1/memory.limit_in_bytes"), "67108864");
    assert_eq!(read("cpu/default/c1/cpu.cfs_quota_us"), "20000");
    assert_eq!(read("cpu/default/c1/cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu/default/c1/cpu.shares"), "256");
    assert_eq!(read("pids/default/c1/pids.max"), "max");
    cg.add(42).unwrap();
    assert_eq!(read("pids/default/c1/cgroup.procs"), "42");
}

#[test]
fn v1_metrics_and_oom_count_are_read_from_the_files() {
    let root = fake_v1();
    let cg = Cgroup::new(root.path(), PathBuf::from("c2"));
    cg.create().unwrap();
    let put = |f: &str, v: &str| std::fs::write(root.path().join(f), v).unwrap();
    put("memory/c2/memory.usage_in_bytes", "1048576\n");
    put("memory/c2/memory.limit_in_bytes", "67108864\n");
    put(
        "memory/c2/memory.stat",
        "cache 4096\nrss 8192\ntotal_inactive_file 100\n",
    );
    put(
        "memory/c2/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    put("cpuacct/c2/cpuacct.usage", "5000000\n");
    put(
        "cpu/c2/cpu.stat",
        "nr_periods 10\nnr_throttled 4\nthrottled_time 99\n",
    );
    put("pids/c2/pids.current", "1\n");
    put("pids/c2/pids.max", "max\n");
    let m = cg.metrics_v1();
    assert_eq!(m.memory.usage.usage, 1_048_576);
    assert_eq!(m.memory.usage.limit, 67_108_864);
    assert_eq!((m.memory.rss, m.memory.cache), (8192, 4096));
    assert_eq!(m.cpu.usage.total, 5_000_000);
    assert_eq!(m.cpu.throttling.throttled_periods, 4);
    assert_eq!((m.pids.current, m.pids.limit), (1, 0));
    assert_eq!(cg.oom_kills(), 2);
    assert_eq!(cg.metrics().unwrap().type_url, METRICS_V1_TYPE);
}

#[test]
fn v2_limits_and_metrics_use_the_unified_files() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
    let cg = Cgroup::new(
        root.path(),
        PathBuf::from("kubepods.slice/pod.slice/c3.scope"),
    );
    assert_eq!(cg.version(), Version::V2);
    cg.create().unwrap();
    cg.apply(&Limits {
        memory: Some(128 << 20),
        cpu_quota: Some(50_000),
        cpu_period: None,
        cpu_shares: Some(1024),
        pids: Some(100),
    })
    .unwrap();
    let dir = root.path().join("kubepods.slice/pod.slice/c3.scope");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read("memory.max"), "134217728");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("cpu.weight"), "39");
    assert_eq!(read("pids.max"), "100");
    // Controllers are enabled on the way down.
    let top = std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
    assert!(
        top.contains("+pids") || top.contains("+memory") || top.contains("+cpu"),
        "{top}"
    );
    std::fs::write(dir.join("memory.current"), "2097152\n").unwrap();
    std::fs::write(dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
    std::fs::write(
        dir.join("cpu.stat"),
        "usage_usec 300\nuser_usec 200\nsystem_usec 100\n",
    )
    .unwrap();
    let m = cg.metrics_v2();
    assert_eq!(m.memory.usage, 2_097_152);
    assert_eq!(m.memory.usage_limit, 134_217_728);
    assert_eq!(m.cpu.usage_usec, 300);
    assert_eq!(m.memory_events.oom_kill, 1);
    assert_eq!(cg.oom_kills(), 1);
    assert_eq!(cg.metrics().unwrap().type_url, METRICS_V2_TYPE);
}

#[test]
fn delete_removes_every_controller_directory() {
    let root = fake_v1();
    let cg = Cgroup::new(root.path(), PathBuf::from("gone"));
    cg.create().unwrap();
    assert!(root.path().join("memory/gone").is_dir());
    cg.delete().unwrap();
    for c in ["memory", "cpu", "cpuacct", "pids"] {
        assert!(!root.path().join(c).join("gone").exists());
    }
    cg.delete().unwrap();
}
