//! Engine limits derived from the container's cgroup limits ("cgroup-mapped limits"): the same
//! memory limit that the kernel enforces on the instance process also caps the module's linear
//! memory, a little lower, so a module that asks for too much sees `memory.grow` fail (and can
//! handle it) long before the kernel's OOM killer would end the process.
//!
//! The formula, for a cgroup memory limit `L` and a precompiled artifact of `C` bytes:
//!
//! ```text
//! reserve = 16 MiB + C           (engine, WASI host state, stacks, and the mapped code)
//! cap     = L - reserve          when L >= 2 × reserve
//!         = L / 2                otherwise (tiny limits still leave the module half)
//! tables  = cap / 16 elements at most (a table element costs up to 16 bytes), ≤ 10 million
//! counts  = ≤ 1000 instances, ≤ 1000 tables, ≤ 100 memories per store
//! ```
//! With no memory limit, linear memory is limited only by the Wasm spec (4 GiB for memory32).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What the engine keeps for itself below the cgroup limit, before adding the code size.
pub const ENGINE_RESERVE: u64 = 16 << 20;
/// Most table elements a store may have.
pub const MAX_TABLE_ELEMENTS: u64 = 10_000_000;
/// Most instances (core instances of a component count) per store.
pub const MAX_INSTANCES: usize = 1000;
/// Most tables per store.
pub const MAX_TABLES: usize = 1000;
/// Most linear memories per store.
pub const MAX_MEMORIES: usize = 100;

/// Linear-memory cap in bytes for a memory limit (`None`: no cap).
pub fn linear_memory_cap(memory_limit: Option<u64>, code_size: u64) -> Option<u64> {
    let limit = memory_limit?;
    let reserve = ENGINE_RESERVE + code_size;
    Some(if limit >= 2 * reserve {
        limit - reserve
    } else {
        limit / 2
    })
}

/// Table-element cap that goes with a memory cap.
pub fn table_element_cap(memory_cap: Option<u64>) -> u64 {
    memory_cap
        .map(|c| (c / 16).min(MAX_TABLE_ELEMENTS))
        .unwrap_or(MAX_TABLE_ELEMENTS)
}

/// The limits sent to an instance process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineLimits {
    /// Cap on the total linear memory, in bytes.
    pub memory_cap: Option<u64>,
}

impl EngineLimits {
    /// Limits for a cgroup memory limit and a code size.
    pub fn for_memory_limit(memory_limit: Option<u64>, code_size: u64) -> Self {
        EngineLimits {
            memory_cap: linear_memory_cap(memory_limit, code_size),
        }
    }
}

/// The store's resource limiter. The memory cap is shared so that an in-place resize
/// (`Update`) can change it while the module runs.
#[derive(Debug, Clone)]
pub struct Limiter {
    memory_cap: Arc<AtomicU64>,
}

impl Limiter {
    /// A limiter starting at `limits`.
    pub fn new(limits: EngineLimits) -> Self {
        Limiter {
            memory_cap: Arc::new(AtomicU64::new(limits.memory_cap.unwrap_or(u64::MAX))),
        }
    }

    /// Changes the memory cap (used by Update).
    pub fn set(&self, limits: EngineLimits) {
        self.memory_cap
            .store(limits.memory_cap.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    fn cap(&self) -> u64 {
        self.memory_cap.load(Ordering::SeqCst)
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired as u64 <= self.cap())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let cap = self.cap();
        Ok(desired as u64 <= table_element_cap((cap != u64::MAX).then_some(cap)))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn memory_limit_formula_table() {
        let cases = [
            (None, 0, None),
            (Some(128 * MIB), 0, Some(112 * MIB)),
            (Some(128 * MIB), 2 * MIB, Some(110 * MIB)),
            (Some(64 * MIB), MIB, Some(47 * MIB)),
            (Some(32 * MIB), 0, Some(16 * MIB)),
            (Some(20 * MIB), 0, Some(10 * MIB)),
        ];
        for (limit, code, want) in cases {
            assert_eq!(linear_memory_cap(limit, code), want, "{limit:?} {code}");
        }
    }

    #[test]
    fn cap_stays_below_the_cgroup_limit() {
        for limit in [MIB, 8 * MIB, 33 * MIB, 512 * MIB, 8 << 30] {
            let cap = linear_memory_cap(Some(limit), MIB).unwrap();
            assert!(cap < limit && cap >= limit / 2, "{limit}: {cap}");
        }
    }

    #[test]
    fn memory_cap_caps_linear_memory_growth_and_can_be_raised() {
        let mut limiter = Limiter::new(EngineLimits {
            memory_cap: Some(10 * MIB),
        });
        let grow = |l: &mut Limiter, bytes: u64| l.memory_growing(0, bytes as usize, None).unwrap();
        assert!(grow(&mut limiter, 10 * MIB));
        assert!(!grow(&mut limiter, 10 * MIB + 1));
        limiter.set(EngineLimits {
            memory_cap: Some(20 * MIB),
        });
        assert!(grow(&mut limiter, 20 * MIB));
        limiter.set(EngineLimits { memory_cap: None });
        assert!(grow(&mut limiter, 4 << 30));
    }

    #[test]
    fn tables_and_counts_are_capped() {
        let mut limiter = Limiter::new(EngineLimits {
            memory_cap: Some(16 * MIB),
        });
        assert!(limiter.table_growing(0, MIB as usize, None).unwrap());
        assert!(!limiter.table_growing(0, MIB as usize + 1, None).unwrap());
        assert_eq!(limiter.instances(), MAX_INSTANCES);
        assert_eq!(limiter.tables(), MAX_TABLES);
        assert_eq!(limiter.memories(), MAX_MEMORIES);
    }
}
