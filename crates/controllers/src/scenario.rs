//! Scenario tests of the ReplicaSet, Job and CronJob reconciles against the recording fake
//! of the API and a fixed clock (the DaemonSet's are in `daemonset::scenario`). The caches
//! are snapshots the tests build: a lagging cache is a snapshot not updated.

use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};
use shoal_runtime::controller::Outcome;
use shoal_runtime::events::Recorder;
use shoal_runtime::testing::FakeApi;

use crate::replicaset::{self, Expectations, Kind};

fn at(t: &str) -> jiff::Timestamp {
    t.parse().unwrap()
}

fn world() -> (FakeApi, kube::Client, Recorder) {
    let fake = FakeApi::new();
    let client = fake.client();
    let recorder = Recorder::new(client.clone(), "test-controller");
    (fake, client, recorder)
}

fn replicaset(replicas: i64) -> Arc<Value> {
    Arc::new(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {}
    }))
}

/// A running pod of `owner` (a controller reference to that uid and kind), or an orphan.
fn pod(name: &str, labels: Value, owner: Option<(&str, &str)>) -> Arc<Value> {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels,
                     "resourceVersion": "5", "creationTimestamp": "2026-03-01T11:00:00Z"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Running"}
    });
    if let Some((kind, uid)) = owner {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": "web",
                                                  "uid": uid, "controller": true}]);
    }
    Arc::new(p)
}

const NOW: &str = "2026-03-01T12:00:00Z";

#[tokio::test(start_paused = true)]
async fn a_replicaset_creates_the_difference_once_while_its_cache_lags() {
    let (fake, client, recorder) = world();
    let mut exp = Expectations::new();
    let rs = replicaset(3);
    let owned = [pod("web-a", json!({"app": "web"}), Some(("ReplicaSet", "rs-uid")))];
    replicaset::sync(&client, &recorder, Kind::ReplicaSet, &rs, &owned, &mut exp, at(NOW))
        .await
        .unwrap();
    let made = fake.calls_to(&Method::POST, "pods");
    assert_eq!(made.len(), 2);
    assert_eq!(made[0].body["metadata"]["generateName"], "web-");
    assert_eq!(made[0].body["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
    // The cache has not seen the two new pods: nothing more is created.
    fake.clear();
    replicaset::sync(&client, &recorder, Kind::ReplicaSet, &rs, &owned, &mut exp, at(NOW))
        .await
        .unwrap();
    assert!(fake.calls_to(&Method::POST, "pods").is_empty());
    // Scaled down to one while the cache still lags: no deletion either until it catches up.
    replicaset::sync(
        &client,
        &recorder,
        Kind::ReplicaSet,
        &replicaset(1),
        &owned,
        &mut exp,
        at(NOW),
    )
    .await
    .unwrap();
    assert!(fake.calls_to(&Method::DELETE, "pods/web-a").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_replicaset_adopts_orphans_and_releases_pods_that_stop_matching() {
    let (fake, client, recorder) = world();
    let mut exp = Expectations::new();
    let orphan = pod("stray", json!({"app": "web"}), None);
    let relabelled = pod("pulled", json!({"app": "debug"}), Some(("ReplicaSet", "rs-uid")));
    let other = pod("other", json!({"app": "web"}), Some(("ReplicaSet", "another-uid")));
    fake.know(&[&orphan, &relabelled]);
    replicaset::sync(
        &client,
        &recorder,
        Kind::ReplicaSet,
        &replicaset(1),
        &[orphan, relabelled, other],
        &mut exp,
        at(NOW),
    )
    .await
    .unwrap();
    let adopt = fake.calls_to(&Method::PATCH, "pods/stray");
    assert_eq!(adopt.len(), 1);
    assert_eq!(adopt[0].body["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
    assert_eq!(adopt[0].body["metadata"]["resourceVersion"], "5", "adoption is guarded");
    let release = fake.calls_to(&Method::PATCH, "pods/pulled");
    assert_eq!(release[0].body["metadata"]["ownerReferences"][0]["$patch"], "delete");
    assert!(fake.calls_to(&Method::PATCH, "pods/other").is_empty());
    assert!(
        fake.calls_to(&Method::POST, "pods").is_empty(),
        "the adopted pod is the one replica"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replicaset_whose_creations_fail_reports_it_and_backs_off() {
    let (fake, client, recorder) = world();
    let mut exp = Expectations::new();
    fake.fail_when(|m, path| (m == Method::POST && path.ends_with("/pods")).then_some((403, "Forbidden")));
    let err = replicaset::sync(
        &client,
        &recorder,
        Kind::ReplicaSet,
        &replicaset(50),
        &[],
        &mut exp,
        at(NOW),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "forbidden");
    assert_eq!(fake.calls_to(&Method::POST, "pods").len(), 1, "slow start");
    let status = fake.calls_to(&Method::PUT, "replicasets/web/status");
    let patch = fake.calls_to(&Method::PATCH, "replicasets/web/status");
    let body = status.first().or(patch.first()).expect("a status write").body.clone();
    let cond = &body["status"]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["reason"].as_str()),
        (Some("ReplicaFailure"), Some("FailedCreate"))
    );
    // Healed: the next reconcile creates all of them (nothing was left expected).
    fake.heal();
    fake.clear();
    replicaset::sync(
        &client,
        &recorder,
        Kind::ReplicaSet,
        &replicaset(50),
        &[],
        &mut exp,
        at(NOW),
    )
    .await
    .unwrap();
    assert_eq!(fake.calls_to(&Method::POST, "pods").len(), 50);
}

fn job(extra: Value) -> Arc<Value> {
    let mut j = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "work", "namespace": "ns", "uid": "job-uid", "generation": 1,
                     "creationTimestamp": "2026-03-01T11:59:00Z"},
        "spec": {"completions": 4, "parallelism": 2, "backoffLimit": 6,
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                 "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                              "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {}
    });
    if let Some(m) = extra.as_object() {
        for (k, v) in m {
            j["spec"][k] = v.clone();
        }
    }
    Arc::new(j)
}

#[tokio::test(start_paused = true)]
async fn a_job_never_makes_a_second_pod_for_a_slot_while_its_cache_lags() {
    let (fake, client, recorder) = world();
    let mut exp = Expectations::new();
    let j = job(json!({}));
    crate::job::sync(&client, &recorder, &j, &[], &mut exp, at(NOW))
        .await
        .unwrap();
    assert_eq!(fake.calls_to(&Method::POST, "pods").len(), 2, "parallelism 2");
    fake.clear();
    crate::job::sync(&client, &recorder, &j, &[], &mut exp, at(NOW))
        .await
        .unwrap();
    assert!(
        fake.calls_to(&Method::POST, "pods").is_empty(),
        "the two pods are in flight, not missing"
    );
    // After the expectation timeout a lost event no longer holds the Job.
    tokio::time::advance(shoal_runtime::expectations::TTL).await;
    crate::job::sync(&client, &recorder, &j, &[], &mut exp, at(NOW))
        .await
        .unwrap();
    assert_eq!(fake.calls_to(&Method::POST, "pods").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_job_condition_that_changes_in_place_is_written() {
    // A Job suspended and resumed keeps one Suspended condition; only its status flips.
    let (fake, client, recorder) = world();
    let mut exp = Expectations::new();
    let mut j = (*job(json!({"suspend": false}))).clone();
    j["status"] = json!({"active": 0, "ready": 0, "succeeded": 0, "failed": 0, "terminating": 0,
                         "startTime": "2026-03-01T11:59:00Z",
                         "conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                         "message": "Job suspended"}]});
    crate::job::sync(&client, &recorder, &Arc::new(j), &[], &mut exp, at(NOW))
        .await
        .unwrap();
    let writes = fake.calls_to(&Method::PATCH, "jobs/work/status");
    assert_eq!(writes.len(), 1, "the resumed condition is written");
    let cond = &writes[0].body["status"]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["status"].as_str()),
        (Some("Suspended"), Some("False"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_cronjob_runs_at_its_minute_by_the_clock_it_is_given() {
    let (fake, client, recorder) = world();
    let cj = Arc::new(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "ns", "uid": "cj-uid",
                     "creationTimestamp": "2026-03-01T11:58:30Z"},
        "spec": {"schedule": "*/2 * * * *",
                 "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox"}]}}}}},
        "status": {}
    }));
    // 11:59:59: the 11:58 run was before creation, 12:00 has not come.
    crate::cronjob::sync(&client, &recorder, &cj, &[], at("2026-03-01T11:59:59Z"))
        .await
        .unwrap();
    assert!(fake.calls_to(&Method::POST, "jobs").is_empty());
    // Two seconds later by the clock, no real wait: the 12:00 Job.
    crate::cronjob::sync(&client, &recorder, &cj, &[], at("2026-03-01T12:00:01Z"))
        .await
        .unwrap();
    let made = fake.calls_to(&Method::POST, "jobs");
    assert_eq!(made.len(), 1);
    let minute = at("2026-03-01T12:00:00Z").as_second() / 60;
    assert_eq!(made[0].body["metadata"]["name"], format!("tick-{minute}"));
    assert_eq!(made[0].body["metadata"]["ownerReferences"][0]["uid"], "cj-uid");
}

#[test]
fn a_cronjob_is_looked_at_just_after_each_minute() {
    use std::time::Duration;
    let _ = Outcome::Done;
    assert_eq!(
        crate::cronjob::until_next_minute(at("2026-03-01T12:00:59Z")),
        Duration::from_secs(2)
    );
    assert_eq!(
        crate::cronjob::until_next_minute(at("2026-03-01T12:00:00Z")),
        Duration::from_secs(61)
    );
}
