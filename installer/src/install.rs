//! The installer's effects on a node: put the shim binary in place atomically, write the shim's
//! config, register the runtime with containerd (keeping a backup), restart containerd and roll
//! everything back if it does not come up healthy, then import the module stub image.
//! `uninstall` reverses each step.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::info;

use crate::containerd::{self, Plan};
use crate::error::Failure;
use crate::node::Host;
use crate::stub;

/// The shim's binary name (containerd derives it from the runtime type).
pub const SHIM_BINARY: &str = "containerd-shim-wasmkube-v1";
/// Suffix of the backup of a config file we changed.
pub const BACKUP_SUFFIX: &str = ".wasmkube-backup";

/// Where things are on this node. Paths are as the installer sees them (under the host root
/// mount); `shim_config_on_host` is the path containerd reads.
#[derive(Debug, Clone)]
pub struct Options {
    /// The shim binary to install (built for this node's architecture).
    pub shim_source: PathBuf,
    /// Directory on containerd's PATH that receives the shim.
    pub bin_dir: PathBuf,
    /// containerd's config file.
    pub config: PathBuf,
    /// Where the shim config is written.
    pub shim_config: PathBuf,
    /// The same file as containerd (on the host) sees it, for `ConfigPath`.
    pub shim_config_on_host: PathBuf,
    /// containerd's major version (decides the layout of a missing config).
    pub containerd_major: u32,
    /// Where the module stub archive is written for `ctr images import` (deleted after).
    pub stub_archive: PathBuf,
    /// The same file as the host's `ctr` sees it.
    pub stub_archive_on_host: PathBuf,
}

/// What an install or uninstall changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The shim binary was written or removed.
    pub binary_changed: bool,
    /// containerd's configuration was written (and containerd restarted).
    pub config_changed: bool,
    /// The file that holds (or held) the registration.
    pub config_file: PathBuf,
    /// The module stub image was imported into (or removed from) containerd's `k8s.io`
    /// namespace.
    pub stub_changed: bool,
}

/// Installs; `restart` restarts containerd and returns once it is healthy; `host` runs the
/// host's `ctr` that imports the module stub image (after the restart).
pub fn install(
    opts: &Options,
    restart: &mut dyn FnMut() -> Result<(), String>,
    host: &Host,
) -> Result<Report, Failure> {
    let (binary_changed, config_changed, config_file) = register(opts, restart)?;
    let stub_changed = stub::import(
        &opts.shim_source,
        &opts.stub_archive,
        &opts.stub_archive_on_host,
        host,
    )?;
    Ok(Report {
        binary_changed,
        config_changed,
        config_file,
        stub_changed,
    })
}

/// The shim binary, its config and containerd's registration: (binary changed, config
/// changed, config file).
fn register(
    opts: &Options,
    restart: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(bool, bool, PathBuf), Failure> {
    let binary_changed = copy_shim(&opts.shim_source, &opts.bin_dir)?;
    if !opts.shim_config.exists() {
        write_atomic(
            &opts.shim_config,
            "# wasmkube shim configuration; see the README (Shim configuration).\ncache_dir = \"/var/lib/wasmkube/cache\"\n",
            "write shim config",
        )?;
    }
    let text = read_optional(&opts.config, "read containerd config")?;
    let seen = containerd::inspect(
        text.as_deref().unwrap_or(""),
        &opts.config,
        opts.containerd_major,
    )?;
    let drop_in_now = match &seen.drop_in_dir {
        Some(dir) => read_optional(&dir.join(containerd::DROP_IN), "read drop-in")?,
        None => None,
    };
    let plan = containerd::plan_install(
        &opts.config,
        text.as_deref().unwrap_or(""),
        drop_in_now.as_deref(),
        opts.containerd_major,
        &opts.shim_config_on_host,
    )?;
    if !plan.changed {
        info!(file = %plan.file.display(), "containerd already configured");
        return Ok((binary_changed, false, plan.file));
    }
    let previous = read_optional(&plan.file, "read containerd config")?;
    let backup = backup_path(&plan.file);
    if let Some(old) = &previous {
        if !backup.exists() {
            write_atomic(&backup, old, "back up containerd config")?;
        }
    }
    apply(&plan, &previous, restart)?;
    info!(file = %plan.file.display(), "containerd configured and restarted");
    Ok((binary_changed, true, plan.file))
}

/// Writes the plan and restarts containerd; on failure puts the old file back and restarts
/// again, so the node is left as it was.
fn apply(
    plan: &Plan,
    previous: &Option<String>,
    restart: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(), Failure> {
    write_atomic(&plan.file, &plan.contents, "write containerd config")?;
    if let Err(why) = restart() {
        let restored = match previous {
            Some(old) => write_atomic(&plan.file, old, "roll back containerd config"),
            None => std::fs::remove_file(&plan.file).map_err(|e| {
                Failure::new("roll back containerd config", &plan.file, e.to_string())
            }),
        };
        let again = restart();
        return Err(Failure::new(
            "restart containerd",
            &plan.file,
            format!(
                "{why}; the change was rolled back{}{}",
                restored
                    .err()
                    .map(|e| format!(" (but: {e})"))
                    .unwrap_or_default(),
                again
                    .err()
                    .map(|e| format!(" (restart after roll-back failed too: {e})"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Removes the module stub image (first, while containerd runs as it was), the registration,
/// the backup and the shim binary; restarts containerd if the configuration changed.
pub fn uninstall(
    opts: &Options,
    restart: &mut dyn FnMut() -> Result<(), String>,
    host: &Host,
) -> Result<Report, Failure> {
    let stub_changed = stub::remove(host)?;
    let text = read_optional(&opts.config, "read containerd config")?.unwrap_or_default();
    let seen = containerd::inspect(&text, &opts.config, opts.containerd_major)?;
    let (file, contents) = match &seen.drop_in_dir {
        Some(dir) => (dir.join(containerd::DROP_IN), None),
        None if seen.has_block => {
            let without = containerd::without_block(&text);
            let backup = read_optional(&backup_path(&opts.config), "read backup")?;
            // The backup is the file as it was; prefer it when the rest did not change since.
            let restored = match backup {
                Some(b) if containerd::without_block(&b) == without => b,
                _ => without,
            };
            (opts.config.clone(), Some(restored))
        }
        None => (opts.config.clone(), Some(text.clone())),
    };
    let config_changed = match &contents {
        None => file.exists(),
        Some(c) => *c != text,
    };
    if config_changed {
        let previous = read_optional(&file, "read containerd config")?;
        match &contents {
            None => std::fs::remove_file(&file)
                .map_err(|e| Failure::new("remove drop-in", &file, e.to_string()))?,
            Some(c) => write_atomic(&file, c, "restore containerd config")?,
        }
        if let Err(why) = restart() {
            if let Some(old) = previous {
                let _ = write_atomic(&file, &old, "roll back containerd config");
            }
            let _ = restart();
            return Err(Failure::new(
                "restart containerd",
                &file,
                format!("{why}; the uninstall was rolled back"),
            ));
        }
    }
    let backup = backup_path(&opts.config);
    if backup.exists() {
        std::fs::remove_file(&backup)
            .map_err(|e| Failure::new("remove backup", &backup, e.to_string()))?;
    }
    let binary = opts.bin_dir.join(SHIM_BINARY);
    let binary_changed = binary.symlink_metadata().is_ok();
    if binary_changed {
        std::fs::remove_file(&binary)
            .map_err(|e| Failure::new("remove shim", &binary, e.to_string()))?;
    }
    Ok(Report {
        binary_changed,
        config_changed,
        config_file: file,
        stub_changed,
    })
}

fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

fn read_optional(path: &Path, step: &'static str) -> Result<Option<String>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::new(step, path, e.to_string())),
    }
}

/// Writes through a temporary file in the same directory and renames it into place, keeping
/// the old file's mode.
fn write_atomic(path: &Path, contents: &str, step: &'static str) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(step, path, e.to_string());
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o644);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(contents.as_bytes()).map_err(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Copies the shim into `bin_dir` atomically (the old binary stays until the rename); returns
/// false when the same binary is already there.
fn copy_shim(source: &Path, bin_dir: &Path) -> Result<bool, Failure> {
    let target = bin_dir.join(SHIM_BINARY);
    let fail = |e: std::io::Error| Failure::new("copy shim", &target, e.to_string());
    let new = std::fs::read(source)
        .map_err(|e| Failure::new("copy shim", source, format!("cannot read the shim: {e}")))?;
    let same = std::fs::read(&target)
        .map(|old| Sha256::digest(&old) == Sha256::digest(&new))
        .unwrap_or(false);
    if same
        && !target
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
    {
        return Ok(false);
    }
    std::fs::create_dir_all(bin_dir).map_err(fail)?;
    let mut tmp = tempfile::NamedTempFile::new_in(bin_dir).map_err(fail)?;
    tmp.write_all(&new).map_err(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o755))
        .map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(&target).map_err(|e| fail(e.error))?;
    Ok(true)
}
