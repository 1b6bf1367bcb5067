//! The loop every keyed controller runs: take a key from its [`WorkQueue`], reconcile it
//! inside a tracing span `reconcile{controller, object}`, record the duration and the result
//! in the controller's metrics, and queue the key again as the result says: after a delay
//! the reconcile asked for, or after the key's back-off when it failed. A key is reconciled
//! by one worker at a time.

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::informer::{self, Change, Informers};
use crate::queue::WorkQueue;

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing until something changes.
    Done,
    /// Look again after this long even if nothing changes (a deadline, a pod becoming
    /// available after minReadySeconds).
    RequeueAfter(Duration),
}

impl Outcome {
    /// The sooner of two outcomes.
    pub fn min(self, other: Outcome) -> Outcome {
        match (self, other) {
            (Outcome::RequeueAfter(a), Outcome::RequeueAfter(b)) => Outcome::RequeueAfter(a.min(b)),
            (Outcome::RequeueAfter(a), Outcome::Done) | (Outcome::Done, Outcome::RequeueAfter(a)) => {
                Outcome::RequeueAfter(a)
            }
            (Outcome::Done, Outcome::Done) => Outcome::Done,
        }
    }
}

/// Why a reconcile failed, by kind (the kind is the metric label; nothing matches on text).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed (shown as the server's message when the server answered, as
    /// upstream's controllers put it in events: `pods "x" is forbidden: ...`).
    #[error("{}", api_message(.0))]
    Api(#[from] kube::Error),
    /// An object could not be encoded for a write (a bug, reported, never a panic).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
}

/// The server's message of an answered API error, else the client's description.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

impl Error {
    /// The metric label of this error: the API's reason for API errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Api(e) => api_error_kind(e),
            Error::Encode { .. } => "encode",
        }
    }

    /// The API status code, for API errors answered by the server.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }
}

/// The metric label of a kube client error.
pub fn api_error_kind(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) => match (s.code, s.reason.as_str()) {
            (409, "AlreadyExists") => "already_exists",
            (409, _) => "conflict",
            (404, _) => "not_found",
            (422, _) | (400, _) => "invalid",
            (403, _) => "forbidden",
            (401, _) => "unauthorized",
            (429, _) => "too_many_requests",
            (c, _) if c >= 500 => "server_error",
            _ => "api",
        },
        kube::Error::SerdeError(_) => "decode",
        kube::Error::HyperError(_) | kube::Error::Service(_) => "transport",
        _ => "client",
    }
}

/// How long a key that changed while it was being reconciled waits before it is reconciled
/// again: as long as the reconcile took, from 20 to 100 ms. A key whose objects change all
/// the time (a DaemonSet whose 5,000 pods are starting) is reconciled at most about every
/// other moment, its changes taken together, instead of back to back; a single change is
/// handled at once.
fn spacing(took: Duration) -> Duration {
    took.clamp(Duration::from_millis(20), Duration::from_millis(100))
}

/// Takes keys from `queue` and reconciles them with `workers` concurrent workers, as the
/// controller `name`, until the queue is shut down. A panic in a reconcile panics the whole
/// loop (its supervisor restarts it; see [`crate::supervise`]).
pub async fn run<K, F, Fut>(name: &'static str, queue: WorkQueue<K>, workers: usize, reconcile: F)
where
    K: Clone + Eq + Hash + Display + Send + Sync + 'static,
    F: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, Error>> + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    let metrics = crate::metrics::controller(name);
    let mut tasks = crate::Subtasks::new();
    for _ in 0..workers.max(1) {
        let (queue, reconcile, metrics) = (queue.clone(), reconcile.clone(), metrics.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.next().await {
                let span = tracing::debug_span!("reconcile", controller = name, object = %key);
                let started = Instant::now();
                let result = reconcile(key.clone()).instrument(span.clone()).await;
                let took = started.elapsed();
                match result {
                    Ok(outcome) => {
                        queue.forget(&key);
                        let requeue = match outcome {
                            Outcome::RequeueAfter(d) => Some(d),
                            Outcome::Done => None,
                        };
                        metrics.reconciled(took, requeue.is_some(), None);
                        queue.done_spaced(&key, spacing(took));
                        if let Some(d) = requeue {
                            queue.add_after(key, d);
                        }
                    }
                    Err(e) => {
                        let kind = e.kind();
                        metrics.reconciled(took, false, Some(kind));
                        let _enter = span.enter();
                        if queue.failures(&key) >= 5 {
                            tracing::warn!(kind, error = %e, "reconcile failed; backing off");
                        } else {
                            tracing::debug!(kind, error = %e, "reconcile failed; will retry");
                        }
                        queue.done(&key);
                        queue.add_rate_limited(key);
                    }
                }
            }
        });
    }
    tasks.join_any().await;
}

/// Maps one change of a watched resource to the keys of the primary objects it concerns.
pub type Mapper = Arc<dyn Fn(&Informers, &Change) -> Vec<String> + Send + Sync>;

/// A keyed controller over the primary resource `(group, plural)`: its work queue is fed by
/// the primary objects' own changes and by the changes of the resources it watches, each
/// mapped to primary keys; after every relist all primary objects are queued again.
pub struct Keyed {
    name: &'static str,
    primary: (&'static str, &'static str),
    watches: Vec<(&'static str, &'static str, Mapper)>,
    workers: usize,
}

impl Keyed {
    /// The controller `name` of the primary resource `(group, plural)`, with one worker.
    pub fn new(name: &'static str, group: &'static str, plural: &'static str) -> Keyed {
        Keyed {
            name,
            primary: (group, plural),
            watches: Vec::new(),
            workers: 1,
        }
    }

    /// Also wakes for changes of `(group, plural)`, mapped to primary keys by `map`.
    pub fn watches(
        mut self,
        group: &'static str,
        plural: &'static str,
        map: impl Fn(&Informers, &Change) -> Vec<String> + Send + Sync + 'static,
    ) -> Keyed {
        self.watches.push((group, plural, Arc::new(map)));
        self
    }

    /// Also wakes for changes of objects of `(group, plural)` controlled by a primary object
    /// of `kind` (its controller's key), and of orphans (every primary object of their
    /// namespace, any of which may adopt them), as upstream's controllers do.
    pub fn owns(self, group: &'static str, plural: &'static str, kind: &'static str) -> Keyed {
        let primary = self.primary;
        self.watches(group, plural, move |informers, change| {
            let mut keys = Vec::new();
            for o in change.objects() {
                let ns = informer::namespace(o);
                match informer::controller_of_kind(o, kind) {
                    Some(owner) => keys.push(format!("{ns}/{owner}")),
                    None if informer::controller_uid(o).is_none() => {
                        keys.extend(primary_keys(informers, primary, Some(ns)));
                    }
                    None => {}
                }
            }
            keys
        })
    }

    /// Runs `workers` workers (keys are still reconciled one worker at a time each).
    pub fn workers(mut self, workers: usize) -> Keyed {
        self.workers = workers;
        self
    }

    /// Subscribes, waits for the caches, queues every primary object, and reconciles keys
    /// until the process ends.
    pub async fn run<F, Fut>(self, informers: Informers, reconcile: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, Error>> + Send + 'static,
    {
        let queue: WorkQueue<String> = WorkQueue::new(self.name);
        let primary = self.primary;
        let own: Mapper = Arc::new(move |informers: &Informers, change: &Change| match change {
            Change::Resync => primary_keys(informers, primary, None),
            Change::Object { .. } => change.objects().map(|o| informer::key(o)).collect(),
        });
        let mut feeds = crate::Subtasks::new();
        let all = std::iter::once((primary.0, primary.1, own)).chain(self.watches);
        for (group, plural, map) in all {
            let mut changes = informers.subscribe(group, plural);
            let (queue, informers) = (queue.clone(), informers.clone());
            feeds.spawn(async move {
                while let Some(change) = changes.recv().await {
                    let keys = match change {
                        Change::Resync => primary_keys(&informers, primary, None),
                        _ => map(&informers, &change),
                    };
                    queue.add_all(keys);
                }
            });
        }
        informers.ready().await;
        queue.add_all(primary_keys(&informers, primary, None));
        tokio::select! {
            _ = run(self.name, queue, self.workers, reconcile) => {}
            _ = feeds.join_any() => {}
        }
    }
}

impl Keyed {
    /// [`Keyed::run`] for the usual reconcile: it is handed `ctx` (shared by every
    /// reconcile), the informers and the primary object as the cache has it (`None` once it
    /// is gone), so it does not look the key up itself.
    pub async fn run_cached<C, F, Fut>(self, informers: Informers, ctx: C, reconcile: F)
    where
        C: Send + Sync + 'static,
        F: Fn(Arc<C>, Informers, Option<Arc<serde_json::Value>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, Error>> + Send + 'static,
    {
        let (group, plural) = self.primary;
        let ctx = Arc::new(ctx);
        let cache = informers.clone();
        self.run(informers, move |key: String| {
            let object = cache.get(group, plural, &key);
            reconcile(ctx.clone(), cache.clone(), object)
        })
        .await
    }
}

/// A write's result with "already gone" (404) taken as done: what a deletion or a release
/// wanted anyway. Every other error stays an error.
pub fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Retries of failed whole-cluster passes: 5 ms doubling to 5 s. A pass does all of its
/// work and fails only for what it could not do, which the next pass tries again; a longer
/// back-off would leave a quiet cluster waiting on one stubborn object.
const PASS_RETRY: crate::queue::RateLimit = crate::queue::RateLimit {
    base: Duration::from_millis(5),
    max: Duration::from_secs(5),
};

/// Paces a whole-cluster controller (the garbage collectors, node lifecycle, IPAM, quotas,
/// endpoints, ...), whose every pass reads the caches whole and acts: [`Pacer::pass`] runs
/// one pass in a span `reconcile{controller}`, times it and counts its result in the
/// controller's metrics, then waits until a resource of its interest changes
/// (`spacing(time the pass took)` after the change, so changes that arrive together cost one
/// pass) or the wait the pass returned passes. A failed pass is retried after a back-off
/// that doubles per failure in a row (5 ms to 5 s), or sooner if something changes.
pub struct Pacer<S> {
    name: &'static str,
    interest: informer::Interest,
    spacing: S,
    metrics: Arc<crate::metrics::ControllerMetrics>,
    limit: crate::queue::RateLimit,
    failures: u32,
}

impl<S: Fn(Duration) -> Duration> Pacer<S> {
    /// The pacer of controller `name`.
    pub fn new(name: &'static str, interest: informer::Interest, spacing: S) -> Pacer<S> {
        Pacer {
            name,
            interest,
            spacing,
            metrics: crate::metrics::controller(name),
            limit: PASS_RETRY,
            failures: 0,
        }
    }

    /// Runs one pass, then waits for the next.
    pub async fn pass(&mut self, informers: &Informers, pass: impl Future<Output = Result<Duration, Error>>) {
        self.pass_watching(informers, pass, || None).await
    }

    /// As [`Self::pass`], but waits on what `instead` returns after the pass (when it returns
    /// one) rather than its own interest: for a controller whose interest depends on what
    /// the pass found (the node lifecycle controller listens to pods only while some node has
    /// a NoExecute taint).
    pub async fn pass_watching<'a>(
        &mut self,
        informers: &Informers,
        pass: impl Future<Output = Result<Duration, Error>>,
        instead: impl FnOnce() -> Option<&'a mut informer::Interest>,
    ) {
        let span = tracing::debug_span!("reconcile", controller = self.name);
        let started = Instant::now();
        let result = pass.instrument(span.clone()).await;
        let took = started.elapsed();
        let wait = match result {
            Ok(wait) => {
                self.failures = 0;
                self.metrics.reconciled(took, false, None);
                wait
            }
            Err(e) => {
                let kind = e.kind();
                self.failures = self.failures.saturating_add(1);
                self.metrics.reconciled(took, false, Some(kind));
                let _enter = span.enter();
                if self.failures >= 5 {
                    tracing::warn!(kind, error = %e, "pass failed; backing off");
                } else {
                    tracing::debug!(kind, error = %e, "pass failed; will retry");
                }
                self.limit.delay(self.failures)
            }
        };
        informers.wait(instead().unwrap_or(&mut self.interest), wait).await;
        tokio::time::sleep((self.spacing)(took)).await;
    }
}

/// Keys of every primary object (in `namespace` only, when given).
pub fn primary_keys(informers: &Informers, (group, plural): (&str, &str), namespace: Option<&str>) -> Vec<String> {
    informers
        .of(group, plural)
        .iter()
        .filter(|o| namespace.is_none_or(|ns| informer::namespace(o) == ns))
        .map(|o| informer::key(o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn conflict() -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("the object has been modified", "Conflict")
                .with_code(409)
                .boxed(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_successes_are_forgotten_and_requeues_come_back() {
        let queue: WorkQueue<String> = WorkQueue::new("controller-test");
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let q = queue.clone();
        let start = tokio::time::Instant::now();
        let runner = tokio::spawn(run("controller-test", queue.clone(), 2, move |key: String| {
            let l = l.clone();
            let q = q.clone();
            async move {
                let n = {
                    let mut log = l.lock().unwrap();
                    log.push((key.clone(), start.elapsed().as_millis()));
                    log.iter().filter(|(k, _)| *k == key).count()
                };
                match (key.as_str(), n) {
                    ("flaky", 1 | 2) => Err(Error::Api(conflict())),
                    ("flaky", _) => {
                        assert_eq!(q.failures(&key), 2, "not yet forgotten while reconciling");
                        Ok(Outcome::Done)
                    }
                    ("timer", 1) => Ok(Outcome::RequeueAfter(Duration::from_secs(30))),
                    _ => Ok(Outcome::Done),
                }
            }
        }));
        queue.add("flaky".to_string());
        queue.add("timer".to_string());
        tokio::time::sleep(Duration::from_secs(60)).await;
        queue.shut_down();
        runner.await.unwrap();
        let log = log.lock().unwrap().clone();
        let times = |k: &str| log.iter().filter(|(x, _)| x == k).map(|(_, t)| *t).collect::<Vec<_>>();
        assert_eq!(times("flaky"), [0, 5, 15], "5 ms then 10 ms back-off");
        assert_eq!(times("timer"), [0, 30_000]);
        assert_eq!(queue.failures(&"flaky".to_string()), 0);
        let m = crate::metrics::controller("controller-test");
        assert_eq!(m.errors().get("conflict"), Some(&2));
        assert_eq!(m.reconciles(), 5);
    }

    #[tokio::test]
    async fn a_panicking_controller_is_restarted_and_counted() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let components = crate::Components::with_backoff(crate::Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicUsize::new(0));
        let (c, h) = (calls.clone(), healthy.clone());
        components.spawn("controller/panicky", move || {
            // Each run of the component builds its queue afresh and queues its objects, as
            // the keyed controllers do after every (re)start.
            let queue: WorkQueue<String> = WorkQueue::new("panicky");
            queue.add("ns/poison".to_string());
            let (c, h) = (c.clone(), h.clone());
            run("panicky", queue, 1, move |_key: String| {
                let (c, h) = (c.clone(), h.clone());
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("a bug met a strange object");
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    Ok(Outcome::Done)
                }
            })
        });
        for _ in 0..300 {
            if healthy.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(healthy.load(Ordering::SeqCst), 1, "reconciled again after the restart");
        let status = &components.status()[0];
        assert_eq!(status.restarts, 1);
        assert!(status.up);
        assert_eq!(
            status.last_failure.as_deref(),
            Some("panicked: a bug met a strange object")
        );
    }

    #[test]
    fn error_kinds_come_from_the_status_not_the_message() {
        assert_eq!(Error::Api(conflict()).kind(), "conflict");
        let exists = kube::Error::Api(
            kube::core::Status::failure("conflict in the name", "AlreadyExists")
                .with_code(409)
                .boxed(),
        );
        assert_eq!(api_error_kind(&exists), "already_exists");
        let e = Error::Encode {
            what: "pod",
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert_eq!(e.kind(), "encode");
        assert_eq!(
            Outcome::Done.min(Outcome::RequeueAfter(Duration::from_secs(1))),
            Outcome::RequeueAfter(Duration::from_secs(1))
        );
    }
}
