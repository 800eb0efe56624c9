//! A real OCI registry for tests: Distribution (`docker-registry` from apt) on 127.0.0.1, with
//! or without basic auth, filled with `skopeo copy` from the harness's OCI archives. Stopped by
//! its PID when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{which, Result};

/// A running registry.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Basic-auth credentials, when the registry requires them.
    pub credentials: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry; with `credentials`, every request needs basic auth.
    pub fn start(credentials: Option<(&str, &str)>) -> Result<Registry> {
        for tool in ["docker-registry", "skopeo"] {
            if which(tool).is_none() {
                bail!("`{tool}` is missing (apt-get install docker-registry skopeo apache2-utils)");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("wasmkube-registry-")
            .tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = credentials {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .context("running htpasswd (apt-get install apache2-utils)")?;
            std::fs::write(dir.path().join("htpasswd"), &out.stdout)?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wasmkube-e2e\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let registry = Registry {
            child,
            dir,
            host,
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&registry.host).is_err() {
            if Instant::now() > deadline {
                bail!("registry did not come up: {}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes an OCI archive as `<host>/<repo>:<tag>`; returns the full reference.
    pub fn push(&self, archive: &Path, repo_tag: &str) -> Result<String> {
        let reference = format!("{}/{repo_tag}", self.host);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((user, password)) = &self.credentials {
            cmd.arg("--dest-creds").arg(format!("{user}:{password}"));
        }
        let out = cmd
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .context("running skopeo")?;
        if !out.status.success() {
            bail!(
                "skopeo copy to {reference} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(reference)
    }
}

impl Registry {
    /// Replaces the stored bytes of blob `digest` with different bytes of the same length, so the
    /// registry serves content that does not match its digest.
    pub fn corrupt_blob(&self, digest: &str) -> Result<()> {
        let hex = digest.trim_start_matches("sha256:");
        let path = self
            .dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let mut data =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        for b in data.iter_mut().skip(8) {
            *b ^= 0xff;
        }
        std::fs::write(&path, data)?;
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
