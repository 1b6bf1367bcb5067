//! The pure core of the DaemonSet controller: from a snapshot (the DaemonSet, the nodes, the
//! pods it owns, the current revision hash and the time) to the pods to create and delete
//! and the status to report. No I/O, no clock: the time is an argument.

use std::borrow::Cow;

use serde_json::Value;

pub use super::facts::*;
use super::placement::{Placement, placement, template_spec};
use super::rollout::NodePods;

/// The result of planning one DaemonSet.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Creations and deletions, creations first, by node name.
    pub actions: Vec<Action>,
    /// `desiredNumberScheduled`, `currentNumberScheduled`, ... (no conditions, no
    /// observedGeneration: the caller adds those).
    pub status: Status,
}

/// Upstream's order of pods on one node: bound before unbound, then older first, then by name.
fn pod_order(a: &&PodFacts, b: &&PodFacts) -> std::cmp::Ordering {
    b.bound
        .cmp(&a.bound)
        .then_with(|| a.created.cmp(&b.created))
        .then_with(|| a.name.cmp(&b.name))
}

/// The node a placed pod targets.
fn node_of(p: &PodFacts) -> &str {
    p.node.as_deref().unwrap_or_default()
}

/// Plans one DaemonSet from its objects; see [`plan_views`].
pub fn plan(
    ds: &Value,
    nodes: &[&Value],
    pods: &[&Value],
    hash: &str,
    pending: &dyn Fn(&str) -> bool,
    now: jiff::Timestamp,
) -> Plan {
    let spec = template_spec(ds);
    let placements: Vec<Placement> = nodes.iter().map(|n| placement(&spec, n)).collect();
    let views: Vec<NodeView> = nodes
        .iter()
        .zip(&placements)
        .map(|(n, placement)| NodeView {
            name: n["metadata"]["name"].as_str().unwrap_or_default(),
            object: n,
            placement,
        })
        .collect();
    let facts: Vec<PodFacts> = pods.iter().map(|p| PodFacts::of(p)).collect();
    let refs: Vec<&PodFacts> = facts.iter().collect();
    plan_views(ds, &views, &refs, hash, pending, &|_| false, now)
}

/// Plans one DaemonSet. `nodes` are every node, with the DaemonSet's placement on it; `pods`
/// are the pods it owns (after adoption and release); `pending` are nodes with a creation in
/// flight the pod cache does not show yet (expectations), which count as having a pod.
#[allow(clippy::too_many_arguments)]
pub fn plan_views(
    ds: &Value,
    nodes: &[NodeView],
    pods: &[&PodFacts],
    hash: &str,
    pending: &dyn Fn(&str) -> bool,
    in_place: &dyn Fn(&PodFacts) -> bool,
    now: jiff::Timestamp,
) -> Plan {
    let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let generation = ds["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION].as_str();
    // Pods by node: one sort, after which each node's pods are one run of the list, in
    // upstream's order. Finished pods already being deleted no longer block a replacement.
    let mut placed: Vec<&PodFacts> = pods
        .iter()
        .copied()
        .filter(|p| p.node.is_some() && !(p.terminating && p.finished()))
        .collect();
    placed.sort_unstable_by(|a, b| a.node.cmp(&b.node).then_with(|| pod_order(a, b)));
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    let mut status = Status::default();
    let delete = |p: &PodFacts, node: &str, reason: DeleteReason| Action::Delete {
        pod: p.name.clone(),
        uid: p.uid.clone(),
        node: node.to_string(),
        reason,
    };
    let rolling = ds["spec"]["updateStrategy"]["type"].as_str() != Some("OnDelete");
    let surge = rolling && super::rollout::resolve(&ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"], 1) > 0;
    let mut run_nodes: Vec<NodePods> = Vec::new();
    let mut by_name: Vec<&NodeView> = nodes.iter().filter(|n| !n.name.is_empty()).collect();
    by_name.sort_unstable_by(|a, b| a.name.cmp(b.name));
    by_name.dedup_by(|a, b| a.name == b.name);
    // Pods whose node is not among the nodes.
    let mut left: Vec<&PodFacts> = Vec::new();
    let mut at = 0;
    for view in by_name {
        let (name, node) = (view.name, view.object);
        while at < placed.len() && node_of(placed[at]) < name {
            left.push(placed[at]);
            at += 1;
        }
        let first = at;
        while at < placed.len() && node_of(placed[at]) == name {
            at += 1;
        }
        let here = &placed[first..at];
        let Placement {
            should_run,
            should_continue_running,
            ..
        } = *view.placement;
        let pending_here = pending(name);
        let has_any = !here.is_empty() || pending_here;
        if should_run {
            // The rollout sees the live pods; most nodes have only those, and lend their run.
            let live = if here.iter().all(|p| p.live()) {
                Cow::Borrowed(here)
            } else {
                Cow::Owned(here.iter().copied().filter(|p| p.live()).collect())
            };
            run_nodes.push(NodePods {
                node: name,
                object: node,
                pods: live,
            });
            status.desired += 1;
            if has_any {
                status.current += 1;
            }
        } else if has_any {
            status.misscheduled += 1;
        }
        if !should_continue_running {
            deletes.extend(
                here.iter()
                    .filter(|p| !p.terminating)
                    .map(|p| delete(p, name, DeleteReason::NotWanted)),
            );
            continue;
        }
        if here.is_empty() {
            if should_run && !pending_here {
                creates.push(Action::Create { node: name.to_string() });
            }
            continue;
        }
        if should_run && let Some(first) = here.first() {
            if first.ready_since.is_some() {
                status.ready += 1;
            }
            if is_available(first, min_ready, now) {
                status.available += 1;
            }
            if is_updated(first, hash, generation) {
                status.updated += 1;
            }
        }
        let running = || here.iter().filter(|p| p.live()).copied();
        for p in here.iter().filter(|p| !p.terminating) {
            match p.phase.as_str() {
                "Failed" => deletes.push(delete(p, name, DeleteReason::Failed)),
                "Succeeded" => deletes.push(delete(p, name, DeleteReason::Succeeded)),
                _ => {}
            }
        }
        if surge {
            // With surge a node may hold one new and one old pod at once; only extras go.
            let new = running().filter(|p| is_updated(p, hash, generation)).skip(1);
            let old = running().filter(|p| !is_updated(p, hash, generation)).skip(1);
            deletes.extend(new.chain(old).map(|p| delete(p, name, DeleteReason::Duplicate)));
        } else {
            deletes.extend(running().skip(1).map(|p| delete(p, name, DeleteReason::Duplicate)));
        }
    }
    left.extend(&placed[at..]);
    // Unbound pods whose node no longer exists (bound ones are the pod GC's).
    for p in left {
        if !p.bound && !p.terminating {
            deletes.push(delete(p, node_of(p), DeleteReason::NotWanted));
        }
    }
    creates.extend(deletes);
    if rolling {
        // Nodes the reconciliation already acts on sit this pass out.
        let busy: std::collections::HashSet<&str> = creates
            .iter()
            .map(|a| match a {
                Action::Create { node } | Action::Delete { node, .. } | Action::UpdateInPlace { node, .. } => {
                    node.as_str()
                }
            })
            .collect();
        let is_busy = |n: &str| busy.contains(n) || pending(n);
        let rollout = super::rollout::rolling_update_with(ds, &run_nodes, hash, &is_busy, in_place, now);
        creates.extend(rollout);
    }
    Plan {
        actions: creates,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-01-01T00:01:00Z";

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn ds(extra: Value) -> Value {
        let mut d = json!({"metadata": {"name": "d", "namespace": "default", "uid": "u",
                                        "annotations": {TEMPLATE_GENERATION_ANNOTATION: "1"}},
                           "spec": {"selector": {"matchLabels": {"a": "b"}},
                                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
        if let (Some(d), Some(e)) = (d["spec"].as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                d.insert(k.clone(), v.clone());
            }
        }
        d
    }

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
    }

    fn pod(name: &str, node: &str, phase: &str, ready: bool, hash: &str) -> Value {
        json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": "2026-01-01T00:00:00Z",
                            "labels": {"a": "b", REVISION_HASH_LABEL: hash, TEMPLATE_GENERATION_LABEL: "1"}},
               "spec": {"nodeName": node},
               "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                                          "lastTransitionTime": "2026-01-01T00:00:30Z"}]}})
    }

    fn no_pending(_: &str) -> bool {
        false
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let d = ds(json!({}));
        let nodes = [
            node("n1", json!({}), json!([])),
            node("n2", json!({}), json!([])),
            node("n3", json!({}), json!([])),
        ];
        let refs: Vec<&Value> = nodes.iter().collect();
        let p1 = pod("d-1", "n1", "Running", true, "h");
        let p = plan(&d, &refs, &[&p1], "h", &no_pending, now());
        assert_eq!(
            p.actions,
            vec![
                Action::Create { node: "n2".into() },
                Action::Create { node: "n3".into() }
            ]
        );
        assert_eq!(
            p.status,
            Status {
                desired: 3,
                current: 1,
                ready: 1,
                available: 1,
                updated: 1,
                misscheduled: 0
            }
        );
        assert_eq!(p.status.to_json()["numberUnavailable"], 2);
        // A creation in flight counts as current and is not repeated.
        let pending = |n: &str| n == "n2";
        let p = plan(&d, &refs, &[&p1], "h", &pending, now());
        assert_eq!(p.actions, vec![Action::Create { node: "n3".into() }]);
        assert_eq!(p.status.current, 2);
    }

    #[test]
    fn node_selector_taints_and_misscheduled() {
        let d = ds(json!({"template": {"metadata": {"labels": {"a": "b"}},
                                        "spec": {"nodeSelector": {"role": "worker"}, "containers": [{"name": "c"}]}}}));
        let nodes = [
            node("n1", json!({"role": "worker"}), json!([])),
            node(
                "n2",
                json!({"role": "worker"}),
                json!([{"key": "k", "effect": "NoSchedule"}]),
            ),
            node("n3", json!({}), json!([])),
        ];
        let refs: Vec<&Value> = nodes.iter().collect();
        let on2 = pod("d-2", "n2", "Running", true, "h");
        let on3 = pod("d-3", "n3", "Running", true, "h");
        let p = plan(&d, &refs, &[&on2, &on3], "h", &no_pending, now());
        // n1 gets a pod; n2 keeps its pod (NoSchedule) but counts misscheduled; n3's goes.
        assert_eq!(
            p.actions,
            vec![
                Action::Create { node: "n1".into() },
                Action::Delete {
                    pod: "d-3".into(),
                    uid: "uid-d-3".into(),
                    node: "n3".into(),
                    reason: DeleteReason::NotWanted
                },
            ]
        );
        assert_eq!(p.status.desired, 1);
        assert_eq!(p.status.misscheduled, 2);
    }

    #[test]
    fn duplicates_failed_and_succeeded_pods_are_deleted() {
        let d = ds(json!({}));
        let nodes = [node("n1", json!({}), json!([])), node("n2", json!({}), json!([]))];
        let refs: Vec<&Value> = nodes.iter().collect();
        let mut older = pod("d-a", "n1", "Running", true, "h");
        older["metadata"]["creationTimestamp"] = json!("2025-12-31T00:00:00Z");
        let newer = pod("d-b", "n1", "Running", true, "h");
        let failed = pod("d-c", "n2", "Failed", false, "h");
        let p = plan(&d, &refs, &[&newer, &older, &failed], "h", &no_pending, now());
        let deleted: Vec<(&str, &DeleteReason)> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { pod, reason, .. } => Some((pod.as_str(), reason)),
                _ => None,
            })
            .collect();
        assert_eq!(
            deleted,
            vec![("d-b", &DeleteReason::Duplicate), ("d-c", &DeleteReason::Failed)]
        );
        // No replacement while the failed pod still exists on n2.
        assert!(!p.actions.contains(&Action::Create { node: "n2".into() }));
    }

    #[test]
    fn availability_waits_for_min_ready_seconds_and_updated_follows_hash_or_generation() {
        let d = ds(json!({"minReadySeconds": 60}));
        let nodes = [node("n1", json!({}), json!([])), node("n2", json!({}), json!([]))];
        let refs: Vec<&Value> = nodes.iter().collect();
        let a = pod("d-a", "n1", "Running", true, "old");
        let mut b = pod("d-b", "n2", "Running", true, "old");
        b["metadata"]["labels"][TEMPLATE_GENERATION_LABEL] = json!("0");
        let p = plan(&d, &refs, &[&a, &b], "new", &no_pending, now());
        assert_eq!(p.status.ready, 2);
        assert_eq!(p.status.available, 0, "ready for 30s of 60");
        assert_eq!(p.status.updated, 1, "d-a matches the template generation");
        let later = "2026-01-01T00:02:00Z".parse().unwrap();
        assert_eq!(
            plan(&d, &refs, &[&a, &b], "new", &no_pending, later).status.available,
            2
        );
    }

    #[test]
    fn unbound_pods_follow_their_target_node() {
        let d = ds(json!({}));
        let nodes = [node("n1", json!({}), json!([]))];
        let refs: Vec<&Value> = nodes.iter().collect();
        let affinity = |n: &str| {
            json!({"metadata": {"name": format!("d-{n}"), "uid": n, "labels": {"a": "b", REVISION_HASH_LABEL: "h"}},
                   "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                       {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]}}}},
                   "status": {"phase": "Pending"}})
        };
        let here = affinity("n1");
        let gone = affinity("n9");
        assert_eq!(target_node(&here), Some("n1"));
        let p = plan(&d, &refs, &[&here, &gone], "h", &no_pending, now());
        assert_eq!(p.status.current, 1);
        assert_eq!(p.status.ready, 0);
        assert_eq!(
            p.actions,
            vec![Action::Delete {
                pod: "d-n9".into(),
                uid: "n9".into(),
                node: "n9".into(),
                reason: DeleteReason::NotWanted
            }]
        );
    }
}
