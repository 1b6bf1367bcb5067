//! In-memory backend: the shared index for the latest state, plus a log of every event after
//! the compacted revision for historical reads and watch replay.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::state::{Core, Index, Op, Served, check_revision, deleted};
use crate::watch::{History, Replay};
use crate::{Error, Event, KeyValue, RangeResult, Result, Revision, Store, WatchStream};

/// A store kept entirely in memory (tests, throwaway clusters). Nothing survives a drop.
///
/// History is kept until compacted: every event after the compacted revision stays in memory.
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    core: Core,
    /// Every event after the compacted revision, in revision order (the event at index `i`
    /// has revision `compacted + 1 + i`). Its lock also serialises writes and compaction;
    /// it is always taken before the core's.
    log: Mutex<VecDeque<Event>>,
}

impl Inner {
    fn log(&self) -> MutexGuard<'_, VecDeque<Event>> {
        // Nothing panics while holding the lock on a reachable path; a poisoned log is
        // still consistent because it is only mutated after a write has been fully planned.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                core: Core::new(Index::new(0, 0)),
                log: Mutex::new(VecDeque::new()),
            }),
        }
    }

    fn write(&self, op: Op) -> Result<Event> {
        let mut log = self.inner.log();
        let current = self.inner.core.get(op.key());
        let event = op.plan(current.as_ref(), self.inner.core.current() + 1)?;
        log.push_back(event.clone());
        self.inner.core.publish(vec![event.clone()]);
        Ok(event)
    }

    fn range_at(&self, start: &str, end: &str, revision: Revision, limit: usize) -> Result<RangeResult> {
        let log = self.inner.log();
        let index = self.inner.core.read();
        // Checked again under the log lock: a compaction may have run since the first check.
        check_revision(revision, index.current(), index.compacted())?;
        let (latest, _) = index.range(start, end, 0);
        drop(index);
        Ok(rewind(latest, &log, start, end, revision, limit))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.inner.core.read();
        f.debug_struct("MemoryStore")
            .field("current_revision", &index.current())
            .field("compacted_revision", &index.compacted())
            .finish()
    }
}

/// The state as of `revision` of the keys in `[start, end)`, from their latest state (`latest`)
/// by undoing, newest first, the logged events after `revision`.
fn rewind(
    latest: Vec<KeyValue>,
    log: &VecDeque<Event>,
    start: &str,
    end: &str,
    revision: Revision,
    limit: usize,
) -> RangeResult {
    let mut state: BTreeMap<String, KeyValue> = latest.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    for event in log.iter().rev().take_while(|e| e.kv.mod_revision > revision) {
        let key = event.kv.key.as_str();
        if key < start || key >= end {
            continue;
        }
        match &event.prev {
            Some(prev) => state.insert(key.to_string(), prev.clone()),
            None => state.remove(key),
        };
    }
    let more = limit > 0 && state.len() > limit;
    let take = if limit == 0 { usize::MAX } else { limit };
    RangeResult {
        kvs: state.into_values().take(take).collect(),
        revision,
        more,
    }
}

#[async_trait::async_trait]
impl History for Inner {
    async fn replay(self: Arc<Self>, prefix: String, after: Revision, upto: Revision, limit: usize) -> Result<Replay> {
        let log = self.log();
        let compacted = self.core.compacted();
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let skip = usize::try_from(after - compacted).unwrap_or(usize::MAX);
        let mut events = Vec::new();
        for event in log.iter().skip(skip) {
            let revision = event.kv.mod_revision;
            if revision > upto {
                break;
            }
            if event.kv.key.starts_with(&prefix) {
                events.push(event.clone());
                if events.len() >= limit {
                    return Ok(Replay {
                        events,
                        through: revision,
                    });
                }
            }
        }
        Ok(Replay { events, through: upto })
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.inner.core.get(key))
    }

    async fn range(&self, start: &str, end: &str, revision: Revision, limit: usize) -> Result<RangeResult> {
        match self.inner.core.range(start, end, revision, limit)? {
            Served::Latest(result) => Ok(result),
            Served::At(revision) => self.range_at(start, end, revision, limit),
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let event = self.write(Op::Create {
            key: key.to_string(),
            value,
        })?;
        Ok(event.kv.mod_revision)
    }

    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: Revision) -> Result<Revision> {
        let event = self.write(Op::Update {
            key: key.to_string(),
            value,
            expected: expected_mod_revision,
        })?;
        Ok(event.kv.mod_revision)
    }

    async fn delete(&self, key: &str, expected_mod_revision: Revision) -> Result<(Revision, KeyValue)> {
        deleted(self.write(Op::Delete {
            key: key.to_string(),
            expected: expected_mod_revision,
        })?)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.inner.core.watch(self.inner.clone(), prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut log = self.inner.log();
        if !self.inner.core.compaction_needed(revision)? {
            return Ok(());
        }
        while log.front().is_some_and(|e| e.kv.mod_revision <= revision) {
            log.pop_front();
        }
        if log.capacity() > 64 && log.capacity() > 4 * log.len() {
            log.shrink_to_fit();
        }
        self.inner.core.set_compacted(revision);
        Ok(())
    }

    fn current_revision(&self) -> Revision {
        self.inner.core.current()
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.core.compacted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Bytes::from(value.to_string()),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn rewind_undoes_puts_creates_and_deletes() {
        // 1: create a=1; 2: create b=1; 3: update a=2; 4: delete b; 5: create c=1.
        let log: VecDeque<Event> = [
            Event {
                kind: EventKind::Put,
                kv: kv("a", "1", 1, 1),
                prev: None,
            },
            Event {
                kind: EventKind::Put,
                kv: kv("b", "1", 2, 2),
                prev: None,
            },
            Event {
                kind: EventKind::Put,
                kv: kv("a", "2", 1, 3),
                prev: Some(kv("a", "1", 1, 1)),
            },
            Event {
                kind: EventKind::Delete,
                kv: kv("b", "1", 2, 4),
                prev: Some(kv("b", "1", 2, 2)),
            },
            Event {
                kind: EventKind::Put,
                kv: kv("c", "1", 5, 5),
                prev: None,
            },
        ]
        .into_iter()
        .collect();
        let latest = vec![kv("a", "2", 1, 3), kv("c", "1", 5, 5)];
        let at = |revision, limit| rewind(latest.clone(), &log, "a", "z", revision, limit);
        assert_eq!(at(5, 0).kvs, latest);
        assert_eq!(at(4, 0).kvs, vec![kv("a", "2", 1, 3)]);
        assert_eq!(at(3, 0).kvs, vec![kv("a", "2", 1, 3), kv("b", "1", 2, 2)]);
        assert_eq!(at(2, 0).kvs, vec![kv("a", "1", 1, 1), kv("b", "1", 2, 2)]);
        assert_eq!(at(1, 0).kvs, vec![kv("a", "1", 1, 1)]);
        let limited = at(2, 1);
        assert_eq!(
            (limited.kvs, limited.more, limited.revision),
            (vec![kv("a", "1", 1, 1)], true, 2)
        );
        // Keys outside the range are not resurrected.
        let narrow = rewind(vec![kv("a", "2", 1, 3)], &log, "a", "b", 2, 0);
        assert_eq!(narrow.kvs, vec![kv("a", "1", 1, 1)]);
    }
}
