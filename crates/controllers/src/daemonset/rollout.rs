//! RollingUpdate: which old pods to replace this pass, within `maxUnavailable` (or, with
//! `maxSurge`, which nodes get their new pod beside the old one). Pure; runs on the same
//! snapshot as [`super::plan::plan`] and leaves alone what that already acts on.

use std::borrow::Cow;

use serde_json::Value;
use shoal_api::selector::LabelSelector;

use super::facts::{Action, DeleteReason, PodFacts, is_available, is_updated};

/// Resolves an int-or-percent against `total`: integers as they are (never negative),
/// percentages rounded up.
pub fn resolve(v: &Value, total: i64) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0).max(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            // Annotations are not validated: a percentage is taken as 0 to 100.
            Some(p) => (p.clamp(0, 100) * total.max(0) + 99) / 100,
            None => s.parse::<i64>().unwrap_or(0).max(0),
        },
        _ => 0,
    }
}

/// `(maxSurge, maxUnavailable)` for `desired` nodes; both zero means one unavailable.
pub fn limits(ds: &Value, desired: i64) -> (i64, i64) {
    let ru = &ds["spec"]["updateStrategy"]["rollingUpdate"];
    let surge = resolve(&ru["maxSurge"], desired);
    let mut unavailable = resolve(ru.get("maxUnavailable").unwrap_or(&Value::from(1)), desired);
    if surge == 0 && unavailable == 0 && desired > 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// One node of the rollout: its should-run status and its live (non-terminating) pods.
pub struct NodePods<'a> {
    /// Node name.
    pub node: &'a str,
    /// The Node object.
    pub object: &'a Value,
    /// Live pods targeting the node.
    pub pods: Cow<'a, [&'a PodFacts]>,
}

impl NodePods<'_> {
    fn ready(&self) -> bool {
        self.object["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    }
}

/// Annotation: no pod is replaced by the rolling update while `"true"`.
pub const PAUSED: &str = "shoal.dev/rollout-paused";
/// Annotation: this many pods (`"2"`) or this share (`"25%"`) stay on older revisions.
pub const PARTITION: &str = "shoal.dev/rollout-partition";
/// Annotation: only nodes matching this label selector (`"canary=true"`) are updated.
pub const NODE_SELECTOR: &str = "shoal.dev/rollout-node-selector";
/// Annotation: nodes that are not Ready neither block the rollout nor are updated.
pub const SKIP_UNREADY: &str = "shoal.dev/rollout-skip-unready-nodes";

/// Annotation: with `"true"`, a pod whose revision differs from the current one only in its
/// containers' images is updated in place (images changed on the pod, which restarts just
/// those containers) instead of being replaced. Pod, address and volumes stay.
pub const IN_PLACE: &str = "shoal.dev/in-place-update";

/// An image name as runtimes normalise it: `nginx` is `docker.io/library/nginx:latest`.
pub fn normalise_image(name: &str) -> String {
    let (repo, suffix) = match name.find('@') {
        Some(i) => (&name[..i], &name[i..]),
        None => match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => (&name[..i], &name[i..]),
            _ => (name, ":latest"),
        },
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_registry = repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = match (has_registry, repo.contains('/')) {
        (true, _) => repo.to_string(),
        (false, true) => format!("docker.io/{repo}"),
        (false, false) => format!("docker.io/library/{repo}"),
    };
    format!("{full}{suffix}")
}

/// Whether `node` has every image the template of `ds` names. A node that does not report
/// its images (a simulated node, a process-runtime node) pulls nothing: always true.
pub fn images_on(ds: &Value, node: &Value) -> bool {
    let Some(list) = node["status"]["images"].as_array() else {
        return true;
    };
    let spec = &ds["spec"]["template"]["spec"];
    let wanted = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["containers"].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str());
    let have: std::collections::HashSet<String> = list
        .iter()
        .flat_map(|i| i["names"].as_array().into_iter().flatten())
        .filter_map(|n| n.as_str().map(normalise_image))
        .collect();
    wanted.into_iter().all(|w| have.contains(&normalise_image(w)))
}

/// The opt-in rollout controls of a DaemonSet, from its annotations.
#[derive(Default)]
pub struct Controls {
    /// [`PAUSED`].
    pub paused: bool,
    /// [`PARTITION`], as written.
    pub partition: Option<Value>,
    /// [`NODE_SELECTOR`], parsed (an invalid selector matches no node).
    pub canary: Option<LabelSelector>,
    /// [`SKIP_UNREADY`].
    pub skip_unready: bool,
}

impl Controls {
    /// Reads the controls of `ds`.
    pub fn of(ds: &Value) -> Controls {
        let a = &ds["metadata"]["annotations"];
        let flag = |k: &str| a[k].as_str() == Some("true");
        Controls {
            paused: flag(PAUSED),
            partition: a[PARTITION].as_str().map(|p| match p.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => Value::from(p),
            }),
            canary: a[NODE_SELECTOR]
                .as_str()
                .map(|s| LabelSelector::parse(s).unwrap_or_else(|_| LabelSelector::nothing())),
            skip_unready: flag(SKIP_UNREADY),
        }
    }
}

fn delete(p: &PodFacts, node: &str) -> Action {
    Action::Delete {
        pod: p.name.clone(),
        uid: p.uid.clone(),
        node: node.to_string(),
        reason: DeleteReason::Outdated,
    }
}

/// A node's pods split into updated and old ones, in their order. Most nodes hold one pod,
/// and their split costs no allocation.
#[allow(clippy::type_complexity)]
fn split<'n, 'a>(
    pods: &'n [&'a PodFacts],
    hash: &str,
    generation: Option<&str>,
) -> (Cow<'n, [&'a PodFacts]>, Cow<'n, [&'a PodFacts]>) {
    match pods {
        [] => (Cow::Borrowed(pods), Cow::Borrowed(pods)),
        [p] if is_updated(p, hash, generation) => (Cow::Borrowed(pods), Cow::Borrowed(&[])),
        [_] => (Cow::Borrowed(&[]), Cow::Borrowed(pods)),
        _ => {
            let (new, old): (Vec<&PodFacts>, Vec<&PodFacts>) =
                pods.iter().partition(|p| is_updated(p, hash, generation));
            (Cow::Owned(new), Cow::Owned(old))
        }
    }
}

/// [`rolling_update_with`], no pod updated in place.
pub fn rolling_update(
    ds: &Value,
    nodes: &[NodePods],
    hash: &str,
    busy: &dyn Fn(&str) -> bool,
    now: jiff::Timestamp,
) -> Vec<Action> {
    rolling_update_with(ds, nodes, hash, busy, &|_| false, now)
}

/// The rollout actions for the nodes that should run a daemon pod. `busy(node)` is true for
/// nodes the reconciliation step already acts on this pass (they count as unavailable);
/// `in_place(pod)` for old pods that may be updated in place. Without surge, an available
/// old pod is replaced only once its node has the new images ([`images_on`]): the agent
/// pulls them ahead, so the pod is down for the restart only.
pub fn rolling_update_with(
    ds: &Value,
    nodes: &[NodePods],
    hash: &str,
    busy: &dyn Fn(&str) -> bool,
    in_place: &dyn Fn(&PodFacts) -> bool,
    now: jiff::Timestamp,
) -> Vec<Action> {
    let controls = Controls::of(ds);
    if controls.paused {
        return Vec::new();
    }
    let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let generation = ds["metadata"]["annotations"][super::facts::TEMPLATE_GENERATION_ANNOTATION].as_str();
    let (max_surge, max_unavailable) = limits(ds, nodes.len() as i64);
    let available = |p: &PodFacts| is_available(p, min_ready, now);
    // Nodes left out: not Ready ones when asked to skip them, and those outside the canary.
    let counted = |n: &NodePods| !controls.skip_unready || n.ready();
    let no_labels = serde_json::Map::new();
    let eligible = |n: &NodePods| {
        let labels = n.object["metadata"]["labels"].as_object().unwrap_or(&no_labels);
        counted(n) && controls.canary.as_ref().is_none_or(|sel| sel.matches(labels))
    };
    // A partition keeps that many nodes on older revisions: a budget of updates.
    let updated_now = nodes
        .iter()
        .filter(|n| n.pods.iter().any(|p| is_updated(p, hash, generation)))
        .count() as i64;
    let keep_old = controls
        .partition
        .as_ref()
        .map(|v| resolve(v, nodes.len() as i64))
        .unwrap_or(0);
    let mut budget = (nodes.len() as i64 - keep_old - updated_now).max(0) as usize;
    let mut actions = Vec::new();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for n in nodes.iter().filter(|n| counted(n)) {
            let (new, old) = split(&n.pods, hash, generation);
            if busy(n.node) || new.len() > 1 || old.len() > 1 {
                unavailable += 1;
                continue;
            }
            match (new.first(), old.first()) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(p), None) if !available(p) => unavailable += 1,
                (Some(_), None) => {}
                (None, Some(p)) if !available(p) => {
                    unavailable += 1;
                    if eligible(n) && budget > 0 {
                        budget -= 1;
                        actions.push(delete(p, n.node));
                    }
                }
                // Still available: it waits (without counting as unavailable) for the node
                // to have the new images.
                (None, Some(p)) if eligible(n) && images_on(ds, n.object) => candidates.push((n.node, *p)),
                (None, Some(_)) => {}
            }
        }
        let room = ((max_unavailable - unavailable).max(0) as usize).min(budget);
        actions.extend(candidates.into_iter().take(room).map(|(node, p)| {
            if in_place(p) {
                Action::UpdateInPlace {
                    pod: p.name.clone(),
                    uid: p.uid.clone(),
                    node: node.to_string(),
                }
            } else {
                delete(p, node)
            }
        }));
    } else {
        let mut surging = 0;
        let mut candidates = Vec::new();
        for n in nodes.iter().filter(|n| counted(n)) {
            if busy(n.node) {
                continue;
            }
            let (new, old) = split(&n.pods, hash, generation);
            match (new.first(), old.first()) {
                (None, Some(_)) if !eligible(n) => {}
                (None, Some(p)) if !available(p) && budget > 0 => {
                    budget -= 1;
                    actions.push(Action::Create {
                        node: n.node.to_string(),
                    });
                }
                (None, Some(_)) => candidates.push(n.node),
                (Some(fresh), Some(_)) if available(fresh) => {
                    actions.extend(old.iter().map(|p| delete(p, n.node)));
                }
                (Some(_), Some(_)) => surging += 1,
                _ => {}
            }
        }
        let room = ((max_surge - surging).max(0) as usize).min(budget);
        actions.extend(
            candidates
                .into_iter()
                .take(room)
                .map(|node| Action::Create { node: node.to_string() }),
        );
    }
    actions
}

/// Annotation: a rollout that makes no progress for this many seconds is marked failed
/// (`Progressing=False`, reason `ProgressDeadlineExceeded`).
pub const PROGRESS_DEADLINE: &str = "shoal.dev/progress-deadline-seconds";
/// Annotation: with `"true"`, a rollout past its deadline rolls back to the previous revision.
pub const AUTO_REVERT: &str = "shoal.dev/rollout-auto-revert";

/// The `Progressing` condition a DaemonSet with a progress deadline should carry, when it
/// differs from the stored one, and whether the deadline was exceeded just now. `updated`
/// and `available` are this pass's counters; the stored status holds the previous ones.
pub fn progressing(
    ds: &Value,
    desired: i64,
    updated: i64,
    available: i64,
    now: jiff::Timestamp,
) -> Option<(Value, bool)> {
    let deadline: i64 = ds["metadata"]["annotations"][PROGRESS_DEADLINE]
        .as_str()?
        .parse()
        .ok()?;
    let name = ds["metadata"]["name"].as_str().unwrap_or_default();
    let status = &ds["status"];
    let existing = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"));
    let reason = existing.and_then(|c| c["reason"].as_str()).unwrap_or("");
    let stamp = shoal_api::time::rfc3339(now);
    // DaemonSetCondition has no lastUpdateTime: lastTransitionTime marks the last progress.
    let condition = |ok: bool, reason: &str, message: String, since: &str| {
        serde_json::json!({"type": "Progressing", "status": if ok { "True" } else { "False" }, "reason": reason,
                           "message": message, "lastTransitionTime": since})
    };
    let new_spec =
        status["observedGeneration"].as_i64().unwrap_or(0) < ds["metadata"]["generation"].as_i64().unwrap_or(0);
    // A partition is a finish line of its own; a pause stops the clock.
    let controls = Controls::of(ds);
    let keep_old = controls.partition.as_ref().map(|v| resolve(v, desired)).unwrap_or(0);
    let target = (desired - keep_old).max(0);
    let complete = updated >= target && available >= desired;
    if controls.paused && !complete {
        return (reason != "RolloutPaused").then(|| {
            let mut c = condition(
                true,
                "RolloutPaused",
                format!("DaemonSet \"{name}\" is paused."),
                &stamp,
            );
            c["status"] = serde_json::json!("Unknown");
            (c, false)
        });
    }
    if complete {
        return (reason != "NewRevisionAvailable").then(|| {
            let msg = format!("DaemonSet \"{name}\" has successfully progressed.");
            (condition(true, "NewRevisionAvailable", msg, &stamp), false)
        });
    }
    if reason == "ProgressDeadlineExceeded" && !new_spec {
        return None;
    }
    let moved = updated > status["updatedNumberScheduled"].as_i64().unwrap_or(0)
        || available > status["numberAvailable"].as_i64().unwrap_or(0);
    if moved || new_spec || reason != "DaemonSetUpdating" {
        let msg = format!("DaemonSet \"{name}\" is progressing.");
        return Some((condition(true, "DaemonSetUpdating", msg, &stamp), false));
    }
    let since = existing
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())?;
    (now.as_second() - since.as_second() > deadline).then(|| {
        let msg = format!("DaemonSet \"{name}\" has timed out progressing.");
        let since = stamp.clone();
        (condition(false, "ProgressDeadlineExceeded", msg, &since), true)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ds(strategy: Value) -> Value {
        json!({"metadata": {"annotations": {"deprecated.daemonset.template.generation": "2"}},
               "spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": strategy}}})
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "uid": name, "labels": {"controller-revision-hash": hash, "pod-template-generation": "1"}},
               "spec": {"nodeName": node},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                                             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    }

    /// Ready nodes with these names (labelled `canary=true` when the name ends in `c`).
    fn nodes(names: &[&str]) -> Vec<Value> {
        names
            .iter()
            .map(|n| {
                let labels = if n.ends_with('c') { json!({"canary": "true"}) } else { json!({}) };
                json!({"metadata": {"name": n, "labels": labels},
                       "status": {"conditions": [{"type": "Ready", "status": if n.starts_with('x') { "False" } else { "True" }}]}})
            })
            .collect()
    }

    /// Each node with its live pods, as `plan_views` hands them to the rollout.
    fn group<'a>(objects: &'a [Value], pods: &[&Value]) -> Vec<NodePods<'a>> {
        // Test-only: the facts live as long as the test process.
        let facts: Vec<&'a PodFacts> = pods.iter().map(|p| &*Box::leak(Box::new(PodFacts::of(p)))).collect();
        objects
            .iter()
            .map(|o| {
                let node = o["metadata"]["name"].as_str().unwrap();
                let here = facts
                    .iter()
                    .copied()
                    .filter(|p| p.live() && p.node.as_deref() == Some(node));
                NodePods {
                    node,
                    object: o,
                    pods: Cow::Owned(here.collect()),
                }
            })
            .collect()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn deleted(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { pod, .. } => Some(pod.clone()),
                _ => None,
            })
            .collect()
    }

    fn created(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { node } => Some(node.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn images_are_normalised_and_a_rollout_waits_for_them_on_pulling_nodes() {
        assert_eq!(normalise_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalise_image("fluentd:v1"), "docker.io/library/fluentd:v1");
        assert_eq!(normalise_image("me/app"), "docker.io/me/app:latest");
        assert_eq!(normalise_image("127.0.0.1:5000/web:2"), "127.0.0.1:5000/web:2");
        assert_eq!(normalise_image("quay.io/x/y@sha256:ab"), "quay.io/x/y@sha256:ab");
        let d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
        assert!(
            images_on(&d, &json!({"status": {}})),
            "a node that reports no images pulls nothing"
        );
        let old = json!({"status": {"images": [{"names": ["docker.io/library/nginx:1"]}]}});
        assert!(!images_on(&d, &old));
        let new = json!({"status": {"images": [{"names": ["docker.io/library/nginx@sha256:ff", "docker.io/library/nginx:2"]}]}});
        assert!(images_on(&d, &new));
        // The rollout leaves the pod on the node without the image, and replaces the other.
        let mut d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}));
        d["spec"]["template"] = json!({"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}});
        let mut objects = nodes(&["n1", "n2"]);
        objects[0]["status"]["images"] = old["status"]["images"].clone();
        objects[1]["status"]["images"] = new["status"]["images"].clone();
        let pods = [pod("a", "n1", "old", true), pod("b", "n2", "old", true)];
        let refs: Vec<&Value> = pods.iter().collect();
        let groups = group(&objects, &refs);
        assert_eq!(deleted(&rolling_update(&d, &groups, "new", &|_| false, now())), ["b"]);
        // In place, when the pod's revision allows it.
        let actions = rolling_update_with(&d, &groups, "new", &|_| false, &|_| true, now());
        assert!(
            matches!(actions.as_slice(), [Action::UpdateInPlace { pod, .. }] if pod == "b"),
            "{actions:?}"
        );
    }

    #[test]
    fn percentages_round_up_and_both_zero_means_one() {
        assert_eq!(resolve(&json!("10%"), 15), 2);
        assert_eq!(resolve(&json!("20%"), 3), 1);
        assert_eq!(resolve(&json!(3), 2), 3, "integers are not capped");
        assert_eq!(
            resolve(&json!("9223372036854775807%"), 5),
            5,
            "percentages are at most 100"
        );
        assert_eq!(resolve(&json!("-9223372036854775808%"), 5), 0);
        assert_eq!(limits(&ds(json!({"maxUnavailable": 0, "maxSurge": 0})), 5), (0, 1));
        assert_eq!(limits(&ds(json!({"maxUnavailable": "50%"})), 5), (0, 3));
        assert_eq!(limits(&ds(json!({"maxUnavailable": 0, "maxSurge": "25%"})), 5), (2, 0));
    }

    /// Simulates passes of a no-surge rollout over `n` nodes: never more than
    /// maxUnavailable nodes without an available pod, and it finishes.
    #[test]
    fn no_surge_rollout_respects_max_unavailable_until_done() {
        for (n, max) in [(5, 1), (5, 2), (7, 3), (4, 4)] {
            let d = ds(json!({"maxUnavailable": max, "maxSurge": 0}));
            let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
            let mut pods: Vec<Value> = names
                .iter()
                .map(|nm| pod(&format!("old-{nm}"), nm, "old", true))
                .collect();
            for round in 0..50 {
                let refs: Vec<&Value> = pods.iter().collect();
                let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let objects = nodes(&name_refs);
                let groups = group(&objects, &refs);
                let unavailable = groups
                    .iter()
                    .filter(|g| !g.pods.iter().any(|p| is_available(p, 0, now())))
                    .count();
                assert!(unavailable <= max, "round {round}: {unavailable} unavailable > {max}");
                let actions = rolling_update(&d, &groups, "new", &|_| false, now());
                let gone = deleted(&actions);
                assert!(gone.len() <= max);
                if gone.is_empty()
                    && pods
                        .iter()
                        .all(|p| p["metadata"]["labels"]["controller-revision-hash"] == "new")
                {
                    break;
                }
                // Deleted pods vanish; the reconciliation then creates new (ready) ones.
                pods.retain(|p| !gone.contains(&p["metadata"]["name"].as_str().unwrap().to_string()));
                for nm in &names {
                    if !pods.iter().any(|p| p["spec"]["nodeName"] == nm.as_str()) {
                        pods.push(pod(&format!("new-{nm}-{round}"), nm, "new", true));
                    }
                }
            }
            assert!(
                pods.iter()
                    .all(|p| p["metadata"]["labels"]["controller-revision-hash"] == "new"),
                "n={n} max={max}"
            );
        }
    }

    #[test]
    fn unavailable_old_pods_go_first_and_count() {
        let d = ds(json!({"maxUnavailable": 1}));
        let a = pod("a", "n1", "old", false);
        let b = pod("b", "n2", "old", true);
        let refs = [&a, &b];
        let objects = nodes(&["n1", "n2"]);
        let groups = group(&objects, &refs);
        // The unready old pod is replaced; no room is left for the ready one.
        assert_eq!(deleted(&rolling_update(&d, &groups, "new", &|_| false, now())), ["a"]);
    }

    #[test]
    fn pods_matching_the_template_generation_count_as_updated() {
        let d = ds(json!({"maxUnavailable": 1}));
        let mut a = pod("a", "n1", "old", true);
        a["metadata"]["labels"]["pod-template-generation"] = json!("2");
        let refs = [&a];
        assert!(rolling_update(&d, &group(&nodes(&["n1"]), &refs), "new", &|_| false, now()).is_empty());
    }

    #[test]
    fn surge_starts_new_pods_beside_old_ones_and_removes_old_when_new_is_available() {
        let d = ds(json!({"maxUnavailable": 0, "maxSurge": 1}));
        let o1 = pod("o1", "n1", "old", true);
        let o2 = pod("o2", "n2", "old", true);
        let refs = [&o1, &o2];
        let first = rolling_update(&d, &group(&nodes(&["n1", "n2"]), &refs), "new", &|_| false, now());
        assert_eq!(created(&first), ["n1"], "one surge pod at a time");
        assert!(
            deleted(&first).is_empty(),
            "nothing goes before its replacement is available"
        );
        let n1_new = pod("x1", "n1", "new", false);
        let refs = [&o1, &o2, &n1_new];
        let waiting = rolling_update(&d, &group(&nodes(&["n1", "n2"]), &refs), "new", &|_| false, now());
        assert!(
            waiting.is_empty(),
            "the surge budget is taken by the unready new pod: {waiting:?}"
        );
        let n1_ready = pod("x1", "n1", "new", true);
        let refs = [&o1, &o2, &n1_ready];
        let next = rolling_update(&d, &group(&nodes(&["n1", "n2"]), &refs), "new", &|_| false, now());
        assert_eq!(deleted(&next), ["o1"]);
        assert_eq!(created(&next), ["n2"]);
    }

    #[test]
    fn pause_partition_canary_and_unready_nodes() {
        let base = |annotations: Value| {
            let mut d = ds(json!({"maxUnavailable": 3}));
            for (k, v) in annotations.as_object().unwrap() {
                d["metadata"]["annotations"][k] = v.clone();
            }
            d
        };
        let objects = nodes(&["a", "bc", "cc", "d"]);
        let pods: Vec<Value> = ["a", "bc", "cc", "d"]
            .iter()
            .map(|n| pod(&format!("p-{n}"), n, "old", true))
            .collect();
        let refs: Vec<&Value> = pods.iter().collect();
        let run = |d: &Value| deleted(&rolling_update(d, &group(&objects, &refs), "new", &|_| false, now()));
        assert_eq!(run(&base(json!({}))), ["p-a", "p-bc", "p-cc"], "maxUnavailable 3");
        assert!(run(&base(json!({PAUSED: "true"}))).is_empty(), "paused");
        assert_eq!(run(&base(json!({PARTITION: "3"}))), ["p-a"], "three stay old");
        assert_eq!(run(&base(json!({PARTITION: "50%"}))), ["p-a", "p-bc"]);
        assert_eq!(
            run(&base(json!({NODE_SELECTOR: "canary=true"}))),
            ["p-bc", "p-cc"],
            "canary nodes only"
        );
        // An unready node blocks a maxUnavailable-1 rollout unless it is skipped.
        let objects = nodes(&["xa", "b"]);
        let stuck = pod("p-xa", "xa", "old", false);
        let fine = pod("p-b", "b", "old", true);
        let refs = [&stuck, &fine];
        let one = ds(json!({"maxUnavailable": 1}));
        assert_eq!(
            deleted(&rolling_update(&one, &group(&objects, &refs), "new", &|_| false, now())),
            ["p-xa"]
        );
        let mut skip = one.clone();
        skip["metadata"]["annotations"][SKIP_UNREADY] = json!("true");
        assert_eq!(
            deleted(&rolling_update(
                &skip,
                &group(&objects, &refs),
                "new",
                &|_| false,
                now()
            )),
            ["p-b"]
        );
    }

    #[test]
    fn progress_deadline_marks_stalled_rollouts() {
        let mut d = ds(json!({"maxUnavailable": 1}));
        d["metadata"]["name"] = json!("web");
        d["metadata"]["generation"] = json!(2);
        d["metadata"]["annotations"][PROGRESS_DEADLINE] = json!("60");
        d["status"] = json!({"observedGeneration": 2, "updatedNumberScheduled": 1, "numberAvailable": 2});
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // No condition yet: it starts progressing.
        let (c, exceeded) = progressing(&d, 3, 1, 2, t("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str(), exceeded),
            (Some("True"), Some("DaemonSetUpdating"), false)
        );
        d["status"]["conditions"] = json!([c]);
        // No progress, within the deadline: nothing to write.
        assert!(progressing(&d, 3, 1, 2, t("2026-01-01T00:00:30Z")).is_none());
        // Past it: exceeded, once.
        let (c, exceeded) = progressing(&d, 3, 1, 2, t("2026-01-01T00:01:01Z")).unwrap();
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str(), exceeded),
            (Some("False"), Some("ProgressDeadlineExceeded"), true)
        );
        assert_eq!(c["message"], "DaemonSet \"web\" has timed out progressing.");
        d["status"]["conditions"] = json!([c]);
        assert!(progressing(&d, 3, 1, 2, t("2026-01-01T00:02:00Z")).is_none());
        // A pause stops the clock; resuming starts it again.
        let mut paused = d.clone();
        paused["metadata"]["annotations"][PAUSED] = json!("true");
        let (c, _) = progressing(&paused, 3, 1, 2, t("2026-01-01T00:02:30Z")).unwrap();
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("Unknown"), Some("RolloutPaused"))
        );
        // A partition of 2 out of 3 is complete with one updated node.
        let mut parted = d.clone();
        parted["metadata"]["annotations"][PARTITION] = json!("2");
        assert_eq!(
            progressing(&parted, 3, 1, 3, t("2026-01-01T00:02:30Z")).unwrap().0["reason"],
            "NewRevisionAvailable"
        );
        // Completion clears it.
        let (c, _) = progressing(&d, 3, 3, 3, t("2026-01-01T00:03:00Z")).unwrap();
        assert_eq!(c["reason"], "NewRevisionAvailable");
        // Without the annotation nothing is managed.
        let plain = ds(json!({"maxUnavailable": 1}));
        assert!(progressing(&plain, 3, 0, 0, t("2026-01-01T00:03:00Z")).is_none());
    }
}
