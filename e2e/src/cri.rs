//! The kubelet's side of CRI, played against a private containerd with the CRI plugin, the
//! `wasmkube` runtime handler, a CNI bridge of its own and a locally built pause image. Calls
//! are the kubelet's: RunPodSandbox → CreateContainer → StartContainer → status, stats, logs →
//! StopPodSandbox → RemovePodSandbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    AttachRequest, AuthConfig, ContainerConfig, ContainerMetadata, ContainerState,
    ContainerStatsRequest, ContainerStatusRequest, CreateContainerRequest, ExecRequest,
    ExecSyncRequest, ImageSpec, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStatsRequest, PodSandboxStatusRequest, PullImageRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest, UpdateContainerResourcesRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::containerd::{remove_cgroups, Containerd};
use crate::image::Image;
use crate::{repo_root, Result};

/// The runtime handler name (a DESIGN.md interface).
pub const HANDLER: &str = "wasmkube";
/// The sandbox image every pod uses.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:wasmkube-e2e";

/// A private containerd with CRI, and clients for it.
pub struct CriNode {
    /// The containerd (namespace `k8s.io`).
    pub ctrd: Containerd,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// The cgroup parent of every pod, removed at teardown.
    pub cgroup_parent: String,
    /// The CNI bridge's subnet, `10.77.N.0/24`.
    pub subnet: String,
    /// Network namespaces of the pods, removed at teardown if a test did not get that far.
    netns: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

/// A pod created by [`CriNode::run_pod`].
pub struct Pod {
    /// Sandbox id.
    pub id: String,
    /// Its config (CreateContainer needs it again).
    pub config: PodSandboxConfig,
    /// Where its container logs go.
    pub log_dir: PathBuf,
}

/// A pod's PodSandboxStats.
#[derive(Debug)]
pub struct PodStats {
    /// CPU time used, nanoseconds.
    pub cpu: u64,
    /// Memory working set, bytes.
    pub memory: u64,
    /// Per container: (id, cpu nanoseconds, working set bytes).
    pub containers: Vec<(String, u64, u64)>,
}

/// What a test container asks for.
#[derive(Default)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Args (the image entrypoint stays the command).
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Memory limit in bytes (0: none).
    pub memory_limit: i64,
    /// CPU quota in µs per 100 ms period (0: none).
    pub cpu_quota: i64,
    /// Annotations.
    pub annotations: HashMap<String, String>,
    /// `tty: true` (a terminal for the module; its output is one stream).
    pub tty: bool,
    /// `stdin: true` (the module's stdin stays open for `kubectl attach`).
    pub stdin: bool,
    /// The command, replacing the image entrypoint (empty: the image's).
    pub command: Vec<String>,
    /// `securityContext.runAsUser` (`None`: the image's user, root here).
    pub run_as_user: Option<i64>,
    /// Host directories bind-mounted into the container (`hostPath` volumes, as the kubelet
    /// passes them).
    pub mounts: Vec<HostMount>,
}

/// A host path mounted into a container, as the kubelet sends a `hostPath` volume.
#[derive(Debug, Clone)]
pub struct HostMount {
    /// Path on the node.
    pub host: PathBuf,
    /// Path inside the container.
    pub container: String,
    /// `readOnly: true` on the volume mount.
    pub read_only: bool,
}

impl ContainerSpec {
    /// Container `name` running `image` with `args` (the image's entrypoint stays the command).
    pub fn new(name: &str, image: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
}

/// Builds `e2e/fixtures/native/<name>.c` statically with the system C compiler.
pub fn native_binary(name: &str, out: &Path) -> Result<Vec<u8>> {
    let src = repo_root()
        .join("e2e/fixtures/native")
        .join(format!("{name}.c"));
    let bin = out.join(name);
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .context("running cc (apt-get install gcc libc6-dev)")?;
    if !status.success() {
        bail!("cc -static {} failed", src.display());
    }
    Ok(std::fs::read(bin)?)
}

impl CriNode {
    /// Starts containerd with CRI (and the `wasmkube` handler) and connects.
    pub fn start() -> Result<CriNode> {
        Self::start_with_handler(true)
    }

    /// Starts containerd with CRI but without the `wasmkube` handler, as a node looks before
    /// the installer runs (the shim's config file exists at `<dir>/shim.toml`).
    pub fn start_without_wasmkube() -> Result<CriNode> {
        Self::start_with_handler(false)
    }

    fn start_with_handler(with_handler: bool) -> Result<CriNode> {
        for plugin in ["bridge", "host-local", "loopback"] {
            if !Path::new("/usr/lib/cni").join(plugin).exists() {
                bail!("CNI plugin /usr/lib/cni/{plugin} missing (apt-get install containernetworking-plugins)");
            }
        }
        let n = (std::process::id() % 200) as u8 + 20;
        let bridge = format!("wkbr{n}");
        let subnet = format!("10.77.{n}.0/24");
        let cgroup_parent = format!("wasmkube-e2e-{n}");
        let (bridge2, subnet2) = (bridge.clone(), subnet.clone());
        let section = move |root: &Path| {
            let cni = root.join("cni");
            std::fs::create_dir_all(&cni).expect("cni dir");
            let conf = serde_json::json!({
                "cniVersion": "0.4.0",
                "name": format!("wasmkube-e2e-{n}"),
                "plugins": [
                    {"type": "bridge", "bridge": bridge2, "isGateway": true, "ipMasq": false,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet2}]],
                              "dataDir": root.join("cni-ipam")}},
                    {"type": "loopback"}
                ]
            });
            std::fs::write(cni.join("10-wasmkube.conflist"), conf.to_string()).expect("cni conf");
            std::fs::write(root.join("shim.toml"), base_shim_config(root)).expect("shim config");
            format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
{wasm}"#,
                cni = cni.display(),
                certs = root.join("certs.d").display(),
                wasm = if with_handler {
                    format!(
                        r#"    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
      runtime_type = "io.containerd.wasmkube.v1"
      pod_annotations = ["wasmkube.dev/*"]
      container_annotations = ["wasmkube.dev/*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}.options]
        ConfigPath = "{}"
"#,
                        root.join("shim.toml").display()
                    )
                } else {
                    String::new()
                },
            )
        };
        let mut ctrd = Containerd::start_with(Some(&section))?;
        let parent = cgroup_parent.clone();
        let netns: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>> = Default::default();
        let leftover = netns.clone();
        ctrd.cleanup.push(Box::new(move || {
            for ns in leftover.lock().map(|v| v.clone()).unwrap_or_default() {
                let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(&ns);
            }
            let _ = Command::new("ip")
                .args(["link", "del", &bridge])
                .stderr(std::process::Stdio::null())
                .status();
            remove_cgroups(&parent);
        }));
        let pause = native_binary("pause", ctrd.dir())?;
        let archive = ctrd.dir().join("pause.tar");
        Image::native(PAUSE_IMAGE, "pause", pause).write_archive(&archive)?;
        ctrd.import(&archive)?;
        // Two workers: tests may drive CRI from several threads at once (the churn test).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let channel = connect(&rt, &ctrd.address)?;
        Ok(CriNode {
            ctrd,
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            cgroup_parent,
            subnet,
            netns,
        })
    }

    /// Connects the CRI clients again (after containerd restarted, the old connection is
    /// broken).
    /// Waits (up to 20 s) until the CRI plugin answers: containerd serves `ctr` before CRI has
    /// finished initialising ("server is not initialized yet").
    pub fn reconnect(&mut self) -> Result<()> {
        let channel = connect(&self.rt, &self.ctrd.address)?;
        self.runtime = RuntimeServiceClient::new(channel.clone());
        self.images = ImageServiceClient::new(channel);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut client = self.runtime.clone();
            match self
                .rt
                .block_on(client.status(k8s_cri::v1::StatusRequest { verbose: false }))
            {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!("CRI did not come back after the restart: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// RunPodSandbox with `handler` (`wasmkube`, or `runc`).
    pub fn run_pod(&self, name: &str, handler: &str) -> Result<Pod> {
        self.run_pod_annotated(name, handler, &[])
    }

    /// RunPodSandbox with pod annotations (what the kubelet passes from `metadata.annotations`).
    pub fn run_pod_annotated(
        &self,
        name: &str,
        handler: &str,
        annotations: &[(&str, &str)],
    ) -> Result<Pod> {
        self.sandbox(name, handler, annotations, NamespaceMode::Pod)
    }

    /// RunPodSandbox with `hostNetwork: true`: no CNI, no IP (the density benchmark starts more
    /// pods than the bridge's /24 has addresses).
    pub fn run_pod_on_host_network(&self, name: &str, handler: &str) -> Result<Pod> {
        self.sandbox(name, handler, &[], NamespaceMode::Node)
    }

    fn sandbox(
        &self,
        name: &str,
        handler: &str,
        annotations: &[(&str, &str)],
        network: NamespaceMode,
    ) -> Result<Pod> {
        let log_dir = self.ctrd.dir().join("pods").join(name);
        std::fs::create_dir_all(&log_dir)?;
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            // A host-network pod keeps the node's UTS namespace, so no hostname of its own
            // (runc refuses one without a private UTS namespace).
            hostname: if network == NamespaceMode::Node {
                String::new()
            } else {
                name.into()
            },
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/pod-{name}", self.cgroup_parent),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let mut client = self.runtime.clone();
        let id = self
            .rt
            .block_on(client.run_pod_sandbox(req))
            .with_context(|| format!("RunPodSandbox {name} ({handler})"))?
            .into_inner()
            .pod_sandbox_id;
        if let Some(ns) = self.pod_netns(&id) {
            self.netns.lock().expect("netns list").push(ns);
        }
        Ok(Pod {
            id,
            config,
            log_dir,
        })
    }

    /// Rewrites the shim's node config (re-read at every container create): the test defaults
    /// (cache and containerd content store of this node) followed by `extra` TOML.
    pub fn configure_shim(&self, extra: &str) -> Result<()> {
        let root = self.ctrd.dir();
        std::fs::write(
            root.join("shim.toml"),
            format!("{}{extra}", base_shim_config(root)),
        )?;
        Ok(())
    }

    /// Imports the module stub image the way a node installer does: written by the shim binary
    /// (`--write-stub-image`), imported into the `k8s.io` namespace.
    pub fn import_stub_image(&self) -> Result<()> {
        let archive = self.ctrd.dir().join("stub.tar");
        let out = Command::new(crate::containerd::shim_binary()?)
            .arg("--write-stub-image")
            .arg(&archive)
            .output()
            .context("running the shim binary")?;
        if !out.status.success() {
            bail!(
                "--write-stub-image failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.ctrd.import(&archive)
    }

    /// The shim's blob store for fetched artifacts on this node.
    pub fn blob_store(&self) -> PathBuf {
        self.ctrd.dir().join("cache/blobs/sha256")
    }

    /// Lets CRI pull from the plain-HTTP registry at `host` (a `certs.d/<host>/hosts.toml`,
    /// read by containerd at each pull).
    pub fn trust_registry(&self, host: &str) -> Result<()> {
        let dir = self.ctrd.dir().join("certs.d").join(host);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"http://{host}\"\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        Ok(())
    }

    /// PullImage, as the kubelet does (with the pod's pull-secret credentials, if any).
    pub fn pull(&self, image: &str, credentials: Option<(&str, &str)>) -> Result<String> {
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth: credentials.map(|(u, p)| AuthConfig {
                username: u.into(),
                password: p.into(),
                ..Default::default()
            }),
            sandbox_config: None,
        };
        let mut client = self.images.clone();
        let reply = self.rt.block_on(client.pull_image(req));
        match reply {
            Ok(r) => Ok(r.into_inner().image_ref),
            Err(status) => bail!("PullImage {image}: {}", status.message()),
        }
    }

    /// How many of the network namespaces CRI gave this node's pods are still on disk. Counted
    /// from the pods this node started, not from `/var/run/netns`, which every CRI runtime on
    /// the machine shares (a cluster running beside the tests adds its pods' there).
    pub fn pod_netns_left(&self) -> usize {
        self.netns
            .lock()
            .map(|v| v.iter().filter(|p| p.exists()).count())
            .unwrap_or(0)
    }

    /// The network namespace path CRI gave a pod (from its sandbox bundle).
    pub fn pod_netns(&self, pod_id: &str) -> Option<PathBuf> {
        let config = std::fs::read(self.ctrd.bundle(pod_id).join("config.json")).ok()?;
        let config: serde_json::Value = serde_json::from_slice(&config).ok()?;
        config["linux"]["namespaces"]
            .as_array()?
            .iter()
            .find(|ns| ns["type"] == "network")?["path"]
            .as_str()
            .map(PathBuf::from)
    }

    /// CreateContainer; returns the container id.
    pub fn create_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let config = ContainerConfig {
            tty: spec.tty,
            stdin: spec.stdin,
            command: spec.command.clone(),
            metadata: Some(ContainerMetadata {
                name: spec.name.clone(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: spec.image.clone(),
                ..Default::default()
            }),
            args: spec.args.clone(),
            envs: spec
                .env
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            annotations: spec.annotations.clone(),
            mounts: spec
                .mounts
                .iter()
                .map(|m| k8s_cri::v1::Mount {
                    container_path: m.container.clone(),
                    host_path: m.host.to_string_lossy().into_owned(),
                    readonly: m.read_only,
                    ..Default::default()
                })
                .collect(),
            log_path: format!("{}.log", spec.name),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: spec.memory_limit,
                    cpu_quota: spec.cpu_quota,
                    cpu_period: if spec.cpu_quota > 0 { 100_000 } else { 0 },
                    ..Default::default()
                }),
                security_context: spec.run_as_user.map(|uid| LinuxContainerSecurityContext {
                    run_as_user: Some(Int64Value { value: uid }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let mut client = self.runtime.clone();
        Ok(self
            .rt
            .block_on(client.create_container(req))
            .with_context(|| format!("CreateContainer {}", spec.name))?
            .into_inner()
            .container_id)
    }

    /// StartContainer.
    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        self.rt
            .block_on(client.start_container(StartContainerRequest {
                container_id: id.into(),
            }))
            .with_context(|| format!("StartContainer {id}"))?;
        Ok(())
    }

    /// CreateContainer + StartContainer; returns the container id.
    pub fn launch(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let id = self.create_container(pod, spec)?;
        self.start_container(&id)?;
        Ok(id)
    }

    /// CreateContainer + StartContainer, then waits (up to 20 s) until it runs; returns its id.
    pub fn launch_running(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let id = self.launch(pod, spec)?;
        self.wait_state(
            &id,
            ContainerState::ContainerRunning,
            Duration::from_secs(20),
        )?;
        Ok(id)
    }

    /// Starts a container and waits (up to 20 s) for it to exit; returns its id and exit code.
    pub fn run_to_exit(&self, pod: &Pod, spec: &ContainerSpec) -> Result<(String, i32)> {
        let id = self.launch(pod, spec)?;
        let code = self.wait_state(
            &id,
            ContainerState::ContainerExited,
            Duration::from_secs(20),
        )?;
        Ok((id, code))
    }

    /// ContainerStatus: (state, exit code, reason).
    pub fn container_status(&self, id: &str) -> Result<(ContainerState, i32, String)> {
        let mut client = self.runtime.clone();
        let status = self
            .rt
            .block_on(client.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }))?
            .into_inner()
            .status
            .context("no status")?;
        Ok((status.state(), status.exit_code, status.reason))
    }

    /// Polls until the container is in `state`.
    pub fn wait_state(&self, id: &str, state: ContainerState, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let (now, code, _) = self.container_status(id)?;
            if now == state {
                return Ok(code);
            }
            if Instant::now() > deadline {
                bail!("container {id} is {now:?}, not {state:?}, after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// ContainerStats: (CPU ns used, working-set bytes).
    pub fn container_stats(&self, id: &str) -> Result<(u64, u64)> {
        let mut client = self.runtime.clone();
        let stats = self
            .rt
            .block_on(client.container_stats(ContainerStatsRequest {
                container_id: id.into(),
            }))?
            .into_inner()
            .stats
            .context("no stats")?;
        let cpu = stats
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .map(|v| v.value)
            .unwrap_or(0);
        let mem = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map(|v| v.value)
            .unwrap_or(0);
        Ok((cpu, mem))
    }

    /// PodSandboxStats.
    pub fn pod_stats(&self, pod: &Pod) -> Result<PodStats> {
        let mut client = self.runtime.clone();
        let linux = self
            .rt
            .block_on(client.pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: pod.id.clone(),
            }))?
            .into_inner()
            .stats
            .and_then(|s| s.linux)
            .context("no Linux pod stats")?;
        let cpu = |c: Option<k8s_cri::v1::CpuUsage>| {
            c.and_then(|c| c.usage_core_nano_seconds)
                .map(|v| v.value)
                .unwrap_or(0)
        };
        let mem = |m: Option<k8s_cri::v1::MemoryUsage>| {
            m.and_then(|m| m.working_set_bytes)
                .map(|v| v.value)
                .unwrap_or(0)
        };
        let containers = linux
            .containers
            .into_iter()
            .map(|c| {
                let id = c.attributes.map(|a| a.id).unwrap_or_default();
                (id, cpu(c.cpu), mem(c.memory))
            })
            .collect();
        Ok(PodStats {
            cpu: cpu(linux.cpu),
            memory: mem(linux.memory),
            containers,
        })
    }

    /// UpdateContainerResources with a new memory limit.
    pub fn update_memory(&self, id: &str, bytes: i64) -> Result<()> {
        let mut client = self.runtime.clone();
        self.rt
            .block_on(
                client.update_container_resources(UpdateContainerResourcesRequest {
                    container_id: id.into(),
                    linux: Some(LinuxContainerResources {
                        memory_limit_in_bytes: bytes,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
            .with_context(|| format!("UpdateContainerResources {id}"))?;
        Ok(())
    }

    /// StopContainer with a grace period in seconds.
    pub fn stop_container(&self, id: &str, grace: i64) -> Result<()> {
        let mut client = self.runtime.clone();
        self.rt
            .block_on(client.stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: grace,
            }))
            .with_context(|| format!("StopContainer {id}"))?;
        Ok(())
    }

    /// ExecSync (what `kubectl exec` without a stream and exec probes use): runs `cmd` in
    /// container `id` and returns (exit code, stdout, stderr).
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout: i64) -> Result<(i32, String, String)> {
        let mut client = self.runtime.clone();
        let resp = self
            .rt
            .block_on(client.exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            }))
            .with_context(|| format!("ExecSync {cmd:?} in {id}"))?
            .into_inner();
        Ok((
            resp.exit_code,
            String::from_utf8_lossy(&resp.stdout).into_owned(),
            String::from_utf8_lossy(&resp.stderr).into_owned(),
        ))
    }

    /// Exec (what `kubectl exec` streams through): the streaming server's URL for `cmd` in
    /// container `id` (see [`crate::stream`]). stdout is always requested; stderr unless `tty`.
    pub fn exec_url(&self, id: &str, cmd: &[&str], tty: bool, stdin: bool) -> Result<String> {
        let mut client = self.runtime.clone();
        let resp = self
            .rt
            .block_on(client.exec(ExecRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            }))
            .with_context(|| format!("Exec {cmd:?} in {id}"))?
            .into_inner();
        Ok(resp.url)
    }

    /// Attach (what `kubectl attach` streams through): the streaming server's URL for the
    /// running container's stdio (see [`crate::stream`]).
    pub fn attach_url(&self, id: &str, stdin: bool) -> Result<String> {
        let mut client = self.runtime.clone();
        let resp = self
            .rt
            .block_on(client.attach(AttachRequest {
                container_id: id.into(),
                stdin,
                tty: false,
                stdout: true,
                stderr: true,
            }))
            .with_context(|| format!("Attach {id}"))?
            .into_inner();
        Ok(resp.url)
    }

    /// RemoveContainer.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        self.rt
            .block_on(client.remove_container(RemoveContainerRequest {
                container_id: id.into(),
            }))
            .with_context(|| format!("RemoveContainer {id}"))?;
        Ok(())
    }

    /// The pod's IP.
    pub fn pod_ip(&self, pod: &Pod) -> Result<String> {
        let mut client = self.runtime.clone();
        let status = self
            .rt
            .block_on(client.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.id.clone(),
                verbose: false,
            }))?
            .into_inner()
            .status
            .context("no pod status")?;
        Ok(status.network.map(|n| n.ip).unwrap_or_default())
    }

    /// StopPodSandbox then RemovePodSandbox.
    pub fn remove_pod(&self, pod: &Pod) -> Result<()> {
        let mut client = self.runtime.clone();
        self.rt
            .block_on(client.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }))
            .context("StopPodSandbox")?;
        self.rt
            .block_on(client.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            }))
            .context("RemovePodSandbox")?;
        Ok(())
    }

    /// What the kubelet does after RemovePodSandbox: removes the pod-level cgroup it made
    /// (`<parent>/pod-<name>`). Only the directory itself: a container cgroup still inside
    /// makes the `rmdir` fail, so it stays visible as left behind.
    pub fn remove_pod_cgroup(&self, name: &str) {
        for c in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(
                c.path()
                    .join(&self.cgroup_parent)
                    .join(format!("pod-{name}")),
            );
        }
    }

    /// The container's CRI log file, as the kubelet writes it.
    pub fn log(&self, pod: &Pod, name: &str) -> String {
        std::fs::read_to_string(pod.log_dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Imports a test image into the CRI namespace.
    pub fn import(&self, image: &Image) -> Result<()> {
        let archive = self.ctrd.dir().join("import.tar");
        image.write_archive(&archive)?;
        self.ctrd.import(&archive)
    }
}

/// A gRPC channel to containerd's CRI over its unix socket.
fn connect(rt: &tokio::runtime::Runtime, socket: &Path) -> Result<Channel> {
    let socket = socket.to_path_buf();
    rt.block_on(async move {
        Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .context("connecting to CRI")
    })
}

/// The shim config every test node starts with: its own cache and its containerd's content store.
fn base_shim_config(root: &Path) -> String {
    format!(
        "cache_dir = \"{}\"\ncontent_stores = [\"{}\"]\n",
        root.join("cache").display(),
        root.join("root/io.containerd.content.v1.content").display()
    )
}

/// The stream and text of each line of a CRI log (`<time> <stream> <F|P> <text>`).
pub fn parse_log(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _time = parts.next()?;
            let stream = parts.next()?;
            let _tag = parts.next()?;
            Some((stream.to_string(), parts.next().unwrap_or("").to_string()))
        })
        .collect()
}
