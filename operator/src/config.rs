//! Start-up configuration from flags and environment, validated before anything listens.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// `wasmkube-operator`: reconciles WasmApp resources into Deployments and Services whose pods
/// run on nodes with the wasmkube shim.
#[derive(Debug, Clone, Parser)]
#[command(name = "wasmkube-operator", version)]
pub struct Config {
    /// Watch WasmApps in this namespace only (default: all namespaces).
    #[arg(long, env = "WASMKUBE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "WASMKUBE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Seconds between periodic re-reconciles of a healthy app (tags are re-resolved then).
    #[arg(long, env = "WASMKUBE_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Seconds before retrying an app whose module did not resolve or whose reconcile failed.
    #[arg(long, env = "WASMKUBE_RETRY_SECONDS", default_value_t = 30)]
    pub retry_seconds: u64,
    /// Registry (host[:port]) to reach over plain HTTP; repeat or comma-separate.
    #[arg(
        long = "insecure-registry",
        env = "WASMKUBE_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Elect a leader through a Lease so only one replica writes.
    #[arg(long, env = "WASMKUBE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the Lease used for leader election.
    #[arg(long, env = "WASMKUBE_LEASE_NAME", default_value = "wasmkube-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "wasmkube-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "wasmkube-operator-local")]
    pub identity: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "WASMKUBE_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    /// Log format.
    #[arg(long, env = "WASMKUBE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl Config {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.resync_seconds == 0 || self.retry_seconds == 0 {
            return Err("--resync-seconds and --retry-seconds must be positive".into());
        }
        if self.lease_seconds < 3 {
            return Err("--lease-seconds must be at least 3".into());
        }
        if let Some(bad) = self
            .insecure_registries
            .iter()
            .find(|r| r.is_empty() || r.contains('/'))
        {
            return Err(format!(
                "--insecure-registry {bad:?} must be host or host:port, without a scheme or path"
            ));
        }
        Ok(())
    }

    /// Requeue interval after success.
    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds)
    }

    /// Requeue interval after failure.
    pub fn retry(&self) -> Duration {
        Duration::from_secs(self.retry_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let c = Config::parse_from(["wasmkube-operator"]);
        assert!(c.validate().is_ok());
        assert!(c.leader_elect);
        let c = Config::parse_from([
            "wasmkube-operator",
            "--insecure-registry",
            "a:5000,http://b",
        ]);
        assert_eq!(c.insecure_registries, ["a:5000", "http://b"]);
        assert!(c.validate().unwrap_err().contains("\"http://b\""));
        let c = Config::parse_from(["wasmkube-operator", "--leader-elect", "false"]);
        assert!(!c.leader_elect);
    }
}
