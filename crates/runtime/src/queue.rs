//! A keyed work queue, as client-go's rate-limited delaying queue:
//!
//! - a key added several times before a worker takes it is handed out once (de-duplication);
//! - a key is never handed to two workers at once: added while being processed, it is handed
//!   out again after [`WorkQueue::done`];
//! - [`WorkQueue::add_after`] delays a key (the earliest of several delays wins);
//! - [`WorkQueue::add_rate_limited`] delays a key by its own exponential back-off (5 ms
//!   doubling to 1000 s, as upstream's default controller rate limiter), which
//!   [`WorkQueue::forget`] resets after a success.
//!
//! Time is tokio's, so tests pause it and advance it instead of waiting.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::QueueMetrics;

/// Per-key back-off: `base * 2^(failures-1)`, at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            base: Duration::from_millis(5),
            max: Duration::from_secs(1000),
        }
    }
}

impl RateLimit {
    /// The delay after `failures` failures in a row (1 or more).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(40);
        self.base.saturating_mul(1u32 << shift.min(31)).min(self.max)
    }
}

struct State<K> {
    ready: VecDeque<K>,
    /// Keys waiting in `ready` or to be re-queued once their worker is done.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Delayed keys by due time (and a sequence number for ties), and each key's due time.
    delayed: BTreeMap<(Instant, u64), K>,
    due: HashMap<K, (Instant, u64)>,
    failures: HashMap<K, u32>,
    seq: u64,
    shut: bool,
}

/// The queue; cheap to clone (clones share it).
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    limit: RateLimit,
    metrics: Arc<QueueMetrics>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
            limit: self.limit,
            metrics: self.metrics.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue named `name` (its metrics carry the name) with the default back-off.
    pub fn new(name: &'static str) -> WorkQueue<K> {
        WorkQueue::with_rate_limit(name, RateLimit::default())
    }

    /// An empty queue with another back-off.
    pub fn with_rate_limit(name: &'static str, limit: RateLimit) -> WorkQueue<K> {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                ready: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                delayed: BTreeMap::new(),
                due: HashMap::new(),
                failures: HashMap::new(),
                seq: 0,
                shut: false,
            })),
            notify: Arc::new(Notify::new()),
            limit,
            metrics: crate::metrics::queue(name),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `key` now.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if Self::push(&mut s, key) {
            self.metrics.added(s.ready.len());
            drop(s);
            self.notify.notify_waiters();
        }
    }

    /// Queues every key of `keys` now.
    pub fn add_all(&self, keys: impl IntoIterator<Item = K>) {
        let mut s = self.lock();
        let mut any = false;
        for key in keys {
            if Self::push(&mut s, key) {
                any = true;
                self.metrics.added(s.ready.len());
            }
        }
        drop(s);
        if any {
            self.notify.notify_waiters();
        }
    }

    /// True when the key became ready (it was not waiting already).
    fn push(s: &mut State<K>, key: K) -> bool {
        if let Some(at) = s.due.remove(&key) {
            s.delayed.remove(&at);
        }
        if !s.dirty.insert(key.clone()) {
            return false;
        }
        if !s.processing.contains(&key) {
            s.ready.push_back(key);
        }
        true
    }

    /// Queues `key` after `delay` (at once when zero); a key already due sooner keeps its time.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut s = self.lock();
        if s.dirty.contains(&key) {
            // It will be handed out anyway (now, or once its worker is done).
            return;
        }
        if let Some(&(when, seq)) = s.due.get(&key) {
            if when <= at {
                return;
            }
            s.delayed.remove(&(when, seq));
        }
        s.seq += 1;
        let slot = (at, s.seq);
        s.delayed.insert(slot, key.clone());
        s.due.insert(key, slot);
        drop(s);
        // A worker sleeping until a later deadline must wake to wait for this one.
        self.notify.notify_waiters();
    }

    /// Queues `key` after its back-off, which doubles with every call until [`Self::forget`].
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            self.limit.delay(*n)
        };
        self.metrics.retried();
        self.add_after(key, delay);
    }

    /// Resets `key`'s back-off.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Failures of `key` since its last [`Self::forget`].
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys ready to be handed out.
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    /// True when no key is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys waiting for their delay.
    pub fn delayed(&self) -> usize {
        self.lock().delayed.len()
    }

    /// Stops handing out keys: [`Self::next`] returns `None` from now on.
    pub fn shut_down(&self) {
        self.lock().shut = true;
        self.notify.notify_waiters();
    }

    /// Moves due delayed keys to the ready queue; returns the next due time.
    fn promote(&self, s: &mut State<K>, now: Instant) -> Option<Instant> {
        while let Some((&(at, seq), _)) = s.delayed.first_key_value() {
            if at > now {
                return Some(at);
            }
            if let Some(key) = s.delayed.remove(&(at, seq)) {
                s.due.remove(&key);
                if Self::push(s, key) {
                    self.metrics.added(s.ready.len());
                }
            }
        }
        None
    }

    /// Takes the next ready key (waiting for one), marking it processing; `None` once shut
    /// down. Call [`Self::done`] when finished with it.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let mut s = self.lock();
                if s.shut {
                    return None;
                }
                let deadline = self.promote(&mut s, Instant::now());
                if let Some(key) = s.ready.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    self.metrics.taken(s.ready.len());
                    return Some(key);
                }
                deadline
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Finishes `key`, as [`Self::done`], but a key added again meanwhile waits `spacing`
    /// before it is ready: changes that keep arriving for a busy key are taken together.
    pub fn done_spaced(&self, key: &K, spacing: Duration) {
        let mut s = self.lock();
        s.processing.remove(key);
        if !spacing.is_zero() && s.dirty.remove(key) {
            drop(s);
            self.add_after(key.clone(), spacing);
        } else if s.dirty.contains(key) {
            s.ready.push_back(key.clone());
            self.metrics.added(s.ready.len());
            drop(s);
            self.notify.notify_waiters();
        }
    }

    /// Finishes `key`: if it was added again meanwhile, it is ready again.
    pub fn done(&self, key: &K) {
        self.done_spaced(key, Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keys_are_deduplicated_and_handed_out_in_order() {
        let q = WorkQueue::new("test-dedup");
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_processing_waits_for_done() {
        let q = WorkQueue::new("test-processing");
        q.add("a");
        let k = q.next().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "not handed to a second worker while the first holds it");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_key_is_taken_again_after_its_spacing() {
        let q = WorkQueue::new("test-spaced");
        q.add("a");
        let k = q.next().await.unwrap();
        q.done_spaced(&k, Duration::from_millis(50));
        assert!(q.is_empty() && q.delayed() == 0, "not added meanwhile: nothing to do");
        q.add("a");
        let k = q.next().await.unwrap();
        q.add("a");
        q.add("a");
        q.done_spaced(&k, Duration::from_millis(50));
        assert!(q.is_empty(), "changes during the reconcile wait");
        let start = Instant::now();
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(start.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_come_due_and_the_earliest_delay_wins() {
        let q = WorkQueue::new("test-delay");
        q.add_after("late", Duration::from_secs(10));
        q.add_after("soon", Duration::from_secs(5));
        q.add_after("late", Duration::from_secs(2));
        q.add_after("soon", Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(q.next().await, Some("late"));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(q.next().await, Some("soon"));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // A plain add overrides a pending delay.
        q.add_after("x", Duration::from_secs(100));
        q.add("x");
        assert_eq!(q.delayed(), 0);
        assert_eq!(q.next().await, Some("x"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let q = WorkQueue::with_rate_limit(
            "test-backoff",
            RateLimit {
                base: Duration::from_secs(1),
                max: Duration::from_secs(8),
            },
        );
        let mut waits = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            q.add_rate_limited("k");
            let k = q.next().await.unwrap();
            waits.push(start.elapsed().as_secs());
            q.done(&k);
        }
        assert_eq!(waits, [1, 2, 4, 8, 8]);
        assert_eq!(q.failures(&"k"), 5);
        q.forget(&"k");
        let start = Instant::now();
        q.add_rate_limited("k");
        q.next().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_for_an_add_and_for_shutdown() {
        let q: WorkQueue<u32> = WorkQueue::new("test-wake");
        let q2 = q.clone();
        let worker = tokio::spawn(async move { (q2.next().await, q2.next().await) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.add(7);
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.shut_down();
        assert_eq!(worker.await.unwrap(), (Some(7), None));
    }

    #[test]
    fn rate_limit_delays_saturate() {
        let r = RateLimit::default();
        assert_eq!(r.delay(1), Duration::from_millis(5));
        assert_eq!(r.delay(2), Duration::from_millis(10));
        assert_eq!(r.delay(u32::MAX), Duration::from_secs(1000));
    }
}
