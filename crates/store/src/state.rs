//! State shared by the backends: write planning (preconditions and revisions), the in-memory
//! index of the latest value of every key, and the hub that broadcasts committed events.
//!
//! A backend serialises its writes (one writer at a time), plans each write against the index
//! with [`Op::plan`], makes it durable (or not, for memory), then calls [`Core::publish`], which
//! updates the index and broadcasts the events under one lock. Watches subscribe under the same
//! lock ([`Core::watch`]), so the revision they subscribe at splits history (replayed from the
//! backend) from live events (received from the hub) exactly.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::watch::{self, Batch, History};
use crate::{Error, Event, EventKind, KeyValue, RangeResult, Result, Revision, WatchStream};

/// How many committed batches a watcher may fall behind before its stream is ended (the
/// caller then re-lists). Bounds the memory a slow watcher can pin.
pub(crate) const WATCH_BUFFER: usize = 4096;

/// A write, before it is given a revision.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Create a key that must not exist.
    Create {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Replace the value of an existing key.
    Update {
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
        /// The mod revision the key must have (0 = any).
        expected: Revision,
    },
    /// Delete an existing key.
    Delete {
        /// The key.
        key: String,
        /// The mod revision the key must have (0 = any).
        expected: Revision,
    },
}

impl Op {
    /// The key this write touches.
    pub(crate) fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// Checks the write's preconditions against `current` (the key's latest state) and turns
    /// it into the event it produces at `revision`.
    pub(crate) fn plan(self, current: Option<&KeyValue>, revision: Revision) -> Result<Event> {
        match self {
            Op::Create { key, value } => match current {
                Some(_) => Err(Error::AlreadyExists(key)),
                None => Ok(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: revision,
                        mod_revision: revision,
                    },
                    prev: None,
                }),
            },
            Op::Update { key, value, expected } => {
                let current = check_precondition(current, &key, expected)?;
                Ok(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: current.create_revision,
                        mod_revision: revision,
                    },
                    prev: Some(current.clone()),
                })
            }
            Op::Delete { key, expected } => {
                let current = check_precondition(current, &key, expected)?;
                Ok(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        mod_revision: revision,
                        ..current.clone()
                    },
                    prev: Some(current.clone()),
                })
            }
        }
    }
}

fn check_precondition<'a>(current: Option<&'a KeyValue>, key: &str, expected: Revision) -> Result<&'a KeyValue> {
    let current = current.ok_or_else(|| Error::NotFound(key.to_string()))?;
    if expected != 0 && expected != current.mod_revision {
        return Err(Error::Conflict {
            key: key.to_string(),
            expected,
            current: current.clone(),
        });
    }
    Ok(current)
}

/// What `Store::delete` returns, from the delete's event.
pub(crate) fn deleted(event: Event) -> Result<(Revision, KeyValue)> {
    let revision = event.kv.mod_revision;
    match event.prev {
        Some(prev) if event.kind == EventKind::Delete => Ok((revision, prev)),
        _ => Err(Error::Backend(format!("write at revision {revision} was not a delete"))),
    }
}

/// Checks that `revision` can be read: not newer than `current`, not compacted.
pub(crate) fn check_revision(revision: Revision, current: Revision, compacted: Revision) -> Result<()> {
    if revision > current {
        return Err(Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    if revision <= compacted {
        return Err(Error::Compacted {
            requested: revision,
            compacted,
        });
    }
    Ok(())
}

/// The latest state of one key (the key itself is the map key).
#[derive(Clone, Debug)]
struct Entry {
    value: Bytes,
    create_revision: Revision,
    mod_revision: Revision,
}

/// The latest value of every live key, with the current and compacted revisions.
#[derive(Debug, Default)]
pub(crate) struct Index {
    keys: BTreeMap<String, Entry>,
    current: Revision,
    compacted: Revision,
}

impl Index {
    /// An empty index at `current`, compacted up to `compacted`.
    pub(crate) fn new(current: Revision, compacted: Revision) -> Self {
        Index {
            keys: BTreeMap::new(),
            current,
            compacted,
        }
    }

    /// The revision of the latest write.
    pub(crate) fn current(&self) -> Revision {
        self.current
    }

    /// The compacted revision.
    pub(crate) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// The latest value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        self.keys.get(key).map(|entry| to_kv(key, entry))
    }

    /// Live keys in `[start, end)`, ascending, at most `limit` (0 = all); the flag is true
    /// when the limit cut the result short.
    pub(crate) fn range(&self, start: &str, end: &str, limit: usize) -> (Vec<KeyValue>, bool) {
        if start >= end {
            return (Vec::new(), false);
        }
        let mut kvs = Vec::new();
        for (key, entry) in self
            .keys
            .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
        {
            if limit > 0 && kvs.len() == limit {
                return (kvs, true);
            }
            kvs.push(to_kv(key, entry));
        }
        (kvs, false)
    }

    /// Sets the latest value of a key (used when loading a backend's state).
    pub(crate) fn insert(&mut self, kv: KeyValue) {
        let KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
        } = kv;
        self.keys.insert(
            key,
            Entry {
                value,
                create_revision,
                mod_revision,
            },
        );
    }

    /// Applies a committed event; its revision becomes the current one.
    fn apply(&mut self, event: &Event) {
        match event.kind {
            EventKind::Put => self.insert(event.kv.clone()),
            EventKind::Delete => {
                self.keys.remove(&event.kv.key);
            }
        }
        self.current = event.kv.mod_revision;
    }

    /// How many live keys there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

fn to_kv(key: &str, entry: &Entry) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: entry.value.clone(),
        create_revision: entry.create_revision,
        mod_revision: entry.mod_revision,
    }
}

/// How a range read is served.
pub(crate) enum Served {
    /// From memory: the read asked for the latest revision.
    Latest(RangeResult),
    /// The backend must read its history at this revision (checked: above the compacted
    /// revision, below the current one).
    At(Revision),
}

/// The in-memory index and the watch hub, shared by every backend.
#[derive(Debug)]
pub(crate) struct Core {
    index: RwLock<Index>,
    hub: broadcast::Sender<Batch>,
}

impl Core {
    /// A core serving `index`.
    pub(crate) fn new(index: Index) -> Self {
        let (hub, _) = broadcast::channel(WATCH_BUFFER);
        Core {
            index: RwLock::new(index),
            hub,
        }
    }

    /// Read access to the index. The lock is never held across a panic on a reachable path;
    /// should it be poisoned anyway, the index is still consistent (updates cannot panic
    /// half-way), so the poison is ignored.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The latest value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        self.read().get(key)
    }

    /// The revision of the latest write.
    pub(crate) fn current(&self) -> Revision {
        self.read().current
    }

    /// The compacted revision.
    pub(crate) fn compacted(&self) -> Revision {
        self.read().compacted
    }

    /// Serves a range from memory if it asks for the latest revision (0 or the current one);
    /// otherwise checks the revision and says where the backend must read.
    pub(crate) fn range(&self, start: &str, end: &str, revision: Revision, limit: usize) -> Result<Served> {
        let index = self.read();
        if revision != 0 {
            check_revision(revision, index.current, index.compacted)?;
            if revision != index.current {
                return Ok(Served::At(revision));
            }
        }
        let (kvs, more) = index.range(start, end, limit);
        Ok(Served::Latest(RangeResult {
            kvs,
            revision: index.current,
            more,
        }))
    }

    /// Makes committed events visible: updates the index, then broadcasts them to watchers,
    /// under one lock. Events must carry consecutive revisions following the current one.
    pub(crate) fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut index = self.write();
        for event in &events {
            debug_assert_eq!(event.kv.mod_revision, index.current + 1, "revisions are contiguous");
            index.apply(event);
        }
        // Sent under the lock, so a watch subscribing under it gets exactly the events after
        // the revision it read. An error only means nobody is watching.
        let _ = self.hub.send(Arc::new(events));
    }

    /// Whether compacting to `revision` has anything to do; errors if it is in the future.
    pub(crate) fn compaction_needed(&self, revision: Revision) -> Result<bool> {
        let index = self.read();
        if revision > index.current {
            return Err(Error::FutureRevision {
                requested: revision,
                current: index.current,
            });
        }
        Ok(revision > index.compacted)
    }

    /// Records a finished compaction.
    pub(crate) fn set_compacted(&self, revision: Revision) {
        let mut index = self.write();
        index.compacted = index.compacted.max(revision);
    }

    /// Starts a watch of keys under `prefix` after revision `after`: history up to the current
    /// revision is replayed from `history`, later events come from the hub.
    pub(crate) fn watch(&self, history: Arc<dyn History>, prefix: &str, after: Revision) -> Result<WatchStream> {
        let index = self.read();
        if after < index.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: index.compacted,
            });
        }
        // Subscribed under the index lock: `publish` cannot run in between, so the receiver
        // gets exactly the events after `index.current`.
        let live = self.hub.subscribe();
        let subscribed_at = index.current;
        drop(index);
        Ok(watch::stream(history, prefix.to_string(), after, subscribed_at, live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Bytes::from(value.to_string()),
            create_revision: create,
            mod_revision: modified,
        }
    }

    fn create(key: &str, value: &str) -> Op {
        Op::Create {
            key: key.to_string(),
            value: Bytes::from(value.to_string()),
        }
    }

    #[test]
    fn create_plans_a_put_without_prev() {
        let event = create("a", "1").plan(None, 7).expect("create of a missing key");
        assert_eq!(
            event,
            Event {
                kind: EventKind::Put,
                kv: kv("a", "1", 7, 7),
                prev: None
            }
        );
        let existing = kv("a", "0", 3, 5);
        assert!(matches!(create("a", "1").plan(Some(&existing), 7), Err(Error::AlreadyExists(k)) if k == "a"));
    }

    #[test]
    fn update_keeps_create_revision_and_checks_mod_revision() {
        let current = kv("a", "old", 3, 5);
        let update = |expected| Op::Update {
            key: "a".to_string(),
            value: Bytes::from_static(b"new"),
            expected,
        };
        for expected in [0, 5] {
            let event = update(expected).plan(Some(&current), 9).expect("precondition holds");
            assert_eq!(event.kind, EventKind::Put);
            assert_eq!(event.kv, kv("a", "new", 3, 9));
            assert_eq!(event.prev, Some(current.clone()));
        }
        match update(4).plan(Some(&current), 9) {
            Err(Error::Conflict {
                key,
                expected,
                current: found,
            }) => {
                assert_eq!((key.as_str(), expected), ("a", 4));
                assert_eq!(found, current);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(matches!(update(0).plan(None, 9), Err(Error::NotFound(k)) if k == "a"));
    }

    #[test]
    fn delete_carries_the_last_value_at_the_delete_revision() {
        let current = kv("a", "last", 3, 5);
        let delete = |expected| Op::Delete {
            key: "a".to_string(),
            expected,
        };
        let event = delete(5).plan(Some(&current), 8).expect("precondition holds");
        assert_eq!(event.kind, EventKind::Delete);
        assert_eq!(event.kv, kv("a", "last", 3, 8));
        assert_eq!(event.prev, Some(current.clone()));
        assert_eq!(deleted(event).expect("a delete"), (8, current.clone()));
        assert!(matches!(delete(6).plan(Some(&current), 8), Err(Error::Conflict { .. })));
        assert!(matches!(delete(0).plan(None, 8), Err(Error::NotFound(_))));
    }

    #[test]
    fn index_applies_events_and_ranges_with_limit() {
        let mut index = Index::new(0, 0);
        let mut revision = 0;
        for key in ["b", "a", "d", "c"] {
            revision += 1;
            let event = create(key, key)
                .plan(index.get(key).as_ref(), revision)
                .expect("new key");
            index.apply(&event);
        }
        assert_eq!(index.current(), 4);
        let (kvs, more) = index.range("a", "d", 2);
        assert_eq!(kvs, vec![kv("a", "a", 2, 2), kv("b", "b", 1, 1)]);
        assert!(more);
        let (kvs, more) = index.range("a", "d", 3);
        assert_eq!(kvs.len(), 3);
        assert!(!more, "exactly `limit` keys is not more");
        assert_eq!(
            index.range("c", "a", 0),
            (Vec::new(), false),
            "start after end is empty"
        );
        assert_eq!(index.range("b", "b", 0), (Vec::new(), false));

        let delete = Op::Delete {
            key: "b".to_string(),
            expected: 0,
        };
        let event = delete.plan(index.get("b").as_ref(), 5).expect("b exists");
        index.apply(&event);
        assert_eq!(index.get("b"), None);
        assert_eq!(index.len(), 3);
        assert_eq!(index.current(), 5);
    }

    #[test]
    fn core_range_checks_revisions() {
        let core = Core::new(Index::new(10, 4));
        assert!(matches!(
            core.range("a", "z", 11, 0),
            Err(Error::FutureRevision {
                requested: 11,
                current: 10
            })
        ));
        assert!(matches!(
            core.range("a", "z", 4, 0),
            Err(Error::Compacted {
                requested: 4,
                compacted: 4
            })
        ));
        assert!(matches!(core.range("a", "z", 5, 0), Ok(Served::At(5))));
        assert!(matches!(core.range("a", "z", 10, 0), Ok(Served::Latest(r)) if r.revision == 10));
        assert!(matches!(core.range("a", "z", 0, 0), Ok(Served::Latest(r)) if r.revision == 10));
        assert!(matches!(core.compaction_needed(11), Err(Error::FutureRevision { .. })));
        assert!(!core.compaction_needed(4).expect("not in the future"));
        assert!(core.compaction_needed(5).expect("not in the future"));
    }
}
