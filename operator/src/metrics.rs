//! Prometheus metrics of the operator, kept as atomics and rendered in the text exposition
//! format at `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::Error;

/// Upper bounds (seconds) of the reconcile duration histogram.
const BUCKETS: [f64; 8] = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Reconcile counters and timings.
#[derive(Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_micros: AtomicU64,
}

impl Metrics {
    /// Records one reconcile.
    pub fn observe(&self, took: Duration, error: Option<&Error>) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.duration_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let secs = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(e) = error {
            *self
                .errors
                .lock()
                .expect("metrics lock poisoned")
                .entry(e.kind())
                .or_default() += 1;
        }
    }

    /// Reconciles so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let total = self.reconciles();
        let mut out = String::new();
        out.push_str("# HELP wasmkube_reconciles_total WasmApp reconciles.\n");
        out.push_str("# TYPE wasmkube_reconciles_total counter\n");
        out.push_str(&format!("wasmkube_reconciles_total {total}\n"));
        out.push_str("# HELP wasmkube_reconcile_errors_total Failed reconciles by error kind.\n");
        out.push_str("# TYPE wasmkube_reconcile_errors_total counter\n");
        for (kind, n) in self.errors.lock().expect("metrics lock poisoned").iter() {
            out.push_str(&format!(
                "wasmkube_reconcile_errors_total{{kind=\"{kind}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP wasmkube_reconcile_duration_seconds Time per reconcile.\n");
        out.push_str("# TYPE wasmkube_reconcile_duration_seconds histogram\n");
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            out.push_str(&format!(
                "wasmkube_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}\n",
                count.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "wasmkube_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {total}\n"
        ));
        out.push_str(&format!(
            "wasmkube_reconcile_duration_seconds_sum {}\n",
            self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "wasmkube_reconcile_duration_seconds_count {total}\n"
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_kind_and_durations_bucketed() {
        let m = Metrics::default();
        m.observe(Duration::from_millis(3), None);
        m.observe(
            Duration::from_millis(200),
            Some(&Error::NoNamespace("a".into())),
        );
        let text = m.render();
        assert!(text.contains("wasmkube_reconciles_total 2\n"), "{text}");
        assert!(
            text.contains("wasmkube_reconcile_errors_total{kind=\"no_namespace\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmkube_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmkube_reconcile_duration_seconds_bucket{le=\"0.25\"} 2\n"),
            "{text}"
        );
    }
}
