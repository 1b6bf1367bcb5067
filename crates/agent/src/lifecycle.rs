//! The pure rules of a real node's containers: restart policy and back-off, probe
//! thresholds, and the status a pod reports (phase, conditions, container states) as
//! upstream's kubelet computes them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::shim::Exit;

/// First back-off after a container's second exit (the first restart is immediate).
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// Longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run this long resets the back-off.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// Whether a container that ended with `exit_code` restarts under `policy`.
pub fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// How long to wait before restart number `restart` (1 for the first restart) of a
/// container whose last run lasted `ran`: none for the first, then 10 s doubling to 300 s;
/// a long run starts over.
pub fn backoff(restart: u32, ran: Duration) -> Duration {
    if restart <= 1 || ran >= BACKOFF_RESET {
        return Duration::ZERO;
    }
    let doublings = (restart - 2).min(16);
    BACKOFF_INITIAL.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// A probe's consecutive results and what they add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeCount {
    /// Consecutive successes.
    pub successes: i32,
    /// Consecutive failures.
    pub failures: i32,
}

/// What a probe's results amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The success threshold is reached.
    Success,
    /// The failure threshold is reached.
    Failure,
    /// Neither yet.
    Undecided,
}

impl ProbeCount {
    /// Counts one result against the thresholds (upstream defaults: 1 success, 3 failures).
    pub fn record(&mut self, ok: bool, success_threshold: i32, failure_threshold: i32) -> Verdict {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= success_threshold.max(1) {
                return Verdict::Success;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= failure_threshold.max(1) {
                return Verdict::Failure;
            }
        }
        Verdict::Undecided
    }
}

/// A container's state as the status reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Not running: reason and message (`ContainerCreating`, `CrashLoopBackOff`, ...).
    Waiting(String, Option<String>),
    /// Running since.
    Running(String),
    /// Ended: how, and since when it had run.
    Terminated(Exit, String),
}

impl State {
    /// The `state` (or `lastState`) object.
    pub fn to_json(&self, container_id: &str) -> Value {
        match self {
            State::Waiting(reason, message) => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            State::Running(since) => json!({"running": {"startedAt": since}}),
            State::Terminated(exit, since) => {
                let reason = match (&exit.reason, &exit.error, exit.exit_code) {
                    (Some(r), _, _) => r.as_str(),
                    (None, Some(_), _) => "StartError",
                    (None, None, 0) => "Completed",
                    (None, None, _) => "Error",
                };
                let mut t = json!({
                    "containerID": container_id,
                    "exitCode": exit.exit_code,
                    "reason": reason,
                    "startedAt": since,
                    "finishedAt": exit.finished_at,
                });
                if let Some(s) = exit.signal {
                    t["signal"] = json!(s);
                }
                if let Some(m) = &exit.error {
                    t["message"] = json!(m);
                }
                json!({"terminated": t})
            }
        }
    }
}

/// One container as the pod status needs it.
#[derive(Clone, Debug)]
pub struct ContainerView {
    /// Name.
    pub name: String,
    /// State now.
    pub state: State,
    /// The previous run's end, if any.
    pub last: Option<State>,
    /// Ready (probes).
    pub ready: bool,
    /// Started (startup probe passed).
    pub started: bool,
    /// Restarts so far.
    pub restart_count: u32,
    /// Whether it will run again (restart policy); a container that will not and has
    /// ended is done.
    pub will_restart: bool,
    /// Whether it ever ran.
    pub ever_ran: bool,
}

/// The pod's phase from its containers: `Pending` until every container has run, `Running`
/// while any runs or will run again, then `Succeeded` (all exited 0) or `Failed`.
pub fn phase(containers: &[ContainerView]) -> &'static str {
    if containers.iter().any(|c| !c.ever_ran) {
        return "Pending";
    }
    let done = |c: &ContainerView| matches!(c.state, State::Terminated(..)) && !c.will_restart;
    if !containers.iter().all(done) {
        return "Running";
    }
    let ok = containers
        .iter()
        .all(|c| matches!(&c.state, State::Terminated(e, _) if e.exit_code == 0));
    if ok { "Succeeded" } else { "Failed" }
}

/// `ContainersReady` / `Ready`: every container ready; upstream's reason when not.
pub fn readiness(containers: &[ContainerView]) -> (bool, Option<String>) {
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    if unready.is_empty() {
        (true, None)
    } else {
        (
            false,
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> Exit {
        Exit {
            exit_code: code,
            signal: None,
            finished_at: "t1".into(),
            error: None,
            reason: None,
        }
    }

    fn view(state: State, will_restart: bool) -> ContainerView {
        ContainerView {
            name: "c".into(),
            state,
            last: None,
            ready: false,
            started: false,
            restart_count: 0,
            will_restart,
            ever_ran: true,
        }
    }

    #[test]
    fn restart_policy_and_backoff_follow_upstream() {
        assert!(restarts("Always", 0) && restarts("Always", 1));
        assert!(!restarts("OnFailure", 0) && restarts("OnFailure", 2));
        assert!(!restarts("Never", 1));
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1)), s(0), "the first restart is immediate");
        assert_eq!(backoff(2, s(1)), s(10));
        assert_eq!(backoff(3, s(1)), s(20));
        assert_eq!(backoff(4, s(1)), s(40));
        assert_eq!(backoff(7, s(1)), s(300), "capped at 5 minutes");
        assert_eq!(backoff(60, s(1)), s(300));
        assert_eq!(backoff(5, s(601)), s(0), "a long run resets it");
    }

    #[test]
    fn probes_count_consecutive_results() {
        let mut p = ProbeCount::default();
        assert_eq!(p.record(false, 1, 3), Verdict::Undecided);
        assert_eq!(p.record(false, 1, 3), Verdict::Undecided);
        assert_eq!(p.record(true, 1, 3), Verdict::Success, "a success resets failures");
        assert_eq!(p.record(false, 1, 3), Verdict::Undecided);
        assert_eq!(p.record(false, 1, 3), Verdict::Undecided);
        assert_eq!(p.record(false, 1, 3), Verdict::Failure);
        let mut q = ProbeCount::default();
        assert_eq!(q.record(true, 2, 1), Verdict::Undecided);
        assert_eq!(q.record(true, 2, 1), Verdict::Success);
    }

    #[test]
    fn phase_follows_the_containers() {
        let waiting = State::Waiting("ContainerCreating".into(), None);
        let mut never = view(waiting, true);
        never.ever_ran = false;
        assert_eq!(phase(&[never]), "Pending");
        assert_eq!(phase(&[view(State::Running("t".into()), true)]), "Running");
        assert_eq!(
            phase(&[view(State::Terminated(exit(1), "t".into()), true)]),
            "Running",
            "restarting"
        );
        assert_eq!(
            phase(&[view(State::Terminated(exit(0), "t".into()), false)]),
            "Succeeded"
        );
        assert_eq!(
            phase(&[
                view(State::Terminated(exit(0), "t".into()), false),
                view(State::Terminated(exit(2), "t".into()), false)
            ]),
            "Failed"
        );
    }

    #[test]
    fn states_render_as_upstream() {
        let t = State::Terminated(
            Exit {
                exit_code: 143,
                signal: Some(15),
                finished_at: "t2".into(),
                error: None,
                reason: None,
            },
            "t1".into(),
        );
        let v = t.to_json("process://x");
        assert_eq!(v["terminated"]["reason"], "Error");
        assert_eq!(v["terminated"]["signal"], 15);
        assert_eq!(v["terminated"]["startedAt"], "t1");
        let w = State::Waiting("CrashLoopBackOff".into(), Some("back-off 10s".into())).to_json("");
        assert_eq!(
            w,
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}})
        );
        let (ready, why) = readiness(&[view(State::Running("t".into()), true)]);
        assert!(!ready);
        assert_eq!(why.as_deref(), Some("containers with unready status: [c]"));
    }
}
