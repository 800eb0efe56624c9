//! Registry settings for one command: credentials from the Docker config file
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), overridden by
//! `--username` with `--password-stdin`, and `--insecure` for a plain-HTTP registry.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use wasmkube_oci::{Reference, RegistryConfig};

use crate::output::Failure;

/// Flags every registry command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Speak plain HTTP to the registry (local registries such as localhost:5000).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// User name for the registry (with --password-stdin).
    #[arg(long, global = true, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password (or token) from stdin.
    #[arg(long, global = true, requires = "username")]
    pub password_stdin: bool,
    /// Docker config file with credentials [default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json].
    #[arg(long, global = true, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
}

impl RegistryArgs {
    /// The per-registry settings for a command on `reference`.
    pub fn registries(&self, reference: &str) -> Result<HashMap<String, RegistryConfig>, Failure> {
        let mut registries = self.docker_config()?;
        let host = match reference.parse::<Reference>() {
            Ok(parsed) => parsed.registry().to_string(),
            // The command reports the bad reference itself.
            Err(_) => return Ok(registries),
        };
        let entry = registries.entry(host).or_default();
        entry.insecure |= self.insecure;
        if let Some(user) = &self.username {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| Failure::input(format!("cannot read the password from stdin: {e}")))?;
            entry.username = Some(user.clone());
            entry.password = Some(password.trim_end_matches(['\r', '\n']).to_string());
            entry.token = None;
        }
        Ok(registries)
    }

    fn docker_config(&self) -> Result<HashMap<String, RegistryConfig>, Failure> {
        let (path, explicit) = match &self.docker_config {
            Some(p) => (p.clone(), true),
            None => match std::env::var_os("DOCKER_CONFIG") {
                Some(dir) => (PathBuf::from(dir).join("config.json"), false),
                None => match std::env::var_os("HOME") {
                    Some(home) => (PathBuf::from(home).join(".docker/config.json"), false),
                    None => return Ok(HashMap::new()),
                },
            },
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(HashMap::new())
            }
            Err(e) => {
                return Err(Failure::input(format!(
                    "cannot read the Docker config {}: {e}",
                    path.display()
                )))
            }
        };
        wasmkube_oci::auth::from_docker_config(&bytes).map_err(|e| {
            Failure::input(format!(
                "{}: {e}; fix the file or point --docker-config elsewhere",
                path.display()
            ))
        })
    }
}
