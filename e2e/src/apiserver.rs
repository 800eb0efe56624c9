//! A current CRD API server for tests: etcd 3.5 and k8s.io/apiextensions-apiserver 0.36 (built
//! by `scripts/cluster/build-crd-apiserver.sh`), run inside a network namespace of their own
//! with only loopback up and no route, serving TLS from a test CA to a `system:masters` client
//! certificate. Dropping it stops both processes by PID, deletes the namespace and the
//! temporary directory (etcd's data included).
//!
//! The pieces a Kubernetes cluster harness also needs are public: [`NetNs`], [`Pki`],
//! [`write_kubeconfig`], [`Daemon`] and [`kubectl_binary`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::Result;

/// Where `scripts/cluster/build-crd-apiserver.sh` caches its binaries (override:
/// `WASMKUBE_CRD_APISERVER_BIN`).
pub fn crd_apiserver_bin_dir() -> PathBuf {
    std::env::var_os("WASMKUBE_CRD_APISERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("crd-apiserver-0.36/bin"))
}

/// The machine's tool cache (`WASMKUBE_TOOLS`, default `/opt/wasmkube-tools`).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WASMKUBE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/wasmkube-tools"))
}

/// kubectl (`KUBECTL`, else `$WASMKUBE_TOOLS/bin/kubectl` from `scripts/tools.sh`); fails with
/// the command that installs it.
pub fn kubectl_binary() -> Result<PathBuf> {
    let path = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("bin/kubectl"));
    if !path.is_file() {
        bail!(
            "kubectl not found at {}: install it with `bash scripts/tools.sh` (or set KUBECTL)",
            path.display()
        );
    }
    Ok(path)
}

/// Fails unless root: network namespaces need it.
fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (network namespaces): run the tests as root");
    }
    Ok(())
}

/// Runs a command to completion; fails with its stderr when it exits non-zero.
fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A network namespace the harness created (`ip netns add`): loopback up, no other link, no
/// route. Deleted when dropped.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `<prefix>-<pid>-<n>` with only `lo` up.
    pub fn create(prefix: &str) -> Result<NetNs> {
        require_root("a network namespace")?;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = NetNs { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind mount, `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// A command that runs `program` inside the namespace (`nsenter --net=...`; nsenter execs
    /// the program, so the child's PID is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// `ip route show` of a table in the namespace (`main`, `default`...), as text.
    pub fn routes(&self, table: &str) -> Result<String> {
        let out =
            run(Command::new("ip").args(["-n", &self.name, "route", "show", "table", table]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The default routes of every table (IPv4 and IPv6): empty when nothing can leave.
    pub fn default_routes(&self) -> Result<String> {
        let mut found = String::new();
        for family in ["-4", "-6"] {
            let out = run(Command::new("ip").args([
                family, "-n", &self.name, "route", "show", "table", "all", "default",
            ]))?;
            found.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        Ok(found)
    }

    /// The links in the namespace (`ip -o link`), one per line.
    pub fn links(&self) -> Result<Vec<String>> {
        let out = run(Command::new("ip").args(["-n", &self.name, "-o", "link", "show"]))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// A TCP port nothing listens on in the namespace (a fresh namespace has every port free;
    /// this asks the kernel, from a thread that joined the namespace).
    pub fn free_port(&self) -> Result<u16> {
        let path = self.path();
        std::thread::spawn(move || -> Result<u16> {
            let ns = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {}", path.display()))?;
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the port probe thread panicked"))?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A long-running process with its output in a log file; stopped by PID (SIGTERM, then SIGKILL
/// after 10 s) when dropped.
pub struct Daemon {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr into `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Daemon> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Daemon {
            child,
            name: name.to_string(),
            log,
        })
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Fails, with the log's tail, if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ({}) ends:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Stops it: SIGTERM, up to 10 s, then SIGKILL; reaps it.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A certificate and its private key (PEM files).
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The certificate.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// A test certificate authority made with `openssl` (ECDSA P-256, valid two days), and the
/// server and client certificates it signs.
pub struct Pki {
    dir: PathBuf,
    /// The CA's certificate and key.
    pub ca: KeyPair,
}

impl Pki {
    /// Creates the CA in `dir` (which must exist).
    pub fn create(dir: &Path, common_name: &str) -> Result<Pki> {
        if crate::which("openssl").is_none() {
            bail!("`openssl` is missing (apt-get install openssl)");
        }
        let ca = KeyPair {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
        };
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .arg("-keyout")
            .arg(&ca.key)
            .arg("-out")
            .arg(&ca.cert)
            .arg("-subj")
            .arg(format!("/CN={common_name}"))
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// A serving certificate for `ips` and `dns_names`.
    pub fn server(&self, name: &str, ips: &[&str], dns_names: &[&str]) -> Result<KeyPair> {
        let alt: Vec<String> = ips
            .iter()
            .map(|ip| format!("IP:{ip}"))
            .chain(dns_names.iter().map(|d| format!("DNS:{d}")))
            .collect();
        self.issue(
            name,
            &format!("/CN={name}"),
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
                alt.join(",")
            ),
        )
    }

    /// A client certificate: user `user` in `groups` (the organisations; `system:masters` is
    /// allowed everything by Kubernetes API servers).
    pub fn client(&self, name: &str, user: &str, groups: &[&str]) -> Result<KeyPair> {
        let orgs: String = groups.iter().map(|g| format!("/O={g}")).collect();
        self.issue(
            name,
            &format!("{orgs}/CN={user}"),
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        )
    }

    fn issue(&self, name: &str, subject: &str, extensions: &str) -> Result<KeyPair> {
        let pair = KeyPair {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        let csr = self.dir.join(format!("{name}.csr"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, extensions)?;
        run(Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes"])
            .arg("-keyout")
            .arg(&pair.key)
            .arg("-out")
            .arg(&csr)
            .arg("-subj")
            .arg(subject))?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&self.ca.cert)
            .arg("-CAkey")
            .arg(&self.ca.key)
            .arg("-CAcreateserial")
            .arg("-out")
            .arg(&pair.cert)
            .arg("-extfile")
            .arg(&ext))?;
        Ok(pair)
    }
}

/// Writes a kubeconfig for `server` (an https URL): trusting `ca` when given (else skipping
/// verification, for addresses that are never reached), authenticating with `client` when given;
/// `namespace` is the context's default namespace.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: Option<&Path>,
    client: Option<&KeyPair>,
    namespace: &str,
) -> Result<()> {
    let trust = match ca {
        Some(ca) => format!("certificate-authority: {}", ca.display()),
        None => "insecure-skip-tls-verify: true".to_string(),
    };
    let user = match client {
        Some(pair) => format!(
            "\n    client-certificate: {}\n    client-key: {}",
            pair.cert.display(),
            pair.key.display()
        ),
        None => " {}".to_string(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    {trust}\n\
         users:\n- name: test\n  user:{user}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\n\
         current-context: test\n"
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The binaries the CRD API server needs: (`etcd`, `crd-apiserver`); fails naming the script
/// that builds them when either is missing.
pub fn crd_apiserver_binaries() -> Result<(PathBuf, PathBuf)> {
    let dir = crd_apiserver_bin_dir();
    let etcd = dir.join("etcd");
    let server = dir.join("crd-apiserver");
    let missing: Vec<String> = [&etcd, &server]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the CRD API server is not built ({} missing): run `bash scripts/cluster/build-crd-apiserver.sh` \
             once (about 10 minutes; cached in {})",
            missing.join(", "),
            dir.display()
        );
    }
    Ok((etcd, server))
}

/// Admission plugins that need core informers (a kube-apiserver this server has not): the
/// server runs with them off.
const ADMISSION_OFF: &str =
    "NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,\
ValidatingAdmissionPolicy,MutatingAdmissionPolicy";

/// The delegated authentication, authorization and core API kubeconfigs point here: a loopback
/// address inside the namespace where nothing listens, so lookups fail fast and locally.
const NOWHERE: &str = "https://127.0.0.9:9";

/// A running CRD API server with its etcd, in its own network namespace.
pub struct CrdApiServer {
    server: Daemon,
    etcd: Daemon,
    netns: NetNs,
    kubectl: PathBuf,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>` (inside the namespace).
    pub url: String,
    /// A kubeconfig for the `system:masters` client certificate, default namespace `default`.
    pub kubeconfig: PathBuf,
}

impl CrdApiServer {
    /// Starts etcd and the server and waits (up to 60 s) until the server is ready.
    pub fn start() -> Result<CrdApiServer> {
        let (etcd_bin, server_bin) = crd_apiserver_binaries()?;
        let kubectl = kubectl_binary()?;
        require_root("the CRD API server")?;
        for tool in ["ip", "nsenter"] {
            if crate::which(tool).is_none() {
                bail!("`{tool}` is missing (apt-get install iproute2 util-linux)");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("wasmkube-crd-apiserver-")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let netns = NetNs::create("wasmkube-crd")?;
        let pki = Pki::create(&root, "wasmkube-test-ca")?;
        let serving = pki.server("crd-apiserver", &["127.0.0.1"], &["localhost"])?;
        let admin = pki.client("admin", "wasmkube-admin", &["system:masters"])?;
        let nowhere = root.join("nowhere.kubeconfig");
        write_kubeconfig(&nowhere, NOWHERE, None, None, "default")?;

        let client_port = netns.free_port()?;
        let peer_port = loop {
            let p = netns.free_port()?;
            if p != client_port {
                break p;
            }
        };
        let etcd_client = format!("http://127.0.0.1:{client_port}");
        let etcd_peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = netns.command(&etcd_bin);
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", root.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_client}"))
            .arg(format!("--advertise-client-urls={etcd_client}"))
            .arg(format!("--listen-peer-urls={etcd_peer}"))
            .arg(format!("--initial-advertise-peer-urls={etcd_peer}"))
            .arg(format!("--initial-cluster=test={etcd_peer}"))
            .arg("--log-level=warn");
        let etcd = Daemon::spawn("etcd", cmd, root.join("etcd.log"))?;

        let port = loop {
            let p = netns.free_port()?;
            if p != client_port && p != peer_port {
                break p;
            }
        };
        let url = format!("https://127.0.0.1:{port}");
        let mut cmd = netns.command(&server_bin);
        cmd.arg(format!("--etcd-servers={etcd_client}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--tls-cert-file={}", serving.cert.display()))
            .arg(format!("--tls-private-key-file={}", serving.key.display()))
            .arg(format!("--client-ca-file={}", pki.ca.cert.display()))
            .arg(format!("--authentication-kubeconfig={}", nowhere.display()))
            .arg("--authentication-skip-lookup")
            .arg(format!("--authorization-kubeconfig={}", nowhere.display()))
            .arg(format!("--kubeconfig={}", nowhere.display()))
            .arg(format!("--disable-admission-plugins={ADMISSION_OFF}"));
        let server = Daemon::spawn("crd-apiserver", cmd, root.join("crd-apiserver.log"))?;

        let kubeconfig = root.join("admin.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &url,
            Some(&pki.ca.cert),
            Some(&admin),
            "default",
        )?;
        let mut api = CrdApiServer {
            server,
            etcd,
            netns,
            kubectl,
            dir,
            url,
            kubeconfig,
        };
        api.wait_ready(Duration::from_secs(60))?;
        Ok(api)
    }

    /// Waits until `/readyz` answers ok (the `informer-sync` check excluded: the core informers
    /// point nowhere by design).
    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.etcd.check_running()?;
            self.server.check_running()?;
            let out = self.kubectl(["get", "--raw", "/readyz?exclude=informer-sync"])?;
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the CRD API server was not ready within {timeout:?}: {}\nits log ends:\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.server.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The network namespace it runs in.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// The PIDs of etcd and the server.
    pub fn pids(&self) -> (u32, u32) {
        (self.etcd.pid(), self.server.pid())
    }

    /// The temporary directory (certificates, logs, etcd data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log, last `lines` lines.
    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }

    /// A kubectl command for this server, run inside its namespace.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = self.netns.command(&self.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// Runs kubectl with `args` to completion (no stdin); the output whatever the exit status.
    pub fn kubectl<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running kubectl")
    }

    /// Runs kubectl with `args` and `input` on its stdin (for `-f -`); the output whatever the
    /// exit status.
    pub fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::io::Write;
        let mut child = self
            .kubectl_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(input.as_bytes())?;
        child.wait_with_output().context("waiting for kubectl")
    }

    /// Runs kubectl and fails with its stderr unless it succeeds; its stdout.
    pub fn kubectl_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = self.kubectl(args.clone())?;
        if !out.status.success() {
            let shown: Vec<String> = args
                .into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect();
            bail!(
                "kubectl {} failed: {}",
                shown.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for CrdApiServer {
    fn drop(&mut self) {
        // The server first (it writes to etcd), then etcd; the namespace and the directory go
        // when the fields drop.
        self.server.stop();
        self.etcd.stop();
    }
}
