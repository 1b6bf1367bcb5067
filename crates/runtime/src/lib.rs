//! The controller runtime: what every control loop of shoal (the controllers, the scheduler,
//! the node agents) is built from, so none of them depends on another sideways.
//!
//! - [`informer`]: one watch-backed cache per resource, shared; change notifications by key.
//! - [`events`]: the event recorder (correlation and spam filter as client-go's).
//! - [`queue`]: a keyed work queue (de-duplication, delayed requeue, per-key exponential
//!   back-off; a key is never handed to two workers at once).
//! - [`expectations`]: creations and deletions in flight per owner, so a lagging cache never
//!   doubles a write.
//! - [`claim`]: adopting matching orphans and releasing owned objects that stopped matching,
//!   for every owner kind.
//! - [`clock`]: the time a plan is made at, real or paused.
//! - [`batch`]: upstream's slow-start batches for creations.
//! - [`controller`]: the loop that drives a reconcile function from a queue, with a tracing
//!   span per reconcile and per-controller metrics ([`metrics`]).
//! - [`supervise`]: supervised tasks, restarted and counted when they panic or end.
//! - [`testing`]: a recording fake of the API for controller scenario tests.
//!
//! The invariant the layer serves: a controller's decision is a pure `plan(facts, now)` over
//! a snapshot; it never reads the clock or the API itself. Only its thin apply writes.

pub mod batch;
pub mod claim;
pub mod clock;
pub mod controller;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod supervise;
pub mod testing;

pub use supervise::{Backoff, Components, Status, Subtasks, install_panic_hook, panic_message, panics};
