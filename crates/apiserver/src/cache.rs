//! The watch cache: every object in memory, fed by one store watch, serving gets, lists and
//! watches. Each object is encoded to JSON once when it changes; each watch event line is
//! encoded once for all watchers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use shoal_store::{EventKind, KeyValue, Revision, Store};
use tokio::sync::{broadcast, watch};

/// How many past events the cache keeps for watches that start in the past, at most.
const HISTORY: usize = 100_000;
/// The memory the past events may hold, at most (as estimated by [`CacheEvent::cost`]):
/// a watch resuming from further back gets 410 Gone and lists again, as upstream.
const HISTORY_BYTES: usize = 32 << 20;
/// How many live events a slow watcher may fall behind before its watch ends.
const WATCH_BUFFER: usize = 8192;

/// One object as of one revision, kept as JSON only: the decoded form takes about three
/// times the memory, and most reads (GET, LIST and WATCH without selectors) send the JSON
/// as it is. [`Entry::obj`] decodes it when a write, a selector or a Table needs it.
#[derive(Debug)]
pub struct Entry {
    /// Store key.
    pub key: String,
    /// The object encoded as JSON, `metadata.resourceVersion` filled in.
    pub json: Bytes,
    /// Revision of the write that produced this state.
    pub mod_revision: Revision,
}

impl Entry {
    /// Decodes a store key-value into an entry, filling in `metadata.resourceVersion`.
    pub fn from_kv(kv: &KeyValue) -> Option<Arc<Entry>> {
        let obj = decoded(kv)?;
        Some(Arc::new(Entry::new(kv.key.clone(), &obj, kv.mod_revision)))
    }

    /// Like [`Entry::from_kv`], and the watch line of a `kind` event for it: the entry's
    /// JSON is a slice of the line, so the two share one buffer.
    fn from_kv_with_line(kv: &KeyValue, kind: EventType) -> Option<(Arc<Entry>, Bytes)> {
        let obj = decoded(kv)?;
        let mut buf = line_start(kind.as_str(), kv.value.len());
        let start = buf.len();
        serde_json::to_writer(&mut buf, &obj).ok()?;
        buf.extend_from_slice(LINE_TAIL);
        let line = exact_bytes(buf);
        let entry = Entry {
            key: kv.key.clone(),
            json: line.slice(start..line.len() - LINE_TAIL.len()),
            mod_revision: kv.mod_revision,
        };
        Some((Arc::new(entry), line))
    }

    /// An entry for `obj` (its resourceVersion already set) at `mod_revision`.
    pub fn new(key: String, obj: &Value, mod_revision: Revision) -> Entry {
        Entry {
            key,
            json: json_bytes(obj).unwrap_or_default(),
            mod_revision,
        }
    }

    /// The object, decoded.
    pub fn obj(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
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

/// A store value decoded, its `metadata.resourceVersion` filled in.
fn decoded(kv: &KeyValue) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value).ok()?;
    set_resource_version(&mut obj, kv.mod_revision);
    Some(obj)
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
    /// `{"type":..,"object":..}\n`, encoded once; `entry.json` is a slice of it.
    pub line: Bytes,
}

impl CacheEvent {
    fn new(kind: EventType, entry: Arc<Entry>, prev: Option<Arc<Entry>>, line: Bytes) -> Self {
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

    /// Roughly the memory this event keeps alive: its line, which holds the object's JSON
    /// too (the previous state is the event before's, or a current object).
    pub fn cost(&self) -> usize {
        self.line.len()
    }
}

/// What ends every watch line.
const LINE_TAIL: &[u8] = b"}\n";

/// The start of the watch line of a `kind` event, up to the object, in a buffer with room
/// for an object of about `object_len` bytes.
fn line_start(kind: &str, object_len: usize) -> Vec<u8> {
    // The longest start (`{"type":"MODIFIED","object":`, 29 bytes), a resourceVersion the
    // stored object lacks (`,"resourceVersion":"` and up to 20 digits, 41 bytes) and the
    // tail: the line fits without growing.
    let mut buf = Vec::with_capacity(object_len + 80);
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
}

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
    /// Loads every object under `prefix` from the store and follows the store's changes.
    pub async fn start(store: Arc<dyn Store>, prefix: &str) -> Result<Arc<WatchCache>, shoal_store::Error> {
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
        });
        let feeder = cache.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move { feeder.follow(store, prefix, rev).await });
        Ok(cache)
    }

    async fn follow(self: Arc<Self>, store: Arc<dyn Store>, prefix: String, mut after: Revision) {
        loop {
            let mut stream = match store.watch(&prefix, after) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "watch cache: store watch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
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
            tracing::warn!(after, "watch cache: store watch ended; resuming");
        }
    }

    /// Applies one store event. Only the feeder task calls this, so the event's kind, read
    /// under a read lock before the object is encoded, still holds when the write lock is
    /// taken (encoding outside the lock keeps readers from waiting on it).
    fn apply(&self, ev: shoal_store::Event) {
        let exists = self
            .inner
            .read()
            .expect("watch cache lock poisoned")
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
        let mut inner = self.inner.write().expect("watch cache lock poisoned");
        let prev = match ev.kind {
            EventKind::Put => inner.objects.insert(entry.key.clone(), entry.clone()),
            EventKind::Delete => inner.objects.remove(&entry.key),
        };
        let event = Arc::new(CacheEvent::new(kind, entry, prev, line));
        inner.revision = event.revision();
        inner.history_bytes += event.cost();
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY || (inner.history_bytes > HISTORY_BYTES && inner.history.len() > 1) {
            let Some(old) = inner.history.pop_front() else { break };
            inner.history_bytes -= old.cost();
            inner.history_start = old.revision();
        }
        // Sent under the lock, so a subscriber sees each event once: in replay or live.
        let _ = self.events.send(event);
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
            .expect("watch cache lock poisoned")
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
        let inner = self.inner.read().expect("watch cache lock poisoned");
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

    /// Starts a watch after revision `after`. `None` when that revision is older than the
    /// history the cache keeps (the client must re-list: 410 Gone).
    pub fn subscribe(&self, after: Revision) -> Option<Subscription> {
        let inner = self.inner.read().expect("watch cache lock poisoned");
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
        let inner = self.inner.read().expect("watch cache lock poisoned");
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
        self.inner.read().expect("watch cache lock poisoned").history_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_and_its_entry_share_one_buffer() {
        let kv = KeyValue {
            key: "/registry/pods/default/p".into(),
            value: Bytes::from_static(br#"{"kind":"Pod","metadata":{"name":"p"}}"#),
            create_revision: 3,
            mod_revision: 7,
        };
        let (entry, line) = Entry::from_kv_with_line(&kv, EventType::Modified).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["type"], "MODIFIED");
        assert_eq!(parsed["object"]["metadata"]["resourceVersion"], "7");
        assert!(line.ends_with(b"}\n"));
        assert_eq!(serde_json::from_slice::<Value>(&entry.json).unwrap(), parsed["object"]);
        // The entry's JSON points into the line: no second copy.
        let inside = line.as_ptr_range();
        assert!(inside.contains(&entry.json.as_ptr()));
        assert_eq!(line, watch_line("MODIFIED", &entry.json));
    }
}
