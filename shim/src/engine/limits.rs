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
//! budget  : Σ linear-memory bytes + 8 × Σ table elements ≤ cap, over all memories and tables
//!           of the store (so multi-memory modules and huge tables share one budget)
//! tables  ≤ 10 million elements each
//! counts  = ≤ 1000 instances, ≤ 1000 tables, ≤ 100 memories per store
//! ```
//! With no memory limit, linear memory is limited only by the Wasm spec (4 GiB for memory32).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What the engine keeps for itself below the cgroup limit, before adding the code size.
pub const ENGINE_RESERVE: u64 = 16 << 20;
/// Most elements one table may have.
pub const MAX_TABLE_ELEMENTS: u64 = 10_000_000;
/// What one table element is charged against the memory budget, in bytes.
pub const TABLE_ELEMENT_BYTES: u64 = 8;
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

/// A store's resource limiter. The memory cap is shared so that an in-place resize (`Update`)
/// can change it while the module runs. The budget is shared too: every limiter made from one
/// [`Limiter::new`] (by `clone`) draws on the same total, so the concurrent per-request stores
/// of an HTTP component together stay under the one cap the cgroup limit gives. `used` is what
/// this store's memories and tables hold now; it is given back when the limiter is dropped.
#[derive(Debug)]
pub struct Limiter {
    memory_cap: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    used: u64,
}

impl Clone for Limiter {
    /// A limiter for another store: same cap, same shared budget, nothing used yet.
    fn clone(&self) -> Self {
        Limiter {
            memory_cap: self.memory_cap.clone(),
            total: self.total.clone(),
            used: 0,
        }
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.total.fetch_sub(self.used, Ordering::SeqCst);
    }
}

impl Limiter {
    /// A limiter starting at `limits`.
    pub fn new(limits: EngineLimits) -> Self {
        Limiter {
            memory_cap: Arc::new(AtomicU64::new(limits.memory_cap.unwrap_or(u64::MAX))),
            total: Arc::new(AtomicU64::new(0)),
            used: 0,
        }
    }

    /// Changes the memory cap (used by Update).
    pub fn set(&self, limits: EngineLimits) {
        self.memory_cap
            .store(limits.memory_cap.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Bytes all stores sharing this limiter's budget hold now.
    pub fn total_used(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    fn cap(&self) -> u64 {
        self.memory_cap.load(Ordering::SeqCst)
    }

    /// Accepts a growth from `current` to `desired` bytes if the shared budget allows, and
    /// books it.
    fn grow(&mut self, current: u64, desired: u64) -> bool {
        let mine = self.used.saturating_sub(current).saturating_add(desired);
        let cap = self.cap();
        let booked = self
            .total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |total| {
                let after = total.saturating_sub(self.used).saturating_add(mine);
                (after <= cap).then_some(after)
            });
        if booked.is_err() {
            return false;
        }
        self.used = mine;
        true
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Wasmtime refuses growth past the declared maximum after asking us: refuse it here
        // so nothing is booked for it.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Ok(self.grow(current as u64, desired as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > MAX_TABLE_ELEMENTS || maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Ok(self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        ))
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
        fn grow(l: &mut Limiter, from: u64, to: u64) -> bool {
            l.memory_growing(from as usize, to as usize, None).unwrap()
        }
        assert!(grow(&mut limiter, 0, 10 * MIB));
        assert!(!grow(&mut limiter, 10 * MIB, 10 * MIB + 1));
        limiter.set(EngineLimits {
            memory_cap: Some(20 * MIB),
        });
        assert!(grow(&mut limiter, 10 * MIB, 20 * MIB));
        limiter.set(EngineLimits { memory_cap: None });
        assert!(grow(&mut limiter, 20 * MIB, 4 << 30));
    }

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut limiter = Limiter::new(EngineLimits {
            memory_cap: Some(16 * MIB),
        });
        let m = |bytes: u64| bytes as usize;
        // Two memories of 6 MiB fit, a third does not.
        assert!(limiter.memory_growing(0, m(6 * MIB), None).unwrap());
        assert!(limiter.memory_growing(0, m(6 * MIB), None).unwrap());
        assert!(!limiter.memory_growing(0, m(6 * MIB), None).unwrap());
        // Growing the first by 4 MiB is exactly the budget.
        assert!(limiter
            .memory_growing(m(6 * MIB), m(10 * MIB), None)
            .unwrap());
        // Nothing is left for a table.
        assert!(!limiter.table_growing(0, 1, None).unwrap());
        let mut tables = Limiter::new(EngineLimits {
            memory_cap: Some(16 * MIB),
        });
        assert!(tables.table_growing(0, (2 * MIB) as usize, None).unwrap());
        assert!(!tables
            .table_growing((2 * MIB) as usize, (2 * MIB) as usize + 1, None)
            .unwrap());
        let mut unlimited = Limiter::new(EngineLimits { memory_cap: None });
        assert!(!unlimited
            .table_growing(0, MAX_TABLE_ELEMENTS as usize + 1, None)
            .unwrap());
    }

    #[test]
    fn clones_share_the_budget_and_give_back_what_they_held() {
        let first = Limiter::new(EngineLimits {
            memory_cap: Some(16 * MIB),
        });
        let (mut a, mut b) = (first.clone(), first.clone());
        let m = |bytes: u64| bytes as usize;
        // Two concurrent stores of 10 MiB would be 20 MiB: the second is refused.
        assert!(a.memory_growing(0, m(10 * MIB), None).unwrap());
        assert!(!b.memory_growing(0, m(10 * MIB), None).unwrap());
        assert!(b.memory_growing(0, m(6 * MIB), None).unwrap());
        assert_eq!(first.total_used(), 16 * MIB);
        // When a store ends, its memory is free for the next one.
        drop(a);
        assert_eq!(first.total_used(), 6 * MIB);
        let mut c = first.clone();
        assert!(c.memory_growing(0, m(10 * MIB), None).unwrap());
        drop((b, c));
        assert_eq!(first.total_used(), 0);
        // Growth past a declared maximum is refused without booking anything.
        let mut d = first.clone();
        assert!(!d.memory_growing(0, m(MIB), Some(m(MIB) - 1)).unwrap());
        assert!(!d.table_growing(0, 10, Some(9)).unwrap());
        assert_eq!(first.total_used(), 0);
    }

    #[test]
    fn counts_are_capped() {
        let limiter = Limiter::new(EngineLimits { memory_cap: None });
        assert_eq!(limiter.instances(), MAX_INSTANCES);
        assert_eq!(limiter.tables(), MAX_TABLES);
        assert_eq!(limiter.memories(), MAX_MEMORIES);
    }
}
