//! Metrics of the control loops, rendered in the Prometheus text format by the server's
//! `/metrics`: per work queue (`workqueue_depth`, `workqueue_adds_total`,
//! `workqueue_retries_total`, as client-go names them) and per controller (reconcile duration
//! histogram, reconciles by result, errors by kind). The registry is process-wide, as
//! client-go's, since one process runs one set of controllers.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Histogram bucket bounds, in seconds.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram over [`BUCKETS`].
#[derive(Default, Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of metric `name` with `labels`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{b}\"}} {}",
                self.counts.get(i).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// One work queue's counters.
#[derive(Default, Debug)]
pub struct QueueMetrics {
    depth: AtomicI64,
    adds: AtomicU64,
    retries: AtomicU64,
}

impl QueueMetrics {
    pub(crate) fn added(&self, depth: usize) {
        self.adds.fetch_add(1, Ordering::Relaxed);
        self.depth.store(depth as i64, Ordering::Relaxed);
    }

    pub(crate) fn taken(&self, depth: usize) {
        self.depth.store(depth as i64, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Keys ready now.
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Keys added since start.
    pub fn adds(&self) -> u64 {
        self.adds.load(Ordering::Relaxed)
    }

    /// Back-offs since start.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// One controller's reconcile counters.
#[derive(Default, Debug)]
pub struct ControllerMetrics {
    inner: Mutex<ControllerInner>,
}

#[derive(Default, Debug)]
struct ControllerInner {
    duration: Histogram,
    success: u64,
    requeue_after: u64,
    errors: BTreeMap<&'static str, u64>,
}

impl ControllerMetrics {
    /// Records one reconcile: how long it took and its result (`None` for success, else the
    /// error's kind).
    pub fn reconciled(&self, took: Duration, requeued: bool, error: Option<&'static str>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.duration.observe(took.as_secs_f64());
        match error {
            Some(kind) => *inner.errors.entry(kind).or_default() += 1,
            None if requeued => inner.requeue_after += 1,
            None => inner.success += 1,
        }
    }

    /// Errors so far, by kind.
    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).errors.clone()
    }

    /// Reconciles so far.
    pub fn reconciles(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .duration
            .count()
    }
}

#[derive(Default)]
struct Registry {
    queues: BTreeMap<&'static str, Arc<QueueMetrics>>,
    controllers: BTreeMap<&'static str, Arc<ControllerMetrics>>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The counters of the queue `name` (shared by every queue of that name).
pub fn queue(name: &'static str) -> Arc<QueueMetrics> {
    registry().queues.entry(name).or_default().clone()
}

/// The counters of the controller `name`.
pub fn controller(name: &'static str) -> Arc<ControllerMetrics> {
    registry().controllers.entry(name).or_default().clone()
}

/// Appends every queue's and controller's metrics to `out`.
pub fn render(out: &mut String) {
    let reg = registry();
    let mut family = |name: &str, kind: &str, help: &str, lines: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        lines(out);
    };
    family("workqueue_depth", "gauge", "Keys ready in a work queue.", &mut |out| {
        for (q, m) in &reg.queues {
            let _ = writeln!(out, "workqueue_depth{{name=\"{q}\"}} {}", m.depth());
        }
    });
    family(
        "workqueue_adds_total",
        "counter",
        "Keys added to a work queue.",
        &mut |out| {
            for (q, m) in &reg.queues {
                let _ = writeln!(out, "workqueue_adds_total{{name=\"{q}\"}} {}", m.adds());
            }
        },
    );
    family(
        "workqueue_retries_total",
        "counter",
        "Keys queued again after a failure (with back-off).",
        &mut |out| {
            for (q, m) in &reg.queues {
                let _ = writeln!(out, "workqueue_retries_total{{name=\"{q}\"}} {}", m.retries());
            }
        },
    );
    family(
        "shoal_controller_reconcile_duration_seconds",
        "histogram",
        "Time one reconcile took, by controller.",
        &mut |out| {
            for (c, m) in &reg.controllers {
                let inner = m.inner.lock().unwrap_or_else(PoisonError::into_inner);
                inner.duration.render(
                    out,
                    "shoal_controller_reconcile_duration_seconds",
                    &format!("controller=\"{c}\""),
                );
            }
        },
    );
    family(
        "shoal_controller_reconcile_total",
        "counter",
        "Reconciles by controller and result (success, requeue_after, error).",
        &mut |out| {
            for (c, m) in &reg.controllers {
                let inner = m.inner.lock().unwrap_or_else(PoisonError::into_inner);
                let errors: u64 = inner.errors.values().sum();
                for (result, n) in [
                    ("success", inner.success),
                    ("requeue_after", inner.requeue_after),
                    ("error", errors),
                ] {
                    let _ = writeln!(
                        out,
                        "shoal_controller_reconcile_total{{controller=\"{c}\",result=\"{result}\"}} {n}"
                    );
                }
            }
        },
    );
    family(
        "shoal_controller_reconcile_errors_total",
        "counter",
        "Failed reconciles by controller and error kind.",
        &mut |out| {
            for (c, m) in &reg.controllers {
                let inner = m.inner.lock().unwrap_or_else(PoisonError::into_inner);
                for (kind, n) in &inner.errors {
                    let _ = writeln!(
                        out,
                        "shoal_controller_reconcile_errors_total{{controller=\"{c}\",kind=\"{kind}\"}} {n}"
                    );
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_and_queues_render_by_name() {
        let q = queue("metrics-test");
        q.added(3);
        q.retried();
        let c = controller("metrics-test");
        c.reconciled(Duration::from_millis(3), false, None);
        c.reconciled(Duration::from_millis(30), false, Some("conflict"));
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("workqueue_depth{name=\"metrics-test\"} 3"), "{out}");
        assert!(out.contains("workqueue_retries_total{name=\"metrics-test\"} 1"));
        assert!(
            out.contains("shoal_controller_reconcile_errors_total{controller=\"metrics-test\",kind=\"conflict\"} 1")
        );
        assert!(out.contains("shoal_controller_reconcile_total{controller=\"metrics-test\",result=\"success\"} 1"));
        assert!(out.contains("shoal_controller_reconcile_duration_seconds_count{controller=\"metrics-test\"} 2"));
    }
}
