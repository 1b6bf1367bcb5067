//! SQLite backend: a durable log of every revision, plus the shared in-memory index.
//!
//! Layout (like k3s's kine): table `log` has one row per revision (`revision` is the rowid)
//! with the key, the value, the key's create revision, the revision of the key's previous
//! version in its current life (0 after a create) and a deleted flag; a delete's row keeps
//! the deleted value. Table `meta` holds the compacted revision and the schema version. The
//! current revision is the larger of the last row and the compacted revision; revisions after
//! the compacted one have no gaps.
//!
//! Writes go to one writer thread. It takes every queued write, applies them in one
//! transaction (each with its own revision and precondition check), commits once — WAL with
//! `synchronous=FULL`, so the commit is fsync'd — then publishes the events to the index and
//! the watch hub and only then acknowledges each caller (group commit).
//!
//! Reads of the latest state are served from the index. Historical reads and watch replay
//! query the log through a small pool of read connections, each in one read transaction that
//! also checks the compacted revision, so a concurrent compaction cannot yield partial data.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::ceiling::{Ceiling, Mark};
use crate::state::{Core, Index, Op, Served, deleted};
use crate::watch::{History, Replay};
use crate::{Error, Event, EventKind, KeyValue, RangeResult, Result, Revision, Store, WatchStream};

/// The schema version this code reads and writes.
const SCHEMA_VERSION: i64 = 1;

/// Most requests the writer takes into one transaction.
const MAX_BATCH: usize = 512;

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

/// How long a connection waits for a lock held by another (e.g. a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('compacted', 0);
COMMIT;
";

const INSERT: &str = "INSERT INTO log (revision, key, value, create_revision, prev_revision, deleted)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The latest row of every key at or before a revision (SQLite takes the bare columns from
/// the row holding the `MAX`).
const RANGE_AT: &str = "SELECT key, MAX(revision), value, create_revision, deleted FROM log
    WHERE key >= ?1 AND key < ?2 AND revision <= ?3 GROUP BY key ORDER BY key";

const LATEST: &str = "SELECT key, MAX(revision), value, create_revision, deleted FROM log GROUP BY key";

/// Rows of a replay with the previous version joined in. `+l.key` keeps the planner on the
/// revision order of the rowid.
const REPLAY: &str = "SELECT l.revision, l.key, l.value, l.create_revision, l.prev_revision,
        l.deleted, p.value, p.create_revision
    FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision
    WHERE l.revision > ?1 AND l.revision <= ?2 AND +l.key >= ?3 AND (?4 IS NULL OR +l.key < ?4)
    ORDER BY l.revision LIMIT ?5";

/// Removes every row at or before the compaction revision that a read after it cannot need:
/// rows superseded by a later row of the same key at or before it, and deletes (whose key is
/// absent at the compaction revision; a later re-create does not refer back to them).
const COMPACT: &str = "DELETE FROM log WHERE revision <= ?1 AND (
        deleted != 0
        OR revision < (SELECT MAX(r.revision) FROM log AS r WHERE r.key = log.key AND r.revision <= ?1)
    )";

fn db(error: rusqlite::Error) -> Error {
    Error::Backend(format!("sqlite: {error}"))
}

fn closed() -> Error {
    Error::Backend("sqlite store writer has stopped".to_string())
}

/// A durable store in one SQLite file (WAL mode, fsync'd before a write is acknowledged).
///
/// Open a file with one `SqliteStore` at a time. Dropping the store finishes the writes already
/// queued and closes the writer.
pub struct SqliteStore {
    path: PathBuf,
    core: Arc<Core>,
    reader: Arc<Reader>,
    requests: mpsc::Sender<Request>,
    writer: Option<thread::JoinHandle<()>>,
    /// Set by the writer while its last transaction failed (cleared by the next success).
    degraded: Arc<AtomicBool>,
}

enum Request {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<Event>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
    /// A small durable write outside the log: can the store write now?
    Probe {
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in the SQLite file at `path`, recovering its data,
    /// current revision and compacted revision. Fails if the file is not a store database.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let mut conn = open_connection(path)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Backend(format!(
                "{}: cannot use WAL journal mode (got {mode})",
                path.display()
            )));
        }
        // FULL: in WAL mode the log is fsync'd at every commit, before it is acknowledged.
        let synchronous: i64 = conn
            .pragma_update_and_check(None, "synchronous", "FULL", |row| row.get(0))
            .or_else(|_| conn.query_row("PRAGMA synchronous", [], |row| row.get(0)))
            .map_err(db)?;
        if synchronous < 2 {
            return Err(Error::Backend(format!(
                "{}: cannot set synchronous=FULL",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA).map_err(db)?;
        let (mut ceiling, mark) = Ceiling::open(&Ceiling::path_for(path))?;
        check_mark(&mut conn, path, mark)?;
        let index = load(&mut conn)?;
        ceiling.reserve(index.current())?;
        tracing::info!(
            path = %path.display(),
            revision = index.current(),
            compacted = index.compacted(),
            "opened sqlite store"
        );

        let core = Arc::new(Core::new(index));
        let (requests, queue) = mpsc::channel();
        let degraded = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            conn,
            core: Arc::clone(&core),
            queue,
            failed: None,
            degraded: Arc::clone(&degraded),
            ceiling,
        };
        let writer = thread::Builder::new()
            .name("shoal-store-writer".to_string())
            .spawn(move || writer.run())
            .map_err(|e| Error::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            core,
            reader: Arc::new(Reader {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            }),
            requests,
            writer: Some(writer),
            degraded,
        })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: Op) -> Result<Event> {
        let (reply, acknowledged) = oneshot::channel();
        self.requests.send(Request::Write { op, reply }).map_err(|_| closed())?;
        acknowledged.await.map_err(|_| closed())?
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.core.read();
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("current_revision", &index.current())
            .field("compacted_revision", &index.compacted())
            .finish()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Writes already queued are committed first: nothing the writer accepted is lost, and
        // the file is closed when this returns (it can be reopened at once).
        let _ = self.requests.send(Request::Shutdown);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "sqlite store writer thread panicked");
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    Ok(conn)
}

fn meta(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| row.get(0))
        .map_err(db)
}

/// Compares the log with the revision mark before the store opens: a log that ends below a
/// clean close's mark has lost acknowledged writes (refused); one that ends below a
/// reservation was not closed cleanly, and continues above it (see [`crate::ceiling`]).
fn check_mark(conn: &mut Connection, path: &Path, mark: Option<Mark>) -> Result<()> {
    let Some(mark) = mark else {
        return Ok(());
    };
    let compacted = meta(conn, "compacted")?;
    let last: Revision = conn
        .query_row("SELECT COALESCE(MAX(revision), 0) FROM log", [], |row| row.get(0))
        .map_err(db)?;
    let current = last.max(compacted);
    match mark {
        Mark::Clean(n) if current < n => Err(Error::Backend(format!(
            "{}: the store's log ends at revision {current}, but revision {n} was acknowledged before it was last closed: acknowledged writes are missing (was the database or its write-ahead log damaged or replaced?). Restore it from a backup; to start again with what it holds, remove {} (clients that saw later revisions must list again)",
            path.display(),
            Ceiling::path_for(path).display()
        ))),
        Mark::Reserved(n) if current < n => {
            tracing::warn!(
                path = %path.display(),
                log_ends_at = current,
                continues_after = n,
                "sqlite store was not closed cleanly: revisions continue above the highest it may have handed out (clients watching from before list again)"
            );
            conn.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [n])
                .map_err(db)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Reads the latest state of every key and checks the log's invariants.
fn load(conn: &mut Connection) -> Result<Index> {
    let tx = conn.transaction().map_err(db)?;
    let schema = meta(&tx, "schema")?;
    if schema != SCHEMA_VERSION {
        return Err(Error::Backend(format!("unsupported store schema version {schema}")));
    }
    let compacted = meta(&tx, "compacted")?;
    let last: Revision = tx
        .query_row("SELECT COALESCE(MAX(revision), 0) FROM log", [], |row| row.get(0))
        .map_err(db)?;
    let current = last.max(compacted);
    let after_compaction: i64 = tx
        .query_row("SELECT COUNT(*) FROM log WHERE revision > ?1", [compacted], |row| {
            row.get(0)
        })
        .map_err(db)?;
    if after_compaction != current - compacted {
        return Err(Error::Backend(format!(
            "store log is missing revisions: {after_compaction} rows between {compacted} and {current}"
        )));
    }
    let mut index = Index::new(current, compacted);
    {
        let mut stmt = tx.prepare(LATEST).map_err(db)?;
        let mut rows = stmt.query([]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            if !row.get::<_, bool>(4).map_err(db)? {
                index.insert(KeyValue {
                    key: row.get(0).map_err(db)?,
                    mod_revision: row.get(1).map_err(db)?,
                    value: Bytes::from(row.get::<_, Vec<u8>>(2).map_err(db)?),
                    create_revision: row.get(3).map_err(db)?,
                });
            }
        }
    }
    tx.finish().map_err(db)?;
    Ok(index)
}

/// The writer thread: group commit.
struct Writer {
    conn: Connection,
    core: Arc<Core>,
    queue: mpsc::Receiver<Request>,
    /// Set when the database may no longer match the index; every later write fails.
    failed: Option<String>,
    /// See [`SqliteStore::degraded`].
    degraded: Arc<AtomicBool>,
    /// The durable high-water mark of revisions (see [`crate::ceiling`]).
    ceiling: Ceiling,
}

type WriteRequest = (Op, oneshot::Sender<Result<Event>>);

impl Writer {
    fn run(mut self) {
        let mut requests = Vec::new();
        // Ends when the store is dropped (Shutdown) or, failing that, every sender is gone.
        while let Ok(first) = self.queue.recv() {
            requests.push(first);
            while requests.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            // The writer outlives anything that goes wrong in one batch: a panic fails that
            // batch's writes (their callers see the store error) and the database is checked
            // against the index as after a failed commit.
            let batch = std::mem::take(&mut requests);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve(batch))) {
                Ok(true) => return,
                Ok(false) => {}
                Err(_) => {
                    tracing::error!("sqlite store writer: a batch panicked; its writes failed");
                    self.degraded.store(true, Ordering::Relaxed);
                    self.recover();
                }
            }
        }
    }

    /// Serves one batch of requests; true after a shutdown.
    fn serve(&mut self, requests: Vec<Request>) -> bool {
        let mut writes: Vec<WriteRequest> = Vec::new();
        for request in requests {
            match request {
                Request::Write { op, reply } => writes.push((op, reply)),
                Request::Compact { revision, reply } => {
                    self.commit(std::mem::take(&mut writes));
                    let _ = reply.send(self.compact(revision));
                }
                Request::Probe { reply } => {
                    self.commit(std::mem::take(&mut writes));
                    let _ = reply.send(self.probe());
                }
                Request::Shutdown => {
                    self.commit(writes);
                    if self.failed.is_none()
                        && let Err(error) = self.ceiling.close_clean(self.core.current())
                    {
                        tracing::warn!(%error, "sqlite store: cannot record the clean close");
                    }
                    return true;
                }
            }
        }
        self.commit(writes);
        false
    }

    /// A durable write of the store's own (the time of the probe, in `meta`): whether a
    /// transaction can commit now.
    fn probe(&mut self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::Backend(reason.clone()));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let written = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('probe', ?1)", [now])?;
            tx.commit()
        })();
        match written {
            Ok(()) => {
                self.degraded.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.recover();
                Err(db(error))
            }
        }
    }

    /// Applies `writes` in one transaction, then publishes and acknowledges them.
    fn commit(&mut self, writes: Vec<WriteRequest>) {
        if writes.is_empty() {
            return;
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = writes.into_iter().unzip();
        if let Some(reason) = &self.failed {
            for reply in replies {
                let _ = reply.send(Err(Error::Backend(reason.clone())));
            }
            return;
        }
        match self.apply(ops) {
            Ok(results) => {
                self.degraded.store(false, Ordering::Relaxed);
                let events = results.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
                // Visible to readers and watchers before anyone is told the write is done.
                self.core.publish(events);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                self.degraded.store(true, Ordering::Relaxed);
                let message = format!("sqlite commit failed: {error}");
                tracing::error!(%error, writes = replies.len(), "sqlite store commit failed");
                self.recover();
                for reply in replies {
                    let _ = reply.send(Err(Error::Backend(message.clone())));
                }
            }
        }
    }

    /// Writes one row per successful op in one transaction. The outer error fails the whole
    /// batch; the inner ones are the ops whose preconditions failed.
    fn apply(&mut self, ops: Vec<Op>) -> Result<Vec<Result<Event>>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut results = Vec::with_capacity(ops.len());
        // Keys written earlier in this batch: their state is not in the index yet.
        let mut staged: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut revision = self.core.current();
        {
            let mut insert = tx.prepare_cached(INSERT).map_err(db)?;
            for op in ops {
                let current = match staged.get(op.key()) {
                    Some(state) => state.clone(),
                    None => self.core.get(op.key()),
                };
                let event = match op.plan(current.as_ref(), revision + 1) {
                    Ok(event) => event,
                    Err(error) => {
                        results.push(Err(error));
                        continue;
                    }
                };
                let kv = &event.kv;
                insert
                    .execute(params![
                        kv.mod_revision,
                        kv.key,
                        kv.value.as_ref(),
                        kv.create_revision,
                        event.prev.as_ref().map_or(0, |prev| prev.mod_revision),
                        event.kind == EventKind::Delete,
                    ])
                    .map_err(db)?;
                revision = kv.mod_revision;
                let state = (event.kind == EventKind::Put).then(|| kv.clone());
                staged.insert(kv.key.clone(), state);
                results.push(Ok(event));
            }
        }
        // No revision is acknowledged beyond the durable mark.
        self.ceiling.reserve(revision)?;
        tx.commit().map_err(db)?;
        Ok(results)
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::Backend(reason.clone()));
        }
        if !self.core.compaction_needed(revision)? {
            return Ok(());
        }
        let removed = (|| -> rusqlite::Result<usize> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let removed = tx.execute(COMPACT, [revision])?;
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [revision])?;
            tx.commit()?;
            Ok(removed)
        })();
        match removed {
            Ok(removed) => {
                self.core.set_compacted(revision);
                tracing::debug!(revision, removed, "compacted sqlite store");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, revision, "sqlite store compaction failed");
                self.recover();
                Err(db(error))
            }
        }
    }

    /// After a failed transaction: rolls back and checks the database still matches the index
    /// (no row past the current revision). If it cannot tell, later writes fail until reopen.
    fn recover(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "sqlite store rollback failed");
        }
        let current = self.core.current();
        let last = self
            .conn
            .query_row("SELECT COALESCE(MAX(revision), 0) FROM log", [], |row| {
                row.get::<_, Revision>(0)
            });
        match last {
            Ok(last) if last <= current => {}
            Ok(last) => {
                self.failed = Some(format!(
                    "sqlite store holds revision {last} past the acknowledged {current} after a failed commit; reopen it"
                ));
            }
            Err(error) => {
                self.failed = Some(format!(
                    "sqlite store cannot be checked after a failed commit ({error}); reopen it"
                ));
            }
        }
    }
}

/// Read connections for historical reads and watch replay.
struct Reader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = open_connection(&self.path)?;
                conn.pragma_update(None, "query_only", true).map_err(db)?;
                conn
            }
        };
        let result = f(&mut conn);
        if conn.is_autocommit() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// Runs `f` with a read connection on the blocking thread pool.
    async fn run<T, F>(self: Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || self.with(f))
            .await
            .map_err(|e| Error::Backend(format!("sqlite read task failed: {e}")))?
    }

    /// Keys in `[start, end)` as of `revision`.
    async fn range_at(
        self: Arc<Self>,
        start: String,
        end: String,
        revision: Revision,
        limit: usize,
    ) -> Result<RangeResult> {
        self.run(move |conn| {
            // One read transaction: the compaction check and the rows come from one snapshot.
            let tx = conn.transaction().map_err(db)?;
            let compacted = meta(&tx, "compacted")?;
            if revision <= compacted {
                return Err(Error::Compacted {
                    requested: revision,
                    compacted,
                });
            }
            let mut kvs = Vec::new();
            let mut more = false;
            {
                let mut stmt = tx.prepare_cached(RANGE_AT).map_err(db)?;
                let mut rows = stmt.query(params![start, end, revision]).map_err(db)?;
                while let Some(row) = rows.next().map_err(db)? {
                    if row.get::<_, bool>(4).map_err(db)? {
                        continue;
                    }
                    if limit > 0 && kvs.len() == limit {
                        more = true;
                        break;
                    }
                    kvs.push(KeyValue {
                        key: row.get(0).map_err(db)?,
                        mod_revision: row.get(1).map_err(db)?,
                        value: Bytes::from(row.get::<_, Vec<u8>>(2).map_err(db)?),
                        create_revision: row.get(3).map_err(db)?,
                    });
                }
            }
            tx.finish().map_err(db)?;
            Ok(RangeResult { kvs, revision, more })
        })
        .await
    }
}

#[async_trait::async_trait]
impl History for Reader {
    async fn replay(self: Arc<Self>, prefix: String, after: Revision, upto: Revision, limit: usize) -> Result<Replay> {
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let compacted = meta(&tx, "compacted")?;
            if after < compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let end = crate::prefix_upper_bound(&prefix);
            let page = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut events = Vec::new();
            let mut rows_seen = 0;
            let mut last = after;
            {
                let mut stmt = tx.prepare_cached(REPLAY).map_err(db)?;
                let mut rows = stmt.query(params![after, upto, prefix, end, page]).map_err(db)?;
                while let Some(row) = rows.next().map_err(db)? {
                    rows_seen += 1;
                    last = row.get(0).map_err(db)?;
                    let event = replayed_event(row)?;
                    if event.kv.key.starts_with(&prefix) {
                        events.push(event);
                    }
                }
            }
            tx.finish().map_err(db)?;
            let through = if rows_seen >= limit { last } else { upto };
            Ok(Replay { events, through })
        })
        .await
    }
}

/// Turns a row of [`REPLAY`] into its event.
fn replayed_event(row: &rusqlite::Row<'_>) -> Result<Event> {
    let revision: Revision = row.get(0).map_err(db)?;
    let key: String = row.get(1).map_err(db)?;
    let value = Bytes::from(row.get::<_, Vec<u8>>(2).map_err(db)?);
    let create_revision: Revision = row.get(3).map_err(db)?;
    let prev_revision: Revision = row.get(4).map_err(db)?;
    let deleted: bool = row.get(5).map_err(db)?;
    let prev_value: Option<Vec<u8>> = row.get(6).map_err(db)?;
    let prev_create: Option<Revision> = row.get(7).map_err(db)?;
    let prev = match (prev_revision, prev_value, prev_create) {
        (0, _, _) => None,
        (mod_revision, Some(value), Some(create_revision)) => Some(KeyValue {
            key: key.clone(),
            value: Bytes::from(value),
            create_revision,
            mod_revision,
        }),
        _ => {
            return Err(Error::Backend(format!(
                "store log row {revision} refers to missing revision {prev_revision}"
            )));
        }
    };
    Ok(Event {
        kind: if deleted { EventKind::Delete } else { EventKind::Put },
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.core.get(key))
    }

    async fn range(&self, start: &str, end: &str, revision: Revision, limit: usize) -> Result<RangeResult> {
        match self.core.range(start, end, revision, limit)? {
            Served::Latest(result) => Ok(result),
            Served::At(revision) => {
                Arc::clone(&self.reader)
                    .range_at(start.to_string(), end.to_string(), revision, limit)
                    .await
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let event = self
            .write(Op::Create {
                key: key.to_string(),
                value,
            })
            .await?;
        Ok(event.kv.mod_revision)
    }

    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: Revision) -> Result<Revision> {
        let op = Op::Update {
            key: key.to_string(),
            value,
            expected: expected_mod_revision,
        };
        Ok(self.write(op).await?.kv.mod_revision)
    }

    async fn delete(&self, key: &str, expected_mod_revision: Revision) -> Result<(Revision, KeyValue)> {
        deleted(
            self.write(Op::Delete {
                key: key.to_string(),
                expected: expected_mod_revision,
            })
            .await?,
        )
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.core.watch(self.reader.clone(), prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.requests
            .send(Request::Compact { revision, reply })
            .map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }

    fn current_revision(&self) -> Revision {
        self.core.current()
    }

    fn compacted_revision(&self) -> Revision {
        self.core.compacted()
    }

    async fn check(&self) -> Result<()> {
        if self.writer.as_ref().is_none_or(|w| w.is_finished()) {
            return Err(closed());
        }
        if !self.degraded.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (reply, done) = oneshot::channel();
        self.requests.send(Request::Probe { reply }).map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(path: &Path) -> Vec<(Revision, String, bool)> {
        let conn = Connection::open(path).expect("open for inspection");
        let mut stmt = conn
            .prepare("SELECT revision, key, deleted FROM log ORDER BY revision")
            .expect("query");
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[tokio::test]
    async fn compaction_removes_only_rows_no_later_read_needs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        {
            let store = SqliteStore::open(&path).expect("open");
            let v = || Bytes::from_static(b"v");
            store.create("a", v()).await.expect("1"); // superseded by 3
            store.create("b", v()).await.expect("2"); // deleted at 4
            store.update("a", v(), 1).await.expect("3"); // latest a at 5: kept
            store.delete("b", 2).await.expect("4");
            store.create("c", v()).await.expect("5"); // kept
            store.update("c", v(), 5).await.expect("6"); // after the compaction: kept
            store.delete("a", 3).await.expect("7"); // after: kept
            store.compact(5).await.expect("compact");
        }
        assert_eq!(
            rows(&path),
            vec![
                (3, "a".to_string(), false),
                (5, "c".to_string(), false),
                (6, "c".to_string(), false),
                (7, "a".to_string(), true),
            ]
        );
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!((store.current_revision(), store.compacted_revision()), (7, 5));
        let at6 = store.range("", "z", 6, 0).await.expect("revision 6");
        let keys: Vec<_> = at6.kvs.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect();
        assert_eq!(keys, vec![("a", 3), ("c", 6)]);
    }

    #[tokio::test]
    async fn compacting_everything_keeps_the_revision_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        {
            let store = SqliteStore::open(&path).expect("open");
            store.create("a", Bytes::new()).await.expect("create");
            store.delete("a", 0).await.expect("delete");
            store.compact(2).await.expect("compact");
        }
        assert!(rows(&path).is_empty(), "a deleted key vanishes entirely");
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!((store.current_revision(), store.compacted_revision()), (2, 2));
        assert_eq!(store.create("b", Bytes::new()).await.expect("create"), 3);
    }

    #[test]
    fn opening_a_file_that_is_not_a_database_fails_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x5a; 8192]).expect("write garbage");
        assert!(matches!(SqliteStore::open(&path), Err(Error::Backend(_))));
    }

    #[tokio::test]
    async fn a_log_shorter_than_its_clean_close_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        {
            let store = SqliteStore::open(&path).expect("open");
            for k in ["a", "b", "c"] {
                store.create(k, Bytes::new()).await.expect("create");
            }
        }
        let reopened = SqliteStore::open(&path).expect("a clean close reopens");
        assert_eq!(reopened.current_revision(), 3, "no gap after a clean close");
        drop(reopened);
        // The last acknowledged commit vanishes (a damaged or replaced file).
        let conn = Connection::open(&path).expect("open");
        conn.execute("DELETE FROM log WHERE revision = 3", []).expect("delete");
        drop(conn);
        match SqliteStore::open(&path) {
            Err(Error::Backend(message)) => assert!(
                message.contains("acknowledged writes are missing") && message.contains("store.db.revision"),
                "{message}"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn after_an_unclean_stop_revisions_continue_above_the_mark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        {
            let store = SqliteStore::open(&path).expect("open");
            store.create("a", Bytes::new()).await.expect("create");
        }
        // As a crash leaves it: the mark still reserves revisions ahead.
        let (mut c, _) = Ceiling::open(&Ceiling::path_for(&path)).expect("mark");
        c.reserve(1).expect("reserve");
        drop(c);
        let store = SqliteStore::open(&path).expect("reopen");
        let mark = 1 + crate::ceiling::RESERVE;
        assert_eq!(store.current_revision(), mark);
        assert_eq!(store.create("b", Bytes::new()).await.expect("create"), mark + 1);
        assert!(store.get("a").await.expect("get").is_some(), "the data is all there");
        assert!(
            matches!(store.range("", "z", 1, 0).await, Err(Error::Compacted { .. })),
            "reads at revisions from before the stop list again"
        );
    }

    #[test]
    fn opening_a_log_with_a_gap_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        drop(SqliteStore::open(&path).expect("create"));
        let conn = Connection::open(&path).expect("open");
        conn.execute(INSERT, params![1, "a", b"x".as_slice(), 1, 0, false])
            .expect("row 1");
        conn.execute(INSERT, params![3, "b", b"x".as_slice(), 3, 0, false])
            .expect("row 3");
        drop(conn);
        match SqliteStore::open(&path) {
            Err(Error::Backend(message)) => {
                assert!(message.contains("missing revisions"), "{message}")
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
    }
}
