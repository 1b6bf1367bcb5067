//! Prometheus metrics in the text exposition format: requests by verb, resource and code,
//! request latency histograms, store write latency, and watch counts.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shoal_runtime::metrics::Histogram;

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
    store_writes: BTreeMap<&'static str, Histogram>,
}

/// The server's metrics; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    watches: Arc<AtomicI64>,
    request_panics: Arc<AtomicI64>,
}

impl Metrics {
    /// Records one finished request.
    pub fn request(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        *inner
            .requests
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default() += 1;
        inner
            .latency
            .entry((verb.to_string(), resource.to_string()))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Records one store write (`create`, `update` or `delete`), acknowledged or not.
    pub fn store_write(&self, operation: &'static str, elapsed: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .store_writes
            .entry(operation)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// A request handler panicked (the request was answered with a 500).
    pub fn request_panicked(&self) {
        self.request_panics.fetch_add(1, Ordering::Relaxed);
    }

    /// A watch started.
    pub fn watch_started(&self) {
        self.watches.fetch_add(1, Ordering::Relaxed);
    }

    /// A watch ended.
    pub fn watch_ended(&self) {
        self.watches.fetch_sub(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n# TYPE apiserver_request_total counter\n");
        for ((verb, res, code), n) in &inner.requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{res}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Request latency by verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, res), h) in &inner.latency {
            h.render(
                &mut out,
                "apiserver_request_duration_seconds",
                &format!("verb=\"{verb}\",resource=\"{res}\""),
            );
        }
        out.push_str("# HELP shoal_store_write_duration_seconds Store write latency (durable before it returns) by operation.\n# TYPE shoal_store_write_duration_seconds histogram\n");
        for (op, h) in &inner.store_writes {
            h.render(
                &mut out,
                "shoal_store_write_duration_seconds",
                &format!("operation=\"{op}\""),
            );
        }
        out.push_str(
            "# HELP apiserver_registered_watchers Open watches.\n# TYPE apiserver_registered_watchers gauge\n",
        );
        let _ = writeln!(
            out,
            "apiserver_registered_watchers {}",
            self.watches.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP shoal_request_panics_total Requests whose handler panicked (answered 500).
# TYPE shoal_request_panics_total counter
",
        );
        let _ = writeln!(
            out,
            "shoal_request_panics_total {}",
            self.request_panics.load(Ordering::Relaxed)
        );
        out
    }
}

/// A store that records the latency of every write in [`Metrics`].
pub struct MeteredStore {
    inner: Arc<dyn shoal_store::Store>,
    metrics: Metrics,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn shoal_store::Store>, metrics: Metrics) -> MeteredStore {
        MeteredStore { inner, metrics }
    }
}

#[async_trait::async_trait]
impl shoal_store::Store for MeteredStore {
    async fn get(&self, key: &str) -> shoal_store::Result<Option<shoal_store::KeyValue>> {
        self.inner.get(key).await
    }

    async fn range(
        &self,
        start: &str,
        end: &str,
        revision: i64,
        limit: usize,
    ) -> shoal_store::Result<shoal_store::RangeResult> {
        self.inner.range(start, end, revision, limit).await
    }

    async fn create(&self, key: &str, value: bytes::Bytes) -> shoal_store::Result<i64> {
        let start = std::time::Instant::now();
        let out = self.inner.create(key, value).await;
        self.metrics.store_write("create", start.elapsed());
        out
    }

    async fn update(&self, key: &str, value: bytes::Bytes, expected: i64) -> shoal_store::Result<i64> {
        let start = std::time::Instant::now();
        let out = self.inner.update(key, value, expected).await;
        self.metrics.store_write("update", start.elapsed());
        out
    }

    async fn delete(&self, key: &str, expected: i64) -> shoal_store::Result<(i64, shoal_store::KeyValue)> {
        let start = std::time::Instant::now();
        let out = self.inner.delete(key, expected).await;
        self.metrics.store_write("delete", start.elapsed());
        out
    }

    fn watch(&self, prefix: &str, after: i64) -> shoal_store::Result<shoal_store::WatchStream> {
        self.inner.watch(prefix, after)
    }

    async fn compact(&self, revision: i64) -> shoal_store::Result<()> {
        self.inner.compact(revision).await
    }

    fn current_revision(&self) -> i64 {
        self.inner.current_revision()
    }

    async fn check(&self) -> shoal_store::Result<()> {
        self.inner.check().await
    }

    fn compacted_revision(&self) -> i64 {
        self.inner.compacted_revision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_are_rendered() {
        let m = Metrics::default();
        m.request("GET", "pods", 200, Duration::from_millis(3));
        m.request("GET", "pods", 200, Duration::from_millis(30));
        m.watch_started();
        m.store_write("create", Duration::from_micros(800));
        let text = m.render();
        assert!(
            text.contains("shoal_store_write_duration_seconds_bucket{operation=\"create\",le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(text.contains("apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 2"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("apiserver_registered_watchers 1"));
    }
}
