//! Supervised tasks. The long-lived parts of a cluster (controllers, informers, the scheduler, the watch
//! cache feeder, simulated nodes, DNS) run as supervised components: a component that panics
//! or ends is restarted with back-off, every restart is counted, and a component waiting to be
//! restarted is reported down (readiness shows it). [`install_panic_hook`] makes any panic
//! anywhere in the process a logged, counted event rather than a line on a stderr nobody reads.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Panics in this process since it started (counted by the hook of [`install_panic_hook`]).
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Routes every panic through `tracing` (at error level, with its location) and counts it
/// ([`panics`]). The hook never panics itself, even when the log cannot be written.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            "panic: {}",
            panic_message(info.payload())
        );
    }));
}

/// Panics counted since start (0 unless [`install_panic_hook`] was called).
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// The message a panic was raised with.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// How a component is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Its name (`controller/daemonset`, `informer/pods`, ...).
    pub name: String,
    /// Running (false while it waits to be restarted).
    pub up: bool,
    /// Times it was restarted after a panic or an unexpected end.
    pub restarts: u64,
    /// Why it last stopped, if it ever did.
    pub last_failure: Option<String>,
}

#[derive(Default)]
struct State {
    up: bool,
    restarts: u64,
    last_failure: Option<String>,
}

/// Back-off between restarts: from `first`, doubling to `max`; back to `first` once a run
/// lasted `max` or longer.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Wait before the first restart.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// The supervised components of a process; cheap to clone (clones share the registry).
#[derive(Clone, Default)]
pub struct Components {
    inner: Arc<Mutex<BTreeMap<String, State>>>,
    backoff: Backoff,
    /// Set for the components of a [`Scope`]: they stop when it does.
    scope: Option<Arc<ScopeInner>>,
}

struct ScopeInner {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Components that are stopped together, as the controllers of a server that loses its
/// leader lease: made by [`Components::scope`], stopped by [`Scope::stop`].
pub struct Scope {
    inner: Arc<ScopeInner>,
}

impl Scope {
    /// Stops every component of the scope and returns once none of them runs any more (so
    /// that nothing of them acts after this returns). Stopped components leave the registry.
    pub async fn stop(self) {
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Components {
    /// An empty registry with the default back-off (1 s doubling to 60 s).
    pub fn new() -> Components {
        Components::default()
    }

    /// An empty registry with another back-off (tests).
    pub fn with_backoff(backoff: Backoff) -> Components {
        Components {
            inner: Arc::default(),
            backoff,
            scope: None,
        }
    }

    /// A view of this registry whose components run until the returned [`Scope`] is
    /// stopped.
    pub fn scope(&self) -> (Components, Scope) {
        let inner = Arc::new(ScopeInner {
            stop: tokio::sync::watch::Sender::new(false),
            tasks: Mutex::default(),
        });
        let components = Components {
            inner: self.inner.clone(),
            backoff: self.backoff,
            scope: Some(inner.clone()),
        };
        (components, Scope { inner })
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut State)) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(inner.entry(name.to_string()).or_default());
    }

    /// Runs `run()` as the component `name` on the current tokio runtime, for as long as the
    /// runtime lives: when the future panics or returns, the component is reported down, and
    /// `run` is called again after the back-off. `run` makes a fresh future each time, from
    /// whatever state the component keeps outside it.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, mut run: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        self.update(&name, |s| s.up = true);
        let components = self.clone();
        let backoff = self.backoff;
        let mut stop = self.scope.as_ref().map(|s| s.stop.subscribe());
        let handle = tokio::spawn(async move {
            let mut wait = backoff.first;
            loop {
                let started = Instant::now();
                let why = match std::panic::catch_unwind(AssertUnwindSafe(&mut run)) {
                    Ok(fut) => {
                        let mut task = tokio::spawn(fut);
                        let stopped = async {
                            match stop.as_mut() {
                                Some(rx) => drop(rx.wait_for(|stopped| *stopped).await),
                                None => std::future::pending().await,
                            }
                        };
                        let result = tokio::select! {
                            result = &mut task => result,
                            () = stopped => {
                                task.abort();
                                let _ = task.await;
                                components.remove(&name);
                                return;
                            }
                        };
                        match result {
                            Ok(()) => "ended unexpectedly".to_string(),
                            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(&*e.into_panic())),
                            // Cancelled: the runtime is shutting down.
                            Err(_) => return,
                        }
                    }
                    Err(payload) => format!("panicked while starting: {}", panic_message(&*payload)),
                };
                if started.elapsed() >= backoff.max {
                    wait = backoff.first;
                }
                components.update(&name, |s| {
                    s.up = false;
                    s.last_failure = Some(why.clone());
                });
                tracing::error!(component = %name, restart_in = ?wait, "component {why}; it will be restarted");
                if let Some(rx) = stop.as_mut() {
                    if tokio::time::timeout(wait, rx.wait_for(|stopped| *stopped))
                        .await
                        .is_ok()
                    {
                        components.remove(&name);
                        return;
                    }
                } else {
                    tokio::time::sleep(wait).await;
                }
                wait = (wait * 2).min(backoff.max);
                components.update(&name, |s| {
                    s.up = true;
                    s.restarts += 1;
                });
                tracing::warn!(component = %name, "component restarted");
            }
        });
        if let Some(scope) = &self.scope {
            scope.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
        }
    }

    fn remove(&self, name: &str) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
    }

    /// Every component, by name.
    pub fn status(&self) -> Vec<Status> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .iter()
            .map(|(name, s)| Status {
                name: name.clone(),
                up: s.up,
                restarts: s.restarts,
                last_failure: s.last_failure.clone(),
            })
            .collect()
    }
}

/// Tasks that make up one component: spawned on the runtime (so they run in parallel),
/// aborted when the component's future is dropped, and a panic in any of them is the
/// component's own (so its supervisor restarts the whole of it).
#[derive(Default)]
pub struct Subtasks {
    set: tokio::task::JoinSet<()>,
}

impl Subtasks {
    /// No tasks yet.
    pub fn new() -> Subtasks {
        Subtasks::default()
    }

    /// Starts `task`.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.set.spawn(task);
    }

    /// Waits until a task ends: raises its panic again here, or returns (at once when there
    /// are no tasks left).
    pub async fn join_any(&mut self) {
        if let Some(Err(e)) = self.set.join_next().await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn quick() -> Components {
        Components::with_backoff(Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(80),
        })
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn a_panicking_component_is_restarted_and_counted() {
        let components = quick();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        components.spawn("flaky", move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("bad object number {n}");
                }
                std::future::pending::<()>().await;
            }
        });
        until(|| runs.load(Ordering::SeqCst) == 3).await;
        until(|| components.status()[0].up).await;
        let s = &components.status()[0];
        assert_eq!((s.name.as_str(), s.restarts), ("flaky", 2));
        assert_eq!(s.last_failure.as_deref(), Some("panicked: bad object number 1"));
    }

    #[tokio::test]
    async fn a_component_that_keeps_failing_is_reported_down() {
        let components = Components::with_backoff(Backoff {
            first: Duration::from_secs(30),
            max: Duration::from_secs(60),
        });
        components.spawn("broken", || async { panic!("always") });
        until(|| !components.status()[0].up).await;
        assert_eq!(components.status()[0].restarts, 0, "still waiting for its restart");
    }

    #[tokio::test]
    async fn a_component_that_ends_is_restarted_too() {
        let components = quick();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        components.spawn("short", move || {
            r.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        until(|| runs.load(Ordering::SeqCst) >= 3).await;
        let s = &components.status()[0];
        assert!(s.restarts >= 2);
        assert_eq!(s.last_failure.as_deref(), Some("ended unexpectedly"));
    }

    #[tokio::test]
    async fn a_subtask_panic_restarts_the_whole_component() {
        let components = quick();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        components.spawn("pool", move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut tasks = Subtasks::new();
                tasks.spawn(std::future::pending());
                tasks.spawn(async move {
                    if n == 0 {
                        panic!("pod worker");
                    }
                    std::future::pending::<()>().await;
                });
                tasks.join_any().await;
            }
        });
        until(|| runs.load(Ordering::SeqCst) == 2).await;
        until(|| components.status()[0].up).await;
        let s = &components.status()[0];
        assert_eq!(s.restarts, 1);
        assert_eq!(s.last_failure.as_deref(), Some("panicked: pod worker"));
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        assert_eq!(panic_message(&"text"), "text");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42u8), "(a panic without a message)");
    }

    #[tokio::test]
    async fn a_stopped_scope_ends_its_components_and_only_them() {
        let components = quick();
        let outer = Arc::new(AtomicUsize::new(0));
        let inner = Arc::new(AtomicUsize::new(0));
        let counter = |n: Arc<AtomicUsize>| {
            move || {
                let n = n.clone();
                async move {
                    loop {
                        n.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        };
        components.spawn("outer", counter(outer.clone()));
        let (scoped, scope) = components.scope();
        scoped.spawn("inner", counter(inner.clone()));
        // A scoped component that keeps failing is stopped while it waits to restart.
        scoped.spawn("failing", || async {});
        until(|| inner.load(Ordering::SeqCst) > 3).await;
        assert_eq!(components.status().len(), 3);

        scope.stop().await;
        let frozen = inner.load(Ordering::SeqCst);
        let names: Vec<String> = components.status().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["outer"], "stopped components leave the registry");
        let before = outer.load(Ordering::SeqCst);
        until(|| outer.load(Ordering::SeqCst) > before + 3).await;
        assert_eq!(
            inner.load(Ordering::SeqCst),
            frozen,
            "nothing of the scope runs after stop"
        );
    }
}
