//! The Deployment controller: a Deployment's pods come from ReplicaSets, one per template
//! (named `<deployment>-<pod-template-hash>`), and a rollout moves replicas from the old
//! ones to the new one, as upstream's `DeploymentController` does.
//!
//! Each pass over a Deployment: claim ReplicaSets (adopt matching orphans, release the
//! rest), find or create the ReplicaSet of the current template (with the next revision
//! number), take one step of the strategy ([`rolling_step`] or [`recreate_step`]), trim
//! the history to `revisionHistoryLimit`, and write the status with the `Available` and
//! `Progressing` conditions. A paused Deployment is only scaled. Rollback is kubectl's
//! (`rollout undo` writes an old ReplicaSet's template back); the reused ReplicaSet then
//! gets the next revision, as upstream.

use shoal_runtime::claim::{Claim, adopt_patch, claim, release_patch};
use shoal_runtime::controller::ignore_not_found;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use shoal_api::selector::LabelSelector;

use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{Informers, name as name_of, uid as uid_of};
use shoal_runtime::controller::{Error, Keyed, Outcome as Next};

const MANAGER: &str = "deployment-controller";
/// The label that ties a ReplicaSet and its pods to one template.
pub const HASH_LABEL: &str = "pod-template-hash";
/// A ReplicaSet's (and its Deployment's) revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
/// The revisions a ReplicaSet had before it was reused (rollback).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const MAX: &str = "deployment.kubernetes.io/max-replicas";

/// A ReplicaSet as the controller reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct RsView {
    /// Name.
    pub name: String,
    /// Its pod-template-hash label.
    pub hash: String,
    /// Its revision annotation.
    pub revision: i64,
    /// `spec.replicas`.
    pub replicas: i64,
    /// `status.replicas`.
    pub current: i64,
    /// `status.readyReplicas`.
    pub ready: i64,
    /// `status.availableReplicas`.
    pub available: i64,
    /// `metadata.creationTimestamp`, for the oldest-first order.
    pub created: String,
    /// Its `max-replicas` annotation: the Deployment's size plus surge when last scaled.
    pub max: Option<i64>,
    /// Its `desired-replicas` annotation.
    pub desired: Option<i64>,
}

impl RsView {
    /// Reads a ReplicaSet.
    pub fn of(rs: &Value) -> RsView {
        let int = |v: &Value| v.as_i64().unwrap_or(0);
        RsView {
            name: name_of(rs).to_string(),
            hash: rs["metadata"]["labels"][HASH_LABEL]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            revision: rs["metadata"]["annotations"][REVISION]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            replicas: int(&rs["spec"]["replicas"]),
            current: int(&rs["status"]["replicas"]),
            ready: int(&rs["status"]["readyReplicas"]),
            available: int(&rs["status"]["availableReplicas"]),
            created: rs["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            max: rs["metadata"]["annotations"][MAX].as_str().and_then(|v| v.parse().ok()),
            desired: rs["metadata"]["annotations"][DESIRED]
                .as_str()
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// `maxSurge` or `maxUnavailable` against `replicas`: a count, or a percentage rounded up
/// (surge) or down (unavailable).
/// The result is between 0 and `i32::MAX`, whatever the percentage (upstream bounds only
/// maxUnavailable's by 100%).
pub fn resolve(v: &Value, replicas: i64, round_up: bool) -> i64 {
    let value = match v {
        Value::Number(n) => i128::from(n.as_i64().unwrap_or(0)),
        Value::String(s) => {
            let pct = i128::from(s.trim_end_matches('%').parse::<i64>().unwrap_or(0));
            let scaled = pct * i128::from(replicas);
            if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            }
        }
        _ => 0,
    };
    i64::try_from(value.clamp(0, i128::from(i32::MAX))).unwrap_or(0)
}

/// `(maxSurge, maxUnavailable)` of a Deployment (25% each by default; both zero means one
/// may be unavailable, as upstream).
pub fn surge_and_unavailable(deploy: &Value, replicas: i64) -> (i64, i64) {
    let ru = &deploy["spec"]["strategy"]["rollingUpdate"];
    let pct = json!("25%");
    let surge = resolve(
        ru.get("maxSurge").filter(|v| !v.is_null()).unwrap_or(&pct),
        replicas,
        true,
    );
    let unavailable = resolve(
        ru.get("maxUnavailable").filter(|v| !v.is_null()).unwrap_or(&pct),
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// One step of a RollingUpdate, as upstream takes it: scale the new ReplicaSet up within
/// `replicas + maxSurge`; or else scale old ones down, unhealthy replicas first, keeping
/// `replicas - maxUnavailable` available. Returns (ReplicaSet, new `spec.replicas`).
///
/// The room to scale up counts, per ReplicaSet, the larger of its size and the pods it
/// still has: an old ReplicaSet just scaled down whose pod is not gone yet still counts it,
/// so the total never passes `replicas + maxSurge` pods (upstream counts sizes alone, and
/// its total pods can pass the bound for as long as the old pod takes to go).
pub fn rolling_step(replicas: i64, surge: i64, unavailable: i64, new: &RsView, olds: &[RsView]) -> Vec<(String, i64)> {
    let total: i64 = olds.iter().map(|r| r.replicas).sum::<i64>() + new.replicas;
    if new.replicas > replicas {
        return vec![(new.name.clone(), replicas)];
    }
    if new.replicas < replicas {
        let pods: i64 = olds.iter().chain([new]).map(|r| r.replicas.max(r.current)).sum();
        let room = replicas + surge - pods;
        if room > 0 {
            return vec![(new.name.clone(), new.replicas + room.min(replicas - new.replicas))];
        }
    }
    let old_count: i64 = olds.iter().map(|r| r.replicas).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let min_available = replicas - unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_down = total - min_available - new_unavailable;
    if max_down <= 0 {
        return Vec::new();
    }
    let mut olds: Vec<RsView> = olds.to_vec();
    olds.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    let mut out = Vec::new();
    // Unhealthy replicas go first: they take nothing from availability.
    let mut cleaned = 0;
    for rs in olds.iter_mut() {
        if cleaned >= max_down {
            break;
        }
        let unhealthy = (rs.replicas - rs.available).max(0);
        let down = unhealthy.min(max_down - cleaned);
        if down > 0 {
            rs.replicas -= down;
            cleaned += down;
            out.push((rs.name.clone(), rs.replicas));
        }
    }
    if !out.is_empty() {
        return out;
    }
    let available: i64 = olds.iter().map(|r| r.available).sum::<i64>() + new.available;
    if available <= min_available {
        return Vec::new();
    }
    let mut left = available - min_available;
    for rs in &olds {
        if left <= 0 {
            break;
        }
        let down = rs.replicas.min(left);
        if down > 0 {
            out.push((rs.name.clone(), rs.replicas - down));
            left -= down;
        }
    }
    out
}

/// Proportional scaling (upstream's `scale`): when the Deployment's size changed while
/// several ReplicaSets have pods, the difference is spread over them in proportion to their
/// sizes (the leftover goes to the largest). `None` when this is not a scaling event.
pub fn proportional(replicas: i64, surge: i64, all: &[RsView]) -> Option<Vec<(String, i64)>> {
    let active: Vec<&RsView> = all.iter().filter(|r| r.replicas > 0).collect();
    if active.len() < 2 || active.iter().all(|r| r.desired == Some(replicas)) {
        return None;
    }
    let allowed = replicas + surge;
    let total: i64 = all.iter().map(|r| r.replicas).sum();
    let to_add = allowed - total;
    if to_add == 0 {
        return None;
    }
    let mut order = active.clone();
    if to_add > 0 {
        order.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(b.created.cmp(&a.created)));
    } else {
        order.sort_by(|a, b| a.replicas.cmp(&b.replicas).then(a.created.cmp(&b.created)));
    }
    let mut added = 0;
    let mut sizes: Vec<(String, i64)> = Vec::new();
    for rs in &order {
        // The annotation is client-writable: any i64 may be there.
        let annotated = i128::from(rs.max.unwrap_or(allowed).clamp(1, i64::from(i32::MAX)));
        // The share this ReplicaSet's size gives it, rounded to the nearest pod.
        let share = (i128::from(rs.replicas) * i128::from(allowed) * 2 + annotated) / (annotated * 2);
        let target = i64::try_from(share).unwrap_or(i64::MAX);
        let fraction = target - rs.replicas;
        let left = to_add - added;
        let take = if left > 0 {
            fraction.min(left).max(0)
        } else {
            fraction.max(left).min(0)
        };
        added += take;
        sizes.push((rs.name.clone(), rs.replicas + take));
    }
    // The leftover goes to the largest (the first when growing, the last when shrinking).
    if added != to_add {
        let i = if to_add > 0 { 0 } else { sizes.len() - 1 };
        sizes[i].1 = (sizes[i].1 + to_add - added).max(0);
    }
    Some(
        sizes
            .into_iter()
            .filter(|(n, v)| all.iter().any(|r| &r.name == n && r.replicas != *v))
            .collect(),
    )
}

/// One step of Recreate: old ReplicaSets to zero; once none of their pods is left, the new
/// one to `replicas`. `old_pods` counts the old ReplicaSets' pods still there.
pub fn recreate_step(replicas: i64, new: Option<&RsView>, olds: &[RsView], old_pods: i64) -> Vec<(String, i64)> {
    let down: Vec<(String, i64)> = olds
        .iter()
        .filter(|r| r.replicas > 0)
        .map(|r| (r.name.clone(), 0))
        .collect();
    if !down.is_empty() || old_pods > 0 {
        return down;
    }
    match new {
        Some(n) if n.replicas != replicas => vec![(n.name.clone(), replicas)],
        _ => Vec::new(),
    }
}

/// Old ReplicaSets to delete beyond `limit`: scaled to zero with no pods, lowest revision
/// first.
pub fn history_to_trim(olds: &[RsView], limit: usize) -> Vec<String> {
    let mut idle: Vec<&RsView> = olds.iter().filter(|r| r.replicas == 0 && r.current == 0).collect();
    if idle.len() <= limit {
        return Vec::new();
    }
    idle.sort_by_key(|r| r.revision);
    idle[..idle.len() - limit].iter().map(|r| r.name.clone()).collect()
}

/// The ReplicaSet of `deploy`'s current template.
pub fn new_replicaset(deploy: &Value, hash: &str, revision: i64, replicas: i64) -> Value {
    let name = format!("{}-{hash}", name_of(deploy));
    let mut template = deploy["spec"]["template"].clone();
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = deploy["spec"]["selector"].clone();
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let spec_replicas = deploy["spec"]["replicas"].as_i64().unwrap_or(1);
    let (surge, _) = surge_and_unavailable(deploy, spec_replicas);
    let mut annotations = copied_annotations(deploy);
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    annotations.insert(DESIRED.into(), json!(spec_replicas.to_string()));
    annotations.insert(MAX.into(), json!((spec_replicas + surge).to_string()));
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": deploy["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [owner_reference(deploy)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": deploy["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            "selector": selector,
            "template": template,
        },
    })
}

/// The Deployment's annotations a ReplicaSet carries (`kubernetes.io/change-cause` among
/// them), without kubectl's last-applied configuration and the controller's own.
fn copied_annotations(deploy: &Value) -> serde_json::Map<String, Value> {
    let mut out = deploy["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    out.retain(|k, _| {
        k != "kubectl.kubernetes.io/last-applied-configuration"
            && k != REVISION
            && k != DESIRED
            && k != MAX
            && k != REVISION_HISTORY
    });
    out
}

fn owner_reference(deploy: &Value) -> Value {
    crate::informer::controller_ref("apps/v1", "Deployment", deploy)
}

/// Runs the controller until the process ends: a keyed queue of Deployments, woken by
/// their ReplicaSets and pods.
pub async fn run(client: kube::Client, informers: Informers) {
    let recorder = Recorder::new(client.clone(), MANAGER);
    let reconcile = |ctx: Arc<(kube::Client, Recorder)>, informers: Informers, d: Option<Arc<Value>>| async move {
        let Some(d) = d else {
            return Ok(Next::Done);
        };
        let (client, recorder) = &*ctx;
        let replicasets = informers.of("apps", "replicasets");
        let pods = informers.of("", "pods");
        sync(client, recorder, &d, &replicasets, &pods, jiff::Timestamp::now()).await?;
        // Progress deadlines and minReadySeconds change nothing in the caches: a Deployment
        // on its way is looked at again; a settled one waits for a change.
        Ok(if settled(&d) {
            Next::Done
        } else {
            Next::RequeueAfter(RESYNC)
        })
    };
    Keyed::new("deployment", "apps", "deployments")
        .owns("apps", "replicasets", "Deployment")
        .watches("", "pods", |informers, change| {
            // A pod wakes the Deployment that owns its ReplicaSet.
            let mut keys = Vec::new();
            for p in change.objects() {
                let ns = crate::informer::namespace(p);
                let Some(rs) = crate::informer::controller_of_kind(p, "ReplicaSet") else {
                    continue;
                };
                if let Some(rs) = informers.get("apps", "replicasets", &format!("{ns}/{rs}"))
                    && let Some(d) = crate::informer::controller_of_kind(&rs, "Deployment")
                {
                    keys.push(format!("{ns}/{d}"));
                }
            }
            keys
        })
        .run_cached(informers, (client, recorder), reconcile)
        .await
}

/// True when the Deployment's status, as the cache shows it, says it has nothing left to
/// do: its generation observed, every replica updated, ready and available, none extra.
fn settled(d: &Value) -> bool {
    crate::replicas_settled(
        d,
        &["replicas", "updatedReplicas", "readyReplicas", "availableReplicas"],
    ) && d["status"]["unavailableReplicas"].as_i64().unwrap_or(0) == 0
}

/// How soon a Deployment is looked at again when nothing changes (its progress deadline,
/// pods becoming available after minReadySeconds).
const RESYNC: Duration = Duration::from_secs(5);

/// A ReplicaSet resized by a step of the strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    /// The ReplicaSet.
    pub name: String,
    /// Its `spec.replicas` before.
    pub from: i64,
    /// And after.
    pub to: i64,
}

/// What one reconcile of a Deployment does, decided from the caches and the time it is
/// given (never the API, never the clock). [`apply`] carries it out in this order and stops
/// at the first failure: claims, the new ReplicaSet, the rollback's revision, the steps,
/// the history, the Deployment's revision, its status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// ReplicaSets that stop matching: their controller reference goes (name, patch).
    pub release: Vec<(String, Value)>,
    /// Matching orphans taken over (name, guarded patch).
    pub adopt: Vec<(String, Value)>,
    /// The ReplicaSet of the current template, to create (its body).
    pub create: Option<Value>,
    /// An old ReplicaSet brought back by a rollback: its new revision annotations.
    pub revive: Option<(String, Value)>,
    /// One step of the strategy.
    pub scale: Vec<Scale>,
    /// The Deployment's size and surge, written on every ReplicaSet it scales.
    pub sizes: (i64, i64),
    /// Old ReplicaSets beyond `revisionHistoryLimit` (name, uid).
    pub trim: Vec<(String, String)>,
    /// The Deployment's revision annotation, when it changes.
    pub revision: Option<i64>,
    /// The status, when it changes.
    pub status: Option<Value>,
    /// The deadline just passed: the message of the warning event.
    pub deadline_exceeded: Option<String>,
}

/// Decides one reconcile of `d` (see [`Plan`]); `None` when there is nothing to do at all
/// (being deleted, or no usable selector).
pub fn plan(d: &Value, replicasets: &[Arc<Value>], pods: &[Arc<Value>], now: jiff::Timestamp) -> Option<Plan> {
    if d["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return None;
    }
    let selector = LabelSelector::from_api(&d["spec"]["selector"]).ok()?;
    if selector.is_empty() {
        return None;
    }
    let ns = d["metadata"]["namespace"].as_str().unwrap_or("default");
    let uid = uid_of(d);
    let mut out = Plan::default();
    // Claims: an adopted ReplicaSet counts as owned from now on.
    let mut owned: Vec<&Value> = Vec::new();
    for rs in replicasets.iter().filter(|r| crate::informer::namespace(r) == ns) {
        match claim(d, rs, selector.matches_object(rs)) {
            Claim::Owned => owned.push(rs),
            Claim::Release => out.release.push((name_of(rs).to_string(), release_patch(rs, uid))),
            Claim::Adopt => {
                out.adopt
                    .push((name_of(rs).to_string(), adopt_patch(rs, owner_reference(d))));
                owned.push(rs);
            }
            Claim::Ignore => {}
        }
    }
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let hash = crate::daemonset::history::template_hash(d);
    let views: Vec<RsView> = owned.iter().map(|r| RsView::of(r)).collect();
    let max_revision = views.iter().map(|r| r.revision).max().unwrap_or(0);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    let paused = d["spec"]["paused"] == true;
    let mut new = views.iter().find(|r| r.hash == hash).cloned();
    let olds: Vec<RsView> = views.iter().filter(|r| r.hash != hash).cloned().collect();
    let (surge, unavailable) = surge_and_unavailable(d, replicas);
    out.sizes = (replicas, surge);
    let mut progressing: Option<(&str, String)> = None;

    // The new ReplicaSet: created with the next revision (under Recreate, once the old
    // pods are gone); an old one brought back (rollback) takes the next revision too.
    let old_pods = count_pods_of(pods, ns, &olds);
    let may_create = !paused && (!recreate || (olds.iter().all(|r| r.replicas == 0) && old_pods == 0));
    match &new {
        None if may_create => {
            let first = if recreate || olds.is_empty() { replicas } else { 0 };
            let body = new_replicaset(d, &hash, max_revision.saturating_add(1), first);
            let view = RsView::of(&body);
            progressing = Some((
                "NewReplicaSetCreated",
                format!("Created new replica set \"{}\"", view.name),
            ));
            new = Some(view);
            out.create = Some(body);
        }
        Some(n) if n.revision <= max_revision && olds.iter().any(|o| o.revision == max_revision) && !paused => {
            // The numbers it had before are kept in `revision-history`.
            let before = owned
                .iter()
                .find(|r| name_of(r) == n.name)
                .and_then(|r| r["metadata"]["annotations"][REVISION_HISTORY].as_str());
            let history = match before {
                Some(h) if !h.is_empty() => format!("{h},{}", n.revision),
                _ => n.revision.to_string(),
            };
            let patch = json!({"metadata": {"annotations": {REVISION: max_revision.saturating_add(1).to_string(),
                                                            REVISION_HISTORY: history}}});
            out.revive = Some((n.name.clone(), patch));
        }
        _ => {}
    }

    // One step of the strategy (a paused Deployment is only scaled).
    let mut everyone: Vec<RsView> = olds.clone();
    everyone.extend(new.iter().cloned());
    let scaled = if recreate {
        None
    } else {
        proportional(replicas, surge, &everyone).filter(|s| !s.is_empty())
    };
    let steps = match (&new, paused, recreate) {
        _ if scaled.is_some() => scaled.unwrap_or_default(),
        (Some(n), true, _) if olds.iter().all(|r| r.replicas == 0) && n.replicas != replicas => {
            vec![(n.name.clone(), replicas)]
        }
        (_, true, _) => Vec::new(),
        (n, false, true) => recreate_step(replicas, n.as_ref(), &olds, old_pods),
        (Some(n), false, false) => rolling_step(replicas, surge, unavailable, n, &olds),
        (None, false, false) => Vec::new(),
    };
    out.scale = steps
        .into_iter()
        .map(|(name, to)| {
            let from = everyone.iter().find(|r| r.name == name).map_or(0, |r| r.replicas);
            Scale { name, from, to }
        })
        .collect();

    // History beyond revisionHistoryLimit goes.
    let limit = d["spec"]["revisionHistoryLimit"].as_u64().unwrap_or(10) as usize;
    out.trim = history_to_trim(&olds, limit)
        .into_iter()
        .map(|name| {
            let uid = owned
                .iter()
                .find(|r| name_of(r) == name)
                .map(|r| uid_of(r).to_string())
                .unwrap_or_default();
            (name, uid)
        })
        .collect();

    // Status.
    let all: Vec<&RsView> = olds.iter().chain(new.iter()).collect();
    let sum = |f: fn(&RsView) -> i64| all.iter().map(|r| f(r)).sum::<i64>();
    let available = sum(|r| r.available);
    let spec_total = sum(|r| r.replicas);
    let updated = new.as_ref().map_or(0, |n| n.current);
    let mut status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": sum(|r| r.current),
        "updatedReplicas": updated,
        "readyReplicas": sum(|r| r.ready),
        "availableReplicas": available,
        "unavailableReplicas": (spec_total - available).max(0),
    });
    if let Some(c) = d["status"].get("collisionCount").filter(|c| !c.is_null()) {
        status["collisionCount"] = c.clone();
    }
    let now = shoal_api::time::rfc3339(now);
    let old_conditions = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let min_ok = available >= replicas - unavailable;
    let available_cond = if min_ok {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let new_name = new.as_ref().map(|n| n.name.clone()).unwrap_or_default();
    let complete = new
        .as_ref()
        .is_some_and(|n| n.replicas == replicas && n.current == replicas && n.available == replicas)
        && olds.iter().all(|o| o.current == 0);
    let (p_status, p_reason, p_message) = if paused {
        ("Unknown", "DeploymentPaused", "Deployment is paused".to_string())
    } else if let Some((reason, message)) = progressing.take() {
        ("True", reason, message)
    } else if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        )
    } else if exceeded(d, &old_conditions, &now) {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{new_name}\" has timed out progressing."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
        )
    };
    let condition = |t: &str, st: &str, reason: &str, message: &str| {
        let old = old_conditions.iter().find(|c| c["type"] == t);
        let transition = old
            .filter(|c| c["status"] == st)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(&now)
            .to_string();
        let unchanged = old.is_some_and(|c| c["status"] == st && c["reason"] == reason && c["message"] == message);
        let updated = if unchanged {
            old.and_then(|c| c["lastUpdateTime"].as_str())
                .unwrap_or(&now)
                .to_string()
        } else {
            now.clone()
        };
        json!({"type": t, "status": st, "reason": reason, "message": message,
               "lastUpdateTime": updated, "lastTransitionTime": transition})
    };
    let mut conditions = vec![
        condition("Available", available_cond.0, available_cond.1, available_cond.2),
        condition("Progressing", p_status, p_reason, &p_message),
    ];
    // The new ReplicaSet's ReplicaFailure (a refused pod: quota, admission, rights) is the
    // Deployment's too, as upstream's; it goes when the ReplicaSet's goes.
    let failure = owned
        .iter()
        .filter(|r| !new_name.is_empty() && name_of(r) == new_name)
        .flat_map(|r| r["status"]["conditions"].as_array().into_iter().flatten())
        .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True");
    if let Some(f) = failure {
        conditions.push(condition(
            "ReplicaFailure",
            "True",
            f["reason"].as_str().unwrap_or_default(),
            f["message"].as_str().unwrap_or_default(),
        ));
    }
    let condition_count = conditions.len();
    status["conditions"] = Value::Array(conditions);
    if p_reason == "ProgressDeadlineExceeded"
        && !old_conditions.iter().any(|c| c["reason"] == "ProgressDeadlineExceeded")
    {
        out.deadline_exceeded = Some(p_message.clone());
    }
    // The Deployment carries its newest revision.
    let revision = new
        .as_ref()
        .map(|n| n.revision.max(max_revision))
        .unwrap_or(max_revision);
    if revision > 0 && d["metadata"]["annotations"][REVISION].as_str() != Some(revision.to_string().as_str()) {
        out.revision = Some(revision);
    }
    let changed = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .any(|k| d["status"][*k].as_i64().unwrap_or(0) != status[*k].as_i64().unwrap_or(0))
        || old_conditions.len() != condition_count
        || old_conditions
            .iter()
            .zip(status["conditions"].as_array().into_iter().flatten())
            .any(|(a, b)| a["status"] != b["status"] || a["reason"] != b["reason"] || a["message"] != b["message"]);
    if changed {
        out.status = Some(status);
    }
    Some(out)
}

/// Carries out `plan` for `d`, in order, stopping at the first failure (the next
/// reconcile plans again from what the caches then show).
pub async fn apply(client: &kube::Client, recorder: &Recorder, d: &Value, plan: Plan) -> Result<(), Error> {
    let ns = d["metadata"]["namespace"].as_str().unwrap_or("default");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let about = ObjectRef::of("apps/v1", "Deployment", d);
    for (name, patch) in plan.release {
        ignore_not_found(rs_api.patch(&name, &pp, &Patch::Strategic(patch)).await)?;
    }
    for (name, patch) in plan.adopt {
        // Gone meanwhile: nothing to adopt (the steps below then miss it, and the next
        // reconcile plans without it).
        ignore_not_found(rs_api.patch(&name, &pp, &Patch::Merge(patch)).await)?;
    }
    if let Some(body) = plan.create {
        let rs: ReplicaSet = serde_json::from_value(body).map_err(|source| Error::Encode {
            what: "a ReplicaSet",
            source,
        })?;
        let first = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        match rs_api.create(&pp, &rs).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                recorder
                    .record(
                        &about,
                        EventType::Normal,
                        "ScalingReplicaSet",
                        &format!("Scaled up replica set {name} from 0 to {first}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Ours already, and the cache has not shown it yet: not a collision.
                let name = rs.metadata.name.as_deref().unwrap_or_default();
                let existing = rs_api.get_opt(name).await?;
                let hash = rs.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
                let ours = existing.is_some_and(|x| {
                    x.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.controller == Some(true) && r.uid == uid_of(d))
                        && x.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == hash
                });
                if ours {
                    return Ok(());
                }
                // A ReplicaSet of that name that is not ours: upstream bumps collisionCount
                // so the next hash differs; nothing else is done with this plan.
                let count =
                    (d["status"]["collisionCount"].as_i64().unwrap_or(0).saturating_add(1)).min(i64::from(i32::MAX));
                patch_deployment_status(client, d, json!({"collisionCount": count})).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((name, patch)) = plan.revive {
        rs_api.patch(&name, &pp, &Patch::Merge(patch)).await?;
    }
    let (replicas, surge) = plan.sizes;
    for s in plan.scale {
        let annotations = json!({DESIRED: replicas.to_string(), MAX: (replicas + surge).to_string()});
        let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": s.to}});
        rs_api.patch(&s.name, &pp, &Patch::Merge(patch)).await?;
        let verb = if s.to > s.from { "up" } else { "down" };
        recorder
            .record(
                &about,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled {verb} replica set {} from {} to {}", s.name, s.from, s.to),
            )
            .await;
    }
    for (name, uid) in plan.trim {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid).filter(|u| !u.is_empty()),
                resource_version: None,
            }),
            ..Default::default()
        };
        ignore_not_found(rs_api.delete(&name, &dp).await)?;
    }
    if let Some(message) = &plan.deadline_exceeded {
        recorder
            .record(&about, EventType::Warning, "ProgressDeadlineExceeded", message)
            .await;
    }
    if let Some(revision) = plan.revision {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), ns);
        let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
        api.patch(name_of(d), &pp, &Patch::Merge(patch)).await?;
    }
    if let Some(status) = plan.status {
        patch_deployment_status(client, d, status).await?;
    }
    Ok(())
}

/// Plans and applies one reconcile of `d` at `now`.
pub async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    d: &Value,
    replicasets: &[Arc<Value>],
    pods: &[Arc<Value>],
    now: jiff::Timestamp,
) -> Result<(), Error> {
    match plan(d, replicasets, pods, now) {
        Some(p) => apply(client, recorder, d, p).await,
        None => Ok(()),
    }
}

/// Whether the rollout has made no progress for `progressDeadlineSeconds` (600 by default),
/// judged from the Progressing condition's last update.
fn exceeded(d: &Value, conditions: &[Value], now: &str) -> bool {
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    let Some(p) = conditions.iter().find(|c| c["type"] == "Progressing") else {
        return false;
    };
    if p["reason"] == "ProgressDeadlineExceeded" {
        return true;
    }
    let (Some(last), Ok(now)) = (
        p["lastUpdateTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        now.parse::<jiff::Timestamp>(),
    ) else {
        return false;
    };
    now.duration_since(last).as_secs() > deadline
}

fn count_pods_of(pods: &[Arc<Value>], ns: &str, olds: &[RsView]) -> i64 {
    let hashes: HashSet<&str> = olds.iter().map(|r| r.hash.as_str()).collect();
    let names: HashSet<&str> = olds.iter().map(|r| r.name.as_str()).collect();
    pods.iter()
        .filter(|p| crate::informer::namespace(p) == ns)
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["kind"] == "ReplicaSet" && r["name"].as_str().is_some_and(|n| names.contains(n)))
                && p["metadata"]["labels"][HASH_LABEL]
                    .as_str()
                    .is_some_and(|h| hashes.contains(h))
        })
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .count() as i64
}

async fn patch_deployment_status(client: &kube::Client, d: &Value, status: Value) -> Result<(), kube::Error> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), d["metadata"]["namespace"].as_str().unwrap_or("default"));
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.patch_status(name_of(d), &pp, &Patch::Merge(json!({"status": status})))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deployment_with_nothing_left_to_do_stops_being_looked_at() {
        let mut d = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
                           "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                                      "readyReplicas": 2, "availableReplicas": 2}});
        assert!(settled(&d));
        d["status"]["availableReplicas"] = json!(1);
        assert!(!settled(&d), "a replica not yet available (minReadySeconds)");
        d["status"]["availableReplicas"] = json!(2);
        d["metadata"]["generation"] = json!(4);
        assert!(!settled(&d), "a new template not yet observed");
    }

    fn rs(name: &str, replicas: i64, available: i64, created: &str) -> RsView {
        RsView {
            name: name.into(),
            hash: name.into(),
            revision: 1,
            replicas,
            current: replicas,
            ready: available,
            available,
            created: created.into(),
            max: None,
            desired: None,
        }
    }

    #[test]
    fn the_new_replicaset_waits_for_an_old_pod_still_there() {
        // 4 replicas, maxSurge 1, maxUnavailable 0: the old set was just scaled 3 -> 2 but
        // still has its third pod; the new one (2) may not grow until that pod is gone.
        let new = rs("new", 2, 2, "2026-01-02");
        let mut old = rs("old", 2, 2, "2026-01-01");
        old.current = 3;
        assert!(rolling_step(4, 1, 0, &new, std::slice::from_ref(&old)).is_empty());
        old.current = 2;
        assert_eq!(rolling_step(4, 1, 0, &new, &[old]), [("new".to_string(), 3)]);
    }

    #[test]
    fn percentages_resolve_as_upstream() {
        assert_eq!(resolve(&json!("25%"), 4, true), 1);
        assert_eq!(resolve(&json!("25%"), 4, false), 1);
        assert_eq!(resolve(&json!("25%"), 3, true), 1);
        assert_eq!(resolve(&json!("25%"), 3, false), 0);
        assert_eq!(resolve(&json!(2), 10, false), 2);
        // Any percentage the API accepts resolves without overflow, within int32.
        assert_eq!(resolve(&json!("1000000000000000000%"), 10, true), i64::from(i32::MAX));
        assert_eq!(
            resolve(&json!("9223372036854775807%"), i64::from(i32::MAX), false),
            i64::from(i32::MAX)
        );
        let d = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        assert_eq!(surge_and_unavailable(&d, 4), (0, 1));
        assert_eq!(surge_and_unavailable(&json!({"spec": {}}), 4), (1, 1));
    }

    /// Seed 003's echo-deploy: 4 replicas, maxSurge 1, maxUnavailable 0. Simulated to the end:
    /// never more than 5 pods, never fewer than 4 available.
    #[test]
    fn a_rolling_update_with_surge_1_and_unavailable_0_keeps_4_available() {
        let mut new = rs("new", 0, 0, "t2");
        let mut old = vec![rs("old", 4, 4, "t1")];
        for _ in 0..20 {
            let steps = rolling_step(4, 1, 0, &new, &old);
            if steps.is_empty() {
                break;
            }
            for (name, to) in steps {
                if name == "new" {
                    new.replicas = to;
                } else {
                    old[0].replicas = to;
                }
            }
            assert!(new.replicas + old[0].replicas <= 5, "surge");
            // Pods come up available; scaled-down ones go at once.
            (new.current, new.available) = (new.replicas, new.replicas);
            (old[0].current, old[0].available) = (old[0].replicas, old[0].replicas);
            assert!(new.available + old[0].available >= 4, "availability");
        }
        assert_eq!((new.replicas, old[0].replicas), (4, 0));
    }

    #[test]
    fn unavailable_new_pods_hold_the_old_ones() {
        // The new ReplicaSet surged to 1 but its pod is not available: nothing more moves.
        let new = rs("new", 1, 0, "t2");
        let old = vec![rs("old", 4, 4, "t1")];
        assert!(rolling_step(4, 1, 0, &new, &old).is_empty());
        // Unhealthy old replicas are removed first, within what availability allows: 5 pods,
        // 3 must stay available and the new one is not, so one goes.
        let old = vec![rs("old", 4, 2, "t1")];
        assert_eq!(
            rolling_step(4, 1, 1, &rs("new", 1, 0, "t2"), &old),
            [("old".to_string(), 3)]
        );
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 replicas, surge 3: old 8, new 5 (annotated for 13); scaled to 20 (allowed 23).
        let mut old = rs("old", 8, 8, "t1");
        let mut new = rs("new", 5, 0, "t2");
        for r in [&mut old, &mut new] {
            r.max = Some(13);
            r.desired = Some(10);
        }
        let steps = proportional(20, 3, &[old.clone(), new.clone()]).expect("a scaling event");
        let total: i64 = steps.iter().map(|s| s.1).sum();
        assert_eq!(total, 23, "{steps:?}");
        assert!(
            steps.contains(&("old".to_string(), 14)) && steps.contains(&("new".to_string(), 9)),
            "{steps:?}"
        );
        // Not a scaling event once the annotations say the new size.
        old.desired = Some(20);
        new.desired = Some(20);
        assert_eq!(proportional(20, 3, &[old.clone(), new.clone()]), None);
        // The largest sizes the API allows, and hostile annotations, do not overflow.
        let big = i64::from(i32::MAX);
        old.replicas = big;
        new.replicas = 10;
        old.max = Some(i64::MAX);
        new.max = Some(-7);
        old.desired = Some(1);
        let steps = proportional(big, big, &[old, new]).expect("a scaling event");
        assert!(steps.iter().all(|(_, n)| *n >= 0), "{steps:?}");
    }

    #[test]
    fn recreate_empties_the_old_before_the_new() {
        let olds = vec![rs("old", 3, 3, "t1")];
        assert_eq!(recreate_step(3, None, &olds, 3), [("old".to_string(), 0)]);
        let zero = vec![rs("old", 0, 0, "t1")];
        assert!(
            recreate_step(3, Some(&rs("new", 0, 0, "t2")), &zero, 2).is_empty(),
            "pods still going"
        );
        assert_eq!(
            recreate_step(3, Some(&rs("new", 0, 0, "t2")), &zero, 0),
            [("new".to_string(), 3)]
        );
    }

    #[test]
    fn history_keeps_the_newest_idle_replicasets() {
        let mut olds: Vec<RsView> = (1..=4)
            .map(|i| {
                let mut r = rs(&format!("r{i}"), 0, 0, "t");
                r.revision = i;
                r
            })
            .collect();
        olds[3].replicas = 1;
        assert_eq!(history_to_trim(&olds, 1), ["r1", "r2"]);
        assert!(history_to_trim(&olds, 10).is_empty());
    }

    #[test]
    fn the_new_replicaset_carries_hash_revision_and_owner() {
        let d = json!({"metadata": {"name": "echo-deploy", "namespace": "default", "uid": "u",
                                    "annotations": {"kubernetes.io/change-cause": "v2",
                                                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "echo"}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {"containers": [{"name": "echo", "image": "v2"}]}}}});
        let r = new_replicaset(&d, "abc", 3, 0);
        assert_eq!(r["metadata"]["name"], "echo-deploy-abc");
        assert_eq!(r["metadata"]["labels"][HASH_LABEL], "abc");
        assert_eq!(
            r["spec"]["selector"]["matchLabels"],
            json!({"app": "echo", HASH_LABEL: "abc"})
        );
        assert_eq!(r["spec"]["template"]["metadata"]["labels"][HASH_LABEL], "abc");
        assert_eq!(r["metadata"]["annotations"][REVISION], "3");
        assert_eq!(r["metadata"]["annotations"][MAX], "5");
        assert_eq!(r["metadata"]["annotations"]["kubernetes.io/change-cause"], "v2");
        assert!(
            r["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        assert_eq!(r["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    }
}
