//! Expectations, as upstream's `ControllerExpectations`, but by identity rather than by count:
//! an owner's writes in flight (the node a daemon pod was created for, the name a pod was
//! created under, the uid of a pod being deleted) are remembered until the cache shows them.
//! A controller whose cache lags its own writes then neither creates twice nor counts a
//! deleted pod as still there. An expectation not seen within the time-to-live (5 minutes,
//! as upstream) lapses, so a lost watch event cannot stall an owner forever.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// How long an expectation waits to be seen, as upstream's `ExpectationsTimeout`.
pub const TTL: Duration = Duration::from_secs(300);

/// Writes in flight per owner `O`, each identified by an `I`.
#[derive(Debug)]
pub struct Expectations<O, I> {
    owners: HashMap<O, HashMap<I, Instant>>,
    ttl: Duration,
}

impl<O, I> Default for Expectations<O, I> {
    fn default() -> Self {
        Expectations {
            owners: HashMap::new(),
            ttl: TTL,
        }
    }
}

impl<O: Eq + Hash + Clone, I: Eq + Hash + Clone> Expectations<O, I> {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects `item` for `owner` (a write was issued).
    pub fn expect(&mut self, owner: &O, item: I) {
        self.owners
            .entry(owner.clone())
            .or_default()
            .insert(item, Instant::now());
    }

    /// Forgets `item` (its write failed, so nothing will be seen).
    pub fn cancel(&mut self, owner: &O, item: &I) {
        if let Some(items) = self.owners.get_mut(owner) {
            items.remove(item);
            if items.is_empty() {
                self.owners.remove(owner);
            }
        }
    }

    /// Drops what `seen` says the cache now shows, and what lapsed; returns what is still in
    /// flight for `owner`.
    pub fn settle(&mut self, owner: &O, seen: impl Fn(&I) -> bool) -> Vec<I> {
        let ttl = self.ttl;
        let Some(items) = self.owners.get_mut(owner) else {
            return Vec::new();
        };
        items.retain(|i, at| at.elapsed() < ttl && !seen(i));
        let left: Vec<I> = items.keys().cloned().collect();
        if left.is_empty() {
            self.owners.remove(owner);
        }
        left
    }

    /// True when `item` is in flight for `owner` (and has not lapsed).
    pub fn pending(&self, owner: &O, item: &I) -> bool {
        self.owners
            .get(owner)
            .and_then(|items| items.get(item))
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// True when nothing is in flight for `owner`.
    pub fn satisfied(&self, owner: &O) -> bool {
        self.owners
            .get(owner)
            .is_none_or(|items| items.values().all(|at| at.elapsed() >= self.ttl))
    }

    /// Forgets every owner `keep` says is gone.
    pub fn retain_owners(&mut self, keep: impl Fn(&O) -> bool) {
        self.owners.retain(|o, _| keep(o));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_stay_expected_until_seen_cancelled_or_lapsed() {
        let mut e: Expectations<&str, &str> = Expectations::new();
        assert!(e.satisfied(&"ds"));
        e.expect(&"ds", "node-1");
        e.expect(&"ds", "node-2");
        e.expect(&"ds", "node-3");
        assert!(!e.satisfied(&"ds"));
        assert!(e.pending(&"ds", &"node-1"));
        // The cache shows node-1's pod; node-2's create failed.
        e.cancel(&"ds", &"node-2");
        let mut left = e.settle(&"ds", |n| *n == "node-1");
        left.sort();
        assert_eq!(left, ["node-3"]);
        tokio::time::advance(TTL).await;
        assert!(e.satisfied(&"ds"), "a lost event cannot stall the owner");
        assert!(e.settle(&"ds", |_| false).is_empty());
        e.expect(&"gone", "x");
        e.retain_owners(|o| *o != "gone");
        assert!(e.satisfied(&"gone"));
    }
}
