//! `wasmkube-node-installer install|uninstall`: run by the chart's DaemonSet on every node (or
//! by hand on a host). Logs each step; exits non-zero naming the step and file that failed.
//! `install` also imports the module stub image with the host's `ctr`; `uninstall` removes it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing::{error, info};
use wasmkube_installer::install::{self, Options};
use wasmkube_installer::node::{self, Host, Restart};

/// Installs the wasmkube shim on this node and registers it with containerd.
#[derive(Debug, Parser)]
#[command(name = "wasmkube-node-installer", version)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    action: Action,
    /// Where the host's root filesystem is mounted (`/` when run on the host).
    #[arg(long, env = "HOST_ROOT", default_value = "/", global = true)]
    host_root: PathBuf,
    /// The shim binary to install (the image carries one per architecture).
    #[arg(
        long,
        env = "SHIM_SOURCE",
        default_value = "/opt/wasmkube/containerd-shim-wasmkube-v1",
        global = true
    )]
    shim_source: PathBuf,
    /// Host directory on containerd's PATH for the shim.
    #[arg(long, env = "BIN_DIR", default_value = "/usr/local/bin", global = true)]
    bin_dir: PathBuf,
    /// containerd's config file on the host.
    #[arg(
        long,
        env = "CONTAINERD_CONFIG",
        default_value = "/etc/containerd/config.toml",
        global = true
    )]
    containerd_config: PathBuf,
    /// containerd's socket on the host (waited on after a restart).
    #[arg(
        long,
        env = "CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock",
        global = true
    )]
    containerd_socket: PathBuf,
    /// The host's `ctr` (containerd's CLI) that imports the module stub image: a name looked up
    /// on the host's PATH, or a host path.
    #[arg(long, env = "CTR", default_value = "ctr", global = true)]
    ctr: PathBuf,
    /// Host path where the module stub archive is written for `ctr images import` (deleted
    /// after the import).
    #[arg(
        long,
        env = "STUB_ARCHIVE",
        default_value = "/var/lib/wasmkube/module-stub.tar",
        global = true
    )]
    stub_archive: PathBuf,
    /// The shim's config file on the host.
    #[arg(
        long,
        env = "SHIM_CONFIG",
        default_value = "/etc/wasmkube/shim.toml",
        global = true
    )]
    shim_config: PathBuf,
    /// How to restart containerd after changing its config.
    #[arg(long, env = "RESTART", value_enum, default_value_t = Restart::Systemd, global = true)]
    restart: Restart,
    /// containerd's major version, when `containerd --version` cannot be run.
    #[arg(long, env = "CONTAINERD_MAJOR", global = true)]
    containerd_major: Option<u32>,
    /// This node's name, to label it (`spec.nodeName` in the DaemonSet); unset: no labels.
    #[arg(long, env = "NODE_NAME", global = true)]
    node_name: Option<String>,
    /// Keep running after success (a DaemonSet pod must not exit).
    #[arg(long, env = "SLEEP_AFTER", global = true)]
    sleep_after: bool,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Install or update the shim and its containerd registration.
    Install,
    /// Remove what install added and restore containerd's config.
    Uninstall,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(&cli).await {
        error!(error = format!("{e:#}"), "installer failed");
        eprintln!("wasmkube-node-installer: {e:#}");
        std::process::exit(1);
    }
    if cli.sleep_after {
        info!("done; sleeping");
        std::future::pending::<()>().await;
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut host = Host {
        root: cli.host_root.clone(),
        socket: cli.containerd_socket.clone(),
        ctr: cli.ctr.clone(),
        node: String::new(),
    };
    host.node = match &cli.node_name {
        Some(name) => name.clone(),
        None => ["/etc/hostname", "/proc/sys/kernel/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(host.path(p.as_ref())).ok())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "(unnamed)".to_string()),
    };
    let major = match cli.containerd_major {
        Some(m) => m,
        None => host.containerd_major().map_err(anyhow::Error::msg)?,
    };
    let opts = Options {
        shim_source: cli.shim_source.clone(),
        bin_dir: host.path(&cli.bin_dir),
        config: host.path(&cli.containerd_config),
        shim_config: host.path(&cli.shim_config),
        shim_config_on_host: cli.shim_config.clone(),
        containerd_major: major,
        stub_archive: host.path(&cli.stub_archive),
        stub_archive_on_host: cli.stub_archive.clone(),
    };
    let how = cli.restart;
    let mut restart = || host.restart(how);
    let version = env!("CARGO_PKG_VERSION").to_string();
    let labels: BTreeMap<String, Option<String>> = match cli.action {
        Action::Install => {
            let report = install::install(&opts, &mut restart, &host)?;
            info!(?report, "installed");
            BTreeMap::from([
                (node::READY_LABEL.to_string(), Some("ready".to_string())),
                (node::VERSION_LABEL.to_string(), Some(version)),
            ])
        }
        Action::Uninstall => {
            let report = install::uninstall(&opts, &mut restart, &host)?;
            info!(?report, "uninstalled");
            BTreeMap::from([
                (node::READY_LABEL.to_string(), None),
                (node::VERSION_LABEL.to_string(), None),
            ])
        }
    };
    match &cli.node_name {
        Some(name) => {
            let client = kube::Client::try_default().await?;
            node::label(client, name, labels).await?;
            info!(node = %name, "labels updated");
        }
        None => info!("no NODE_NAME: node labels left alone"),
    }
    Ok(())
}
