//! Scenario tests of the ReplicaSet, Deployment, StatefulSet, Job and CronJob reconciles against the recording fake
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

fn deployment(extra: Value) -> Arc<Value> {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 2},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}},
        "status": {}
    });
    if let Some(m) = extra.as_object() {
        for (k, v) in m {
            d[k] = v.clone();
        }
    }
    Arc::new(d)
}

/// A ReplicaSet of the Deployment (or an orphan) with `replicas` all available.
fn rs_of(name: &str, hash: &str, revision: i64, replicas: i64, owner: Option<&str>) -> Arc<Value> {
    let mut rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": "7",
                     "creationTimestamp": "2026-03-01T10:00:00Z",
                     "labels": {"app": "web", "pod-template-hash": hash},
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    });
    if let Some(uid) = owner {
        rs["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                   "uid": uid, "controller": true}]);
    }
    Arc::new(rs)
}

fn new_hash(d: &Value) -> String {
    crate::daemonset::history::template_hash(d)
}

#[tokio::test(start_paused = true)]
async fn a_deployment_makes_its_replicaset_once_while_its_cache_lags() {
    let (fake, client, recorder) = world();
    let d = deployment(json!({}));
    crate::deployment::sync(&client, &recorder, &d, &[], &[], at(NOW))
        .await
        .unwrap();
    let made = fake.calls_to(&Method::POST, "replicasets");
    assert_eq!(made.len(), 1);
    let name = format!("web-{}", new_hash(&d));
    assert_eq!(made[0].body["metadata"]["name"], name.as_str());
    assert_eq!(
        made[0].body["spec"]["replicas"], 3,
        "the first ReplicaSet takes every replica"
    );
    assert_eq!(
        made[0].body["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let status = fake.calls_to(&Method::PATCH, "deployments/web/status");
    assert_eq!(
        status[0].body["status"]["conditions"][1]["reason"],
        "NewReplicaSetCreated"
    );
    // The cache still shows no ReplicaSet: the create meets the one just made. That is not
    // a hash collision (which would make a second ReplicaSet of the same template).
    fake.clear();
    let mine = (*rs_of(&name, &new_hash(&d), 1, 3, Some("d-uid"))).clone();
    fake.know(&[&mine]);
    fake.fail_when(|m, path| (m == Method::POST && path.ends_with("/replicasets")).then_some((409, "AlreadyExists")));
    crate::deployment::sync(&client, &recorder, &d, &[], &[], at(NOW))
        .await
        .unwrap();
    assert!(
        fake.calls_to(&Method::PATCH, "deployments/web/status").is_empty(),
        "no collisionCount for our own ReplicaSet"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replicaset_of_that_name_owned_by_another_is_a_collision() {
    let (fake, client, recorder) = world();
    let d = deployment(json!({}));
    let name = format!("web-{}", new_hash(&d));
    let theirs = (*rs_of(&name, &new_hash(&d), 1, 3, Some("someone-else"))).clone();
    fake.know(&[&theirs]);
    fake.fail_when(|m, path| (m == Method::POST && path.ends_with("/replicasets")).then_some((409, "AlreadyExists")));
    crate::deployment::sync(&client, &recorder, &d, &[], &[], at(NOW))
        .await
        .unwrap();
    let status = fake.calls_to(&Method::PATCH, "deployments/web/status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].body["status"]["collisionCount"], 1);
    assert!(
        fake.calls_to(&Method::PATCH, "replicasets").is_empty(),
        "nothing else is done on a collision"
    );
}

#[test]
fn a_rolling_update_surges_one_then_retires_one() {
    // A pure plan: no API, the time given.
    let d = deployment(json!({}));
    let old = rs_of("web-old", "old", 1, 3, Some("d-uid"));
    let p = crate::deployment::plan(&d, std::slice::from_ref(&old), &[], at(NOW)).unwrap();
    let created = p.create.as_ref().expect("the new ReplicaSet");
    assert_eq!(created["spec"]["replicas"], 0, "it starts empty beside an old one");
    assert_eq!(
        created["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let new_name = format!("web-{}", new_hash(&d));
    assert_eq!(
        p.scale,
        vec![crate::deployment::Scale {
            name: new_name.clone(),
            from: 0,
            to: 1
        }],
        "maxSurge 1"
    );
    // The new pod available: one old one goes (maxUnavailable 0 kept).
    let mut new = (*rs_of(&new_name, &new_hash(&d), 2, 1, Some("d-uid"))).clone();
    new["metadata"]["creationTimestamp"] = json!("2026-03-01T11:00:00Z");
    let p = crate::deployment::plan(&d, &[old, Arc::new(new)], &[], at(NOW)).unwrap();
    assert!(p.create.is_none());
    assert_eq!(
        p.scale,
        vec![crate::deployment::Scale {
            name: "web-old".into(),
            from: 3,
            to: 2
        }]
    );
    let status = p.status.expect("status changes");
    assert_eq!(
        (status["replicas"].as_i64(), status["updatedReplicas"].as_i64()),
        (Some(4), Some(1))
    );
}

#[test]
fn a_deployment_adopts_a_matching_orphan_and_releases_what_stops_matching() {
    let d = deployment(json!({}));
    let orphan = rs_of(&format!("web-{}", new_hash(&d)), &new_hash(&d), 1, 3, None);
    let mut strayed = (*rs_of("web-old", "old", 1, 0, Some("d-uid"))).clone();
    strayed["metadata"]["labels"]["app"] = json!("debug");
    let foreign = rs_of("other", "x", 1, 1, Some("another-uid"));
    let p = crate::deployment::plan(&d, &[orphan, Arc::new(strayed), foreign], &[], at(NOW)).unwrap();
    assert_eq!(p.adopt.len(), 1);
    assert_eq!(p.adopt[0].1["metadata"]["ownerReferences"][0]["uid"], "d-uid");
    assert_eq!(p.adopt[0].1["metadata"]["resourceVersion"], "7", "adoption is guarded");
    assert_eq!(p.release.len(), 1);
    assert_eq!(p.release[0].0, "web-old");
    assert!(p.create.is_none(), "the adopted ReplicaSet is the current template's");
    assert!(p.scale.is_empty());
}

#[test]
fn a_stalled_rollout_passes_its_deadline_by_the_time_it_is_given() {
    let d = deployment(json!({"status": {"conditions": [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
         "message": "Deployment has minimum availability.",
         "lastUpdateTime": "2026-03-01T11:49:00Z", "lastTransitionTime": "2026-03-01T11:49:00Z"},
        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "x",
         "lastUpdateTime": "2026-03-01T11:49:00Z", "lastTransitionTime": "2026-03-01T11:49:00Z"}]}}));
    let mut new = (*rs_of(&format!("web-{}", new_hash(&d)), &new_hash(&d), 2, 1, Some("d-uid"))).clone();
    new["status"]["availableReplicas"] = json!(0);
    let sets = [rs_of("web-old", "old", 1, 3, Some("d-uid")), Arc::new(new)];
    let progressing = |p: &crate::deployment::Plan| {
        p.status
            .as_ref()
            .map(|s| s["conditions"][1]["reason"].as_str().unwrap_or_default().to_string())
    };
    // Ten minutes after the last progress: not yet (600 s is the default deadline).
    let p = crate::deployment::plan(&d, &sets, &[], at("2026-03-01T11:58:59Z")).unwrap();
    assert_eq!(progressing(&p).as_deref(), Some("ReplicaSetUpdated"));
    assert!(p.deadline_exceeded.is_none());
    let p = crate::deployment::plan(&d, &sets, &[], at(NOW)).unwrap();
    assert_eq!(progressing(&p).as_deref(), Some("ProgressDeadlineExceeded"));
    assert_eq!(
        p.deadline_exceeded.as_deref(),
        Some(format!("ReplicaSet \"web-{}\" has timed out progressing.", new_hash(&d)).as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn a_deployment_whose_write_fails_stops_there_and_says_why() {
    let (fake, client, recorder) = world();
    let d = deployment(json!({}));
    fake.fail_when(|m, path| (m == Method::POST && path.ends_with("/replicasets")).then_some((403, "Forbidden")));
    let err = crate::deployment::sync(&client, &recorder, &d, &[], &[], at(NOW))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "forbidden");
    assert!(
        fake.calls_to(&Method::PATCH, "deployments/web/status").is_empty(),
        "no status claims a ReplicaSet that was not made"
    );
    fake.heal();
    crate::deployment::sync(&client, &recorder, &d, &[], &[], at(NOW))
        .await
        .unwrap();
    assert_eq!(fake.calls_to(&Method::POST, "replicasets").len(), 2);
}

fn statefulset(status: Value) -> Arc<Value> {
    Arc::new(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "ns", "uid": "sts-uid", "generation": 1},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "c", "image": "postgres"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
        "status": status
    }))
}

#[test]
fn a_new_statefulset_keeps_one_revision_across_its_first_status_write() {
    // Before: the first revision was hashed without the collision count and every later
    // one with it (0 once the status was written), so pod 0 carried another revision than
    // its siblings and currentRevision never reached updateRevision.
    let fresh = statefulset(json!({}));
    let first = crate::statefulset::plan(&fresh, &[], &[], &[], jiff::Timestamp::UNIX_EPOCH).unwrap();
    let revision = first.revision.expect("the first ControllerRevision");
    let name = revision["metadata"]["name"].as_str().unwrap().to_string();
    let status = first.status.expect("the first status");
    assert_eq!(status["updateRevision"], name.as_str());
    let mut cr = revision.clone();
    cr["metadata"]["uid"] = json!("cr-uid");
    cr["metadata"]["ownerReferences"][0]["uid"] = json!("sts-uid");
    let written = statefulset(status);
    let second = crate::statefulset::plan(&written, &[], &[Arc::new(cr)], &[], jiff::Timestamp::UNIX_EPOCH).unwrap();
    assert!(second.revision.is_none(), "no second revision of the same template");
    let crate::statefulset::Step::Create { pod, .. } = &second.steps[0] else {
        panic!("pod 0 is created: {:?}", second.steps);
    };
    assert_eq!(pod["metadata"]["labels"]["controller-revision-hash"], name.as_str());
}

#[tokio::test(start_paused = true)]
async fn an_ordered_statefulset_makes_pod_zero_with_its_claim_and_waits() {
    let (fake, client, recorder) = world();
    let sts = statefulset(json!({}));
    crate::statefulset::sync(&client, &recorder, &sts, &[], &[], &[])
        .await
        .unwrap();
    let calls: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == Method::POST && !c.path.ends_with("/events"))
        .map(|c| {
            format!(
                "{} {}",
                c.last(),
                c.body["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        calls[1..],
        ["persistentvolumeclaims data-db-0", "pods db-0"],
        "the revision, then the claim before its pod, and only pod 0"
    );
    // The cache lags: both exist already. No error, nothing claimed as made.
    fake.clear();
    fake.fail_when(|m, path| {
        (m == Method::POST && (path.ends_with("/pods") || path.ends_with("/persistentvolumeclaims")))
            .then_some((409, "AlreadyExists"))
    });
    crate::statefulset::sync(&client, &recorder, &sts, &[], &[], &[])
        .await
        .unwrap();
    assert!(
        fake.calls()
            .iter()
            .filter(|c| c.path.ends_with("/events"))
            .all(|c| !c.body["message"].as_str().unwrap_or_default().contains("create")),
        "no SuccessfulCreate event for what was not created"
    );
}

#[tokio::test(start_paused = true)]
async fn a_statefulset_whose_pod_create_fails_says_why_and_writes_no_status() {
    let (fake, client, recorder) = world();
    let sts = statefulset(json!({}));
    fake.fail_when(|m, path| (m == Method::POST && path.ends_with("/pods")).then_some((422, "Invalid")));
    let err = crate::statefulset::sync(&client, &recorder, &sts, &[], &[], &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid");
    assert!(fake.calls_to(&Method::PATCH, "statefulsets/db/status").is_empty());
}

#[test]
fn a_statefulset_adopts_its_orphan_and_lets_a_relabelled_pod_go() {
    let sts = statefulset(json!({}));
    let mut orphan = (*pod("db-0", json!({"app": "db"}), None)).clone();
    orphan["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    let relabelled = pod("db-1", json!({"app": "debug"}), Some(("StatefulSet", "sts-uid")));
    let stranger = pod("web-0", json!({"app": "db"}), None);
    let p = crate::statefulset::plan(
        &sts,
        &[Arc::new(orphan), relabelled, stranger],
        &[],
        &[],
        jiff::Timestamp::UNIX_EPOCH,
    )
    .unwrap();
    assert_eq!(p.adopt.len(), 1);
    assert_eq!(p.adopt[0].0, "db-0");
    assert_eq!(p.adopt[0].1["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    assert_eq!(p.release.len(), 1);
    assert_eq!(p.release[0].0, "db-1");
    // db-0 (adopted, ready) stays; db-1 is no longer the set's, so it is made again.
    assert!(matches!(
        p.steps.as_slice(),
        [crate::statefulset::Step::Create { ordinal: 1, .. }]
    ));
}

#[test]
fn a_failed_pod_holds_the_next_one_for_the_back_off_by_the_time_given() {
    // A pure plan: the back-off counts from the pod's end, on the time it is handed.
    let j = job(json!({"completions": 1, "parallelism": 1}));
    let mut failed = (*pod("work-a", json!({}), Some(("Job", "job-uid")))).clone();
    failed["metadata"]["ownerReferences"][0]["apiVersion"] = json!("batch/v1");
    failed["metadata"]["finalizers"] = json!([crate::job::TRACKING_FINALIZER]);
    failed["status"] = json!({"phase": "Failed", "conditions": [{"type": "Ready", "status": "False",
        "lastTransitionTime": "2026-03-01T11:59:55Z"}]});
    let pods = [&failed];
    let p = crate::job::plan(&j, &pods, false, at(NOW)).unwrap();
    assert!(p.create.is_empty(), "10 s after the failure have not passed");
    assert_eq!(p.next, Outcome::RequeueAfter(std::time::Duration::from_secs(5)));
    // Counted through the tracking finalizer: uncounted first, its finalizer off after.
    let status = p.status.as_ref().unwrap();
    assert_eq!(
        (&status["failed"], &status["uncountedTerminatedPods"]["failed"]),
        (&json!(0), &json!([failed["metadata"]["uid"]]))
    );
    assert_eq!(p.untrack.len(), 1);
    let p = crate::job::plan(&j, &pods, false, at("2026-03-01T12:00:06Z")).unwrap();
    assert_eq!(p.create.len(), 1, "the back-off is over");
    // Writes in flight hold everything but the status.
    let p = crate::job::plan(&j, &pods, true, at("2026-03-01T12:00:06Z")).unwrap();
    assert!(p.create.is_empty() && p.delete.is_empty());
}

fn done_uid(pods: &[Arc<Value>]) -> Value {
    pods[0]["metadata"]["uid"].clone()
}

#[tokio::test(start_paused = true)]
async fn a_completed_job_says_so_once_its_status_is_written() {
    let (fake, client, recorder) = world();
    let mut exp = Expectations::new();
    let j = job(json!({"completions": 1, "parallelism": 1}));
    let mut done = (*pod(
        "work-a",
        json!({"batch.kubernetes.io/controller-uid": "job-uid"}),
        Some(("Job", "job-uid")),
    ))
    .clone();
    done["status"]["phase"] = json!("Succeeded");
    done["metadata"]["finalizers"] = json!([crate::job::TRACKING_FINALIZER]);
    fake.fail_when(|m, path| {
        (m == Method::PATCH && path.ends_with("jobs/work/status")).then_some((500, "InternalError"))
    });
    let pods = [Arc::new(done)];
    let err = crate::job::sync(&client, &recorder, &j, &pods, &mut exp, at(NOW))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "server_error");
    let completed_events = |fake: &FakeApi| {
        fake.calls()
            .iter()
            .filter(|c| c.path.ends_with("/events") && c.body["reason"] == "Completed")
            .count()
    };
    assert_eq!(completed_events(&fake), 0, "no event for a status not written");
    assert!(
        fake.calls_to(&Method::PATCH, "pods/work-a").is_empty(),
        "the finalizer stays while the status does not hold the pod's end"
    );
    fake.heal();
    crate::job::sync(&client, &recorder, &j, &pods, &mut exp, at(NOW))
        .await
        .unwrap();
    // The end is decided and the pod counted as uncounted; its finalizer goes after that.
    let written = fake.calls_to(&Method::PATCH, "jobs/work/status");
    let status = written.last().unwrap().body["status"].clone();
    assert_eq!(status["conditions"][0]["type"], "SuccessCriteriaMet");
    assert_eq!(status["uncountedTerminatedPods"]["succeeded"], json!([done_uid(&pods)]));
    assert_eq!(fake.calls_to(&Method::PATCH, "pods/work-a").len(), 1);
    assert_eq!(completed_events(&fake), 0, "not complete while a pod is uncounted");
    // Once the pod shows without the finalizer, it is counted and the Job completes.
    let mut counted = (*j).clone();
    counted["status"] = status;
    let mut freed = (*pods[0]).clone();
    freed["metadata"]["finalizers"] = json!([]);
    crate::job::sync(&client, &recorder, &counted, &[Arc::new(freed)], &mut exp, at(NOW))
        .await
        .unwrap();
    let written = fake.calls_to(&Method::PATCH, "jobs/work/status");
    let status = &written.last().unwrap().body["status"];
    assert_eq!(status["conditions"][1]["type"], "Complete");
    assert_eq!(status["succeeded"], 1);
    assert_eq!(completed_events(&fake), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cronjob_whose_job_cannot_be_made_says_so_and_tries_again() {
    // Before: any API error on the create was taken as success (event included) and the
    // time marked as run, so a refused Job was never made.
    let (fake, client, recorder) = world();
    let cj = Arc::new(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "ns", "uid": "cj-uid",
                     "creationTimestamp": "2026-03-01T11:58:30Z"},
        "spec": {"schedule": "* * * * *",
                 "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox"}]}}}}},
        "status": {}
    }));
    fake.fail_when(|m, path| (m == Method::POST && path.ends_with("/jobs")).then_some((403, "Forbidden")));
    let err = crate::cronjob::sync(&client, &recorder, &cj, &[], at(NOW))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "forbidden");
    let reasons: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/events"))
        .map(|c| c.body["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(reasons, ["FailedCreate"]);
    assert!(
        fake.calls_to(&Method::PATCH, "cronjobs/tick/status").is_empty(),
        "the time is not marked as run"
    );
    fake.heal();
    crate::cronjob::sync(&client, &recorder, &cj, &[], at(NOW))
        .await
        .unwrap();
    let status = fake.calls_to(&Method::PATCH, "cronjobs/tick/status");
    let active = &status[0].body["status"]["active"];
    assert_eq!(active[0]["name"], format!("tick-{}", at(NOW).as_second() / 60));
    assert!(
        active[0]["uid"].is_string(),
        "the new Job's reference has its uid: {active}"
    );
    assert_eq!(status[0].body["status"]["lastScheduleTime"], NOW);
}

#[test]
fn a_replicaset_plan_counts_its_pods_and_holds_its_resize_while_writes_are_in_flight() {
    // A pure plan: the claims, whether earlier writes are in flight, and which deletions
    // are among them are facts it is given.
    let rs = replicaset(2);
    let selector = Kind::ReplicaSet.selector(&rs).unwrap();
    let pods = [
        pod("web-a", json!({"app": "web"}), Some(("ReplicaSet", "rs-uid"))),
        pod("web-b", json!({"app": "web"}), Some(("ReplicaSet", "rs-uid"))),
        pod("stray", json!({"app": "web"}), None),
    ];
    let claims = replicaset::claim_pods(Kind::ReplicaSet, &rs, &selector, &pods);
    assert_eq!(claims.adopt.len(), 1, "the orphan is adopted");
    let p = replicaset::plan(&rs, claims, false, &|_| false, at(NOW));
    assert_eq!(p.counts.replicas, 3);
    let resize = p.resize.expect("nothing in flight");
    assert_eq!((resize.create, resize.delete.len()), (0, 1), "three for two: one goes");
    // web-b's deletion is in flight: it no longer counts, and nothing is resized meanwhile.
    let claims = replicaset::claim_pods(Kind::ReplicaSet, &rs, &selector, &pods);
    let p = replicaset::plan(&rs, claims, true, &|uid| uid == "uid-web-b", at(NOW));
    assert_eq!(p.counts.replicas, 2);
    assert!(p.resize.is_none());
}
