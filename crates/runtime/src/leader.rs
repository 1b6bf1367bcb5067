//! Leader election on a coordination.k8s.io Lease, as upstream's client-go `leaderelection`
//! that kube-controller-manager and kube-scheduler run with `--leader-elect`.
//!
//! A candidate takes the Lease when it is free or expired and renews it every retry period.
//! Expiry is judged by the candidate's own monotonic clock: a Lease is expired when its record
//! has not changed for `lease_duration` since this candidate last saw it change, so clocks
//! that disagree between machines do not matter. A leader that cannot renew for
//! `renew_deadline` (shorter than `lease_duration`) stops what it leads, and only then may
//! try again; another candidate takes over no sooner than `lease_duration` after the last
//! renewal it saw, by which time the old leader has stopped.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};

use crate::supervise::Scope;

/// What a candidate competes for, and how.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (upstream's `kube-system`).
    pub namespace: String,
    /// Name of the Lease (`kube-controller-manager`, `kube-scheduler`).
    pub name: String,
    /// This candidate's identity, unique per process (`<host>_<random>`).
    pub identity: String,
    /// How long a Lease holds without renewal (upstream's default 15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it gives up (10 s).
    pub renew_deadline: Duration,
    /// How often candidates try to take, and leaders to renew (2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Upstream's defaults: 15 s, 10 s and 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The Lease record as this candidate last saw it, and when (on its own clock).
#[derive(Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>, Option<i32>)>,
    at: Option<Instant>,
}

/// Whether this candidate holds the Lease after one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Held,
    HeldByOther(String),
}

fn record(lease: &Lease) -> (Option<String>, Option<MicroTime>, Option<i32>) {
    let spec = lease.spec.clone().unwrap_or_default();
    (spec.holder_identity, spec.renew_time, spec.lease_transitions)
}

/// One attempt to take or renew the Lease: created when absent, taken when free or expired,
/// renewed when held; the write is conditional on the resourceVersion read, so of two
/// candidates at most one succeeds.
async fn try_acquire_or_renew(api: &Api<Lease>, config: &LeaseConfig, seen: &mut Observed) -> kube::Result<Attempt> {
    let now = MicroTime(jiff::Timestamp::now());
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": config.name, "namespace": config.namespace},
            "spec": {"holderIdentity": config.identity, "leaseDurationSeconds": seconds,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
        }))
        .map_err(kube::Error::SerdeError)?;
        api.create(&PostParams::default(), &lease).await?;
        return Ok(Attempt::Held);
    };
    let current = record(&lease);
    if seen.record.as_ref() != Some(&current) {
        seen.record = Some(current.clone());
        seen.at = Some(Instant::now());
    }
    let holder = current.0.clone().unwrap_or_default();
    let expired = seen.at.is_none_or(|at| at.elapsed() >= config.lease_duration);
    if !holder.is_empty() && holder != config.identity && !expired {
        return Ok(Attempt::HeldByOther(holder));
    }
    let spec = lease.spec.get_or_insert_with(Default::default);
    if holder != config.identity {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.holder_identity = Some(config.identity.clone());
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now);
    let lease = api.replace(&config.name, &PostParams::default(), &lease).await?;
    seen.record = Some(record(&lease));
    seen.at = Some(Instant::now());
    Ok(Attempt::Held)
}

/// Hands a held Lease back (upstream's `ReleaseOnCancel`): no holder, a 1-second duration,
/// so another candidate takes it at its next try instead of waiting out the lease.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<()> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(drop)
}

/// Waits `period`; true when `stop` turned true first. A sender that went away without
/// saying stop stops nothing.
async fn pause(stop: &mut tokio::sync::watch::Receiver<bool>, period: Duration) -> bool {
    let stopped = async {
        if stop.wait_for(|stopped| *stopped).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = tokio::time::sleep(period) => false,
        () = stopped => true,
    }
}

/// Competes for the Lease until `stop` turns true: each time this candidate takes it,
/// `lead()` starts what it leads (as the components of a [`Scope`]); when it cannot renew in
/// time, the scope is stopped, and only then does the candidate compete again. On `stop`, a
/// leader stops its scope and releases the Lease before this returns.
pub async fn run<F, Fut>(
    client: kube::Client,
    config: LeaseConfig,
    mut lead: F,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Scope>,
{
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut seen = Observed::default();
    let attempt_timeout = config.retry_period.max(Duration::from_secs(1));
    loop {
        // Candidate: try every retry period (with up to 20 % jitter, as upstream).
        loop {
            let attempt = tokio::time::timeout(attempt_timeout, try_acquire_or_renew(&api, &config, &mut seen)).await;
            match attempt {
                Ok(Ok(Attempt::Held)) => break,
                Ok(Ok(Attempt::HeldByOther(holder))) => {
                    tracing::trace!(lease = %config.name, %holder, "lease held by another candidate");
                }
                Ok(Err(e)) => tracing::debug!(lease = %config.name, error = %e, "taking the lease failed"),
                Err(_) => tracing::debug!(lease = %config.name, "taking the lease timed out"),
            }
            if pause(&mut stop, jittered(config.retry_period)).await {
                return;
            }
        }
        tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
        let scope = lead().await;
        // Leader: renew every retry period until a renewal deadline passes without one.
        let mut renewed = Instant::now();
        loop {
            if pause(&mut stop, config.retry_period).await {
                scope.stop().await;
                match tokio::time::timeout(attempt_timeout, release(&api, &config)).await {
                    Ok(Ok(())) => tracing::info!(lease = %config.name, "released the lease"),
                    Ok(Err(e)) => tracing::warn!(lease = %config.name, error = %e, "releasing the lease failed"),
                    Err(_) => tracing::warn!(lease = %config.name, "releasing the lease timed out"),
                }
                return;
            }
            let left = config.renew_deadline.saturating_sub(renewed.elapsed());
            let attempt = tokio::time::timeout(
                left.min(attempt_timeout),
                try_acquire_or_renew(&api, &config, &mut seen),
            )
            .await;
            match attempt {
                Ok(Ok(Attempt::Held)) => renewed = Instant::now(),
                Ok(Ok(Attempt::HeldByOther(holder))) => {
                    tracing::warn!(lease = %config.name, %holder, "the lease was taken by another candidate");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(lease = %config.name, error = %e, "renewing the lease failed"),
                Err(_) => tracing::warn!(lease = %config.name, "renewing the lease timed out"),
            }
            if renewed.elapsed() >= config.renew_deadline {
                tracing::warn!(lease = %config.name, "could not renew the lease in time");
                break;
            }
        }
        scope.stop().await;
        tracing::warn!(lease = %config.name, identity = %config.identity, "stopped leading");
    }
}

/// `period` plus up to a fifth of it, at random.
fn jittered(period: Duration) -> Duration {
    let nanos = u64::try_from(period.as_nanos() / 5).unwrap_or(u64::MAX).max(1);
    period + Duration::from_nanos(rand_below(nanos))
}

/// A number below `n`, at random: each `RandomState` is seeded afresh, so the hash of
/// nothing differs from call to call.
fn rand_below(n: u64) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(()) % n
}
