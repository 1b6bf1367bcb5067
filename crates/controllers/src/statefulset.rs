//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), hostnames under
//! the governing Service, and one PersistentVolumeClaim per pod and claim template
//! (`<claim>-<set>-<ordinal>`), as upstream's `StatefulSetController` keeps them.
//!
//! `OrderedReady` creates pods one at a time in ordinal order, each once the one before is
//! Running and Ready, and removes them from the highest ordinal down, one at a time;
//! `Parallel` creates and removes all at once. `RollingUpdate` replaces pods whose revision
//! is not the current template's, from the highest ordinal down to the `partition`, one at
//! a time; `OnDelete` only creates replaced pods at the new revision. Claims outlive their
//! pods unless `persistentVolumeClaimRetentionPolicy` says otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use shoal_api::selector::LabelSelector;

use crate::daemonset::history;
use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{self, Informers, name as name_of, uid as uid_of};
use shoal_runtime::claim::{Claim, adopt_patch, claim, release_patch};
use shoal_runtime::controller::{Error, Keyed, Outcome as Next, ignore_not_found};

const MANAGER: &str = "statefulset-controller";
/// The pod's revision label (the ControllerRevision's name).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label with the pod's own name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// A pod of the set as planning reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Its revision label.
    pub revision: String,
    /// Running and Ready.
    pub ready: bool,
    /// Ready for the set's `minReadySeconds` (what ordered start-up and rolling updates
    /// wait for, and `availableReplicas` counts).
    pub available: bool,
    /// Finished with failure (or success): it is replaced.
    pub failed: bool,
    /// Being deleted.
    pub terminating: bool,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the pod of this ordinal.
    Create(i64),
    /// Delete the pod of this ordinal.
    Delete(i64),
}

/// How the set is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `Parallel` pod management.
    pub parallel: bool,
    /// `OnDelete` updates.
    pub on_delete: bool,
    /// RollingUpdate's partition.
    pub partition: i64,
    /// RollingUpdate's maxUnavailable (at least 1).
    pub max_unavailable: i64,
}

/// Most pods one pass creates under `Parallel` (upstream's `MaxPodCreateDeletePerSync`).
const MAX_CREATES_PER_PASS: usize = 500;

/// The next actions for `replicas` pods from ordinal `start`, given the pods by ordinal
/// and the update revision.
pub fn pod_actions(
    replicas: i64,
    start: i64,
    pods: &BTreeMap<i64, Member>,
    update: &str,
    policy: &Policy,
) -> Vec<Action> {
    let end = start + replicas;
    let mut out = Vec::new();
    // Failed pods are deleted (and created again on a later pass).
    for (i, p) in pods.range(start..end) {
        if p.failed && !p.terminating {
            out.push(Action::Delete(*i));
            if !policy.parallel {
                return out;
            }
        }
    }
    let mut creates = 0;
    for i in start..end {
        match pods.get(&i) {
            None => {
                out.push(Action::Create(i));
                creates += 1;
                // Parallel creates at most a burst per pass (upstream's slow start caps it
                // too): two billion replicas must not mean two billion actions at once.
                if !policy.parallel || creates == MAX_CREATES_PER_PASS {
                    return out;
                }
            }
            Some(p) if !policy.parallel && (!p.available || p.terminating) => return out,
            Some(_) => {}
        }
    }
    // Pods beyond the replicas go, highest ordinal first.
    let condemned: Vec<i64> = pods.keys().copied().filter(|i| *i < start || *i >= end).rev().collect();
    if !condemned.is_empty() {
        let unhealthy = pods.range(start..end).any(|(_, p)| !p.available || p.terminating);
        // OrderedReady, as upstream's `processCondemned`: an unready condemned pod waits
        // unless it is the first unhealthy pod (the lowest ordinal among the kept pods, else
        // among the condemned), so a set whose pods are all unready does not scale down.
        let first_unhealthy = pods
            .range(start..end)
            .chain(condemned.iter().rev().map(|i| (i, &pods[i])))
            .find(|(_, p)| !p.ready || p.terminating)
            .map(|(i, _)| *i);
        for i in condemned {
            let p = &pods[&i];
            if p.terminating {
                if !policy.parallel {
                    return out;
                }
                continue;
            }
            if !policy.parallel && (unhealthy || (!p.ready && first_unhealthy != Some(i))) {
                return out;
            }
            out.push(Action::Delete(i));
            if !policy.parallel {
                return out;
            }
        }
        return out;
    }
    if !out.is_empty() || policy.on_delete {
        return out;
    }
    // RollingUpdate: from the highest ordinal down to the partition, as many at a time as
    // maxUnavailable leaves room for (one by default).
    let unavailable = pods
        .range(start..end)
        .filter(|(_, p)| !p.available || p.terminating)
        .count() as i64;
    let mut room = policy.max_unavailable.max(1) - unavailable;
    for i in (start + policy.partition.max(0)..end).rev() {
        if room <= 0 {
            break;
        }
        if pods
            .get(&i)
            .is_some_and(|p| p.revision != update && p.available && !p.terminating)
        {
            out.push(Action::Delete(i));
            room -= 1;
        }
    }
    out
}

/// The pod of ordinal `i`, from `template` at `revision`.
pub fn pod_for(sts: &Value, template: &Value, i: i64, revision: &str) -> Value {
    let name = format!("{}-{i}", name_of(sts));
    let mut labels = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), json!(revision));
    labels.insert(POD_NAME_LABEL.into(), json!(name));
    labels.insert(POD_INDEX_LABEL.into(), json!(i.to_string()));
    let mut meta = json!({"name": name, "namespace": sts["metadata"]["namespace"], "labels": labels,
                          "ownerReferences": [owner_reference(sts)]});
    for k in ["annotations", "finalizers"] {
        if let Some(v) = template["metadata"].get(k).filter(|v| !v.is_null()) {
            meta[k] = v.clone();
        }
    }
    let mut spec = template["spec"].clone();
    spec["hostname"] = json!(name);
    if let Some(svc) = sts["spec"]["serviceName"].as_str().filter(|s| !s.is_empty()) {
        spec["subdomain"] = json!(svc);
    }
    let claims = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !claims.is_empty() {
        let mut volumes: Vec<Value> = spec["volumes"].as_array().cloned().unwrap_or_default();
        for c in &claims {
            let claim = name_of(c);
            volumes.retain(|v| v["name"] != claim);
            volumes.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": claim_name(claim, sts, i)}}));
        }
        spec["volumes"] = Value::Array(volumes);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// `<claim>-<set>-<ordinal>`.
pub fn claim_name(claim: &str, sts: &Value, i: i64) -> String {
    format!("{claim}-{}-{i}", name_of(sts))
}

/// The claim of template `template` for ordinal `i`: the template's spec, labelled with the
/// set's selector labels; owned by the set when `whenDeleted: Delete`.
pub fn claim_for(sts: &Value, template: &Value, i: i64) -> Value {
    let mut labels = sts["spec"]["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(l) = template["metadata"]["labels"].as_object() {
        labels.extend(l.clone());
    }
    let mut meta = json!({"name": claim_name(name_of(template), sts, i), "namespace": sts["metadata"]["namespace"],
                          "labels": labels});
    if sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete" {
        meta["ownerReferences"] = json!([owner_reference(sts)]);
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": template["spec"]})
}

fn owner_reference(sts: &Value) -> Value {
    informer::controller_ref("apps/v1", "StatefulSet", sts)
}

/// The ordinal of `pod` in the set named `set`, from its name.
pub fn ordinal(set: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn member(pod: &Value, min_ready: Duration, now: jiff::Timestamp) -> Member {
    let ready = pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
    Member {
        // (Without minReadySeconds, Ready is available: no need to read the pod again.)
        available: ready && (min_ready.is_zero() || crate::replicaset::PodView::of(pod).available(min_ready, now)),
        revision: pod["metadata"]["labels"][REVISION_LABEL]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        ready,
        failed: matches!(pod["status"]["phase"].as_str(), Some("Failed" | "Succeeded")),
        terminating: informer::deleting(pod),
    }
}

/// Runs the controller until the process ends: a keyed queue of StatefulSets, woken by
/// their pods, revisions and claims.
pub async fn run(client: kube::Client, informers: Informers) {
    let recorder = Recorder::new(client.clone(), MANAGER);
    let reconcile = |ctx: Arc<(kube::Client, Recorder)>, informers: Informers, sts: Option<Arc<Value>>| async move {
        let Some(sts) = sts else {
            return Ok(Next::Done);
        };
        let (client, recorder) = &*ctx;
        let pods = informers.of("", "pods");
        let revisions = informers.of("apps", "controllerrevisions");
        let claims = informers.of("", "persistentvolumeclaims");
        sync(client, recorder, &sts, &pods, &revisions, &claims).await?;
        // Ordered start-up waits on time, not on the caches: a set on its way is looked at
        // again; a settled one waits for a change.
        Ok(if settled(&sts) {
            Next::Done
        } else {
            Next::RequeueAfter(RESYNC)
        })
    };
    Keyed::new("statefulset", "apps", "statefulsets")
        .owns("", "pods", "StatefulSet")
        .owns("apps", "controllerrevisions", "StatefulSet")
        .watches("", "persistentvolumeclaims", |informers, change| {
            // A claim wakes the sets of its namespace (claims carry no controller reference
            // to the set until retention policies add one).
            let mut keys = Vec::new();
            for c in change.objects() {
                let ns = crate::informer::namespace(c);
                keys.extend(shoal_runtime::controller::primary_keys(
                    informers,
                    ("apps", "statefulsets"),
                    Some(ns),
                ));
            }
            keys
        })
        .run_cached(informers, (client, recorder), reconcile)
        .await
}

/// True when the set's status, as the cache shows it, says it has nothing left to do: its
/// generation observed, every replica ready, available and of the update revision.
fn settled(sts: &Value) -> bool {
    sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
        && crate::replicas_settled(
            sts,
            &["replicas", "readyReplicas", "availableReplicas", "updatedReplicas"],
        )
}

/// How soon a StatefulSet is looked at again when nothing changes.
const RESYNC: Duration = Duration::from_secs(5);

/// One step on the set's pods.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Its missing claims, then the pod of `ordinal`.
    Create {
        /// The ordinal.
        ordinal: i64,
        /// Claims to create first (bodies).
        claims: Vec<Value>,
        /// The pod.
        pod: Value,
    },
    /// The pod `name` of `ordinal` goes (guarded by its uid); its claims first get the pod
    /// as owner when the retention policy deletes them on scale-down.
    Delete {
        /// The ordinal.
        ordinal: i64,
        /// The pod's name.
        name: String,
        /// The pod's uid, if the cache has it.
        uid: Option<String>,
        /// Claims handed to the pod (name, patch).
        claims: Vec<(String, Value)>,
    },
}

/// What one reconcile of a StatefulSet does, decided from the caches alone. [`apply`]
/// carries it out in this order and stops at the first failure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The ControllerRevision of the current template, when it does not exist yet.
    pub revision: Option<Value>,
    /// Orphan pods with the set's name and labels, taken over (name, guarded patch).
    pub adopt: Vec<(String, Value)>,
    /// Pods whose labels stopped matching, let go (name, patch).
    pub release: Vec<(String, Value)>,
    /// Pod creations and deletions, in order.
    pub steps: Vec<Step>,
    /// The status, when it changes.
    pub status: Option<Value>,
}

/// The revision hash of the set's template. The collision count is always mixed in (0
/// until a collision), as upstream does for StatefulSets: the first revision and the one
/// after the first status write are the same.
pub fn revision_hash(sts: &Value) -> String {
    history::template_hash_with(sts, Some(sts["status"]["collisionCount"].as_i64().unwrap_or(0)))
}

/// Decides one reconcile of `sts` (see [`Plan`]); `None` when there is nothing to do
/// (being deleted, or an unusable selector).
pub fn plan(
    sts: &Value,
    pods: &[Arc<Value>],
    revisions: &[Arc<Value>],
    claims: &[Arc<Value>],
    now: jiff::Timestamp,
) -> Option<Plan> {
    if informer::deleting(sts) {
        return None;
    }
    let selector = LabelSelector::from_api(&sts["spec"]["selector"]).ok()?;
    let ns = informer::namespace(sts);
    let uid = uid_of(sts);
    let set = name_of(sts);
    let mut out = Plan::default();
    // The revision of the current template.
    let hash = revision_hash(sts);
    let update = format!("{set}-{hash}");
    let mine: Vec<&Arc<Value>> = revisions
        .iter()
        .filter(|r| informer::namespace(r) == ns && owned_by(r, uid))
        .collect();
    if !mine.iter().any(|r| name_of(r) == update) {
        let next = mine
            .iter()
            .filter_map(|r| r["revision"].as_i64())
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let mut labels = sts["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.insert(REVISION_LABEL.into(), json!(hash));
        out.revision = Some(json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": update, "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(sts)]},
            "data": history::revision_data(sts), "revision": next}));
    }
    let current = sts["status"]["currentRevision"].as_str().unwrap_or(&update).to_string();
    let current_template = mine
        .iter()
        .find(|r| name_of(r) == current)
        .map(|r| r["data"]["spec"]["template"].clone())
        .map(|mut t| {
            if let Some(o) = t.as_object_mut() {
                o.remove("$patch");
            }
            t
        });

    let min_ready = Duration::from_secs(sts["spec"]["minReadySeconds"].as_u64().unwrap_or(0));
    // The set's pods, by ordinal; an adopted orphan counts as the set's from now on.
    let mut members: BTreeMap<i64, Member> = BTreeMap::new();
    let mut uids: BTreeMap<i64, String> = BTreeMap::new();
    for p in pods.iter().filter(|p| informer::namespace(p) == ns) {
        let Some(i) = ordinal(set, name_of(p)) else {
            continue;
        };
        match claim(sts, p, selector.matches_object(p)) {
            Claim::Owned => {}
            Claim::Adopt => out
                .adopt
                .push((name_of(p).to_string(), adopt_patch(p, owner_reference(sts)))),
            Claim::Release => {
                out.release.push((name_of(p).to_string(), release_patch(p, uid)));
                continue;
            }
            Claim::Ignore => continue,
        }
        members.insert(i, member(p, min_ready, now));
        uids.insert(i, uid_of(p).to_string());
    }
    let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
    let start = sts["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
    let strategy = &sts["spec"]["updateStrategy"];
    let policy = Policy {
        parallel: sts["spec"]["podManagementPolicy"] == "Parallel",
        on_delete: strategy["type"] == "OnDelete",
        partition: strategy["rollingUpdate"]["partition"].as_i64().unwrap_or(0),
        max_unavailable: crate::deployment::resolve(
            strategy["rollingUpdate"].get("maxUnavailable").unwrap_or(&json!(1)),
            replicas,
            false,
        )
        .max(1),
    };
    let templates = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for action in pod_actions(replicas, start, &members, &update, &policy) {
        out.steps.push(match action {
            Action::Create(i) => {
                // Claims first, then the pod (at the current revision below the partition).
                let missing = templates
                    .iter()
                    .filter(|t| {
                        let name = claim_name(name_of(t), sts, i);
                        !claims
                            .iter()
                            .any(|c| informer::namespace(c) == ns && name_of(c) == name)
                    })
                    .map(|t| claim_for(sts, t, i))
                    .collect();
                let below = !policy.on_delete && i < start + policy.partition && current != update;
                let (template, revision) = match (&current_template, below) {
                    (Some(t), true) => (t, current.as_str()),
                    _ => (&sts["spec"]["template"], update.as_str()),
                };
                Step::Create {
                    ordinal: i,
                    claims: missing,
                    pod: pod_for(sts, template, i, revision),
                }
            }
            Action::Delete(i) => {
                let name = format!("{set}-{i}");
                let uid = uids.get(&i).cloned();
                let condemned = i < start || i >= start + replicas;
                let hand_over =
                    condemned && sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete";
                let claims = if hand_over {
                    templates
                        .iter()
                        .map(|t| {
                            let owner = json!({"metadata": {"ownerReferences": [
                                {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}]}});
                            (claim_name(name_of(t), sts, i), owner)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Step::Delete {
                    ordinal: i,
                    name,
                    uid,
                    claims,
                }
            }
        });
    }

    // Status, as upstream counts it: `replicas`, `readyReplicas` and `availableReplicas` take
    // in pods being deleted (while they are still Ready), `currentReplicas` and
    // `updatedReplicas` do not; the update is complete once every wanted pod is updated and
    // ready and none is left over.
    let all: Vec<&Member> = members.values().collect();
    let count = |live_only: bool, f: &dyn Fn(&Member) -> bool| {
        all.iter().filter(|m| !(live_only && m.terminating) && f(m)).count() as i64
    };
    let ready = count(false, &|m| m.ready);
    let available = count(false, &|m| m.available);
    let updated = count(true, &|m| m.revision == update);
    let at_current = count(true, &|m| m.revision == current);
    let done = updated == replicas && ready == replicas && all.len() as i64 == replicas;
    let current_now = if done { update.clone() } else { current.clone() };
    let current_replicas = if done { updated } else { at_current };
    let status = json!({
        "observedGeneration": sts["metadata"]["generation"],
        "replicas": all.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current_replicas,
        "updatedReplicas": updated,
        "currentRevision": current_now,
        "updateRevision": update,
        "collisionCount": sts["status"]["collisionCount"].as_i64().unwrap_or(0),
    });
    let old = &sts["status"];
    let changed =
        status.as_object().into_iter().flatten().any(|(k, v)| {
            old.get(k).unwrap_or(&Value::Null) != v && !(v == 0 && old.get(k).is_none_or(Value::is_null))
        });
    out.status = changed.then_some(status);
    Some(out)
}

fn encode<T: serde::de::DeserializeOwned>(what: &'static str, v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|source| Error::Encode { what, source })
}

/// Carries out `plan` for `sts`, in order, stopping at the first failure.
pub async fn apply(client: &kube::Client, recorder: &Recorder, sts: &Value, plan: Plan) -> Result<(), Error> {
    let ns = informer::namespace(sts);
    let set = name_of(sts);
    let about = ObjectRef::of("apps/v1", "StatefulSet", sts);
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let post = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    // Made already (a lagging cache) is as good as made now.
    let created = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(Error::from(e)),
        Ok(()) => Ok(true),
    };
    if let Some(body) = plan.revision {
        let cr_api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
        let cr: ControllerRevision = encode("a ControllerRevision", body)?;
        created(cr_api.create(&post, &cr).await.map(|_| ()))?;
    }
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (name, patch) in plan.adopt {
        ignore_not_found(pod_api.patch(&name, &pp, &Patch::Merge(patch)).await)?;
    }
    for (name, patch) in plan.release {
        ignore_not_found(pod_api.patch(&name, &pp, &Patch::Strategic(patch)).await)?;
    }
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for step in plan.steps {
        match step {
            Step::Create { ordinal, claims, pod } => {
                for body in claims {
                    let claim: PersistentVolumeClaim = encode("a PersistentVolumeClaim", body)?;
                    let name = claim.metadata.name.clone().unwrap_or_default();
                    if created(claim_api.create(&post, &claim).await.map(|_| ()))? {
                        let msg = format!("create Claim {name} Pod {set}-{ordinal} in StatefulSet {set} success");
                        recorder
                            .record(&about, EventType::Normal, "SuccessfulCreate", &msg)
                            .await;
                    }
                }
                let pod: Pod = encode("a Pod", pod)?;
                if created(pod_api.create(&post, &pod).await.map(|_| ()))? {
                    let msg = format!("create Pod {set}-{ordinal} in StatefulSet {set} successful");
                    recorder
                        .record(&about, EventType::Normal, "SuccessfulCreate", &msg)
                        .await;
                }
            }
            Step::Delete { name, uid, claims, .. } => {
                for (claim, patch) in claims {
                    ignore_not_found(claim_api.patch(&claim, &pp, &Patch::Merge(patch)).await)?;
                }
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid,
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pod_api.delete(&name, &dp).await {
                    Ok(_) => {
                        let msg = format!("delete Pod {name} in StatefulSet {set} successful");
                        recorder
                            .record(&about, EventType::Normal, "SuccessfulDelete", &msg)
                            .await;
                    }
                    // Gone, or another pod of that name now: nothing of ours to delete.
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    if let Some(status) = plan.status {
        let api: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), ns);
        api.patch_status(set, &pp, &Patch::Merge(json!({"status": status})))
            .await?;
    }
    Ok(())
}

/// Plans and applies one reconcile of `sts`.
pub async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    sts: &Value,
    pods: &[Arc<Value>],
    revisions: &[Arc<Value>],
    claims: &[Arc<Value>],
) -> Result<(), Error> {
    match plan(sts, pods, revisions, claims, jiff::Timestamp::now()) {
        Some(p) => apply(client, recorder, sts, p).await,
        None => Ok(()),
    }
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    informer::controller_uid(obj) == Some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_set_with_nothing_left_to_do_stops_being_looked_at() {
        let mut sts = json!({"metadata": {"generation": 1}, "spec": {"replicas": 3},
                             "status": {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
                                        "availableReplicas": 3, "updatedReplicas": 3,
                                        "currentRevision": "r1", "updateRevision": "r1"}});
        assert!(settled(&sts));
        sts["status"]["updateRevision"] = json!("r2");
        assert!(!settled(&sts), "a rolling update under way");
        sts["status"]["updateRevision"] = json!("r1");
        sts["status"]["readyReplicas"] = json!(2);
        assert!(!settled(&sts));
    }

    fn ready(rev: &str) -> Member {
        Member {
            revision: rev.into(),
            ready: true,
            available: true,
            ..Default::default()
        }
    }

    const ORDERED: Policy = Policy {
        parallel: false,
        on_delete: false,
        partition: 0,
        max_unavailable: 1,
    };

    #[test]
    fn max_unavailable_replaces_several_at_once() {
        let pods: BTreeMap<i64, Member> = (0..3).map(|i| (i, ready("r1"))).collect();
        let two = Policy {
            max_unavailable: 2,
            ..ORDERED
        };
        assert_eq!(
            pod_actions(3, 0, &pods, "r2", &two),
            [Action::Delete(2), Action::Delete(1)]
        );
        let mut one_down = pods.clone();
        one_down.insert(
            2,
            Member {
                ready: false,
                available: false,
                ..ready("r2")
            },
        );
        // With OrderedReady an unready pod halts everything; in Parallel it takes one of
        // the two places.
        assert!(pod_actions(3, 0, &one_down, "r2", &two).is_empty());
        let parallel_two = Policy { parallel: true, ..two };
        assert_eq!(
            pod_actions(3, 0, &one_down, "r2", &parallel_two),
            [Action::Delete(1)],
            "one is already unavailable"
        );
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_in_order() {
        let mut pods = BTreeMap::new();
        assert_eq!(pod_actions(3, 0, &pods, "r1", &ORDERED), [Action::Create(0)]);
        pods.insert(
            0,
            Member {
                ready: false,
                available: false,
                ..ready("r1")
            },
        );
        assert!(
            pod_actions(3, 0, &pods, "r1", &ORDERED).is_empty(),
            "waits for web-0 to be Ready"
        );
        // Ready but not yet for minReadySeconds: still waits (upstream's "running and
        // available").
        pods.insert(
            0,
            Member {
                available: false,
                ..ready("r1")
            },
        );
        assert!(
            pod_actions(3, 0, &pods, "r1", &ORDERED).is_empty(),
            "waits for web-0 to be available"
        );
        pods.insert(0, ready("r1"));
        assert_eq!(pod_actions(3, 0, &pods, "r1", &ORDERED), [Action::Create(1)]);
        let parallel = Policy {
            parallel: true,
            ..ORDERED
        };
        assert_eq!(
            pod_actions(3, 0, &BTreeMap::new(), "r1", &parallel),
            [Action::Create(0), Action::Create(1), Action::Create(2)]
        );
    }

    #[test]
    fn scaling_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let pods: BTreeMap<i64, Member> = (0..5).map(|i| (i, ready("r1"))).collect();
        assert_eq!(pod_actions(2, 0, &pods, "r1", &ORDERED), [Action::Delete(4)]);
        let mut going = pods.clone();
        going.insert(
            4,
            Member {
                terminating: true,
                ..ready("r1")
            },
        );
        assert!(
            pod_actions(2, 0, &going, "r1", &ORDERED).is_empty(),
            "waits for web-4 to go"
        );
        let parallel = Policy {
            parallel: true,
            ..ORDERED
        };
        assert_eq!(
            pod_actions(2, 0, &pods, "r1", &parallel),
            [Action::Delete(4), Action::Delete(3), Action::Delete(2)]
        );
        // Unready pods halt an ordered scale-down, unless the unready pod is the first
        // unhealthy one (upstream's processCondemned).
        let unready = Member {
            ready: false,
            available: false,
            ..ready("r1")
        };
        let all_unready: BTreeMap<i64, Member> = (0..3).map(|i| (i, unready.clone())).collect();
        assert!(pod_actions(0, 0, &all_unready, "r1", &ORDERED).is_empty(), "halted");
        assert_eq!(
            pod_actions(0, 0, &all_unready, "r1", &parallel).len(),
            3,
            "Parallel goes on"
        );
        let mut last_unready = pods.clone();
        last_unready.insert(4, unready);
        assert_eq!(
            pod_actions(2, 0, &last_unready, "r1", &ORDERED),
            [Action::Delete(4)],
            "the first unhealthy pod may go"
        );
    }

    #[test]
    fn rolling_updates_go_down_to_the_partition_and_on_delete_waits() {
        let pods: BTreeMap<i64, Member> = (0..3).map(|i| (i, ready("r1"))).collect();
        assert_eq!(pod_actions(3, 0, &pods, "r2", &ORDERED), [Action::Delete(2)]);
        let partitioned = Policy {
            partition: 2,
            ..ORDERED
        };
        let mut p = pods.clone();
        p.insert(2, ready("r2"));
        assert!(
            pod_actions(3, 0, &p, "r2", &partitioned).is_empty(),
            "ordinals below 2 keep r1"
        );
        let on_delete = Policy {
            on_delete: true,
            ..ORDERED
        };
        assert!(pod_actions(3, 0, &pods, "r2", &on_delete).is_empty());
    }

    #[test]
    fn pods_and_claims_are_named_and_wired() {
        let sts = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                     "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}});
        let template = json!({"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "c"}]}});
        let p = pod_for(&sts, &template, 1, "web-abc");
        assert_eq!(p["metadata"]["name"], "web-1");
        assert_eq!(p["spec"]["hostname"], "web-1");
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(p["metadata"]["labels"][REVISION_LABEL], "web-abc");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "1");
        assert_eq!(
            p["spec"]["volumes"][0],
            json!({"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}})
        );
        let c = claim_for(&sts, &sts["spec"]["volumeClaimTemplates"][0], 1);
        assert_eq!(c["metadata"]["name"], "www-web-1");
        assert_eq!(c["metadata"]["labels"]["app"], "nginx");
        assert_eq!(c["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "webby-1"), None);
    }
}
