//! Running one prepared module inside an instance process: WASI context from the run plan,
//! `_start` for core modules, `wasi:cli/run` for command components, exit code out; components
//! that export `wasi:http/incoming-handler` are handed to [`super::serve`].

use std::path::PathBuf;

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::{EngineLimits, Limiter};
use super::serve::{self, HttpSettings};
use super::ModuleKind;
use crate::policy::Network;

/// Exit status for a trap, as for a native program that aborts (128 + SIGABRT).
pub const EXIT_TRAP: i32 = 134;

/// Epoch ticks before a run is interrupted: never, for modules and commands (the engine has
/// epoch interruption for HTTP requests' deadlines; nothing advances the epoch in their
/// processes, and the deadline starts at 0, which would trap at once).
const NO_DEADLINE: u64 = u64::MAX / 2;

/// A directory the module sees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preopen {
    /// Host directory.
    pub host: PathBuf,
    /// Path the module sees it at.
    pub guest: String,
    /// Whether the module may only read.
    pub read_only: bool,
}

/// The WASI-facing part of a run: what the module sees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WasiSetup {
    /// argv, including argv\[0\].
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Preopened directories.
    pub preopens: Vec<Preopen>,
    /// What WASI sockets may do.
    pub network: Network,
    /// Engine limits derived from the cgroup limits.
    pub limits: EngineLimits,
    /// How an HTTP component is served (unused for other modules).
    #[serde(default)]
    pub http: HttpSettings,
}

/// A module linked and pre-instantiated, waiting for its start signal.
pub enum Prepared {
    /// A core module.
    Core(wasmtime::InstancePre<CoreState>),
    /// A command component.
    Component(CommandPre<ComponentState>),
    /// A `wasi:http/proxy` component, served over HTTP.
    Http(serve::HttpPre),
}

/// Store state for core modules.
pub struct CoreState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Store state for components.
pub struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Loads an artifact from the cache and links it against WASI: unknown imports fail here,
/// before the container is started. `what` names the module in messages.
///
/// # Safety
/// `artifact` must be a file written by [`super::cache::ModuleCache`] (trusted, node-local): it
/// is memory-mapped and executed.
pub unsafe fn prepare(
    engine: &wasmtime::Engine,
    kind: ModuleKind,
    artifact: &std::path::Path,
    what: &str,
) -> Result<Prepared, String> {
    match kind {
        ModuleKind::Core => {
            // SAFETY: the caller guarantees the artifact is ours.
            let module = unsafe { Module::deserialize_file(engine, artifact) }
                .map_err(|e| format!("{what}: cannot load compiled module: {e:#}"))?;
            let mut linker: Linker<CoreState> = Linker::new(engine);
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)
                .map_err(|e| format!("cannot link WASI preview 1: {e:#}"))?;
            let pre = linker
                .instantiate_pre(&module)
                .map_err(|e| format!("{what}: {}", link_error(&e)))?;
            Ok(Prepared::Core(pre))
        }
        ModuleKind::Component => {
            // SAFETY: the caller guarantees the artifact is ours.
            let component = unsafe { Component::deserialize_file(engine, artifact) }
                .map_err(|e| format!("{what}: cannot load compiled component: {e:#}"))?;
            match serve::exports(engine, &component) {
                serve::Exports::HttpProxy => {
                    let pre = serve::link(engine, &component)
                        .map_err(|e| format!("{what}: {}", link_error(&e)))?;
                    return Ok(Prepared::Http(pre));
                }
                serve::Exports::HttpP3 => {
                    return Err(format!(
                    "{what} exports wasi:http/handler from WASI 0.3, which this runtime does not \
                         run yet; build it for WASI 0.2 (wasi:http/proxy, \
                         wasi:http/incoming-handler@0.2.x)"
                ))
                }
                serve::Exports::Other => {}
            }
            let mut linker = wasmtime::component::Linker::<ComponentState>::new(engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                .map_err(|e| format!("cannot link WASI 0.2: {e:#}"))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|e| format!("{what}: {}", link_error(&e)))?;
            let pre = CommandPre::new(pre).map_err(|e| {
                format!(
                    "{what}: neither a wasi:cli/command component (no wasi:cli/run export) nor a \
                     wasi:http/proxy one (no wasi:http/incoming-handler export): {e:#}"
                )
            })?;
            Ok(Prepared::Component(pre))
        }
    }
}

/// Unknown imports are the common failure: say so plainly.
fn link_error(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    if text.contains("unknown import") || text.contains("matching implementation was not found") {
        format!("imports something this runtime does not provide (only WASI is available): {text}")
    } else {
        text
    }
}

/// Runs a prepared module with the process's stdio and returns the exit status. `limiter`
/// enforces the engine limits (and may be changed from another thread while it runs).
pub fn run(
    engine: &wasmtime::Engine,
    prepared: Prepared,
    setup: &WasiSetup,
    limiter: Limiter,
    what: &str,
) -> i32 {
    if let Prepared::Http(pre) = prepared {
        return serve::serve(engine, pre, setup, limiter, what);
    }
    match run_inner(engine, prepared, setup, limiter) {
        Ok(code) => code,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return exit.0;
            }
            // One line on the module's stderr: the container's own log says why it died.
            let reason = match e.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => format!("trapped: {trap}"),
                None => format!("failed: {}", format!("{e:#}").replace('\n', "; ")),
            };
            eprintln!("wasmkube: {what} {reason}");
            EXIT_TRAP
        }
    }
}

/// The WASI context a module gets from its setup: args, env, preopens, socket policy, and
/// the process's stdio.
pub(crate) fn wasi_builder(setup: &WasiSetup) -> wasmtime::Result<WasiCtxBuilder> {
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdio().args(&setup.args);
    for (k, v) in &setup.env {
        builder.env(k, v);
    }
    for p in &setup.preopens {
        let perms = if p.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder.preopened_dir(&p.host, &p.guest, perms)?;
    }
    match setup.network {
        Network::None => {
            builder
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
        }
        Network::Outbound => {
            builder
                .allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true)
                .socket_addr_check(|_, usage| {
                    let outbound = !matches!(
                        usage,
                        wasmtime_wasi::sockets::SocketAddrUse::TcpListen
                            | wasmtime_wasi::sockets::SocketAddrUse::TcpAccept
                    );
                    Box::pin(async move { outbound })
                });
        }
        Network::Inherit => {
            builder
                .allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true)
                .inherit_network();
        }
    }
    Ok(builder)
}

fn run_inner(
    engine: &wasmtime::Engine,
    prepared: Prepared,
    setup: &WasiSetup,
    limiter: Limiter,
) -> wasmtime::Result<i32> {
    let mut builder = wasi_builder(setup)?;
    match prepared {
        Prepared::Core(pre) => {
            let state = CoreState {
                wasi: builder.build_p1(),
                limiter,
            };
            let mut store = Store::new(engine, state);
            store.limiter(|s| &mut s.limiter);
            store.set_epoch_deadline(NO_DEADLINE);
            let instance = pre.instantiate(&mut store)?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())?;
            Ok(0)
        }
        Prepared::Http(_) => Err(wasmtime::Error::msg(
            "an HTTP component is served (engine::serve), not run",
        )),
        Prepared::Component(pre) => {
            let state = ComponentState {
                ctx: builder.build(),
                table: ResourceTable::new(),
                limiter,
            };
            let mut store = Store::new(engine, state);
            store.limiter(|s| &mut s.limiter);
            store.set_epoch_deadline(NO_DEADLINE);
            let command = pre.instantiate(&mut store)?;
            match command.wasi_cli_run().call_run(&mut store)? {
                Ok(()) => Ok(0),
                Err(()) => Ok(1),
            }
        }
    }
}
