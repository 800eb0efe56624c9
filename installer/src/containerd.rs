//! containerd's config file: which layout it uses (config version 2 for containerd 1.6/1.7,
//! version 3 for 2.x), whether it imports a drop-in directory, how its default runc runtime
//! sets `SystemdCgroup`, and the edit that registers the `wasmkube` runtime. The edit is one
//! marked block appended to the file (or a drop-in file of its own), so every other byte stays
//! as it was and uninstall removes exactly what install added. Pure; table-tested.

use std::path::{Path, PathBuf};

use crate::error::Failure;

/// First line of the block we add.
pub const BEGIN: &str = "# >>> wasmkube: added by wasmkube-node-installer; `wasmkube-node-installer uninstall` removes it";
/// Last line of the block we add.
pub const END: &str = "# <<< wasmkube";
/// The CRI runtime handler (RuntimeClass `wasm` points at it).
pub const HANDLER: &str = "wasmkube";
/// The shim's runtime type.
pub const RUNTIME_TYPE: &str = "io.containerd.wasmkube.v1";
/// Name of our drop-in file in an imported directory.
pub const DROP_IN: &str = "99-wasmkube.toml";

/// The config layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `version = 2` (containerd 1.6, 1.7): CRI plugin `io.containerd.grpc.v1.cri`.
    V2,
    /// `version = 3` (containerd 2.x): CRI runtime plugin `io.containerd.cri.v1.runtime`.
    V3,
}

impl Layout {
    /// The CRI plugin that holds runtimes.
    pub fn plugin(self) -> &'static str {
        match self {
            Layout::V2 => "io.containerd.grpc.v1.cri",
            Layout::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    /// The config `version` value.
    pub fn version(self) -> i64 {
        match self {
            Layout::V2 => 2,
            Layout::V3 => 3,
        }
    }
}

/// What the installer learned from a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The layout.
    pub layout: Layout,
    /// `SystemdCgroup` of the default runtime (runc) — ours gets the same.
    pub systemd_cgroup: bool,
    /// The drop-in directory the file imports (`imports = ["/etc/containerd/conf.d/*.toml"]`).
    pub drop_in_dir: Option<PathBuf>,
    /// Whether our block is already in the file.
    pub has_block: bool,
}

/// Reads a config file's text. `containerd_major` (from `containerd --version`) decides the
/// layout of an empty file.
pub fn inspect(text: &str, file: &Path, containerd_major: u32) -> Result<Inspection, Failure> {
    let fail = |why: String| Failure::new("inspect containerd config", file, why);
    let table: toml::Table =
        toml::from_str(text).map_err(|e| fail(format!("not valid TOML: {e}")))?;
    let layout =
        match table.get("version").and_then(|v| v.as_integer()) {
            Some(2) => Layout::V2,
            Some(3) => Layout::V3,
            Some(other) => {
                return Err(fail(format!(
                    "config version {other} is not supported (2 or 3)"
                )))
            }
            None if table.is_empty() && containerd_major >= 2 => Layout::V3,
            None if table.is_empty() => Layout::V2,
            None => return Err(fail(
                "has no `version` key, i.e. the version 1 layout of containerd ≤ 1.4; migrate it \
                 (`containerd config migrate` on 1.7+, or set version = 2 and rename the plugin \
                 tables) and run the installer again"
                    .into(),
            )),
        };
    let disabled: Vec<&str> = table
        .get("disabled_plugins")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if let Some(cri) = disabled
        .iter()
        .find(|p| **p == "cri" || **p == layout.plugin() || **p == "io.containerd.grpc.v1.cri")
    {
        return Err(fail(format!(
            "disables the CRI plugin ({cri} in disabled_plugins), so Kubernetes cannot use any \
             runtime of this containerd; remove it from disabled_plugins"
        )));
    }
    let containerd = table
        .get("plugins")
        .and_then(|p| p.get(layout.plugin()))
        .and_then(|c| c.get("containerd"));
    let default = containerd
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(|v| v.as_str())
        .unwrap_or("runc");
    let runtimes = containerd.and_then(|c| c.get("runtimes"));
    let systemd_cgroup = runtimes
        .and_then(|r| r.get(default))
        .and_then(|r| r.get("options"))
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let has_block = text.contains(BEGIN);
    if !has_block && runtimes.and_then(|r| r.get(HANDLER)).is_some() {
        return Err(fail(format!(
            "already defines a `{HANDLER}` runtime that the installer did not add; remove it (or \
             rename it) so the installer can manage the runtime"
        )));
    }
    let drop_in_dir = table
        .get("imports")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .find_map(|pattern| pattern.strip_suffix("/*.toml").map(PathBuf::from));
    Ok(Inspection {
        layout,
        systemd_cgroup,
        drop_in_dir,
        has_block,
    })
}

/// The runtime registration (our block), for `layout`, with `SystemdCgroup` as given and the
/// shim's own config file.
pub fn block(layout: Layout, systemd_cgroup: bool, shim_config: &Path) -> String {
    let table = format!(
        "plugins.\"{}\".containerd.runtimes.{HANDLER}",
        layout.plugin()
    );
    format!(
        "{BEGIN}\n[{table}]\n  runtime_type = \"{RUNTIME_TYPE}\"\n  pod_annotations = [\"wasmkube.dev/*\"]\n  container_annotations = [\"wasmkube.dev/*\"]\n  [{table}.options]\n    ConfigPath = \"{}\"\n    SystemdCgroup = {systemd_cgroup}\n{END}\n",
        shim_config.display()
    )
}

/// A drop-in file holding only our block.
pub fn drop_in(layout: Layout, block: &str) -> String {
    format!("version = {}\n\n{block}", layout.version())
}

/// `text` with our block (replacing an older one of ours), the rest untouched. The block is
/// preceded by one newline of its own, so removing both restores `text` exactly (whether or not
/// it ended with a newline).
pub fn with_block(text: &str, block: &str) -> String {
    format!("{}\n{block}", without_block(text))
}

/// `text` without our block and the newline we put before it.
pub fn without_block(text: &str) -> String {
    let Some(start) = text.find(BEGIN) else {
        return text.to_string();
    };
    let end = text[start..]
        .find(END)
        .map(|i| start + i + END.len())
        .unwrap_or(text.len());
    let end = if text[end..].starts_with('\n') {
        end + 1
    } else {
        end
    };
    let from = if text[..start].ends_with('\n') {
        start - 1
    } else {
        start
    };
    format!("{}{}", &text[..from], &text[end..])
}

/// Whether `text` is TOML that sets no key at all (blank, or only comments).
fn sets_nothing(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.is_empty())
}

/// Where and what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The file to write (the main config, or our drop-in).
    pub file: PathBuf,
    /// Its new contents.
    pub contents: String,
    /// Whether that differs from what is there now.
    pub changed: bool,
}

/// Plans the registration: a drop-in file when the config imports a directory, otherwise the
/// main config with our block appended. `drop_in_now` is the drop-in's current text, if any.
pub fn plan_install(
    config: &Path,
    text: &str,
    drop_in_now: Option<&str>,
    containerd_major: u32,
    shim_config: &Path,
) -> Result<Plan, Failure> {
    let seen = inspect(text, config, containerd_major)?;
    let ours = block(seen.layout, seen.systemd_cgroup, shim_config);
    let plan = match &seen.drop_in_dir {
        Some(dir) => {
            let contents = drop_in(seen.layout, &ours);
            Plan {
                file: dir.join(DROP_IN),
                changed: drop_in_now != Some(contents.as_str()),
                contents,
            }
        }
        None => {
            // A missing or empty file: containerd needs the version key to read our table.
            let contents = if text.trim().is_empty() {
                drop_in(seen.layout, &ours)
            } else if sets_nothing(&without_block(text)) {
                // Only comments (a commented-out default config): without a version key
                // containerd would read our table in the version 1 layout and ignore it, so
                // the block carries the key, and uninstall takes it away with the block.
                let versioned = ours.replacen(
                    &format!("{BEGIN}\n"),
                    &format!("{BEGIN}\nversion = {}\n", seen.layout.version()),
                    1,
                );
                with_block(text, &versioned)
            } else {
                with_block(text, &ours)
            };
            Plan {
                file: config.to_path_buf(),
                changed: contents != text,
                contents,
            }
        }
    };
    // What we write must parse and carry the runtime where containerd looks.
    let check: toml::Table = toml::from_str(&plan.contents).map_err(|e| {
        Failure::new(
            "plan containerd config",
            &plan.file,
            format!("edit would not parse: {e}"),
        )
    })?;
    let registered = check
        .get("plugins")
        .and_then(|p| p.get(seen.layout.plugin()))
        .and_then(|c| c.get("containerd"))
        .and_then(|c| c.get("runtimes"))
        .and_then(|r| r.get(HANDLER))
        .and_then(|r| r.get("runtime_type"))
        .and_then(|t| t.as_str());
    if registered != Some(RUNTIME_TYPE) {
        return Err(Failure::new(
            "plan containerd config",
            &plan.file,
            "edit does not register the runtime (conflicting tables?)".into(),
        ));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests;
