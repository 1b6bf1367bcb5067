//! The watch cache: every object in memory, fed by one store watch, serving gets, lists and
//! watches. Each object is encoded to JSON once when it changes; each watch event line is
//! encoded once for all watchers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use shoal_api::shape::Shape;
use shoal_store::{EventKind, KeyValue, Revision, Store};
use tokio::sync::{broadcast, watch};

use crate::splice::Splice;

/// How many past events the cache keeps for watches that start in the past, at most.
const HISTORY: usize = 100_000;
/// The memory the past events may hold, at most (as estimated by [`CacheEvent::cost`]):
/// a watch resuming from further back gets 410 Gone and lists again, as upstream. 24 MiB
/// hold about a minute of Lease renewals at 5,000 nodes and half a minute at 10,000: a
/// watch asking for bookmarks (sent every 30 s) resumes within the window.
const HISTORY_BYTES: usize = 24 << 20;
/// How many live events a slow watcher may fall behind before its watch ends.
const WATCH_BUFFER: usize = 8192;

/// One object as of one revision, kept as JSON only: the decoded form takes about three
/// times the memory, and most reads (GET, LIST and WATCH without selectors) send the JSON
/// as it is. [`Entry::obj`] decodes it when a write, a selector or a Table needs it.
///
/// The JSON is the stored value itself, the very buffer the store keeps (no second copy of
/// every object), with `metadata.resourceVersion` spliced in where it is served
/// ([`Splice`]): no decode and encode per change either.
#[derive(Debug)]
pub struct Entry {
    /// Store key.
    pub key: String,
    /// The stored value; served with the resourceVersion spliced in at `splice`, or as it
    /// is when `splice` is `None` (it was encoded with its resourceVersion).
    stored: Bytes,
    splice: Option<Splice>,
    /// Revision of the write that produced this state.
    pub mod_revision: Revision,
}

impl Entry {
    /// A store key-value as an entry. The value is kept as it is (shared with the store);
    /// one the splice scan does not understand is decoded and encoded with its
    /// resourceVersion instead, and one that is not JSON is refused (checked by a parse
    /// that builds nothing).
    pub fn from_kv(kv: &KeyValue) -> Option<Arc<Entry>> {
        serde_json::from_slice::<serde::de::IgnoredAny>(&kv.value).ok()?;
        let decode = || serde_json::from_slice(&kv.value).ok();
        Entry::serving(kv.key.clone(), kv.value.clone(), kv.mod_revision, decode).map(Arc::new)
    }

    /// An entry serving `stored` at `mod_revision`: spliced where the scan finds the place,
    /// else the object from `decode`, encoded whole with its resourceVersion.
    fn serving(
        key: String,
        stored: Bytes,
        mod_revision: Revision,
        decode: impl FnOnce() -> Option<Value>,
    ) -> Option<Entry> {
        let splice = Splice::find(&stored);
        let stored = match splice {
            Some(_) => stored,
            None => {
                let mut obj = decode()?;
                set_resource_version(&mut obj, mod_revision);
                json_bytes(&obj).ok()?
            }
        };
        Some(Entry {
            key,
            stored,
            splice,
            mod_revision,
        })
    }

    /// Like [`Entry::from_kv`], and the watch line of a `kind` event for it, in a buffer of
    /// its exact size.
    fn from_kv_with_line(kv: &KeyValue, kind: EventType) -> Option<(Arc<Entry>, Bytes)> {
        let entry = Entry::from_kv(kv)?;
        let line = entry.watch_line(kind.as_str());
        Some((entry, line))
    }

    /// An entry for `obj` at `mod_revision` (its resourceVersion, if any, is replaced).
    pub fn new(key: String, obj: &Value, mod_revision: Revision) -> Entry {
        let stored = json_bytes(obj).unwrap_or_default();
        Entry::serving(key.clone(), stored, mod_revision, || Some(obj.clone())).unwrap_or(Entry {
            key,
            stored: Bytes::new(),
            splice: None,
            mod_revision,
        })
    }

    /// The length of the served JSON.
    pub fn json_len(&self) -> usize {
        match &self.splice {
            Some(s) => s.len(self.stored.len(), self.mod_revision),
            None => self.stored.len(),
        }
    }

    /// Appends the served JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match &self.splice {
            Some(s) => s.write(&self.stored, self.mod_revision, out),
            None => out.extend_from_slice(&self.stored),
        }
    }

    /// The served JSON: the object with its resourceVersion.
    pub fn json(&self) -> Bytes {
        if self.splice.is_none() {
            return self.stored.clone();
        }
        let mut out = Vec::with_capacity(self.json_len());
        self.write_json(&mut out);
        Bytes::from(out)
    }

    /// The `kind` watch event line for this entry, in a buffer of its exact size.
    pub fn watch_line(&self, kind: &str) -> Bytes {
        let mut buf = line_start(kind, self.json_len());
        self.write_json(&mut buf);
        buf.extend_from_slice(LINE_TAIL);
        Bytes::from(buf)
    }

    /// Some fields of the object, decoded into `T` (which names only those) without building
    /// the rest; the resourceVersion may be missing.
    pub fn fields<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.stored).ok()
    }

    /// The parts of the object that `shape` names, decoded, with its resourceVersion: what a
    /// reader of a few fields needs, built in a fraction of the time of [`Entry::obj`].
    pub fn obj_in(&self, shape: &Shape) -> Value {
        let mut obj = shoal_api::shape::decode(&self.stored, shape).unwrap_or(Value::Null);
        if self.splice.is_some() {
            set_resource_version(&mut obj, self.mod_revision);
        }
        obj
    }

    /// Appends the served object's `metadata` as it is served (its `managedFields`
    /// included) to `out`; false when the stored object has none.
    pub fn write_metadata(&self, out: &mut Vec<u8>) -> bool {
        let Some(range) = crate::splice::metadata_range(&self.stored) else {
            return false;
        };
        match &self.splice {
            Some(s) => s.write_range(&self.stored, range, self.mod_revision, out),
            None => out.extend_from_slice(&self.stored[range]),
        }
        true
    }

    /// The object, decoded, with its resourceVersion.
    pub fn obj(&self) -> Value {
        let mut obj = serde_json::from_slice(&self.stored).unwrap_or(Value::Null);
        if self.splice.is_some() {
            set_resource_version(&mut obj, self.mod_revision);
        }
        obj
    }
}

/// `buf` as `Bytes` holding no more memory than its length needs: a `Vec` grown by doubling
/// may have up to twice its length allocated, and values kept for every object (the store's
/// index, the watch cache) would hold that slack for their lifetime. Shrinking in place does
/// not help with every allocator (mimalloc keeps a block shrunk by less than half), so a
/// wasteful buffer is copied into one of the exact size.
pub fn exact_bytes(buf: Vec<u8>) -> Bytes {
    if buf.capacity() - buf.len() > buf.len() / 16 + 16 {
        Bytes::copy_from_slice(&buf)
    } else {
        Bytes::from(buf)
    }
}

/// `obj` encoded as JSON, in a buffer of its exact size ([`exact_bytes`]).
pub fn json_bytes<T: serde::Serialize + ?Sized>(obj: &T) -> Result<Bytes, serde_json::Error> {
    serde_json::to_vec(obj).map(exact_bytes)
}

/// Sets `metadata.resourceVersion` to `rev`.
pub fn set_resource_version(obj: &mut Value, rev: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// ADDED
    Added,
    /// MODIFIED
    Modified,
    /// DELETED
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change seen by the cache.
#[derive(Debug)]
pub struct CacheEvent {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for DELETED: its last state, with the delete's revision).
    pub entry: Arc<Entry>,
    /// The object before the change.
    pub prev: Option<Arc<Entry>>,
    /// `{"type":..,"object":..}\n`, encoded once for every live watcher. Events kept in
    /// the history have none: a watch that replays them encodes its own lines.
    pub line: Option<Bytes>,
}

impl CacheEvent {
    fn new(kind: EventType, entry: Arc<Entry>, prev: Option<Arc<Entry>>, line: Option<Bytes>) -> Self {
        CacheEvent {
            kind,
            entry,
            prev,
            line,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.entry.mod_revision
    }

    /// Roughly the memory this event keeps alive in the history: the object's stored JSON
    /// (shared with the store while it is the current state; the previous state is the
    /// event before's, or a current object).
    pub fn cost(&self) -> usize {
        self.entry.stored.len()
    }
}

/// What ends every watch line.
const LINE_TAIL: &[u8] = b"}\n";

/// The start of the watch line of a `kind` event, up to the object, in a buffer of the
/// exact size of the line of an object of `object_len` bytes.
fn line_start(kind: &str, object_len: usize) -> Vec<u8> {
    const START: usize = r#"{"type":"","object":"#.len();
    let mut buf = Vec::with_capacity(START + kind.len() + object_len + LINE_TAIL.len());
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    buf
}

/// Encodes one watch event line around an already-encoded object.
pub fn watch_line(kind: &str, object_json: &[u8]) -> Bytes {
    let mut buf = line_start(kind, object_json.len());
    buf.extend_from_slice(object_json);
    buf.extend_from_slice(LINE_TAIL);
    Bytes::from(buf)
}

struct Inner {
    objects: BTreeMap<String, Arc<Entry>>,
    revision: Revision,
    history: VecDeque<Arc<CacheEvent>>,
    /// The sum of the history's [`CacheEvent::cost`].
    history_bytes: usize,
    /// Every event after this revision is in `history`.
    history_start: Revision,
}

/// The watch cache.
pub struct WatchCache {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<CacheEvent>>,
    revision: watch::Sender<Revision>,
    /// Changes applied to roles and bindings (see [`WatchCache::rbac_generation`]).
    rbac_changes: std::sync::atomic::AtomicU64,
    /// Changes applied to admission configuration (see [`WatchCache::admission_generation`]).
    admission_changes: std::sync::atomic::AtomicU64,
}

/// Where roles and bindings are stored.
static RBAC_PREFIXES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| crate::keys::group_prefixes("rbac.authorization.k8s.io"));

/// Where webhook configurations and admission policies are stored.
static ADMISSION_PREFIXES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| crate::keys::group_prefixes("admissionregistration.k8s.io"));

/// What a watch gets when it starts: past events to replay, then a live receiver.
pub struct Subscription {
    /// Events after the requested revision, oldest first.
    pub replay: Vec<Arc<CacheEvent>>,
    /// Live events; skip those at or below `after`.
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The cache revision when the subscription was taken.
    pub revision: Revision,
}

impl WatchCache {
    /// Loads every object under `prefix` from the store and follows the store's changes, as
    /// the supervised component `watch-cache` of `components` (restarted from the revision it
    /// reached if it ever fails).
    pub async fn start(
        store: Arc<dyn Store>,
        prefix: &str,
        components: &shoal_runtime::Components,
    ) -> Result<Arc<WatchCache>, shoal_store::Error> {
        let end = shoal_store::prefix_end(prefix);
        let snapshot = store.range(prefix, &end, 0, 0).await?;
        let mut objects = BTreeMap::new();
        for kv in &snapshot.kvs {
            if let Some(e) = Entry::from_kv(kv) {
                objects.insert(kv.key.clone(), e);
            }
        }
        let rev = snapshot.revision;
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let (revision, _) = watch::channel(rev);
        let cache = Arc::new(WatchCache {
            inner: RwLock::new(Inner {
                objects,
                revision: rev,
                history: VecDeque::new(),
                history_bytes: 0,
                history_start: rev,
            }),
            events,
            revision,
            rbac_changes: Default::default(),
            admission_changes: Default::default(),
        });
        let feeder = cache.clone();
        let prefix = prefix.to_string();
        components.spawn("watch-cache", move || {
            let (feeder, store, prefix) = (feeder.clone(), store.clone(), prefix.clone());
            let after = feeder.applied();
            async move { feeder.follow(store, prefix, after).await }
        });
        Ok(cache)
    }

    async fn follow(self: Arc<Self>, store: Arc<dyn Store>, prefix: String, mut after: Revision) {
        // A restarted feeder first announces what its predecessor applied.
        if after > self.revision() {
            self.revision.send_replace(after);
        }
        // A store that cannot be watched now (etcd without quorum) is asked again with
        // back-off; a watch that delivered something is resumed at once.
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            let mut stream = match store.watch(&prefix, after) {
                Ok(s) => s,
                // History this cache missed is gone (another server compacted while this
                // one could not watch): load the state afresh instead.
                Err(shoal_store::Error::Compacted { compacted, .. }) => {
                    tracing::warn!(after, compacted, "watch cache: missed history was compacted; reloading");
                    match self.reload(store.as_ref(), &prefix).await {
                        Ok(revision) => after = revision,
                        Err(e) => {
                            tracing::error!(error = %e, "watch cache: reloading failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                        }
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "watch cache: store watch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                    continue;
                }
            };
            let from = after;
            while let Some(batch) = stream.next().await {
                for ev in batch {
                    if ev.kv.mod_revision <= after {
                        continue;
                    }
                    after = ev.kv.mod_revision;
                    self.apply(ev);
                }
                self.revision.send_replace(after);
            }
            if after > from {
                backoff = std::time::Duration::from_millis(100);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
            }
            tracing::warn!(after, "watch cache: store watch ended; resuming");
        }
    }

    /// Brings the cache to the store's latest state when the changes since its revision
    /// can no longer be replayed: the differences are applied as events (what changed or
    /// appeared, in revision order, then what is gone, at the new revision), so live
    /// watchers end where the store is; the history restarts there, so a watch from an
    /// earlier revision gets 410 and lists again, as upstream. Returns the new revision.
    async fn reload(&self, store: &dyn Store, prefix: &str) -> Result<Revision, shoal_store::Error> {
        let end = shoal_store::prefix_end(prefix);
        let snapshot = store.range(prefix, &end, 0, 0).await?;
        let rev = snapshot.revision;
        let (mut puts, deletes) = {
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            let fresh: std::collections::BTreeSet<&str> = snapshot.kvs.iter().map(|kv| kv.key.as_str()).collect();
            let puts: Vec<&KeyValue> = snapshot
                .kvs
                .iter()
                .filter(|kv| inner.objects.get(&kv.key).map(|e| e.mod_revision) != Some(kv.mod_revision))
                .collect();
            let deletes: Vec<KeyValue> = inner
                .objects
                .values()
                .filter(|e| !fresh.contains(e.key.as_str()))
                .map(|e| KeyValue {
                    key: e.key.clone(),
                    value: e.stored.clone(),
                    create_revision: 0,
                    mod_revision: rev,
                })
                .collect();
            (puts, deletes)
        };
        puts.sort_by_key(|kv| kv.mod_revision);
        let events = puts
            .into_iter()
            .map(|kv| shoal_store::Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev: None,
            })
            .chain(deletes.into_iter().map(|kv| shoal_store::Event {
                kind: EventKind::Delete,
                kv,
                prev: None,
            }));
        for ev in events {
            self.apply(ev);
        }
        {
            let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
            inner.revision = rev;
            inner.history.clear();
            inner.history_bytes = 0;
            inner.history_start = rev;
        }
        self.revision.send_replace(rev);
        Ok(rev)
    }

    /// Applies one store event. Only the feeder task calls this, so the event's kind, read
    /// under a read lock before the object is encoded, still holds when the write lock is
    /// taken (encoding outside the lock keeps readers from waiting on it).
    fn apply(&self, ev: shoal_store::Event) {
        let exists = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .objects
            .contains_key(&ev.kv.key);
        let kind = match (ev.kind, exists) {
            (EventKind::Delete, _) => EventType::Deleted,
            (EventKind::Put, true) => EventType::Modified,
            (EventKind::Put, false) => EventType::Added,
        };
        let Some((entry, line)) = Entry::from_kv_with_line(&ev.kv, kind) else {
            tracing::error!(key = %ev.kv.key, "watch cache: undecodable value skipped");
            return;
        };
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let prev = match ev.kind {
            EventKind::Put => inner.objects.insert(entry.key.clone(), entry.clone()),
            EventKind::Delete => inner.objects.remove(&entry.key),
        };
        // The history keeps the event without its line: a line is a second copy of the
        // object, needed only while the event goes out to live watchers.
        let kept = Arc::new(CacheEvent::new(kind, entry.clone(), prev.clone(), None));
        let event = Arc::new(CacheEvent::new(kind, entry, prev, Some(line)));
        inner.revision = event.revision();
        inner.history_bytes += kept.cost();
        inner.history.push_back(kept);
        while inner.history.len() > HISTORY || (inner.history_bytes > HISTORY_BYTES && inner.history.len() > 1) {
            let Some(old) = inner.history.pop_front() else { break };
            inner.history_bytes -= old.cost();
            inner.history_start = old.revision();
        }
        // Sent under the lock, so a subscriber sees each event once: in replay or live.
        let _ = self.events.send(event);
        drop(inner);
        // Counted once the change is visible: what is derived from roles and bindings
        // under an older count is derived again.
        if RBAC_PREFIXES.iter().any(|p| ev.kv.key.starts_with(p.as_str())) {
            self.rbac_changes.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        if ADMISSION_PREFIXES.iter().any(|p| ev.kv.key.starts_with(p.as_str())) {
            self.admission_changes
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }

    /// How many changes to webhook configurations and admission policies the cache has
    /// applied: the admission chain built from them holds while this stays the same.
    pub fn admission_generation(&self) -> u64 {
        self.admission_changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many changes to roles and bindings the cache has applied: what was derived from
    /// them (RBAC's rules for a user) holds while this stays the same.
    pub fn rbac_generation(&self) -> u64 {
        self.rbac_changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The revision of the last event applied (perhaps not yet announced to waiting writers).
    fn applied(&self) -> Revision {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).revision
    }

    /// The revision of the latest change the cache has applied.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has applied revision `rev` (an acknowledged write).
    pub async fn wait_for(&self, rev: Revision) {
        let mut rx = self.revision.subscribe();
        let _ = rx.wait_for(|r| *r >= rev).await;
    }

    /// The current state of `key`.
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .objects
            .get(key)
            .cloned()
    }

    /// Objects whose keys start with `prefix`, starting at `start` (inclusive, if given), in key
    /// order, filtered by `keep`, with at most `limit` results (0 = all). Returns the entries,
    /// the cache revision and whether more matched.
    pub fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&Entry) -> bool,
    ) -> (Vec<Arc<Entry>>, Revision, bool) {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let from = start.unwrap_or(prefix).to_string();
        let mut out = Vec::new();
        let mut more = false;
        for (k, e) in inner.objects.range(from..) {
            if !k.starts_with(prefix) {
                break;
            }
            if !keep(e) {
                continue;
            }
            if limit > 0 && out.len() == limit {
                more = true;
                break;
            }
            out.push(e.clone());
        }
        (out, inner.revision, more)
    }

    /// How many objects under `prefix` have keys from `start` on.
    pub fn count_from(&self, prefix: &str, start: &str) -> usize {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .objects
            .range(start.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// Starts a watch after revision `after`. `None` when that revision is older than the
    /// history the cache keeps (the client must re-list: 410 Gone).
    pub fn subscribe(&self, after: Revision) -> Option<Subscription> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if after < inner.history_start {
            return None;
        }
        let replay = inner.history.iter().filter(|e| e.revision() > after).cloned().collect();
        Some(Subscription {
            replay,
            live: self.events.subscribe(),
            revision: inner.revision,
        })
    }

    /// Like [`subscribe`](Self::subscribe) from "now", with a snapshot of the current objects
    /// under `prefix` (for watches that start with synthetic ADDED events).
    pub fn subscribe_with_snapshot(&self, prefix: &str) -> (Vec<Arc<Entry>>, Subscription) {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let objs = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect();
        (
            objs,
            Subscription {
                replay: Vec::new(),
                live: self.events.subscribe(),
                revision: inner.revision,
            },
        )
    }

    /// The oldest revision a watch can start after.
    pub fn oldest_watchable(&self) -> Revision {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).history_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_decode_without_managed_fields_and_copy_the_metadata_whole() {
        let stored = br#"{"kind":"Pod","metadata":{"managedFields":[{"fieldsV1":{"f:spec":{}},"manager":"m"}],"name":"p"},"spec":{"nodeName":"n"}}"#;
        let kv = KeyValue {
            key: "/registry/pods/default/p".into(),
            value: Bytes::from_static(stored),
            create_revision: 3,
            mod_revision: 9,
        };
        let entry = Entry::from_kv(&kv).unwrap();
        let obj = entry.obj_in(&shoal_api::shape::WITHOUT_MANAGED_FIELDS);
        let mut want = entry.obj();
        assert!(want["metadata"]["managedFields"].is_array());
        want["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(obj, want, "everything else, the resourceVersion included");
        let mut meta = Vec::new();
        assert!(entry.write_metadata(&mut meta));
        assert_eq!(serde_json::from_slice::<Value>(&meta).unwrap(), entry.obj()["metadata"]);
    }

    #[test]
    fn an_entry_serves_the_stored_buffer_with_its_resource_version() {
        let kv = KeyValue {
            key: "/registry/pods/default/p".into(),
            value: Bytes::from_static(br#"{"kind":"Pod","metadata":{"name":"p","uid":"u"}}"#),
            create_revision: 3,
            mod_revision: 7,
        };
        let (entry, line) = Entry::from_kv_with_line(&kv, EventType::Modified).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["type"], "MODIFIED");
        assert_eq!(parsed["object"]["metadata"]["resourceVersion"], "7");
        assert!(line.ends_with(b"}\n"));
        let mut exact = line_start("MODIFIED", entry.json_len());
        entry.write_json(&mut exact);
        exact.extend_from_slice(LINE_TAIL);
        assert_eq!(
            (exact.len(), &exact[..]),
            (exact.capacity(), &line[..]),
            "lines are of their exact size"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&entry.json()).unwrap(),
            parsed["object"]
        );
        assert_eq!(entry.obj(), parsed["object"]);
        assert_eq!(entry.json_len(), entry.json().len());
        // The entry holds the store's buffer: no second copy.
        assert_eq!(entry.stored.as_ptr(), kv.value.as_ptr());
        assert_eq!(line, watch_line("MODIFIED", &entry.json()));
    }

    #[test]
    fn entries_of_values_the_splice_does_not_understand_are_encoded_whole() {
        let kv = |v: &'static [u8]| KeyValue {
            key: "/registry/pods/default/p".into(),
            value: Bytes::from_static(v),
            create_revision: 3,
            mod_revision: 7,
        };
        // Whitespace the scan does not expect is fine; no metadata at all is not.
        let e = Entry::from_kv(&kv(b"{ \"kind\" : \"Pod\" }")).unwrap();
        assert_eq!(e.obj(), serde_json::json!({"kind": "Pod"}));
        assert!(Entry::from_kv(&kv(b"not json")).is_none());
        // Broken JSON is refused even where the splice would find its place.
        assert!(Entry::from_kv(&kv(br#"{"metadata":{"name":"p"}"#)).is_none());
        assert!(Entry::from_kv(&kv(br#"{"a":xyz,"metadata":{}}"#)).is_none());
        let e = Entry::new(
            "k".into(),
            &serde_json::json!({"metadata": {"resourceVersion": "1"}}),
            9,
        );
        assert_eq!(e.obj()["metadata"]["resourceVersion"], "9");
        assert_eq!(
            serde_json::from_slice::<Value>(&e.json()).unwrap()["metadata"]["resourceVersion"],
            "9"
        );
    }
}
