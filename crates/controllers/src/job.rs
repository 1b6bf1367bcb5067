//! The Job controller: pods from the template until `completions` of them succeed, at most
//! `parallelism` at a time, as upstream's `JobController` runs them. An `Indexed` Job runs
//! each index from 0 to `completions - 1` until it succeeds once (`completedIndexes`); its
//! pods carry their index (annotation, label, hostname, `JOB_COMPLETION_INDEX`).
//!
//! After a failed pod, the next waits 10 s, doubling per failure up to 6 minutes. A Job
//! fails when more than `backoffLimit` of its pods failed, or when it has been active
//! for longer than `activeDeadlineSeconds`; its running pods are then deleted. Without
//! `completions`, the Job is a work queue: it completes once a pod succeeded and none is
//! left running. `suspend` deletes the running pods and holds the Job. Counts only grow:
//! pods deleted after they finished stay counted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use serde_json::{Value, json};

use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{self, Informers, name as name_of, uid as uid_of};
use crate::replicaset::{Expectations, Expected};
use shoal_runtime::claim::{Claim, adopt_patch, claim, release_patch};
use shoal_runtime::controller::{Error, Keyed, Outcome as Next, ignore_not_found};

const MANAGER: &str = "job-controller";
/// The `spec.managedBy` value that leaves a Job to this controller (as does none).
pub const CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
/// The finalizer with which a Job keeps each of its pods until it has counted the pod's end
/// in its status (upstream's `batch.kubernetes.io/job-tracking`), so a finished pod that is
/// deleted at once (by hand, by the pod garbage collector) is never lost from the counts.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Most pods one pass creates (upstream's `MaxPodCreateDeletePerSync`).
const MAX_CREATES_PER_PASS: i64 = 500;

/// What the Job's pods add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Running or pending, not being deleted.
    pub active: i64,
    /// Of those, Ready.
    pub ready: i64,
    /// Succeeded.
    pub succeeded: i64,
    /// Failed.
    pub failed: i64,
    /// Being deleted.
    pub terminating: i64,
}

/// Counts the Job's pods.
pub fn count(pods: &[&Value]) -> Counts {
    let mut c = Counts::default();
    for p in pods {
        match p["status"]["phase"].as_str() {
            Some("Succeeded") => c.succeeded += 1,
            Some("Failed") => c.failed += 1,
            _ if informer::deleting(p) => c.terminating += 1,
            _ => {
                c.active += 1;
                if p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
                {
                    c.ready += 1;
                }
            }
        }
    }
    c
}

/// Where a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running: this many pods should be active.
    Run(i64),
    /// Done, with upstream's reason and message.
    Complete(String, String),
    /// Failed, with upstream's reason and message.
    Failed(String, String),
}

/// The Job's outcome from its spec, its counts, and how long it has been active.
pub fn outcome(job: &Value, c: &Counts, active_for: Option<Duration>) -> Outcome {
    let spec = &job["spec"];
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    if c.failed > backoff_limit {
        return Outcome::Failed(
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into(),
        );
    }
    if let (Some(deadline), Some(active_for)) = (spec["activeDeadlineSeconds"].as_u64(), active_for)
        && active_for.as_secs() >= deadline
    {
        return Outcome::Failed(
            "DeadlineExceeded".into(),
            "Job was active longer than specified deadline".into(),
        );
    }
    let reached = || {
        Outcome::Complete(
            "CompletionsReached".into(),
            "Reached expected number of succeeded pods".into(),
        )
    };
    match spec["completions"].as_i64() {
        Some(completions) if c.succeeded >= completions => reached(),
        Some(completions) => Outcome::Run(parallelism.min(completions - c.succeeded)),
        // A work queue: done once one succeeded and the rest finished.
        None if c.succeeded > 0 && c.active == 0 => reached(),
        None if c.succeeded > 0 => Outcome::Run(c.active),
        None => Outcome::Run(parallelism),
    }
}

/// What a Job's `podFailurePolicy` makes of a failed pod: its first matching rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Fail the Job, with upstream's message naming the pod, the match and the rule.
    FailJob(String),
    /// Not counted against `backoffLimit`.
    Ignore,
    /// Counted, as without a policy.
    Count,
    /// Counted, and the pod's index fails at once (`backoffLimitPerIndex` Jobs only).
    FailIndex,
}

/// The rule of `job`'s `podFailurePolicy` that the failed `pod` matches, as upstream's:
/// rules in order; `onExitCodes` against the containers' (then init containers')
/// terminated non-zero exit codes, optionally of one container; `onPodConditions` against
/// the pod's conditions (status `True` unless given).
pub fn failure_rule(job: &Value, pod: &Value) -> Option<Rule> {
    let rules = job["spec"]["podFailurePolicy"]["rules"].as_array()?;
    let pod_name = format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        name_of(pod)
    );
    for (i, rule) in rules.iter().enumerate() {
        let action = rule["action"].as_str().unwrap_or_default();
        let matched = if rule["onExitCodes"].is_object() {
            let req = &rule["onExitCodes"];
            let values: Vec<i64> = req["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            let wanted = |code: i64| match req["operator"].as_str() {
                Some("In") => values.contains(&code),
                Some("NotIn") => !values.contains(&code),
                _ => false,
            };
            ["containerStatuses", "initContainerStatuses"]
                .iter()
                .flat_map(|k| pod["status"][*k].as_array().into_iter().flatten())
                .filter(|s| req["containerName"].as_str().is_none_or(|n| s["name"] == n))
                .find_map(|s| {
                    let code = s["state"]["terminated"]["exitCode"].as_i64()?;
                    (code != 0 && wanted(code)).then(|| {
                        format!(
                            "Container {} for pod {pod_name} failed with exit code {code} matching {action} rule at index {i}",
                            s["name"].as_str().unwrap_or_default()
                        )
                    })
                })
        } else {
            rule["onPodConditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|want| {
                    let status = want["status"].as_str().unwrap_or("True");
                    pod["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == want["type"] && c["status"] == status)
                        .then(|| {
                            format!(
                                "Pod {pod_name} has condition {} matching {action} rule at index {i}",
                                want["type"].as_str().unwrap_or_default()
                            )
                        })
                })
        };
        if let Some(message) = matched {
            return Some(match action {
                "FailJob" => Rule::FailJob(message),
                "Ignore" => Rule::Ignore,
                "FailIndex" if job["spec"]["backoffLimitPerIndex"].is_number() => Rule::FailIndex,
                _ => Rule::Count,
            });
        }
    }
    None
}

/// The index of the first rule of an Indexed Job's `successPolicy` that its succeeded
/// indexes meet, as upstream's: with `succeededIndexes`, all of those (or
/// `succeededCount` of them); with only `succeededCount`, that many of all the indexes.
pub fn success_rule(job: &Value, completed: &Indexes) -> Option<usize> {
    let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
    job["spec"]["successPolicy"]["rules"].as_array()?.iter().position(|r| {
        let count = r["succeededCount"].as_i64();
        match r["succeededIndexes"].as_str() {
            Some(list) => {
                let wanted = parse_indexes(list, completions);
                let met = wanted.shared(completed);
                match count {
                    Some(n) => met >= n,
                    None => !wanted.is_empty() && met == wanted.len(),
                }
            }
            None => count.is_some_and(|n| completed.len() >= n),
        }
    })
}

/// The pod a Job creates.
pub fn pod_for(job: &Value) -> Value {
    let template = &job["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", name_of(job)),
        "namespace": job["metadata"]["namespace"],
        "ownerReferences": [informer::controller_ref("batch/v1", "Job", job)],
    });
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template["metadata"].get(k).filter(|v| !v.is_null()) {
            meta[k] = v.clone();
        }
    }
    match meta["finalizers"].as_array_mut() {
        Some(f) if !f.iter().any(|x| x == TRACKING_FINALIZER) => f.push(json!(TRACKING_FINALIZER)),
        Some(_) => {}
        None => meta["finalizers"] = json!([TRACKING_FINALIZER]),
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

/// How long new pods wait after `failed` failures: none before the first, then 10 s
/// doubling up to 6 minutes.
pub fn retry_delay(failed: i64) -> Option<jiff::SignedDuration> {
    if failed <= 0 {
        return None;
    }
    let secs = 10i64.saturating_mul(1 << (failed - 1).min(10)).min(360);
    Some(jiff::SignedDuration::from_secs(secs))
}

/// When a failed pod ended: its Ready condition's last change (what the cache keeps).
fn failed_at(pod: &Value) -> Option<jiff::Timestamp> {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["lastTransitionTime"].as_str()?.parse().ok())
        .max()
}

/// The annotation (and label) with an Indexed Job pod's index.
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn index_of(pod: &Value) -> Option<i64> {
    pod["metadata"]["annotations"][INDEX].as_str()?.parse().ok()
}

/// The annotation with how many earlier pods of an index failed and counted
/// (`backoffLimitPerIndex`), on every pod such a Job creates.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The annotation with how many earlier pods of an index failed as an `Ignore` rule of the
/// `podFailurePolicy` matched; set only when not zero.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// The longest wait before an index's next pod (upstream's `MaxJobPodFailureBackOff`).
const MAX_INDEX_BACKOFF_SECS: i64 = 600;

/// A failure-count annotation as upstream reads it: anything but a number from 0 to
/// 2^31 - 1 counts as 0.
fn count_annotation(pod: &Value, key: &str) -> i64 {
    pod["metadata"]["annotations"][key]
        .as_str()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .map_or(0, i64::from)
}

/// The last failed pod of one index of a Job with `backoffLimitPerIndex`, and what its
/// failure makes of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFailure {
    /// When the pod failed.
    pub at: Option<jiff::Timestamp>,
    /// The failure counts its replacement carries (failed and counted, failed and ignored).
    pub next: (i64, i64),
    /// Whether the index has failed for good: a `FailIndex` rule matched, or the pod was
    /// its index's attempt number `backoffLimitPerIndex + 1`.
    pub failed: bool,
}

/// For an Indexed Job with `backoffLimitPerIndex`, each index below `completions` with a
/// failed pod among `mine`: its last failure (the latest, then the most counted), as
/// upstream judges it.
pub fn index_failures(job: &Value, mine: &[&Value], completions: i64) -> std::collections::BTreeMap<i64, IndexFailure> {
    let mut out = std::collections::BTreeMap::new();
    let Some(limit) = job["spec"]["backoffLimitPerIndex"].as_i64() else {
        return out;
    };
    let mut last: std::collections::BTreeMap<i64, (Option<jiff::Timestamp>, i64, &Value)> = Default::default();
    for p in mine.iter().filter(|p| p["status"]["phase"] == "Failed") {
        let Some(i) = index_of(p).filter(|i| (0..completions).contains(i)) else {
            continue;
        };
        let total = count_annotation(p, INDEX_FAILURE_COUNT) + count_annotation(p, INDEX_IGNORED_FAILURE_COUNT);
        let at = failed_at(p);
        match last.get(&i) {
            Some((t, n, _)) if (*t, *n) >= (at, total) => {}
            _ => {
                last.insert(i, (at, total, p));
            }
        }
    }
    for (i, (at, _, p)) in last {
        let (failures, ignored) = (
            count_annotation(p, INDEX_FAILURE_COUNT),
            count_annotation(p, INDEX_IGNORED_FAILURE_COUNT),
        );
        let rule = failure_rule(job, p);
        let failure = match rule {
            Some(Rule::Ignore) => IndexFailure {
                at,
                next: (failures, ignored + 1),
                failed: false,
            },
            _ => IndexFailure {
                at,
                next: (failures + 1, ignored),
                failed: rule == Some(Rule::FailIndex) || failures >= limit,
            },
        };
        out.insert(i, failure);
    }
    out
}

/// How long after its last failure an index's next pod waits: 10 s doubling with each
/// earlier failure of the index, up to 10 minutes (upstream's per-index back-off).
pub fn index_retry_delay(next: (i64, i64)) -> jiff::SignedDuration {
    let n = (next.0 + next.1).max(1);
    let secs = 10i64.saturating_mul(1 << (n - 1).min(10)).min(MAX_INDEX_BACKOFF_SECS);
    jiff::SignedDuration::from_secs(secs)
}

/// The pod of index `i` of an Indexed Job: named `<job>-<i>-`, with its index as
/// annotation, label, hostname and `JOB_COMPLETION_INDEX` in every container.
pub fn indexed_pod(job: &Value, i: i64) -> Value {
    let mut pod = pod_for(job);
    pod["metadata"]["generateName"] = json!(format!("{}-{i}-", name_of(job)));
    for k in ["annotations", "labels"] {
        if !pod["metadata"][k].is_object() {
            pod["metadata"][k] = json!({});
        }
        pod["metadata"][k][INDEX] = json!(i.to_string());
    }
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    pod["spec"]["hostname"] = json!(format!("{}-{i}", name_of(job)));
    let env = json!({"name": "JOB_COMPLETION_INDEX",
                     "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.annotations['{INDEX}']")}}});
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            match c["env"].as_array_mut() {
                Some(e) => e.push(env.clone()),
                None => c["env"] = json!([env]),
            }
        }
    }
    pod
}

/// A set of completion indexes as upstream keeps them: sorted, disjoint, non-adjacent
/// closed intervals. A range such as `0-2147483646` is one interval, never two billion
/// numbers, whatever a client writes into `status.completedIndexes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Indexes(Vec<(i64, i64)>);

impl Indexes {
    /// Whether `i` is in the set.
    pub fn contains(&self, i: i64) -> bool {
        let at = self.0.partition_point(|(_, end)| *end < i);
        self.0.get(at).is_some_and(|(start, _)| *start <= i)
    }

    /// Adds the indexes `a..=b`.
    pub fn insert_range(&mut self, a: i64, b: i64) {
        if a > b {
            return;
        }
        // Every interval that overlaps or touches [a, b] merges into it.
        let first = self.0.partition_point(|(_, end)| end.saturating_add(1) < a);
        let mut last = first;
        let (mut start, mut end) = (a, b);
        while let Some(&(s, e)) = self.0.get(last) {
            if s > end.saturating_add(1) {
                break;
            }
            start = start.min(s);
            end = end.max(e);
            last += 1;
        }
        self.0.splice(first..last, [(start, end)]);
    }

    /// Adds every index of `other`.
    pub fn extend(&mut self, other: &Indexes) {
        for &(a, b) in &other.0 {
            self.insert_range(a, b);
        }
    }

    /// Adds `i`.
    pub fn insert(&mut self, i: i64) {
        self.insert_range(i, i);
    }

    /// How many indexes the set holds.
    pub fn len(&self) -> i64 {
        self.0.iter().fold(0i64, |n, (a, b)| {
            n.saturating_add(b.saturating_sub(*a).saturating_add(1))
        })
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many indexes the two sets share (interval by interval, never index by index).
    pub fn shared(&self, other: &Indexes) -> i64 {
        let (mut a, mut b, mut n) = (0usize, 0usize, 0i64);
        while let (Some(&(s1, e1)), Some(&(s2, e2))) = (self.0.get(a), other.0.get(b)) {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s <= e {
                n = n.saturating_add(e - s + 1);
            }
            if e1 < e2 {
                a += 1;
            } else {
                b += 1;
            }
        }
        n
    }

    /// The indexes in `0..below` not in the set, in order (intervals are skipped whole).
    pub fn missing(&self, below: i64) -> impl Iterator<Item = i64> + '_ {
        let mut next = 0i64;
        let mut at = 0usize;
        std::iter::from_fn(move || {
            while let Some(&(s, e)) = self.0.get(at) {
                if next < s {
                    break;
                }
                next = next.max(e.saturating_add(1));
                at += 1;
            }
            (next < below).then(|| {
                next += 1;
                next - 1
            })
        })
    }
}

impl std::fmt::Display for Indexes {
    /// `1,3-5,7,8` (upstream's `completedIndexes`: a run of two is written as a pair).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (a, b)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else if b.checked_sub(*a) == Some(1) {
                write!(f, "{a},{b}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// `1,3-5` -> {1, 3, 4, 5}, keeping only indexes below `completions` (the status is
/// client-writable).
pub fn parse_indexes(s: &str, completions: i64) -> Indexes {
    let mut out = Indexes::default();
    let last = completions.saturating_sub(1);
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i64>(), b.parse::<i64>()),
            None => (part.parse::<i64>(), part.parse::<i64>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            out.insert_range(a.max(0), b.min(last));
        }
    }
    out
}

/// {1, 3, 4, 5} -> `1,3-5` (upstream's `completedIndexes`).
pub fn format_indexes(set: &Indexes) -> String {
    set.to_string()
}

/// The key prefix under which a pod that carries the tracking finalizer but has no
/// controller is queued (a Job's key is `namespace/name`; no namespace holds a `:`).
const ORPHAN_KEY: &str = "pod:";

/// Runs the controller until the process ends: a keyed queue of Jobs, woken by their pods,
/// and of orphaned pods that still carry the tracking finalizer.
pub async fn run(client: kube::Client, informers: Informers) {
    let recorder = Recorder::new(client.clone(), MANAGER);
    let ctx = Arc::new((client, recorder, tokio::sync::Mutex::new(Expectations::new())));
    let cache = informers.clone();
    Keyed::new("job", "batch", "jobs")
        .owns("", "pods", "Job")
        .watches("", "pods", |_, change| {
            change
                .objects()
                .filter(|p| tracked(p) && informer::controller_uid(p).is_none())
                .map(|p| format!("{ORPHAN_KEY}{}", informer::key(p)))
                .collect()
        })
        .run(informers, move |key: String| {
            let (ctx, informers) = (ctx.clone(), cache.clone());
            async move {
                let (client, recorder, expectations) = &*ctx;
                if let Some(pod) = key.strip_prefix(ORPHAN_KEY) {
                    // An orphan keeps nothing of a Job (upstream's `syncOrphanPod`).
                    let pods: Vec<Arc<Value>> = informers
                        .get("", "pods", pod)
                        .filter(|p| tracked(p) && informer::controller_uid(p).is_none())
                        .into_iter()
                        .collect();
                    untrack(client, pods.iter().map(|p| &**p)).await?;
                    return Ok(Next::Done);
                }
                let pods = informers.of("", "pods");
                let mut exp = expectations.lock().await;
                let Some(job) = informers.get("batch", "jobs", &key) else {
                    let live: std::collections::HashSet<String> = informers
                        .of("batch", "jobs")
                        .iter()
                        .map(|j| uid_of(j).to_string())
                        .collect();
                    exp.retain_owners(|uid| live.contains(uid));
                    // The pods of a Job that is gone lose its finalizer.
                    let (ns, name) = key.split_once('/').unwrap_or(("", &key));
                    let left = pods.iter().filter(|p| {
                        informer::namespace(p) == ns
                            && tracked(p)
                            && informer::controller_of_kind(p, "Job") == Some(name)
                    });
                    untrack(client, left.map(|p| &**p)).await?;
                    return Ok(Next::Done);
                };
                sync(client, recorder, &job, &pods, &mut exp, jiff::Timestamp::now()).await
            }
        })
        .await
}

/// Takes the tracking finalizer off `pods` (one patch each; a pod gone is no error).
async fn untrack<'a>(client: &kube::Client, pods: impl Iterator<Item = &'a Value>) -> Result<(), Error> {
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    for p in pods {
        let api: Api<Pod> = Api::namespaced(client.clone(), informer::namespace(p));
        ignore_not_found(
            api.patch(name_of(p), &pp, &Patch::Strategic(untrack_patch(uid_of(p))))
                .await,
        )?;
    }
    Ok(())
}

/// Whether the Job has ended (a `Complete` or `Failed` condition).
fn finished(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

/// Whether another controller manages the Job (`spec.managedBy`).
fn managed_elsewhere(job: &Value) -> bool {
    job["spec"]["managedBy"].as_str().is_some_and(|m| m != CONTROLLER_NAME)
}

/// The pods of `job` among `pods` (upstream's ControllerRefManager rules): those it
/// controls that match its selector, and matching orphans, which it adopts (name, guarded
/// patch); those it controls that stopped matching are let go (name, patch). A Job whose
/// selector cannot be read claims only what it already controls.
#[allow(clippy::type_complexity)]
fn claimed<'a>(job: &Value, pods: &'a [Arc<Value>]) -> (Vec<&'a Value>, Vec<(String, Value)>, Vec<(String, Value)>) {
    let (ns, uid) = (informer::namespace(job), uid_of(job));
    let selector = shoal_api::selector::LabelSelector::from_api(&job["spec"]["selector"]).ok();
    let (mut mine, mut adopt, mut release) = (Vec::new(), Vec::new(), Vec::new());
    for p in pods.iter().filter(|p| informer::namespace(p) == ns) {
        let Some(selector) = &selector else {
            if informer::controller_uid(p) == Some(uid) {
                mine.push(&**p);
            }
            continue;
        };
        match claim(job, p, selector.matches_object(p)) {
            Claim::Owned => mine.push(&**p),
            Claim::Adopt => {
                let mut patch = adopt_patch(p, informer::controller_ref("batch/v1", "Job", job));
                if !tracked(p) {
                    let mut finalizers = p["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
                    finalizers.push(json!(TRACKING_FINALIZER));
                    patch["metadata"]["finalizers"] = Value::Array(finalizers);
                }
                adopt.push((name_of(p).to_string(), patch));
                mine.push(&**p);
            }
            Claim::Release => {
                let mut patch = release_patch(p, uid);
                if tracked(p) {
                    patch["metadata"]["$deleteFromPrimitiveList/finalizers"] = json!([TRACKING_FINALIZER]);
                }
                release.push((name_of(p).to_string(), patch));
            }
            Claim::Ignore => {}
        }
    }
    (mine, adopt, release)
}

/// Whether `p` carries the Job's tracking finalizer (its end not yet counted).
pub fn tracked(p: &Value) -> bool {
    p["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

/// The strategic merge patch that takes the tracking finalizer off the pod of `uid` (and
/// only off that pod: the uid is a precondition).
pub fn untrack_patch(uid: &str) -> Value {
    json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER], "uid": uid}})
}

/// The uids of `status.uncountedTerminatedPods.<key>`: pods whose end the status holds but
/// whose tracking finalizer may not be off yet.
fn uncounted(status: &Value, key: &str) -> std::collections::BTreeSet<String> {
    status["uncountedTerminatedPods"][key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

/// A pod that counts as running for the Job: not being deleted, not finished.
fn is_active(p: &Value) -> bool {
    !informer::deleting(p) && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// What one reconcile of a Job does, decided from the caches, whether writes of an earlier
/// reconcile are still in flight, and the time given. [`apply`] carries it out.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Running pods to delete, newest first (name, uid, and whether to take the tracking
    /// finalizer off first: yes unless the Job failed, which counts them as failed).
    pub delete: Vec<(String, String, bool)>,
    /// Pods whose tracking finalizer comes off once the status is written (name, uid).
    pub untrack: Vec<(String, String)>,
    /// Pods to create (bodies; named by `generateName`).
    pub create: Vec<Value>,
    /// The status, when it changes.
    pub status: Option<Value>,
    /// Events about the Job, recorded once its status is written.
    pub events: Vec<(EventType, String, String)>,
    /// When to look again although nothing changes (the failure back-off, a deadline).
    pub next: Next,
}

/// Decides one reconcile of `job` at `now` from `mine`, its pods; `in_flight` says pods
/// created or deleted earlier have not shown in the cache yet (nothing more is created or
/// deleted then). `None` for a Job that is finished or being deleted.
pub fn plan(job: &Value, mine: &[&Value], in_flight: bool, now: jiff::Timestamp) -> Option<Plan> {
    // A Job another controller manages (`spec.managedBy`) is left to it, as upstream's.
    if managed_elsewhere(job) || informer::deleting(job) || finished(job) {
        return None;
    }
    let mut c = count(mine);
    // Indexed Jobs count the indexes that succeeded, once each.
    let indexed = job["spec"]["completionMode"] == "Indexed";
    let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
    let mut completed = parse_indexes(
        job["status"]["completedIndexes"].as_str().unwrap_or_default(),
        completions,
    );
    if indexed {
        for i in mine
            .iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .filter_map(|p| index_of(p))
            .filter(|i| (0..completions).contains(i))
        {
            completed.insert(i);
        }
        c.succeeded = completed.len();
    }
    // podFailurePolicy: failures its Ignore rules match are not counted; the first failure
    // a FailJob rule matches fails the Job.
    let mut fail_job = None;
    for p in mine.iter().filter(|p| p["status"]["phase"] == "Failed") {
        match failure_rule(job, p) {
            Some(Rule::FailJob(message)) if fail_job.is_none() => fail_job = Some(message),
            _ => {}
        }
    }
    // backoffLimitPerIndex: each index has its own retries; an index that used them up (or
    // matched a FailIndex rule) is failed for good and never run again.
    let per_index = indexed && job["spec"]["backoffLimitPerIndex"].is_number();
    let index_failures = if per_index {
        index_failures(job, mine, completions)
    } else {
        Default::default()
    };
    let mut failed_indexes = parse_indexes(job["status"]["failedIndexes"].as_str().unwrap_or_default(), completions);
    for (i, _) in index_failures
        .iter()
        .filter(|(i, f)| f.failed && !completed.contains(**i))
    {
        failed_indexes.insert(*i);
    }
    // Each pod's end is counted once, through the tracking finalizer (upstream's order): a
    // finished pod that carries it goes into `uncountedTerminatedPods` with the status
    // write, loses the finalizer after that write, and moves into `succeeded` or `failed`
    // once the cache shows it without the finalizer, or gone. A pod without it was counted
    // before. A pod being deleted counts as failed at once, unless only failed pods are
    // replaced (`podReplacementPolicy: Failed`, or a podFailurePolicy): then once it failed.
    // Failures an Ignore rule matches are not counted.
    let only_failed = job["spec"]["podReplacementPolicy"] == "Failed" || job["spec"]["podFailurePolicy"].is_object();
    let ends_failed = |p: &Value| match p["status"]["phase"].as_str() {
        Some("Failed") => true,
        Some("Succeeded") => false,
        _ => !only_failed && informer::deleting(p),
    };
    let (mut u_succeeded, mut u_failed) = (
        uncounted(&job["status"], "succeeded"),
        uncounted(&job["status"], "failed"),
    );
    let still_tracked: std::collections::HashSet<&str> =
        mine.iter().filter(|p| tracked(p)).map(|p| uid_of(p)).collect();
    let settle = |set: &mut std::collections::BTreeSet<String>, key: &str| {
        let before = set.len();
        set.retain(|u| still_tracked.contains(u.as_str()));
        job["status"][key]
            .as_i64()
            .unwrap_or(0)
            .saturating_add((before - set.len()) as i64)
    };
    let (succeeded, failed) = (settle(&mut u_succeeded, "succeeded"), settle(&mut u_failed, "failed"));
    let mut untrack: Vec<&Value> = Vec::new();
    for p in mine.iter().copied().filter(|p| tracked(p)) {
        if p["status"]["phase"] == "Succeeded" {
            // An Indexed Job counts the index (`completedIndexes`), not the pod.
            if !indexed {
                u_succeeded.insert(uid_of(p).to_string());
            }
            untrack.push(p);
        } else if ends_failed(p) {
            if failure_rule(job, p) != Some(Rule::Ignore) {
                u_failed.insert(uid_of(p).to_string());
            }
            untrack.push(p);
        }
    }
    if !indexed {
        c.succeeded = succeeded.saturating_add(u_succeeded.len() as i64);
    }
    c.failed = failed.saturating_add(u_failed.len() as i64);
    let start = job["status"]["startTime"].as_str().map(str::to_string);
    let active_for = start
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok());
    let suspended = job["spec"]["suspend"] == true;
    // Once decided, the end stays decided (upstream's FailureTarget and
    // SuccessCriteriaMet conditions) while the remaining pods are terminated.
    let target = |kind: &str| {
        job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["type"] == kind && x["status"] == "True")
            .map(|x| {
                let text = |k: &str| x[k].as_str().unwrap_or_default().to_string();
                (text("reason"), text("message"))
            })
    };
    let met = if indexed { success_rule(job, &completed) } else { None };
    // Upstream's order: a decided end, a FailJob rule, the back-off limit and the deadline,
    // the failed indexes, then the success policy and the completions.
    let limits = outcome(job, &c, active_for);
    let max_failed = job["spec"]["maxFailedIndexes"].as_i64();
    let result = if let Some((reason, message)) = target("FailureTarget") {
        Outcome::Failed(reason, message)
    } else if let Some((reason, message)) = target("SuccessCriteriaMet") {
        Outcome::Complete(reason, message)
    } else if let Some(message) = fail_job {
        Outcome::Failed("PodFailurePolicy".into(), message)
    } else if let Outcome::Failed(reason, message) = &limits
        && !suspended
    {
        Outcome::Failed(reason.clone(), message.clone())
    } else if per_index && max_failed.is_some_and(|m| failed_indexes.len() > m) {
        Outcome::Failed(
            "MaxFailedIndexesExceeded".into(),
            "Job has exceeded the specified maximal number of failed indexes".into(),
        )
    } else if per_index
        && !failed_indexes.is_empty()
        && failed_indexes.len().saturating_add(completed.len()) >= completions
    {
        Outcome::Failed("FailedIndexes".into(), "Job has failed indexes".into())
    } else if let Some(i) = met {
        Outcome::Complete("SuccessPolicy".into(), format!("Matched rules at index {i}"))
    } else if suspended {
        Outcome::Run(0)
    } else {
        match limits {
            // Failed indexes are not run again.
            Outcome::Run(n) if per_index => {
                Outcome::Run(n.min(completions - c.succeeded - failed_indexes.len()).max(0))
            }
            other => other,
        }
    };
    let active: Vec<&Value> = mine.iter().copied().filter(|p| is_active(p)).collect();
    let (want, end) = match result {
        Outcome::Run(n) => (n, None),
        Outcome::Complete(reason, message) => (0, Some(("Complete", reason, message))),
        Outcome::Failed(reason, message) => (0, Some(("Failed", reason, message))),
    };
    let mut out = Plan {
        delete: Vec::new(),
        create: Vec::new(),
        untrack: Vec::new(),
        status: None,
        events: Vec::new(),
        next: Next::Done,
    };
    // Too many (or the Job ended): the newest go.
    if !in_flight && (active.len() as i64) > want {
        let mut victims = active.clone();
        victims.sort_by(|a, b| {
            b["metadata"]["creationTimestamp"]
                .as_str()
                .cmp(&a["metadata"]["creationTimestamp"].as_str())
        });
        let job_failed = matches!(&end, Some((kind, ..)) if *kind == "Failed");
        out.delete = victims
            .into_iter()
            .take(active.len() - want.max(0) as usize)
            .map(|p| {
                // A failed Job counts the pods it stops as failed (it keeps their finalizer
                // until the status says so); otherwise they are not counted at all.
                if job_failed && tracked(p) {
                    u_failed.insert(uid_of(p).to_string());
                    untrack.push(p);
                }
                (name_of(p).to_string(), uid_of(p).to_string(), !job_failed)
            })
            .collect();
    }
    out.untrack = untrack
        .iter()
        .map(|p| (name_of(p).to_string(), uid_of(p).to_string()))
        .collect();
    // After a failure, new pods wait: 10 s doubling per failure, up to 6 minutes (upstream's
    // pod failure back-off), from the last failure.
    let last_failure = mine
        .iter()
        .filter(|p| p["status"]["phase"] == "Failed")
        .filter_map(|p| failed_at(p))
        .max();
    // (A Job with backoffLimitPerIndex waits per index instead, below.)
    let wait = retry_delay(c.failed)
        .filter(|_| !per_index)
        .zip(last_failure)
        .map(|(delay, at)| at.checked_add(delay).unwrap_or(jiff::Timestamp::MAX))
        .filter(|until| *until > now);
    // When each index in its back-off may run again.
    let index_ready = |i: i64| -> Option<jiff::Timestamp> {
        let f = index_failures.get(&i)?;
        let until = f
            .at?
            .checked_add(index_retry_delay(f.next))
            .unwrap_or(jiff::Timestamp::MAX);
        (until > now).then_some(until)
    };
    let mut index_wait: Option<jiff::Timestamp> = None;
    // With `podReplacementPolicy: Failed` a pod being deleted keeps its place until it has
    // failed; with `TerminatingOrFailed` (the default without a podFailurePolicy) it is
    // replaced at once.
    let terminating: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|p| informer::deleting(p) && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .collect();
    let held = if job["spec"]["podReplacementPolicy"] == "Failed" {
        terminating.as_slice()
    } else {
        &[]
    };
    let occupied = (active.len() + held.len()) as i64;
    if !in_flight && end.is_none() && occupied < want && wait.is_none() {
        // Indexed: the lowest indexes neither done nor running (nor held).
        let running: std::collections::BTreeSet<i64> =
            active.iter().chain(held.iter()).filter_map(|p| index_of(p)).collect();
        let mut done = completed.clone();
        done.extend(&failed_indexes);
        let mut free = done.missing(completions).filter(|i| !running.contains(i));
        // At most a burst per pass, as upstream (a Job with a parallelism of a billion
        // creates its pods over many passes, not a billion bodies at once).
        let missing = (want - occupied).min(MAX_CREATES_PER_PASS);
        while (out.create.len() as i64) < missing {
            if !indexed {
                out.create.push(pod_for(job));
                continue;
            }
            let Some(i) = free.next() else { break };
            if !per_index {
                out.create.push(indexed_pod(job, i));
                continue;
            }
            // An index in its back-off waits; the next free one may go meanwhile.
            if let Some(until) = index_ready(i) {
                index_wait = Some(index_wait.map_or(until, |w| w.min(until)));
                continue;
            }
            let (failures, ignored) = index_failures.get(&i).map_or((0, 0), |f| f.next);
            let mut pod = indexed_pod(job, i);
            let notes = &mut pod["metadata"]["annotations"];
            notes[INDEX_FAILURE_COUNT] = json!(failures.to_string());
            if ignored > 0 {
                notes[INDEX_IGNORED_FAILURE_COUNT] = json!(ignored.to_string());
            }
            out.create.push(pod);
        }
    }
    // Status.
    let t = shoal_api::time::rfc3339(now);
    let mut conditions: Vec<Value> = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut status = json!({
        // The counts hold only what is counted; decisions above also took in the uncounted.
        "active": c.active, "ready": c.ready,
        "succeeded": if indexed { c.succeeded } else { succeeded },
        "failed": failed,
        "terminating": c.terminating, "uncountedTerminatedPods": {},
    });
    // Both lists always: the status is written as a merge patch, where only a null takes
    // a list away.
    for (key, set) in [("succeeded", &u_succeeded), ("failed", &u_failed)] {
        status["uncountedTerminatedPods"][key] = if set.is_empty() { Value::Null } else { json!(set) };
    }
    if indexed && !completed.is_empty() {
        status["completedIndexes"] = json!(format_indexes(&completed));
    }
    if per_index {
        status["failedIndexes"] = json!(format_indexes(&failed_indexes));
    }
    if !suspended {
        status["startTime"] = json!(start.clone().unwrap_or_else(|| t.clone()));
    }
    let condition = |t_: &str, reason: &str, message: &str| {
        json!({"type": t_, "status": "True", "reason": reason, "message": message,
               "lastProbeTime": t, "lastTransitionTime": t})
    };
    let suspended_now = conditions
        .iter()
        .any(|x| x["type"] == "Suspended" && x["status"] == "True");
    if suspended && !suspended_now {
        conditions.retain(|x| x["type"] != "Suspended");
        conditions.push(condition("Suspended", "JobSuspended", "Job suspended"));
        out.events
            .push((EventType::Normal, "Suspended".into(), "Job suspended".into()));
    } else if !suspended && suspended_now {
        // As upstream: the condition stays, turned False (a change that keeps the number of
        // conditions, which the status write must still see).
        conditions.retain(|x| x["type"] != "Suspended");
        let mut resumed = condition("Suspended", "JobResumed", "Job resumed");
        resumed["status"] = json!("False");
        conditions.push(resumed);
        out.events
            .push((EventType::Normal, "Resumed".into(), "Job resumed".into()));
    }
    // The target condition as soon as the end is decided; the end itself once no pod of
    // the Job is left running (upstream's order).
    if let Some((kind, reason, message)) = &end {
        let target = if *kind == "Complete" {
            "SuccessCriteriaMet"
        } else {
            "FailureTarget"
        };
        if !conditions.iter().any(|x| x["type"] == target && x["status"] == "True") {
            conditions.push(condition(target, reason, message));
        }
        // ... and every pod's end is counted, and none is still terminating.
        if active.is_empty() && c.terminating == 0 && u_succeeded.is_empty() && u_failed.is_empty() {
            conditions.push(condition(kind, reason, message));
            if *kind == "Complete" {
                status["completionTime"] = json!(t);
                out.events
                    .push((EventType::Normal, "Completed".into(), "Job completed".into()));
            } else {
                out.events.push((EventType::Warning, reason.clone(), message.clone()));
            }
        }
    }
    if !conditions.is_empty() {
        status["conditions"] = Value::Array(conditions);
    }
    let old = &job["status"];
    let changed = ["active", "ready", "succeeded", "failed", "terminating"]
        .iter()
        .any(|k| old[*k].as_i64().unwrap_or(0) != status[*k].as_i64().unwrap_or(0))
        || old["startTime"] != status["startTime"]
        || old["completedIndexes"] != status["completedIndexes"]
        || old["failedIndexes"] != status["failedIndexes"]
        || uncounted(old, "succeeded") != u_succeeded
        || uncounted(old, "failed") != u_failed
        || condition_states(&old["conditions"]) != condition_states(&status["conditions"]);
    out.status = changed.then_some(status);
    // Deadlines and the failure back-off change nothing in the caches: look again.
    out.next = match wait.or(index_wait) {
        Some(until) => Next::RequeueAfter(
            Duration::try_from(until.duration_since(now))
                .unwrap_or_default()
                .max(Duration::from_millis(100)),
        ),
        None if job["spec"]["activeDeadlineSeconds"].is_number() => Next::RequeueAfter(Duration::from_secs(1)),
        None => Next::Done,
    };
    Some(out)
}

/// Carries out `plan` for `job`: deletions, creations (slow start, stopping at the first
/// failing batch), each noted in `exp` once made; then the status, whatever the pod writes
/// did (as upstream: the counts are true either way), then the events. The first error
/// is returned.
pub(crate) async fn apply(
    client: &kube::Client,
    recorder: &Recorder,
    job: &Value,
    plan: Plan,
    exp: &mut Expectations,
) -> Result<Next, Error> {
    let ns = informer::namespace(job);
    let owner = uid_of(job).to_string();
    let about = ObjectRef::of("batch/v1", "Job", job);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut failure: Option<Error> = None;
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    for (name, uid, untrack_first) in plan.delete {
        if untrack_first {
            let patch = untrack_patch(&uid);
            if let Err(e) = ignore_not_found(pod_api.patch(&name, &pp, &Patch::Strategic(patch)).await) {
                failure.get_or_insert(e.into());
                continue;
            }
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match pod_api.delete(&name, &dp).await {
            Ok(_) => exp.expect(&owner, Expected::Delete(uid)),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                failure.get_or_insert(e.into());
            }
        }
    }
    if !plan.create.is_empty() {
        let (made, failed) = crate::replicaset::create_pods(&pod_api, plan.create, MANAGER, recorder, &about).await;
        for name in made {
            exp.expect(&owner, Expected::Create(name));
        }
        if let Some(e) = failed {
            failure.get_or_insert(e);
        }
    }
    if let Some(status) = plan.status {
        // Written against the version the plan read: counts from a stale cache must not
        // overwrite newer ones (the finalizers they counted are gone).
        let api: Api<Job> = Api::namespaced(client.clone(), ns);
        let body = json!({"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "status": status});
        api.patch_status(name_of(job), &pp, &Patch::Merge(body)).await?;
    }
    // Only once the status holds their ends do the pods lose their tracking finalizer.
    for (name, uid) in plan.untrack {
        if let Err(e) = ignore_not_found(pod_api.patch(&name, &pp, &Patch::Strategic(untrack_patch(&uid))).await) {
            failure.get_or_insert(e.into());
        }
    }
    for (kind, reason, message) in &plan.events {
        recorder.record(&about, *kind, reason, message).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(plan.next),
    }
}

/// Reconciles one Job against snapshots of the caches at `now`. Pods created or deleted and
/// not yet seen so by the cache (expectations) hold further creations and deletions, so a
/// lagging cache never makes a second pod for one slot.
pub(crate) async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    job: &Value,
    pods: &[Arc<Value>],
    exp: &mut Expectations,
    now: jiff::Timestamp,
) -> Result<Next, Error> {
    if managed_elsewhere(job) {
        return Ok(Next::Done);
    }
    // The pods of an earlier Job of this name, and all pods of a Job that ended or is being
    // deleted, lose the tracking finalizer: nothing is counted for them any more.
    let (ns, uid, name) = (informer::namespace(job), uid_of(job), name_of(job));
    let ended = informer::deleting(job) || finished(job);
    let stale = pods.iter().filter(|p| {
        informer::namespace(p) == ns
            && tracked(p)
            && informer::controller_of_kind(p, "Job") == Some(name)
            && (ended || informer::controller_uid(p) != Some(uid))
    });
    untrack(client, stale.map(|p| &**p)).await?;
    if ended {
        return Ok(Next::Done);
    }
    let (mine, adopt, release) = claimed(job, pods);
    claim_pods(client, job, adopt, release).await?;
    let names: std::collections::HashSet<&str> = mine.iter().map(|p| name_of(p)).collect();
    let live: std::collections::HashSet<&str> = mine.iter().filter(|p| is_active(p)).map(|p| uid_of(p)).collect();
    let in_flight = !exp
        .settle(&uid_of(job).to_string(), |e| match e {
            Expected::Create(name) => names.contains(name.as_str()),
            Expected::Delete(uid) => !live.contains(uid.as_str()),
        })
        .is_empty();
    match plan(job, &mine, in_flight, now) {
        Some(p) => apply(client, recorder, job, p, exp).await,
        None => Ok(Next::Done),
    }
}

/// Writes the adoptions and releases of [`claimed`]; a pod gone meanwhile is no error.
async fn claim_pods(
    client: &kube::Client,
    job: &Value,
    adopt: Vec<(String, Value)>,
    release: Vec<(String, Value)>,
) -> Result<(), Error> {
    if adopt.is_empty() && release.is_empty() {
        return Ok(());
    }
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), informer::namespace(job));
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    for (name, body) in adopt {
        ignore_not_found(pod_api.patch(&name, &pp, &Patch::Merge(body)).await)?;
    }
    for (name, body) in release {
        ignore_not_found(pod_api.patch(&name, &pp, &Patch::Strategic(body)).await)?;
    }
    Ok(())
}

/// What of a condition list a status write must carry: each condition's type, status,
/// reason and message (not its times), in order.
fn condition_states(conditions: &Value) -> Vec<(&Value, &Value, &Value, &Value)> {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (&c["type"], &c["status"], &c["reason"], &c["message"]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(active: i64, succeeded: i64, failed: i64) -> Counts {
        Counts {
            active,
            succeeded,
            failed,
            ..Default::default()
        }
    }

    #[test]
    fn completions_and_parallelism_set_the_active_pods() {
        let job = json!({"spec": {"completions": 5, "parallelism": 2}});
        assert_eq!(outcome(&job, &counts(0, 0, 0), None), Outcome::Run(2));
        assert_eq!(outcome(&job, &counts(2, 4, 0), None), Outcome::Run(1));
        assert!(matches!(outcome(&job, &counts(0, 5, 0), None), Outcome::Complete(r, _) if r == "CompletionsReached"));
        let single = json!({"spec": {}});
        assert_eq!(outcome(&single, &counts(0, 0, 0), None), Outcome::Run(1));
        let queue = json!({"spec": {"parallelism": 3}});
        assert_eq!(outcome(&queue, &counts(0, 0, 0), None), Outcome::Run(3));
        assert_eq!(outcome(&queue, &counts(2, 1, 0), None), Outcome::Run(2));
        assert!(matches!(outcome(&queue, &counts(0, 1, 0), None), Outcome::Complete(..)));
    }

    #[test]
    fn success_policies_match_as_upstreams() {
        let job = json!({"spec": {"completions": 10, "successPolicy": {"rules": [
            {"succeededIndexes": "0-2"},
            {"succeededIndexes": "5-9", "succeededCount": 2},
            {"succeededCount": 5}]}}});
        let done = |s: &str| parse_indexes(s, 10);
        assert_eq!(success_rule(&job, &done("0,1")), None);
        assert_eq!(success_rule(&job, &done("0-2")), Some(0));
        assert_eq!(success_rule(&job, &done("3,7,9")), Some(1), "two of 5-9");
        assert_eq!(success_rule(&job, &done("1,3,4,6")), None);
        assert_eq!(success_rule(&job, &done("1-5")), Some(2), "five of all");
        assert_eq!(
            success_rule(&json!({"spec": {"completions": 3}}), &done("0-2")),
            None,
            "no policy"
        );
        assert_eq!(done("0-4,8").shared(&done("3-9")), 3);
        let wide = |s: &str| parse_indexes(s, i64::MAX);
        assert_eq!(
            wide("0-2147483646").shared(&wide("5-2147483646")),
            2147483642,
            "intervals, not indexes"
        );
    }

    #[test]
    fn a_terminating_pod_keeps_its_place_when_only_failed_pods_are_replaced() {
        let job = |policy: &str| {
            json!({"metadata": {"name": "j", "namespace": "ns", "uid": "u"},
                   "spec": {"parallelism": 2, "completions": 4, "podReplacementPolicy": policy,
                            "template": {"spec": {"containers": [{"name": "c"}]}}},
                   "status": {}})
        };
        let running = json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
                             "status": {"phase": "Running"}});
        let going = json!({"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z",
                                        "deletionTimestamp": "2026-01-01T00:01:00Z"},
                           "status": {"phase": "Running"}});
        let now = "2026-01-01T00:01:01Z".parse().unwrap();
        let mine = [&running, &going];
        let p = plan(&job("Failed"), &mine, false, now).unwrap();
        assert!(p.create.is_empty(), "b holds its place until it has failed");
        let p = plan(&job("TerminatingOrFailed"), &mine, false, now).unwrap();
        assert_eq!(p.create.len(), 1, "b is replaced at once");
    }

    #[test]
    fn indexes_have_their_own_retries_with_backoff_limit_per_index() {
        let job = |extra: Value| {
            let mut j = json!({"metadata": {"name": "j", "namespace": "ns", "uid": "u"},
                "spec": {"completionMode": "Indexed", "completions": 4, "parallelism": 2,
                         "backoffLimitPerIndex": 1, "backoffLimit": 2147483647,
                         "template": {"spec": {"containers": [{"name": "c"}]}}},
                "status": {"startTime": "2026-01-01T00:00:00Z"}});
            for (k, v) in extra.as_object().into_iter().flatten() {
                j["spec"][k] = v.clone();
            }
            j
        };
        let pod = |i: i64, phase: &str, counts: (i64, i64), code: i64| {
            let mut notes = json!({INDEX: i.to_string(), INDEX_FAILURE_COUNT: counts.0.to_string()});
            if counts.1 > 0 {
                notes[INDEX_IGNORED_FAILURE_COUNT] = json!(counts.1.to_string());
            }
            let name = format!("j-{i}-{}-{phase}", counts.0 + counts.1);
            json!({"metadata": {"name": name, "uid": name, "namespace": "ns", "finalizers": [TRACKING_FINALIZER],
                                "creationTimestamp": "2026-01-01T00:00:00Z", "annotations": notes},
                   "status": {"phase": phase,
                              "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:10Z"}],
                              "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": code}}}]}})
        };
        let at = |s: i64| jiff::Timestamp::from_second(1767225610 + s).unwrap();
        let (ok0, bad1) = (pod(0, "Succeeded", (0, 0), 0), pod(1, "Failed", (0, 0), 1));
        // Index 1 failed once: it waits 10 s while 2 and 3 start, with failure count 0.
        let p = plan(&job(json!({})), &[&ok0, &bad1], false, at(5)).unwrap();
        let made: Vec<(&Value, &Value)> = p
            .create
            .iter()
            .map(|c| {
                (
                    &c["metadata"]["annotations"][INDEX],
                    &c["metadata"]["annotations"][INDEX_FAILURE_COUNT],
                )
            })
            .collect();
        assert_eq!(made, [(&json!("2"), &json!("0")), (&json!("3"), &json!("0"))]);
        assert_eq!(p.next, Next::RequeueAfter(Duration::from_secs(5)));
        assert_eq!(p.status.as_ref().unwrap()["failedIndexes"], "", "set, empty");
        let status = p.status.as_ref().unwrap();
        assert_eq!(
            (&status["failed"], &status["uncountedTerminatedPods"]["failed"]),
            (&json!(0), &json!(["j-1-0-Failed"]))
        );
        // After its back-off, index 1 runs again, counting one failure.
        let (ok2, ok3) = (pod(2, "Succeeded", (0, 0), 0), pod(3, "Succeeded", (0, 0), 0));
        let p = plan(&job(json!({})), &[&ok0, &bad1, &ok2, &ok3], false, at(11)).unwrap();
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0]["metadata"]["annotations"][INDEX_FAILURE_COUNT], "1");
        // Its second failure fails the index, and with every index finished, the Job: first
        // the target, while the failures are counted through the tracking finalizer...
        let bad1b = pod(1, "Failed", (1, 0), 1);
        let p = plan(&job(json!({})), &[&ok0, &bad1, &bad1b, &ok2, &ok3], false, at(30)).unwrap();
        assert!(p.create.is_empty());
        assert_eq!(p.untrack.len(), 5, "every finished pod");
        let status = p.status.unwrap();
        assert_eq!(
            status["uncountedTerminatedPods"],
            json!({"succeeded": null, "failed": ["j-1-0-Failed", "j-1-1-Failed"]})
        );
        assert_eq!(status["conditions"].as_array().unwrap().len(), 1, "{status}");
        // ... then, once the pods are without it, the end.
        let untracked = |p: &Value| {
            let mut p = p.clone();
            p["metadata"]["finalizers"] = json!([]);
            p
        };
        let mut counted = job(json!({}));
        counted["status"] = status;
        let (ok0, bad1, bad1b, ok2, ok3) = (
            untracked(&ok0),
            untracked(&bad1),
            untracked(&bad1b),
            untracked(&ok2),
            untracked(&ok3),
        );
        let p = plan(&counted, &[&ok0, &bad1, &bad1b, &ok2, &ok3], false, at(31)).unwrap();
        assert!(p.untrack.is_empty());
        let status = p.status.unwrap();
        assert_eq!(
            (&status["failed"], &status["uncountedTerminatedPods"]),
            (&json!(2), &json!({"succeeded": null, "failed": null}))
        );
        assert_eq!(
            (&status["failedIndexes"], &status["completedIndexes"]),
            (&json!("1"), &json!("0,2,3"))
        );
        let reasons: Vec<(&Value, &Value)> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (&c["type"], &c["reason"]))
            .collect();
        assert_eq!(
            reasons,
            [
                (&json!("FailureTarget"), &json!("FailedIndexes")),
                (&json!("Failed"), &json!("FailedIndexes"))
            ]
        );
        // Beyond maxFailedIndexes the Job fails at once, its running pods deleted.
        let running = pod(2, "Running", (0, 0), 0);
        let limited = job(json!({"maxFailedIndexes": 0}));
        let p = plan(&limited, &[&bad1b, &running], false, at(30)).unwrap();
        assert_eq!(
            p.delete,
            [("j-2-0-Running".into(), "j-2-0-Running".into(), false)],
            "counted as failed"
        );
        assert_eq!(
            p.status.as_ref().unwrap()["uncountedTerminatedPods"]["failed"],
            json!(["j-2-0-Running"]),
            "bad1b was counted before"
        );
        assert_eq!(p.status.unwrap()["conditions"][0]["reason"], "MaxFailedIndexesExceeded");
        // A FailIndex rule fails the index on its first failure; an Ignore rule's failure
        // is retried without counting against the index.
        let rules = json!({"podFailurePolicy": {"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [42]}}]}});
        let p = plan(&job(rules.clone()), &[&ok0, &bad1], false, at(30)).unwrap();
        assert_eq!(p.status.unwrap()["failedIndexes"], "1");
        let ignored = pod(1, "Failed", (0, 0), 42);
        let p = plan(&job(rules), &[&ok0, &ignored], false, at(30)).unwrap();
        let notes = &p.create[0]["metadata"]["annotations"];
        assert_eq!(
            (
                &notes[INDEX],
                &notes[INDEX_FAILURE_COUNT],
                &notes[INDEX_IGNORED_FAILURE_COUNT]
            ),
            (&json!("1"), &json!("0"), &json!("1"))
        );
        assert_eq!(p.status.unwrap()["failed"], 0, "ignored failures are not counted");
        assert_eq!(index_retry_delay((1, 0)), jiff::SignedDuration::from_secs(10));
        assert_eq!(index_retry_delay((3, 1)), jiff::SignedDuration::from_secs(80));
        assert_eq!(index_retry_delay((40, 0)), jiff::SignedDuration::from_secs(600));
    }

    #[test]
    fn pod_failure_policy_rules_match_as_upstreams() {
        let job = json!({"spec": {"podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}}});
        let pod = |code: i64, conditions: Value| {
            json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Failed",
                "conditions": conditions,
                "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": code}}}]}})
        };
        assert_eq!(
            failure_rule(&job, &pod(42, json!([]))),
            Some(Rule::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()
            ))
        );
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(
            failure_rule(&job, &pod(42, disrupted)),
            Some(Rule::Ignore),
            "rules in order"
        );
        assert_eq!(failure_rule(&job, &pod(3, json!([]))), Some(Rule::Count));
        assert_eq!(failure_rule(&job, &pod(1, json!([]))), None);
        assert_eq!(
            failure_rule(&job, &pod(0, json!([]))),
            None,
            "exit code 0 never matches"
        );
        let not_disrupted = json!([{"type": "DisruptionTarget", "status": "False"}]);
        assert_eq!(failure_rule(&job, &pod(1, not_disrupted)), None);
        assert_eq!(
            failure_rule(&json!({"spec": {}}), &pod(42, json!([]))),
            None,
            "no policy"
        );
    }

    #[test]
    fn failures_and_deadlines_fail_the_job() {
        let job = json!({"spec": {"completions": 1, "backoffLimit": 2, "activeDeadlineSeconds": 10}});
        assert_eq!(
            outcome(&job, &counts(1, 0, 2), Some(Duration::from_secs(1))),
            Outcome::Run(1)
        );
        assert!(matches!(
            outcome(&job, &counts(1, 0, 3), None),
            Outcome::Failed(r, _) if r == "BackoffLimitExceeded"
        ));
        assert!(matches!(
            outcome(&job, &counts(1, 0, 0), Some(Duration::from_secs(10))),
            Outcome::Failed(r, _) if r == "DeadlineExceeded"
        ));
    }

    #[test]
    fn indexes_round_trip_and_indexed_pods_carry_theirs() {
        let set = parse_indexes("0,2-4,7", 10);
        assert_eq!((set.len(), set.contains(3), set.contains(5)), (5, true, false));
        assert_eq!(set.missing(10).collect::<Vec<_>>(), [1, 5, 6, 8, 9]);
        assert_eq!(format_indexes(&set), "0,2-4,7");
        assert_eq!(format_indexes(&parse_indexes("", 10)), "");
        assert_eq!(
            format_indexes(&parse_indexes("7,0-2,3,5-6", 10)),
            "0-3,5-7",
            "merged and sorted"
        );
        // A client-written status costs the controller intervals, never the numbers in them.
        let huge = parse_indexes("0-9223372036854775807,-5,9223372036854775807", 3);
        assert_eq!(format_indexes(&huge), "0-2");
        let wide = parse_indexes("0-2147483645", 2147483647);
        assert_eq!(wide.len(), 2147483646);
        assert_eq!(wide.missing(2147483647).collect::<Vec<_>>(), [2147483646]);
        let mut top = Indexes::default();
        top.insert(i64::MAX);
        top.insert(i64::MAX - 1);
        assert_eq!(format_indexes(&top), format!("{},{}", i64::MAX - 1, i64::MAX), "a pair");
        let job = json!({"metadata": {"name": "idx", "namespace": "default", "uid": "u"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}}}});
        let pod = indexed_pod(&job, 3);
        assert_eq!(pod["metadata"]["generateName"], "idx-3-");
        assert_eq!(pod["metadata"]["annotations"][INDEX], "3");
        assert_eq!(pod["metadata"]["labels"][INDEX], "3");
        assert_eq!(pod["spec"]["hostname"], "idx-3");
        assert_eq!(pod["spec"]["containers"][0]["env"][1]["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(index_of(&pod), Some(3));
    }

    #[test]
    fn retries_back_off_after_failures() {
        assert_eq!(retry_delay(0), None);
        assert_eq!(retry_delay(1), Some(jiff::SignedDuration::from_secs(10)));
        assert_eq!(retry_delay(3), Some(jiff::SignedDuration::from_secs(40)));
        assert_eq!(retry_delay(9), Some(jiff::SignedDuration::from_secs(360)));
        assert_eq!(retry_delay(60), Some(jiff::SignedDuration::from_secs(360)));
    }

    #[test]
    fn pods_are_counted_by_phase() {
        let p = |phase: &str, ready: bool| json!({"status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        let (a, b, c, d) = (
            p("Running", true),
            p("Pending", false),
            p("Succeeded", false),
            p("Failed", false),
        );
        assert_eq!(
            count(&[&a, &b, &c, &d]),
            Counts {
                active: 2,
                ready: 1,
                succeeded: 1,
                failed: 1,
                terminating: 0
            }
        );
    }
}
