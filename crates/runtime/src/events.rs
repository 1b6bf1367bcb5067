//! core/v1 Events, as upstream's event recorder writes them, so that `kubectl describe` and
//! `kubectl get events` show what the controllers and the scheduler did. Repeats of the same
//! event (same object, reason and message) within ten minutes bump `count` and `lastTimestamp`
//! on the existing Event instead of creating a new one, as upstream's correlator does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The object an event is about.
#[derive(Clone, Debug)]
pub struct ObjectRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects; their events go to `default`).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl ObjectRef {
    /// The reference to a JSON object of `kind` in `api_version`.
    pub fn of(api_version: &str, kind: &str, obj: &Value) -> ObjectRef {
        let m = &obj["metadata"];
        ObjectRef {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: m["namespace"].as_str().unwrap_or_default().to_string(),
            name: m["name"].as_str().unwrap_or_default().to_string(),
            uid: m["uid"].as_str().unwrap_or_default().to_string(),
        }
    }
}

type Key = (String, String, String, String);
/// Event name, its namespace, count, and when it was last written.
type Seen = (String, String, i32, Instant);

/// Writes Events on behalf of one component (`daemonset-controller`, `default-scheduler`).
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: &'static str,
    /// The node a component runs on (kubelets), for `source.host`.
    host: String,
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    spam: Arc<Mutex<SpamFilter>>,
}

/// Upstream's spam filter (client-go's `EventSourceObjectSpamFilter`): each (component,
/// involved object) has a token bucket of [`SPAM_BURST`] events refilled at one per
/// [`SPAM_REFILL`]; events past it are dropped. A DaemonSet that creates 5,000 pods
/// records its first 25 `SuccessfulCreate` events, as upstream, instead of 5,000 writes.
#[derive(Default)]
pub struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

/// Events one object may get in a burst.
pub const SPAM_BURST: f64 = 25.0;
/// One more event is allowed per this long.
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Buckets kept at most (the least recently used go first, like upstream's LRU of 4096).
const SPAM_KEYS: usize = 4096;

impl SpamFilter {
    /// True when an event about `object` may be written at `now` (a token is taken).
    pub fn allow(&mut self, object: &str, now: Instant) -> bool {
        if self.buckets.len() >= SPAM_KEYS && !self.buckets.contains_key(object) {
            self.evict(now);
        }
        let (tokens, at) = self.buckets.entry(object.to_string()).or_insert((SPAM_BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() / SPAM_REFILL.as_secs_f64()).min(SPAM_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Makes room, in O(keys) once per SPAM_KEYS / 2 new objects (not once per event):
    /// full buckets carry no information and go first, then the least recently used half.
    fn evict(&mut self, now: Instant) {
        let refill = SPAM_REFILL.as_secs_f64();
        self.buckets
            .retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() / refill < SPAM_BURST);
        let keep = SPAM_KEYS / 2;
        if self.buckets.len() <= keep {
            return;
        }
        // The newest `keep` buckets stay: `cut` is the newest of those that go.
        let mut times: Vec<Instant> = self.buckets.values().map(|(_, at)| *at).collect();
        let (_, cut, _) = times.select_nth_unstable_by(keep, |a, b| b.cmp(a));
        let cut = *cut;
        self.buckets.retain(|_, (_, at)| *at > cut);
    }
}

const CORRELATION_WINDOW: Duration = Duration::from_secs(600);

fn now_rfc3339() -> String {
    shoal_api::time::now_rfc3339()
}

impl Recorder {
    /// A recorder for `component`.
    pub fn new(client: kube::Client, component: &'static str) -> Recorder {
        Recorder {
            client,
            component,
            host: String::new(),
            seen: Arc::default(),
            calls: Arc::default(),
            spam: Arc::default(),
        }
    }

    /// The same recorder for a component running on node `host` (a kubelet): its events
    /// name the node as `source.host` and `reportingInstance`.
    pub fn on_host(mut self, host: &str) -> Recorder {
        self.host = host.to_string();
        self
    }

    /// Records an event; failures are logged and otherwise ignored (events are best effort).
    pub async fn record(&self, about: &ObjectRef, kind: EventType, reason: &str, message: &str) {
        let object = format!(
            "{}/{}/{}/{}/{}",
            about.api_version, about.kind, about.namespace, about.name, about.uid
        );
        if !self
            .spam
            .lock()
            .expect("spam filter lock")
            .allow(&object, Instant::now())
        {
            tracing::trace!(component = self.component, reason, "event dropped by the spam filter");
            return;
        }
        if let Err(e) = self.try_record(about, kind, reason, message).await {
            tracing::debug!(component = self.component, reason, error = %e, "recording an event failed");
        }
    }

    async fn try_record(
        &self,
        about: &ObjectRef,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let ns = if about.namespace.is_empty() {
            "default"
        } else {
            about.namespace.as_str()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let key: Key = (
            about.uid.clone(),
            about.name.clone(),
            reason.to_string(),
            message.to_string(),
        );
        let now = now_rfc3339();
        let previous = {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Sweep old entries once every 1024 events, so recording stays O(1) amortised.
            if self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1024 == 1023 {
                seen.retain(|_, (_, _, _, at)| at.elapsed() < CORRELATION_WINDOW);
            }
            seen.get(&key)
                .filter(|(_, _, _, at)| at.elapsed() < CORRELATION_WINDOW)
                .cloned()
        };
        if let Some((name, event_ns, count, _)) = previous {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let api_ns: Api<Event> = Api::namespaced(self.client.clone(), &event_ns);
            if api_ns
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .is_ok()
            {
                self.seen
                    .lock()
                    .expect("event cache lock")
                    .insert(key, (name, event_ns, count + 1, Instant::now()));
                return Ok(());
            }
        }
        let suffix = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
        let event: Event = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{suffix}", about.name), "namespace": ns},
            "involvedObject": {"apiVersion": about.api_version, "kind": about.kind, "name": about.name,
                               "namespace": if about.namespace.is_empty() { Value::Null } else { json!(about.namespace) },
                               "uid": about.uid},
            "reason": reason, "message": message, "type": kind.as_str(),
            "source": if self.host.is_empty() { json!({"component": self.component}) } else { json!({"component": self.component, "host": self.host}) },
            "reportingComponent": self.component, "reportingInstance": self.host,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }))
        .map_err(kube::Error::SerdeError)?;
        let created = api.create(&PostParams::default(), &event).await?;
        let name = created.metadata.name.unwrap_or_default();
        self.seen
            .lock()
            .expect("event cache lock")
            .insert(key, (name, ns.to_string(), 1, Instant::now()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spam_filter_allows_a_burst_then_one_event_per_refill() {
        let mut f = SpamFilter::default();
        let t0 = Instant::now();
        for i in 0..25 {
            assert!(f.allow("ds/a", t0), "event {i} of the burst");
        }
        assert!(!f.allow("ds/a", t0), "the 26th is dropped");
        assert!(f.allow("ds/b", t0), "another object has its own bucket");
        assert!(!f.allow("ds/a", t0 + SPAM_REFILL / 2));
        assert!(
            f.allow("ds/a", t0 + SPAM_REFILL + Duration::from_secs(1)),
            "refilled by one"
        );
        assert!(!f.allow("ds/a", t0 + SPAM_REFILL + Duration::from_secs(2)));
    }

    #[test]
    fn the_spam_filter_keeps_a_bounded_number_of_objects() {
        let mut f = SpamFilter::default();
        let t0 = Instant::now();
        for i in 0..(SPAM_KEYS + 100) {
            assert!(f.allow(&format!("pod/{i}"), t0 + Duration::from_millis(i as u64)));
        }
        assert!(f.buckets.len() <= SPAM_KEYS);
        // The most recent objects keep their buckets: an object just limited stays limited.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..25 {
            assert!(f.allow("pod/last", later));
        }
        for i in 0..SPAM_KEYS / 4 {
            f.allow(&format!("other/{i}"), later + Duration::from_millis(1));
        }
        assert!(!f.allow("pod/last", later + Duration::from_millis(20)), "still limited");
    }

    #[test]
    fn eviction_is_amortised() {
        // Each eviction frees half the keys, so 10 * SPAM_KEYS new objects cost at most
        // 20 evictions (a full scan each), not one scan per event.
        let mut f = SpamFilter::default();
        let t0 = Instant::now();
        let mut scans = 0;
        for i in 0..(10 * SPAM_KEYS) {
            let full = f.buckets.len() >= SPAM_KEYS;
            assert!(f.allow(&format!("pod/{i}"), t0 + Duration::from_millis(i as u64)));
            scans += usize::from(full);
        }
        assert!(scans <= 20, "{scans} evictions");
        assert!(f.buckets.contains_key(&format!("pod/{}", 10 * SPAM_KEYS - 1)));
    }
}
