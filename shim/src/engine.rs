//! The Wasmtime engine as wasmkube configures it. The shim (which compiles) and every instance
//! process (which runs) build it from this one function, so precompiled artifacts always match.

pub mod cache;
pub mod limits;
pub mod run;
pub mod serve;

use std::hash::{Hash, Hasher};

use crate::error::{Error, Result};

/// What kind of Wasm binary a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// A core module (WASI preview 1, `_start`).
    Core,
    /// A component (WASI 0.2, `wasi:cli/command`).
    Component,
}

/// The Wasm binary magic, `\0asm`.
const MAGIC: &[u8; 4] = b"\0asm";

/// Tells a core module from a component by the binary header; anything else is refused with a
/// message naming `what` (the file, as the user knows it).
pub fn classify(bytes: &[u8], what: &str) -> Result<ModuleKind> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(Error::Module(format!(
            "{what} is not a WebAssembly module (it does not start with the \\0asm header); \
             point the entrypoint at a .wasm file built for wasm32-wasip1 or wasm32-wasip2"
        )));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Ok(ModuleKind::Core),
        [_, _, 1, 0] => Ok(ModuleKind::Component),
        ref v => Err(Error::Module(format!(
            "{what} has an unsupported WebAssembly version/layer {v:?}"
        ))),
    }
}

/// Bytes one linear memory occupies in the address space with the full layout: the 4 GiB
/// reservation that lets compiled code skip bounds checks, plus the guard regions after and
/// before it (Wasmtime's 64-bit defaults, which [`EngineSetup::build`] keeps).
pub const FULL_MEMORY_SPAN: u64 = (4 << 30) + 2 * (32 << 20);
/// Linear memories in the pool: as many as one store may hold ([`limits::MAX_MEMORIES`]), so
/// the same module behaves the same with and without pooling.
pub const POOL_MEMORIES: u32 = limits::MAX_MEMORIES as u32;
/// Address space the pool needs: its memories, its tables at the element limit, and slack for
/// the stacks and instance metadata.
pub const POOL_SPAN: u64 = POOL_MEMORIES as u64 * FULL_MEMORY_SPAN
    + limits::MAX_TABLES as u64 * limits::MAX_TABLE_ELEMENTS * 8
    + (8 << 30);
/// Where neither a pool nor one full memory fits (small boards, 39-bit address spaces,
/// `ulimit -v`): memories reserve this much and grow by moving, with explicit bounds checks.
pub const COMPACT_RESERVATION: u64 = 0;
/// Room reserved past a compact memory's end so it can grow a little without moving.
pub const COMPACT_GROWTH: u64 = 16 << 20;
/// The environment variable that forces an allocator (see [`EngineSetup::detect`]).
pub const ALLOCATOR_ENV: &str = "WASMKUBE_ALLOCATOR";
/// Bytes of each pooled memory and table kept resident (reset in place) when a slot is reused.
pub const KEEP_RESIDENT: usize = 2 << 20;
/// Async fiber stacks in the pool (one per concurrently running store).
pub const POOL_STACKS: u32 = 64;

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocator {
    /// Wasmtime's pooling allocator: slots reserved once per process and reused, with
    /// copy-on-write memory images.
    Pooling,
    /// Memory mapped per instance, full 4 GiB reservation (no bounds checks in code).
    OnDemand,
    /// Memory mapped per instance, no large reservation: works in a small address space at
    /// the cost of bounds checks. Changes compiled code, so its cache entries are separate.
    Compact,
}

/// The engine a node runs, chosen once by the shim from what the address space allows
/// ([`EngineSetup::detect`]) and handed to every instance process in its plan, so the code the
/// shim compiles always matches the engine that runs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineSetup {
    /// The allocator.
    pub allocator: Allocator,
    /// Why this allocator was chosen (shown by `--engine-info` and in the shim log).
    pub reason: String,
}

impl Default for EngineSetup {
    fn default() -> Self {
        EngineSetup {
            allocator: Allocator::OnDemand,
            reason: "default".into(),
        }
    }
}

impl EngineSetup {
    /// Picks the best allocator this process can have: the pool when its whole span can be
    /// reserved, else per-instance memories with the full reservation, else compact ones. The
    /// probe reserves (never commits) address space, so it sees `ulimit -v`, the kernel's
    /// address-space size and strict overcommit alike.
    ///
    /// `WASMKUBE_ALLOCATOR=pooling|on-demand|compact` in the shim's environment forces a choice
    /// (benchmarks compare them; a pool that cannot start still falls back).
    pub fn detect() -> (wasmtime::Engine, EngineSetup) {
        let forced = std::env::var(ALLOCATOR_ENV)
            .ok()
            .and_then(|v| match v.as_str() {
                "pooling" => Some(Allocator::Pooling),
                "on-demand" => Some(Allocator::OnDemand),
                "compact" => Some(Allocator::Compact),
                _ => None,
            });
        if let Some(allocator) = forced {
            let setup = EngineSetup {
                allocator,
                reason: format!("{ALLOCATOR_ENV} chose it"),
            };
            if let Ok(engine) = setup.try_build() {
                return (engine, setup);
            }
        }
        Self::detect_with(can_reserve)
    }

    /// [`EngineSetup::detect`] with the probe supplied (tests).
    pub fn detect_with(can_reserve: impl Fn(u64) -> bool) -> (wasmtime::Engine, EngineSetup) {
        let gib = |b: u64| b >> 30;
        let mut reason = if can_reserve(POOL_SPAN) {
            let setup = EngineSetup {
                allocator: Allocator::Pooling,
                reason: format!("{} GiB of address space for the pool", gib(POOL_SPAN)),
            };
            match setup.try_build() {
                Ok(engine) => return (engine, setup),
                Err(e) => format!("the pooling allocator could not start ({e})"),
            }
        } else {
            format!(
                "the pool's {} GiB of address space cannot be reserved",
                gib(POOL_SPAN)
            )
        };
        let allocator = if can_reserve(2 * FULL_MEMORY_SPAN) {
            Allocator::OnDemand
        } else {
            reason = format!(
                "{reason}, nor two {} GiB memories",
                gib(FULL_MEMORY_SPAN) + 1
            );
            Allocator::Compact
        };
        let setup = EngineSetup { allocator, reason };
        // Neither per-instance allocator reserves anything when the engine is built.
        let engine = setup
            .try_build()
            .expect("the per-instance engine configuration is valid");
        (engine, setup)
    }

    /// Builds the engine for this setup. A pool that cannot be set up falls back to
    /// per-instance memories with the same compiled-code settings: an instance process calls
    /// this with the shim's setup, and the artifact it loads stays valid.
    pub fn build(&self) -> Result<wasmtime::Engine> {
        self.try_build().or_else(|e| match self.allocator {
            Allocator::Pooling => {
                tracing::warn!(error = %e, "the pooling allocator could not start; using per-instance memories");
                EngineSetup {
                    allocator: Allocator::OnDemand,
                    reason: format!("fallback from the pool: {e}"),
                }
                .try_build()
            }
            _ => Err(e),
        })
    }

    /// Builds exactly this setup. Everything that affects compiled code is set here and
    /// nowhere else.
    fn try_build(&self) -> Result<wasmtime::Engine> {
        let mut config = wasmtime::Config::new();
        config
            .strategy(wasmtime::Strategy::Cranelift)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .wasm_component_model(true)
            // Copy-on-write images of the linear memory from the mmap'd artifact:
            // instantiation does not copy data segments.
            .memory_init_cow(true)
            // Per-request deadlines for HTTP components (engine::serve); one engine for all
            // modules keeps one compiled-module cache.
            .epoch_interruption(true)
            .parallel_compilation(true);
        match self.allocator {
            Allocator::Pooling => {
                let mut pool = wasmtime::PoolingAllocationConfig::new();
                pool.total_memories(POOL_MEMORIES)
                    .max_memories_per_module(POOL_MEMORIES)
                    .total_tables(limits::MAX_TABLES as u32)
                    .max_tables_per_module(limits::MAX_TABLES as u32)
                    .table_elements(limits::MAX_TABLE_ELEMENTS as usize)
                    .total_core_instances(limits::MAX_INSTANCES as u32)
                    .total_component_instances(limits::MAX_INSTANCES as u32)
                    .total_stacks(POOL_STACKS)
                    // A slot given back is reset with memset where its pages are resident
                    // (found with PAGEMAP_SCAN where the kernel has it), not with madvise:
                    // the next instance in it takes no page faults and the process no TLB
                    // shootdowns. This is what makes an instance per HTTP request cheap.
                    .linear_memory_keep_resident(KEEP_RESIDENT)
                    .table_keep_resident(KEEP_RESIDENT)
                    .pagemap_scan(wasmtime::Enabled::Auto);
                config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
            }
            Allocator::OnDemand => {}
            Allocator::Compact => {
                config
                    .memory_reservation(COMPACT_RESERVATION)
                    .memory_reservation_for_growth(COMPACT_GROWTH);
            }
        }
        wasmtime::Engine::new(&config)
            .map_err(|e| Error::Internal(format!("cannot configure the Wasmtime engine: {e}")))
    }
}

/// Whether `bytes` of address space can be reserved (mapped inaccessible, never committed)
/// right now; the reservation is released before returning.
pub fn can_reserve(bytes: u64) -> bool {
    let Ok(len) = usize::try_from(bytes) else {
        return false;
    };
    // SAFETY: a fresh anonymous PROT_NONE mapping at an address of the kernel's choosing
    // touches no existing memory; it is unmapped at once.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if addr == libc::MAP_FAILED {
            return false;
        }
        libc::munmap(addr, len);
    }
    true
}

/// WebAssembly proposals the engine leaves off, with the validator's wording for each.
const DISABLED_PROPOSALS: &[(&str, &[&str])] = &[
    (
        "GC (struct and array types)",
        &["gc feature", "gc types are disabled", "gc proposal"],
    ),
    (
        "exception handling",
        &["exceptions proposal", "exceptions support"],
    ),
    (
        "threads (shared memory, atomics)",
        &["threads must be enabled", "threads support"],
    ),
    ("stack switching", &["stack switching"]),
    ("wide arithmetic", &["wide arithmetic"]),
    ("custom page sizes", &["custom page sizes"]),
];

/// The message for a module that does not compile: when the validator refused a proposal the
/// engine does not enable, it names the proposal and what to do; otherwise it passes the
/// validator's message on.
pub fn explain_invalid(what: &str, error: &str) -> String {
    let lower = error.to_lowercase();
    match DISABLED_PROPOSALS
        .iter()
        .find(|(_, needles)| needles.iter().any(|n| lower.contains(n)))
    {
        Some((proposal, _)) => format!(
            "{what} uses the WebAssembly {proposal} proposal, which the wasmkube engine does not \
             enable; build the module without it (the enabled proposals are listed in the \
             README) [{error}]"
        ),
        None => format!("{what}: invalid WebAssembly: {error}"),
    }
}

/// A short, stable name for everything that makes compiled code compatible (Wasmtime version,
/// target, settings): artifacts are cached under it.
pub fn fingerprint(engine: &wasmtime::Engine) -> String {
    // SipHash with fixed keys: stable for a given binary, which is all the cache needs (a new
    // shim version gets a new directory, and a stale artifact is recompiled on load anyway).
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasmtime-{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_modules_components_and_garbage_apart() {
        let core = wat_bytes("(module)");
        let component = wat_bytes("(component)");
        assert_eq!(classify(&core, "a.wasm").unwrap(), ModuleKind::Core);
        assert_eq!(
            classify(&component, "c.wasm").unwrap(),
            ModuleKind::Component
        );
        for bad in [&b"#!/bin/sh\necho hi\n"[..], b"\0asm", b""] {
            let err = classify(bad, "/app.wasm").unwrap_err().to_string();
            assert!(
                err.contains("/app.wasm") && err.contains("not a WebAssembly"),
                "{err}"
            );
        }
    }

    #[test]
    fn fingerprint_is_stable_for_one_engine_configuration() {
        let a = fingerprint(&EngineSetup::default().build().unwrap());
        let b = fingerprint(&EngineSetup::default().build().unwrap());
        assert_eq!(a, b);
        assert!(
            a.starts_with("wasmtime-") && a.len() == "wasmtime-".len() + 16,
            "{a}"
        );
    }

    #[test]
    fn detect_takes_the_best_allocator_the_address_space_allows() {
        let pick = |room: u64| EngineSetup::detect_with(|bytes| bytes <= room).1;
        let pooled = pick(u64::MAX);
        assert_eq!(pooled.allocator, Allocator::Pooling, "{pooled:?}");
        // A 39-bit (512 GiB) arm64 address space already holding the shim cannot take the
        // pool, but two full memories fit.
        let arm = pick(POOL_SPAN - 1);
        assert_eq!(arm.allocator, Allocator::OnDemand, "{arm:?}");
        assert!(arm.reason.contains("cannot be reserved"), "{}", arm.reason);
        let small = pick(1 << 30);
        assert_eq!(small.allocator, Allocator::Compact, "{small:?}");
        assert!(small.reason.contains("nor two"), "{}", small.reason);
    }

    #[test]
    fn pooled_and_per_instance_engines_share_compiled_code_compact_does_not() {
        let build = |allocator| {
            EngineSetup {
                allocator,
                reason: String::new(),
            }
            .build()
            .unwrap()
        };
        let (pooled, on_demand, compact) = (
            build(Allocator::Pooling),
            build(Allocator::OnDemand),
            build(Allocator::Compact),
        );
        assert_eq!(fingerprint(&pooled), fingerprint(&on_demand));
        assert_ne!(fingerprint(&compact), fingerprint(&on_demand));
        // An instance process whose pool fails falls back to on-demand and must still load
        // what the shim compiled with the pool.
        let module = wat_bytes(
            r#"(module (memory (export "m") 1) (data (i32.const 0) "hi")
                 (func (export "f") (result i32) i32.const 0 i32.load8_u))"#,
        );
        let artifact = pooled.precompile_module(&module).unwrap();
        for engine in [&pooled, &on_demand] {
            // SAFETY: the artifact was produced just above by a compatible engine.
            let module = unsafe { wasmtime::Module::deserialize(engine, &artifact) }.unwrap();
            let mut store = wasmtime::Store::new(engine, ());
            // Epoch interruption is on and the deadline starts at 0.
            store.set_epoch_deadline(1 << 40);
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let f = instance.get_typed_func::<(), i32>(&mut store, "f").unwrap();
            assert_eq!(f.call(&mut store, ()).unwrap(), i32::from(b'h'));
        }
        // SAFETY: as above; the compact engine must refuse it rather than run it.
        assert!(unsafe { wasmtime::Module::deserialize(&compact, &artifact) }.is_err());
    }

    #[test]
    fn invalid_modules_name_a_disabled_proposal_or_pass_the_reason_on() {
        let gc = explain_invalid(
            "/app.wasm",
            "failed to parse WebAssembly module: struct indexed types not supported without the gc feature",
        );
        assert!(
            gc.starts_with("/app.wasm uses the WebAssembly GC (struct and array types) proposal"),
            "{gc}"
        );
        assert!(gc.contains("without the gc feature"), "{gc}");
        let other = explain_invalid("/app.wasm", "type mismatch");
        assert_eq!(other, "/app.wasm: invalid WebAssembly: type mismatch");
    }

    #[test]
    fn can_reserve_sees_the_address_space_limit() {
        assert!(can_reserve(1 << 30));
        assert!(!can_reserve(u64::MAX));
    }

    fn wat_bytes(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }
}
