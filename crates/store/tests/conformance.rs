//! One conformance suite for the `Store` contract, run against every backend.
//!
//! Each test is an `async fn(Arc<dyn Store>)`; the `conformance!` macro at the bottom runs it
//! once per backend (memory, sqlite in a temporary directory, and a fresh local etcd). Backend-specific tests
//! (sqlite reopen, slow memory watcher) follow.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use shoal_store::{
    Error, EtcdOptions, EtcdStore, Event, EventKind, KeyValue, LocalEtcd, MemoryStore, RangeResult, Revision,
    SqliteStore, Store, WatchStream, prefix_end,
};

// ----------------------------------------------------------------------------------------
// Helpers

fn v(value: &str) -> Bytes {
    Bytes::from(value.to_string())
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: v(value),
        create_revision,
        mod_revision,
    }
}

fn put(kv: KeyValue, prev: Option<KeyValue>) -> Event {
    Event {
        kind: EventKind::Put,
        kv,
        prev,
    }
}

fn del(kv: KeyValue, prev: KeyValue) -> Event {
    Event {
        kind: EventKind::Delete,
        kv,
        prev: Some(prev),
    }
}

/// Reads exactly `n` events from `stream` (failing if it ends or stalls first).
async fn take(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("watch stalled after {} of {n} events", events.len()))
            .unwrap_or_else(|| panic!("watch ended after {} of {n} events", events.len()));
        assert!(!batch.is_empty(), "watch batches are never empty");
        events.extend(batch);
    }
    assert_eq!(events.len(), n, "watch delivered more events than expected");
    events
}

fn revisions(events: &[Event]) -> Vec<Revision> {
    events.iter().map(|e| e.kv.mod_revision).collect()
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// A small deterministic pseudo-random generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ----------------------------------------------------------------------------------------
// The suite

async fn create_and_get(store: Arc<dyn Store>) {
    assert_eq!(store.current_revision(), 0);
    assert_eq!(store.compacted_revision(), 0);
    assert_eq!(store.create("/a", v("1")).await.expect("create"), 1);
    assert_eq!(store.get("/a").await.expect("get"), Some(kv("/a", "1", 1, 1)));
    assert_eq!(store.get("/b").await.expect("get"), None);
    assert_eq!(store.create("/b", Bytes::new()).await.expect("create empty value"), 2);
    assert_eq!(store.get("/b").await.expect("get"), Some(kv("/b", "", 2, 2)));

    match store.create("/a", v("2")).await {
        Err(Error::AlreadyExists(key)) => assert_eq!(key, "/a"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.current_revision(), 2, "a failed create takes no revision");
    assert_eq!(store.get("/a").await.expect("get"), Some(kv("/a", "1", 1, 1)));
}

async fn update_with_preconditions(store: Arc<dyn Store>) {
    store.create("/a", v("1")).await.expect("create");
    assert_eq!(store.update("/a", v("2"), 1).await.expect("right revision"), 2);
    assert_eq!(store.get("/a").await.expect("get"), Some(kv("/a", "2", 1, 2)));

    match store.update("/a", v("x"), 1).await {
        Err(Error::Conflict { key, expected, current }) => {
            assert_eq!((key.as_str(), expected), ("/a", 1));
            assert_eq!(current, kv("/a", "2", 1, 2), "a conflict carries the current value");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.update("/a", v("3"), 0).await.expect("any revision"), 3);
    assert_eq!(store.get("/a").await.expect("get"), Some(kv("/a", "3", 1, 3)));

    for expected in [0, 3] {
        match store.update("/missing", v("x"), expected).await {
            Err(Error::NotFound(key)) => assert_eq!(key, "/missing"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(store.current_revision(), 3, "failed updates take no revision");
}

async fn delete_with_preconditions(store: Arc<dyn Store>) {
    store.create("/a", v("1")).await.expect("create");
    store.update("/a", v("2"), 1).await.expect("update");
    match store.delete("/a", 1).await {
        Err(Error::Conflict { current, expected, .. }) => {
            assert_eq!(expected, 1);
            assert_eq!(current, kv("/a", "2", 1, 2));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        store.get("/a").await.expect("get"),
        Some(kv("/a", "2", 1, 2)),
        "still there"
    );

    let (revision, deleted) = store.delete("/a", 2).await.expect("right revision");
    assert_eq!(revision, 3);
    assert_eq!(deleted, kv("/a", "2", 1, 2), "the deleted key-value as it was");
    assert_eq!(store.get("/a").await.expect("get"), None);
    for key in ["/a", "/never"] {
        match store.delete(key, 0).await {
            Err(Error::NotFound(k)) => assert_eq!(k, key),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    // A re-created key starts a new life.
    assert_eq!(store.create("/a", v("again")).await.expect("re-create"), 4);
    assert_eq!(store.get("/a").await.expect("get"), Some(kv("/a", "again", 4, 4)));
    let (revision, deleted) = store.delete("/a", 0).await.expect("any revision");
    assert_eq!((revision, deleted), (5, kv("/a", "again", 4, 4)));
    assert_eq!(store.current_revision(), 5);
}

async fn revisions_increase_by_one_per_write(store: Arc<dyn Store>) {
    // (write, the revision it must get, or None if it must fail without taking one)
    let steps: Vec<(&str, Option<Revision>)> = vec![
        ("create /a", Some(1)),
        ("create /a", None),
        ("update /a 1", Some(2)),
        ("update /a 1", None),
        ("create /b", Some(3)),
        ("delete /a 2", Some(4)),
        ("delete /a 0", None),
        ("update /a 0", None),
        ("update /b 0", Some(5)),
        ("create /a", Some(6)),
        ("delete /b 3", None),
        ("delete /b 5", Some(7)),
    ];
    let mut current = 0;
    for (step, expected) in steps {
        let words: Vec<&str> = step.split(' ').collect();
        let expected_mod = || words[2].parse::<Revision>().expect("a revision");
        let result = match words[0] {
            "create" => store.create(words[1], v(step)).await,
            "update" => store.update(words[1], v(step), expected_mod()).await,
            _ => store
                .delete(words[1], expected_mod())
                .await
                .map(|(revision, _)| revision),
        };
        match expected {
            Some(revision) => {
                assert_eq!(result.expect(step), revision, "{step}");
                assert_eq!(revision, current + 1, "one revision per write");
                current = revision;
            }
            None => assert!(result.is_err(), "{step} must fail"),
        }
        assert_eq!(store.current_revision(), current, "after {step}");
    }
    let a = store.get("/a").await.expect("get").expect("present");
    assert_eq!((a.create_revision, a.mod_revision), (6, 6));
}

async fn range_with_limit_and_more(store: Arc<dyn Store>) {
    for key in ["/r/c", "/r/a", "/q", "/r/e", "/s/x", "/r/b", "/r/d", "/r0"] {
        store.create(key, v(key)).await.expect("create");
    }
    let end = prefix_end("/r/");
    let all = store.range("/r/", &end, 0, 0).await.expect("range");
    assert_eq!(keys(&all.kvs), ["/r/a", "/r/b", "/r/c", "/r/d", "/r/e"]);
    assert!(!all.more);
    assert_eq!(all.revision, 8);
    assert_eq!(all.kvs[0], kv("/r/a", "/r/a", 2, 2));

    let first = store.range("/r/", &end, 0, 2).await.expect("range");
    assert_eq!((keys(&first.kvs), first.more), (vec!["/r/a", "/r/b"], true));
    let exact = store.range("/r/", &end, 0, 5).await.expect("range");
    assert_eq!(
        (exact.kvs.len(), exact.more),
        (5, false),
        "exactly `limit` keys is not more"
    );

    let inner = store.range("/r/b", "/r/d", 0, 0).await.expect("range");
    assert_eq!(keys(&inner.kvs), ["/r/b", "/r/c"], "end is exclusive");
    let empty = store.range("/r/d", "/r/b", 0, 0).await.expect("inverted range");
    assert!(empty.kvs.is_empty() && !empty.more);

    // Paging at a fixed revision sees a consistent snapshot despite later writes.
    let mut from = "/r/".to_string();
    let mut paged = Vec::new();
    let revision = store.current_revision();
    loop {
        let page = store.range(&from, &end, revision, 2).await.expect("page");
        assert_eq!(page.revision, revision);
        paged.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        store
            .create(&format!("/r/z{}", paged.len()), v("late"))
            .await
            .expect("create");
        if !page.more {
            break;
        }
        from = format!("{}\0", page.kvs.last().expect("a full page").key);
    }
    assert_eq!(paged, ["/r/a", "/r/b", "/r/c", "/r/d", "/r/e"]);
}

async fn historical_ranges_match_a_model(store: Arc<dyn Store>) {
    // model[r] = the state after revision r.
    let mut model: Vec<BTreeMap<String, KeyValue>> = vec![BTreeMap::new()];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for step in 0..240 {
        let mut state = model.last().expect("initial state").clone();
        let key = format!("/h/k{:02}", rng.below(12));
        let next = model.len() as Revision;
        let value = format!("v{step}");
        match state.get(&key).cloned() {
            None => {
                let revision = store.create(&key, v(&value)).await.expect("create");
                assert_eq!(revision, next);
                state.insert(key.clone(), kv(&key, &value, next, next));
            }
            Some(current) => {
                if rng.below(5) == 0 {
                    // A stale precondition fails and changes nothing.
                    let stale = current.mod_revision + 1000;
                    assert!(matches!(
                        store.update(&key, v("stale"), stale).await,
                        Err(Error::Conflict { .. })
                    ));
                    continue;
                }
                if rng.below(3) == 0 {
                    let (revision, _) = store.delete(&key, current.mod_revision).await.expect("delete");
                    assert_eq!(revision, next);
                    state.remove(&key);
                } else {
                    let revision = store
                        .update(&key, v(&value), current.mod_revision)
                        .await
                        .expect("update");
                    assert_eq!(revision, next);
                    state.insert(key.clone(), kv(&key, &value, current.create_revision, next));
                }
            }
        }
        model.push(state);
    }
    let current = store.current_revision();
    assert_eq!(current, model.len() as Revision - 1);
    let end = prefix_end("/h/");
    for (revision, state) in model.iter().enumerate().skip(1) {
        let revision = revision as Revision;
        let got = store.range("/h/", &end, revision, 0).await.expect("historical range");
        let want: Vec<KeyValue> = state.values().cloned().collect();
        assert_eq!(got.kvs, want, "state at revision {revision}");
        assert_eq!((got.revision, got.more), (revision, false));
        if revision % 7 == 0 {
            let limited = store.range("/h/", &end, revision, 3).await.expect("limited");
            assert_eq!(limited.kvs, want.iter().take(3).cloned().collect::<Vec<_>>());
            assert_eq!(limited.more, want.len() > 3);
        }
    }
    let latest = store.range("/h/", &end, 0, 0).await.expect("latest");
    assert_eq!(
        latest.kvs,
        model[current as usize].values().cloned().collect::<Vec<_>>()
    );

    // After compaction, every later revision still reads the same.
    let compact_at = current / 2;
    store.compact(compact_at).await.expect("compact");
    assert_eq!(store.compacted_revision(), compact_at);
    for revision in 1..=current {
        let result = store.range("/h/", &end, revision, 0).await;
        if revision <= compact_at {
            assert!(
                matches!(result, Err(Error::Compacted { requested, compacted }) if requested == revision && compacted == compact_at),
                "revision {revision} should be compacted"
            );
        } else {
            let want: Vec<KeyValue> = model[revision as usize].values().cloned().collect();
            assert_eq!(
                result.expect("after compaction").kvs,
                want,
                "state at revision {revision}"
            );
        }
    }
}

async fn future_revisions_are_rejected(store: Arc<dyn Store>) {
    store.create("/a", v("1")).await.expect("create");
    match store.range("/", "0", 2, 0).await {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (2, 1))
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    assert!(matches!(
        store.compact(5).await,
        Err(Error::FutureRevision {
            requested: 5,
            current: 1
        })
    ));
    let at1 = store.range("/", "0", 1, 0).await.expect("current revision");
    assert_eq!(at1.kvs, vec![kv("/a", "1", 1, 1)]);
}

async fn compaction(store: Arc<dyn Store>) {
    store.create("/a", v("a1")).await.expect("1");
    store.create("/b", v("b1")).await.expect("2");
    store.create("/c", v("c1")).await.expect("3");
    store.update("/a", v("a2"), 1).await.expect("4");
    store.delete("/b", 2).await.expect("5");
    store.create("/d", v("d1")).await.expect("6");
    store.update("/c", v("c2"), 3).await.expect("7");

    store.compact(5).await.expect("compact");
    assert_eq!(store.compacted_revision(), 5);
    assert_eq!(store.current_revision(), 7, "compaction takes no revision");
    for revision in [1, 3, 5] {
        match store.range("/", "0", revision, 0).await {
            Err(Error::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (revision, 5)),
            other => panic!("expected Compacted at {revision}, got {other:?}"),
        }
    }
    let at6 = store.range("/", "0", 6, 0).await.expect("revision 6");
    assert_eq!(
        at6.kvs,
        vec![kv("/a", "a2", 1, 4), kv("/c", "c1", 3, 3), kv("/d", "d1", 6, 6)]
    );
    let latest = store.range("/", "0", 0, 0).await.expect("latest");
    assert_eq!(
        latest.kvs,
        vec![kv("/a", "a2", 1, 4), kv("/c", "c2", 3, 7), kv("/d", "d1", 6, 6)]
    );

    match store.watch("/", 4) {
        Err(Error::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (4, 5)),
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    let mut watch = store.watch("/", 5).expect("watching from the compacted revision");
    assert_eq!(
        take(&mut watch, 2).await,
        vec![
            put(kv("/d", "d1", 6, 6), None),
            put(kv("/c", "c2", 3, 7), Some(kv("/c", "c1", 3, 3))),
        ]
    );

    store.compact(3).await.expect("older compaction is a no-op");
    store.compact(0).await.expect("zero is a no-op");
    assert_eq!(store.compacted_revision(), 5);

    // Compacting everything keeps the latest values and the live watch.
    store.compact(7).await.expect("compact to current");
    assert_eq!(store.compacted_revision(), 7);
    assert!(matches!(
        store.range("/", "0", 7, 0).await,
        Err(Error::Compacted { .. })
    ));
    assert_eq!(store.range("/", "0", 0, 0).await.expect("latest").kvs, latest.kvs);
    assert_eq!(store.get("/a").await.expect("get"), Some(kv("/a", "a2", 1, 4)));
    let mut fresh = store.watch("/", 7).expect("watch from the compacted revision");
    store.update("/d", v("d2"), 6).await.expect("8");
    let expected = vec![put(kv("/d", "d2", 6, 8), Some(kv("/d", "d1", 6, 6)))];
    assert_eq!(take(&mut watch, 1).await, expected, "a live watch survives compaction");
    assert_eq!(take(&mut fresh, 1).await, expected);
}

async fn watch_replays_then_follows_live(store: Arc<dyn Store>) {
    store.create("/w/a", v("1")).await.expect("1");
    store.update("/w/a", v("2"), 1).await.expect("2");
    store.create("/w/b", v("b")).await.expect("3");
    store.delete("/w/a", 2).await.expect("4");

    let mut watch = store.watch("/w/", 0).expect("watch");
    let replayed = take(&mut watch, 4).await;
    assert_eq!(
        replayed,
        vec![
            put(kv("/w/a", "1", 1, 1), None),
            put(kv("/w/a", "2", 1, 2), Some(kv("/w/a", "1", 1, 1))),
            put(kv("/w/b", "b", 3, 3), None),
            del(kv("/w/a", "2", 1, 4), kv("/w/a", "2", 1, 2)),
        ]
    );

    store.update("/w/b", v("b2"), 3).await.expect("5");
    store.create("/w/a", v("new")).await.expect("6");
    store.delete("/w/b", 0).await.expect("7");
    let live = take(&mut watch, 3).await;
    assert_eq!(
        live,
        vec![
            put(kv("/w/b", "b2", 3, 5), Some(kv("/w/b", "b", 3, 3))),
            put(kv("/w/a", "new", 6, 6), None),
            del(kv("/w/b", "b2", 3, 7), kv("/w/b", "b2", 3, 5)),
        ]
    );

    // From the middle of history: only later events, the same as the live ones.
    let mut from2 = store.watch("/w/", 2).expect("watch");
    let events = take(&mut from2, 5).await;
    assert_eq!(revisions(&events), [3, 4, 5, 6, 7]);
    assert_eq!(events[2..], live[..]);
    // From the current revision: nothing until the next write.
    let mut now = store.watch("/w/", 7).expect("watch");
    store.create("/w/c", v("c")).await.expect("8");
    assert_eq!(take(&mut now, 1).await, vec![put(kv("/w/c", "c", 8, 8), None)]);
    assert_eq!(take(&mut from2, 1).await, vec![put(kv("/w/c", "c", 8, 8), None)]);
}

async fn watch_filters_by_prefix(store: Arc<dyn Store>) {
    for key in ["/p/a", "/pa", "/q/x", "/p/b/c", "/p"] {
        store.create(key, v(key)).await.expect("create");
    }
    let mut under_p = store.watch("/p/", 0).expect("watch");
    let mut everything = store.watch("", 0).expect("watch");
    let replayed = take(&mut under_p, 2).await;
    assert_eq!(
        keys(&replayed.iter().map(|e| e.kv.clone()).collect::<Vec<_>>()),
        ["/p/a", "/p/b/c"]
    );

    for key in ["/q/y", "/p/d", "/pz", "/p/"] {
        store.create(key, v(key)).await.expect("create");
    }
    store.delete("/p/a", 0).await.expect("delete");
    store.delete("/q/x", 0).await.expect("delete");
    store.create("/p/sentinel", v("s")).await.expect("create");
    let live = take(&mut under_p, 4).await;
    let seen: Vec<(&str, EventKind)> = live.iter().map(|e| (e.kv.key.as_str(), e.kind)).collect();
    assert_eq!(
        seen,
        [
            ("/p/d", EventKind::Put),
            ("/p/", EventKind::Put),
            ("/p/a", EventKind::Delete),
            ("/p/sentinel", EventKind::Put)
        ],
        "only keys under the prefix, in order, nothing in between"
    );
    let all = take(&mut everything, 12).await;
    assert_eq!(revisions(&all), (1..=12).collect::<Vec<_>>());
}

async fn watch_from_the_future_waits_for_its_revision(store: Arc<dyn Store>) {
    store.create("/f/a", v("1")).await.expect("1");
    let mut watch = store.watch("/f/", 3).expect("a future start is allowed");
    for i in 2..=5 {
        store.update("/f/a", v(&i.to_string()), 0).await.expect("update");
    }
    let events = take(&mut watch, 2).await;
    assert_eq!(revisions(&events), [4, 5]);
    assert_eq!(events[0].prev, Some(kv("/f/a", "3", 1, 3)));
}

async fn concurrent_writers(store: Arc<dyn Store>) {
    const TASKS: usize = 32;
    const WRITES: usize = 50;
    let mut watch = store.watch("/c/", 0).expect("watch");
    let watcher = tokio::spawn(async move { take(&mut watch, TASKS * WRITES).await });

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let key = format!("/c/{t:02}");
            let mut acknowledged = Vec::new();
            let mut last = store.create(&key, v(&format!("{t}-0"))).await.expect("create");
            acknowledged.push(last);
            for i in 1..WRITES {
                last = store.update(&key, v(&format!("{t}-{i}")), last).await.expect("update");
                acknowledged.push(last);
                // An acknowledged write is visible to any later read.
                let seen = store.get(&key).await.expect("get").expect("present");
                assert_eq!(seen.mod_revision, last);
                assert!(store.current_revision() >= last);
            }
            acknowledged
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer task"));
    }
    all.sort_unstable();
    let total = (TASKS * WRITES) as Revision;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "revisions are unique and contiguous"
    );
    assert_eq!(store.current_revision(), total);

    let events = watcher.await.expect("watch task");
    assert_eq!(
        revisions(&events),
        (1..=total).collect::<Vec<_>>(),
        "watch order is revision order"
    );
    let mut next_value: HashMap<String, usize> = HashMap::new();
    for event in &events {
        let i = next_value.entry(event.kv.key.clone()).or_default();
        let t: usize = event.kv.key["/c/".len()..].parse().expect("task number");
        assert_eq!(
            event.kv.value,
            v(&format!("{t}-{i}")),
            "values of {} in order",
            event.kv.key
        );
        assert_eq!(event.prev.is_some(), *i > 0);
        *i += 1;
    }
    assert!(next_value.values().all(|&n| n == WRITES));
}

async fn compare_and_swap_counter(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 25;
    store.create("/counter", v("0")).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..INCREMENTS {
                loop {
                    let current = store.get("/counter").await.expect("get").expect("present");
                    let n: usize = std::str::from_utf8(&current.value)
                        .expect("utf-8")
                        .parse()
                        .expect("number");
                    match store
                        .update("/counter", v(&(n + 1).to_string()), current.mod_revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { current: newer, .. }) => {
                            assert!(newer.mod_revision > current.mod_revision);
                            conflicts += 1;
                        }
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let counter = store.get("/counter").await.expect("get").expect("present");
    assert_eq!(counter.value, v(&(TASKS * INCREMENTS).to_string()), "no lost update");
    assert_eq!(counter.mod_revision, (TASKS * INCREMENTS + 1) as Revision);
    assert_eq!(
        store.current_revision(),
        counter.mod_revision,
        "failed swaps take no revision"
    );
}

async fn watches_started_during_writes_have_no_gap_or_duplicate(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const WRITES: usize = 60;
    let total = (TASKS * WRITES) as Revision;
    let mut writers = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES {
                store.create(&format!("/g/{t}/{i}"), v("x")).await.expect("create");
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut watchers = Vec::new();
    for w in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(w % 4)).await;
        let after = store.current_revision() / 2;
        let mut watch = store.watch("/g/", after).expect("watch");
        watchers.push(tokio::spawn(async move {
            let events = take(&mut watch, (total - after) as usize).await;
            assert_eq!(
                revisions(&events),
                (after + 1..=total).collect::<Vec<_>>(),
                "watch from {after}"
            );
        }));
    }
    for task in writers.into_iter().chain(watchers) {
        task.await.expect("task");
    }
}

async fn long_replays_page_through_history(store: Arc<dyn Store>) {
    // Enough events for several replay pages, with the watched prefix interleaved.
    const TASKS: usize = 16;
    const WRITES: usize = 100;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let prefix = if (t + i) % 3 == 0 { "/l/x/" } else { "/l/y/" };
                store.create(&format!("{prefix}{t}-{i}"), v("x")).await.expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let total = (TASKS * WRITES) as Revision;
    let everything = take(&mut store.watch("/l/", 0).expect("watch"), total as usize).await;
    assert_eq!(revisions(&everything), (1..=total).collect::<Vec<_>>());
    let want: Vec<Event> = everything
        .iter()
        .filter(|e| e.kv.key.starts_with("/l/x/"))
        .cloned()
        .collect();
    let mut watch = store.watch("/l/x/", 0).expect("watch");
    assert_eq!(take(&mut watch, want.len()).await, want);
    store.create("/l/x/last", v("x")).await.expect("create");
    assert_eq!(
        revisions(&take(&mut watch, 1).await),
        [total + 1],
        "then live, nothing skipped"
    );
}

// ----------------------------------------------------------------------------------------
// Running the suite against every backend

/// A store under test, with whatever must outlive it.
struct Backend {
    store: Arc<dyn Store>,
    _etcd: Option<LocalEtcd>,
    _dir: Option<tempfile::TempDir>,
}

async fn memory() -> Backend {
    Backend {
        store: Arc::new(MemoryStore::new()),
        _etcd: None,
        _dir: None,
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("open sqlite store");
    Backend {
        store: Arc::new(store),
        _etcd: None,
        _dir: Some(dir),
    }
}

/// A fresh one-member etcd (Debian's `etcd-server`, which `.ci/run` installs) per test.
async fn etcd() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = LocalEtcd::start(dir.path(), 1).expect("starting etcd (is Debian's etcd-server installed?)");
    etcd.wait_ready(Duration::from_secs(30)).await.expect("etcd ready");
    let store = EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
        .await
        .expect("connect to etcd");
    Backend {
        store: Arc::new(FromEmpty(store)),
        _etcd: Some(etcd),
        _dir: Some(dir),
    }
}

/// An etcd store seen with revisions counted from the empty cluster: etcd starts at revision
/// 1 where the suite's empty store is at 0, so every revision here is etcd's minus one. The
/// store itself uses etcd's revisions unchanged (they are the objects' resourceVersions).
struct FromEmpty(EtcdStore);

fn down(r: Revision) -> Revision {
    (r - 1).max(0)
}

fn up(r: Revision) -> Revision {
    if r == 0 { 0 } else { r + 1 }
}

fn down_kv(mut kv: KeyValue) -> KeyValue {
    kv.create_revision = down(kv.create_revision);
    kv.mod_revision = down(kv.mod_revision);
    kv
}

fn down_error(e: Error) -> Error {
    match e {
        Error::Conflict { key, expected, current } => Error::Conflict {
            key,
            expected: down(expected),
            current: down_kv(current),
        },
        Error::Compacted { requested, compacted } => Error::Compacted {
            requested: down(requested),
            compacted: down(compacted),
        },
        Error::FutureRevision { requested, current } => Error::FutureRevision {
            requested: down(requested),
            current: down(current),
        },
        other => other,
    }
}

#[async_trait::async_trait]
impl Store for FromEmpty {
    async fn get(&self, key: &str) -> shoal_store::Result<Option<KeyValue>> {
        Ok(self.0.get(key).await.map_err(down_error)?.map(down_kv))
    }

    async fn range(
        &self,
        start: &str,
        end: &str,
        revision: Revision,
        limit: usize,
    ) -> shoal_store::Result<RangeResult> {
        let r = self
            .0
            .range(start, end, up(revision), limit)
            .await
            .map_err(down_error)?;
        Ok(RangeResult {
            kvs: r.kvs.into_iter().map(down_kv).collect(),
            revision: down(r.revision),
            more: r.more,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> shoal_store::Result<Revision> {
        self.0.create(key, value).await.map(down).map_err(down_error)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> shoal_store::Result<Revision> {
        self.0
            .update(key, value, up(expected))
            .await
            .map(down)
            .map_err(down_error)
    }

    async fn delete(&self, key: &str, expected: Revision) -> shoal_store::Result<(Revision, KeyValue)> {
        let (r, kv) = self.0.delete(key, up(expected)).await.map_err(down_error)?;
        Ok((down(r), down_kv(kv)))
    }

    fn watch(&self, prefix: &str, after: Revision) -> shoal_store::Result<WatchStream> {
        let stream = self.0.watch(prefix, after + 1).map_err(down_error)?;
        Ok(Box::pin(stream.map(|batch| {
            batch
                .into_iter()
                .map(|e| Event {
                    kind: e.kind,
                    kv: down_kv(e.kv),
                    prev: e.prev.map(down_kv),
                })
                .collect()
        })))
    }

    async fn compact(&self, revision: Revision) -> shoal_store::Result<()> {
        self.0.compact(up(revision)).await.map_err(down_error)
    }

    fn current_revision(&self) -> Revision {
        down(self.0.current_revision())
    }

    fn compacted_revision(&self) -> Revision {
        down(self.0.compacted_revision())
    }
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let backend = super::memory().await;
                    super::$test(backend.store.clone()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let backend = super::sqlite().await;
                    super::$test(backend.store.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let backend = super::etcd().await;
                    super::$test(backend.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    create_and_get,
    update_with_preconditions,
    delete_with_preconditions,
    revisions_increase_by_one_per_write,
    range_with_limit_and_more,
    historical_ranges_match_a_model,
    future_revisions_are_rejected,
    compaction,
    watch_replays_then_follows_live,
    watch_filters_by_prefix,
    watch_from_the_future_waits_for_its_revision,
    concurrent_writers,
    compare_and_swap_counter,
    watches_started_during_writes_have_no_gap_or_duplicate,
    long_replays_page_through_history,
);

// ----------------------------------------------------------------------------------------
// Backend-specific behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_slow_watcher_is_ended_without_blocking_writers() {
    let store = MemoryStore::new();
    let mut watch = store.watch("", 0).expect("watch");
    let writes = 10_000;
    for i in 0..writes {
        store
            .create(&format!("/k{i}"), v("x"))
            .await
            .expect("writers never block on watchers");
    }
    let mut delivered = Vec::new();
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no stall")
    {
        delivered.extend(revisions(&batch));
    }
    assert!(delivered.len() < writes, "the lagging watch ended early");
    assert_eq!(
        delivered,
        (1..=delivered.len() as Revision).collect::<Vec<_>>(),
        "no gap before the end"
    );
    // A new watch from where it stopped replays the rest.
    let mut resumed = store.watch("", delivered.len() as Revision).expect("watch");
    let rest = take(&mut resumed, writes - delivered.len()).await;
    assert_eq!(rest.last().map(|e| e.kv.mod_revision), Some(writes as Revision));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reopen_keeps_everything_and_continues_the_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let (latest, at5, history, current) = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));
        store.create("/a", v("a1")).await.expect("1");
        store.create("/b", v("b1")).await.expect("2");
        store.update("/a", v("a2"), 1).await.expect("3");
        store.delete("/b", 2).await.expect("4");
        store.create("/c", v("c1")).await.expect("5");
        store.create("/b", v("b2")).await.expect("6");
        store.compact(3).await.expect("compact");
        store.update("/c", v("c2"), 5).await.expect("7");
        let mut tasks = Vec::new();
        for t in 0..16 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..10 {
                    let key = format!("/many/{t}/{i}");
                    acked.push((key.clone(), store.create(&key, v("m")).await.expect("create")));
                }
                acked
            }));
        }
        for task in tasks {
            for (key, revision) in task.await.expect("task") {
                assert_eq!(
                    store.get(&key).await.expect("get").map(|kv| kv.mod_revision),
                    Some(revision)
                );
            }
        }
        let latest = store.range("", "\u{10FFFF}", 0, 0).await.expect("latest");
        let at5 = store.range("", "\u{10FFFF}", 5, 0).await.expect("at 5");
        let mut watch = store.watch("", 3).expect("watch");
        let history = take(&mut watch, 164).await;
        (latest, at5, history, store.current_revision())
    };
    assert_eq!(current, 167);

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("reopen"));
    assert_eq!(store.current_revision(), current);
    assert_eq!(store.compacted_revision(), 3);
    assert_eq!(store.range("", "\u{10FFFF}", 0, 0).await.expect("latest"), latest);
    assert_eq!(store.range("", "\u{10FFFF}", 5, 0).await.expect("at 5"), at5);
    assert_eq!(
        at5.kvs,
        vec![kv("/a", "a2", 1, 3), kv("/c", "c1", 5, 5)],
        "history survives the reopen"
    );
    assert!(matches!(
        store.range("", "\u{10FFFF}", 3, 0).await,
        Err(Error::Compacted { .. })
    ));
    let mut watch = store.watch("", 3).expect("watch");
    assert_eq!(
        take(&mut watch, 164).await,
        history,
        "the same replay, prev values included"
    );

    assert_eq!(store.create("/after", v("x")).await.expect("create"), current + 1);
    assert_eq!(
        take(&mut watch, 1).await,
        vec![put(kv("/after", "x", current + 1, current + 1), None)]
    );
    match store.create("/b", v("x")).await {
        Err(Error::AlreadyExists(_)) => {}
        other => panic!("the index was rebuilt: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get("/b").await.expect("get"), Some(kv("/b", "b2", 6, 6)));
}

// ----------------------------------------------------------------------------------------
// etcd: several processes on one cluster, large ranges, quorum

async fn etcd_client(etcd: &LocalEtcd) -> EtcdStore {
    EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
        .await
        .expect("connect to etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_stores_sharing_a_cluster_see_each_others_writes_and_compactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = LocalEtcd::start(dir.path(), 1).expect("etcd");
    etcd.wait_ready(Duration::from_secs(30)).await.expect("ready");
    let (a, b) = (etcd_client(&etcd).await, etcd_client(&etcd).await);
    let mut watch = a.watch("/registry/", a.current_revision()).expect("watch");
    let first = b.create("/registry/x/1", v("one")).await.expect("create");
    let second = b.update("/registry/x/1", v("two"), first).await.expect("update");
    let events = take(&mut watch, 2).await;
    assert_eq!(revisions(&events), [first, second], "a sees b's writes");
    assert_eq!(a.current_revision(), second, "and learns the revision from them");
    match a.update("/registry/x/1", v("stale"), first).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(current.value, v("two")),
        other => panic!("expected a conflict, got {other:?}"),
    }

    // b compacts; a, which never compacted, refuses the old revision with the right numbers.
    b.compact(second).await.expect("compact");
    match a.range("/registry/", "/registry0", first, 0).await {
        Err(Error::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (first, second)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_eq!(a.compacted_revision(), second);
    assert!(matches!(a.watch("/registry/", first - 1), Err(Error::Compacted { .. })));
    // A process that starts later learns the compaction when it connects.
    assert_eq!(etcd_client(&etcd).await.compacted_revision(), second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_ranges_without_a_limit_page_at_one_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = LocalEtcd::start(dir.path(), 1).expect("etcd");
    etcd.wait_ready(Duration::from_secs(30)).await.expect("ready");
    let store = etcd_client(&etcd).await;
    for i in 0..1234 {
        store.create(&format!("/p/{i:05}"), v("x")).await.expect("create");
    }
    let at = store.current_revision();
    store.create("/p/99999", v("later")).await.expect("create");
    let all = store.range("/p/", "/p0", at, 0).await.expect("range");
    assert_eq!(all.kvs.len(), 1234, "every key, across pages, as of the revision asked");
    assert_eq!(all.revision, at);
    assert!(!all.more);
    let limited = store.range("/p/", "/p0", 0, 700).await.expect("range");
    assert_eq!((limited.kvs.len(), limited.more), (700, true));
    assert_eq!(limited.kvs[699].key, "/p/00699");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_without_quorum_refuses_writes_in_time_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut etcd = LocalEtcd::start(dir.path(), 3).expect("etcd");
    etcd.wait_ready(Duration::from_secs(30)).await.expect("ready");
    let mut options = EtcdOptions::new(etcd.endpoints());
    options.timeout = Duration::from_secs(2);
    let store = EtcdStore::connect(options).await.expect("connect");
    let kept = store.create("/q/acknowledged", v("1")).await.expect("create");

    // A follower going away changes nothing; the leader going away costs one election.
    let leader = etcd.leader().await.expect("a leader");
    let follower = (leader + 1) % 3;
    etcd.kill(follower);
    store
        .create("/q/one-member-down", v("1"))
        .await
        .expect("one member down changes nothing");
    etcd.kill(leader);
    let started = std::time::Instant::now();
    match store.create("/q/no-quorum", v("1")).await {
        Err(Error::Unavailable(message)) => assert!(message.starts_with("etcd: "), "{message}"),
        other => panic!("expected Unavailable without quorum, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the write failed within its deadline"
    );
    assert!(store.check().await.is_err(), "readiness reports the lost quorum");

    etcd.restart(leader).expect("restart");
    let mut recovered = false;
    for _ in 0..100 {
        if store.create("/q/after", v("1")).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "writes work again once quorum returns");
    let kv = store.get("/q/acknowledged").await.expect("get").expect("kept");
    assert_eq!(kv.mod_revision, kept, "nothing acknowledged was lost");
    assert!(store.get("/q/one-member-down").await.expect("get").is_some());
}
