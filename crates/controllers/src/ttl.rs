//! The TTL-after-finished controller, as upstream's: a finished Job (its `Complete` or
//! `Failed` condition true) with `spec.ttlSecondsAfterFinished` is deleted, with its pods
//! (foreground), that many seconds after it finished. It runs under its own account
//! (`ttl-after-finished-controller`), which may delete Jobs; the Job controller may not.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use serde_json::Value;

use crate::informer::{self, Informers, name as name_of, uid as uid_of};
use shoal_runtime::controller::{Keyed, Outcome as Next};

/// What to do with a Job at a given time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: no TTL, not finished, or already going.
    Keep,
    /// Its time has come.
    Delete,
    /// Look again after this long.
    Wait(Duration),
}

/// When `job` finished: the last transition of its true `Complete` or `Failed` condition.
fn finished_at(job: &Value) -> Option<jiff::Timestamp> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .filter(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .filter_map(|c| c["lastTransitionTime"].as_str()?.parse().ok())
        .max()
}

/// Decides for `job` at `now`.
pub fn decide(job: &Value, now: jiff::Timestamp) -> Decision {
    let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_i64() else {
        return Decision::Keep;
    };
    if informer::deleting(job) {
        return Decision::Keep;
    }
    let Some(finished) = finished_at(job) else {
        return Decision::Keep;
    };
    let expires = finished.as_second().saturating_add(ttl.max(0));
    let left = expires.saturating_sub(now.as_second());
    if left <= 0 {
        Decision::Delete
    } else {
        Decision::Wait(Duration::from_secs(left as u64))
    }
}

/// Runs the controller until the process ends: a keyed queue of Jobs.
pub async fn run(client: kube::Client, informers: Informers) {
    let reconcile = |client: Arc<kube::Client>, _informers: Informers, job: Option<Arc<Value>>| async move {
        let Some(job) = job else {
            return Ok(Next::Done);
        };
        match decide(&job, jiff::Timestamp::now()) {
            Decision::Keep => Ok(Next::Done),
            Decision::Wait(left) => Ok(Next::RequeueAfter(left)),
            Decision::Delete => {
                let api: Api<Job> = Api::namespaced((*client).clone(), informer::namespace(&job));
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid_of(&job).to_string()),
                        resource_version: None,
                    }),
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    ..Default::default()
                };
                match api.delete(name_of(&job), &dp).await {
                    Ok(_) => Ok(Next::Done),
                    // Gone already, or another Job of that name now.
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Next::Done),
                    Err(e) => Err(e.into()),
                }
            }
        }
    };
    Keyed::new("ttl-after-finished", "batch", "jobs")
        .run_cached(informers, client, reconcile)
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_finished_job_goes_its_ttl_after_it_finished() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let mut job = json!({"spec": {"ttlSecondsAfterFinished": 30},
            "status": {"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}});
        assert_eq!(
            decide(&job, at("2026-01-01T00:00:10Z")),
            Decision::Wait(Duration::from_secs(25))
        );
        assert_eq!(decide(&job, at("2026-01-01T00:00:35Z")), Decision::Delete);
        job["spec"]["ttlSecondsAfterFinished"] = json!(0);
        assert_eq!(decide(&job, at("2026-01-01T00:00:05Z")), Decision::Delete, "0: at once");
        job["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:06Z");
        assert_eq!(
            decide(&job, at("2026-01-01T00:01:00Z")),
            Decision::Keep,
            "already going"
        );
        let running = json!({"spec": {"ttlSecondsAfterFinished": 0}, "status": {"conditions": [
            {"type": "Complete", "status": "False", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}});
        assert_eq!(decide(&running, at("2027-01-01T00:00:00Z")), Decision::Keep);
        let no_ttl = json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}});
        assert_eq!(decide(&no_ttl, at("2027-01-01T00:00:00Z")), Decision::Keep);
    }
}
