//! The revisioned key-value store behind the API server: the etcd data model.
//!
//! Every write (create, update, delete) gets the next value of one global revision counter.
//! Each key remembers the revision that created it and the one that last modified it; writes
//! can be made conditional on the latter (compare-and-swap). Reads can be served at any
//! revision not yet compacted, and a watch replays every change after a given revision, then
//! follows live changes. The store knows nothing of Kubernetes kinds: keys are strings, values
//! are bytes.
//!
//! Backends: [`MemoryStore`] (tests, throwaway clusters), [`SqliteStore`] (the embedded
//! default: durable, fsync'd before a write is acknowledged, concurrent writes grouped into one
//! transaction) and [`EtcdStore`] (an etcd v3 cluster, shared by several API servers).
//! [`LocalEtcd`] runs a local etcd cluster of child processes.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

mod ceiling;
mod etcd;
mod local_etcd;
mod memory;
mod sqlite;
mod state;
mod watch;

pub use etcd::{EtcdOptions, EtcdStore};
pub use local_etcd::LocalEtcd;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A store revision. Revision 0 means "none" / "latest" depending on context.
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value stored at `mod_revision`.
    pub value: Bytes,
    /// Revision of the write that created this key (in its current life).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// A change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or Delete.
    pub kind: EventKind,
    /// For `Put`: the new key-value. For `Delete`: the key with its last value, and
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The key-value before this change, when there was one.
    pub prev: Option<KeyValue>,
}

/// The result of a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// Keys in ascending order.
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: Revision,
    /// True when `limit` cut the result short.
    pub more: bool,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` found the key already present.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// `update` or `delete` found no such key.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A mod-revision precondition failed; carries the key's current value.
    #[error("key {key:?}: expected mod revision {expected}, found {}", current.mod_revision)]
    Conflict {
        /// The key.
        key: String,
        /// The mod revision the caller expected.
        expected: Revision,
        /// The key's current state.
        current: KeyValue,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// Every revision up to and including this one is gone.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The backend failed (I/O, corruption, closed).
    #[error("storage backend: {0}")]
    Backend(String),
    /// The backend cannot be reached or cannot decide now (etcd without quorum or leader, a
    /// request past its deadline); the same request may succeed later. A write that fails
    /// so may or may not have been applied.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stream of changes, in revision order; batches group events of consecutive revisions.
/// The stream ends if the watcher falls too far behind (the caller then re-lists).
pub type WatchStream = Pin<Box<dyn Stream<Item = Vec<Event>> + Send>>;

/// The revisioned key-value store.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys in `[start, end)` in ascending order, as of `revision` (0 = latest), at most
    /// `limit` of them (0 = no limit). Errors with `Compacted` / `FutureRevision`.
    async fn range(&self, start: &str, end: &str, revision: Revision, limit: usize) -> Result<RangeResult>;

    /// Creates `key`; fails with `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replaces `key`'s value if its mod revision is `expected_mod_revision` (0 = any).
    /// Fails with `NotFound` or `Conflict`. Returns the new revision.
    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: Revision) -> Result<Revision>;

    /// Deletes `key` if its mod revision is `expected_mod_revision` (0 = any). Returns the
    /// revision of the delete and the deleted key-value (as it was before the delete, with its
    /// own mod revision). Fails with `NotFound` or `Conflict`.
    async fn delete(&self, key: &str, expected_mod_revision: Revision) -> Result<(Revision, KeyValue)>;

    /// Every change to keys starting with `prefix` after revision `after` (exclusive), then
    /// live changes. Errors with `Compacted` if `after` is older than the compacted revision
    /// (watching from exactly the compacted revision is fine). `after` may be ahead of the
    /// current revision: the stream then starts with the first change after it.
    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forgets history up to and including `revision`, which becomes the compacted revision:
    /// afterwards reads at `revision` or earlier, and watches from before `revision`, fail with
    /// `Compacted`. The latest value of every key is kept; keys deleted at or before
    /// `revision` vanish. Compacting to a revision at or below the compacted one does nothing;
    /// compacting beyond the current revision fails with `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision of the latest write (0 for an empty store).
    fn current_revision(&self) -> Revision;

    /// Every revision up to and including this one has been compacted (0 = none).
    fn compacted_revision(&self) -> Revision;

    /// Whether the store can take writes now (readiness): `Ok`, or why not. A store whose
    /// last write failed (a full disk, say) checks again with a small durable write of its
    /// own, so readiness returns as soon as writes would succeed.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// The end of the range that holds every key starting with `prefix` (etcd's "prefix end"):
/// the smallest string greater than all of them. When there is none (empty prefix, or one made
/// only of U+10FFFF) the range is open-ended and this returns `"\u{10FFFF}"`.
pub fn prefix_end(prefix: &str) -> String {
    prefix_upper_bound(prefix).unwrap_or_else(|| char::MAX.to_string())
}

/// The smallest string greater than every string starting with `prefix`, or `None` when no
/// such string exists. Code point order equals UTF-8 byte order, so this bounds byte-wise
/// comparisons (SQLite's BINARY collation) as well as `str` ordering.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_character() {
        assert_eq!(prefix_end("/registry/pods/"), "/registry/pods0");
        assert_eq!(prefix_end("a"), "b");
        assert_eq!(prefix_end("a\u{7f}"), "a\u{80}");
        assert_eq!(prefix_end("caf\u{e9}"), "caf\u{ea}");
        assert_eq!(prefix_end("x\u{D7FF}"), "x\u{E000}");
        assert_eq!(prefix_end("x\u{10FFFF}"), "y");
    }

    #[test]
    fn prefix_end_is_open_ended_when_nothing_is_greater() {
        assert_eq!(prefix_end(""), "\u{10FFFF}");
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}\u{10FFFF}"), None);
    }

    #[test]
    fn prefix_end_bounds_exactly_the_keys_with_the_prefix() {
        let keys = [
            "caf",
            "cafe",
            "caf\u{e9}",
            "caf\u{e9}s",
            "caf\u{ea}",
            "cag",
            "ca\u{10FFFF}",
        ];
        for prefix in ["caf", "caf\u{e9}", "ca"] {
            let end = prefix_end(prefix);
            for key in keys {
                let in_range = key >= prefix && key < end.as_str();
                assert_eq!(in_range, key.starts_with(prefix), "prefix {prefix:?} key {key:?}");
                assert_eq!(
                    key.as_bytes() >= prefix.as_bytes() && key.as_bytes() < end.as_bytes(),
                    in_range
                );
            }
        }
    }
}
