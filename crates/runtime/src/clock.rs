//! The time a plan is made at. Controllers read it once per reconcile and hand it to their
//! pure plan; tests use a [`FakeClock`] they move by hand (and tokio's paused time for the
//! delays of queues and back-offs), so no test waits for a real minute.

use std::sync::{Arc, Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until moved; clones share the time.
#[derive(Clone, Debug)]
pub struct FakeClock(Arc<Mutex<Timestamp>>);

impl FakeClock {
    /// A clock showing `at`.
    pub fn at(at: Timestamp) -> FakeClock {
        FakeClock(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock forward by `d` (back when negative).
    pub fn advance(&self, d: SignedDuration) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *t = t.checked_add(d).unwrap_or(*t);
    }

    /// Sets the clock.
    pub fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The clock controllers use unless told otherwise.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_moves_only_when_told() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = FakeClock::at(t0);
        let shared = c.clone();
        assert_eq!(c.now(), t0);
        shared.advance(SignedDuration::from_secs(61));
        assert_eq!(c.now().to_string(), "2026-01-01T00:01:01Z");
        c.set(t0);
        assert_eq!(shared.now(), t0);
    }
}
