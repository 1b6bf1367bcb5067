//! Crash safety of the sqlite backend: a writer process killed with SIGKILL at arbitrary
//! moments never loses an acknowledged write, and the file always reopens with its revision
//! sequence intact.
//!
//! The test re-runs its own binary as the writer (selected by an environment variable). The
//! child prints `ACK <key> <revision>` after each acknowledged write; the parent kills it after
//! reading a number of those lines, reopens the store and checks every acknowledged write.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use shoal_store::{Revision, SqliteStore, Store};

const CHILD_ENV: &str = "SHOAL_STORE_CRASH_CHILD";
const ROUND_ENV: &str = "SHOAL_STORE_CRASH_ROUND";
const TEST_NAME: &str = "kill_9_never_loses_an_acknowledged_write";

#[test]
fn kill_9_never_loses_an_acknowledged_write() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let round = std::env::var(ROUND_ENV).expect("round").parse().expect("round number");
        child(Path::new(&path), round);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    // Highest acknowledged revision per key, and the revision that created it.
    let mut acked: HashMap<String, (Revision, Revision)> = HashMap::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (round, kill_after) in [40usize, 700, 3000, 5].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("the writer ended early").expect("read a line");
            // The first one may share its line with the test harness's own output.
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let ack = &line[at + "ACK ".len()..];
            let (key, revision) = ack.split_once(' ').expect("ACK <key> <revision>");
            let revision: Revision = revision.parse().expect("a revision");
            let entry = acked.entry(key.to_string()).or_insert((revision, revision));
            entry.0 = entry.0.max(revision);
            seen += 1;
        }
        // SIGKILL while the writer is still busy (its stdout is still being read).
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        drop(lines);

        runtime.block_on(async {
            let store = SqliteStore::open(&path).expect("the store reopens after kill -9");
            let highest = acked.values().map(|(latest, _)| *latest).max().unwrap_or(0);
            assert!(store.current_revision() >= highest, "round {round}: revision went back");
            for (key, (latest, created)) in &acked {
                let kv = store
                    .get(key)
                    .await
                    .expect("get")
                    .unwrap_or_else(|| panic!("round {round}: {key} lost"));
                assert_eq!(kv.create_revision, *created, "round {round}: {key}");
                assert!(
                    kv.mod_revision >= *latest,
                    "round {round}: {key} lost its write at {latest}"
                );
            }
            // The revision sequence continues after the crash.
            let next = store
                .create(&format!("/after/{round}"), Bytes::new())
                .await
                .expect("write");
            assert_eq!(next, store.current_revision());
        });
    }
    assert!(acked.len() > 100, "the writer made progress");
}

const TAIL_TEST: &str = "a_damaged_log_tail_never_makes_revisions_go_back";

/// SQLite silently drops the write-ahead log's frames after one that fails its checksum (a
/// damaged tail), and with them acknowledged commits. The revision must not go back with
/// them: new writes must never reuse a revision a client was given.
#[test]
fn a_damaged_log_tail_never_makes_revisions_go_back() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        tail_child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", TAIL_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut highest: Revision = 0;
    for line in lines {
        let line = line.expect("read a line");
        if line.contains("DONE") {
            break;
        }
        if let Some(at) = line.find("ACK ") {
            highest = highest.max(line[at + 4..].trim().parse().expect("a revision"));
        }
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert_eq!(highest, 40, "every write was acknowledged");
    // Damage the tail: cut the last frames of the write-ahead log.
    let wal = dir.path().join("store.db-wal");
    let len = std::fs::metadata(&wal).expect("the WAL holds the writes").len();
    let frame = 4096 + 24;
    assert!(len > 32 + 12 * frame, "the WAL holds many frames ({len} bytes)");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .and_then(|f| f.set_len(len - 8 * frame))
        .expect("truncate the WAL");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&path).expect("the store reopens");
        assert!(
            store.current_revision() >= highest,
            "revision went back to {} after {highest} was acknowledged",
            store.current_revision()
        );
        let next = store.create("/after", Bytes::new()).await.expect("write");
        assert!(next > highest, "revision {next} was reused");
    });
}

/// Writes 40 keys one after the other, acknowledging each, then waits to be killed.
fn tail_child(path: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(path).expect("open");
        let mut out = std::io::stdout();
        for i in 0..40 {
            let revision = store
                .create(&format!("/tail/{i}"), Bytes::from(vec![b'v'; 512]))
                .await
                .expect("create");
            writeln!(out, "ACK {revision}").expect("stdout");
        }
        writeln!(out, "DONE").expect("stdout");
        out.flush().expect("stdout");
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(store);
    });
}

/// The writer: 16 tasks, each creating keys and updating each a few times, forever (until
/// killed; it gives up after two minutes in case the parent is gone).
fn child(path: &Path, round: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(path).expect("open"));
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let value = Bytes::from(vec![b'v'; 2048]);
        let mut tasks = Vec::new();
        for task in 0..16 {
            let (store, out, value) = (Arc::clone(&store), Arc::clone(&out), value.clone());
            tasks.push(tokio::spawn(async move {
                let ack = |key: &str, revision: Revision| {
                    let mut out = out.lock().expect("stdout lock");
                    writeln!(out, "ACK {key} {revision}").and_then(|()| out.flush()).is_ok()
                };
                for i in 0.. {
                    let key = format!("/crash/{round}/{task}/{i}");
                    let mut revision = store.create(&key, value.clone()).await.expect("create");
                    if !ack(&key, revision) {
                        return;
                    }
                    for _ in 0..3 {
                        revision = store.update(&key, value.clone(), revision).await.expect("update");
                        if !ack(&key, revision) {
                            return;
                        }
                    }
                }
            }));
        }
        let _ = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(tasks)).await;
    });
}
