//! Node lifecycle: a node whose heartbeats (Lease renewals and Ready condition updates) stop
//! for the grace period (`--node-monitor-grace-period`, 50 s as upstream) gets its conditions
//! set to `Unknown`; nodes carry the taints their state implies (`not-ready` and
//! `unreachable`, NoSchedule and NoExecute; `unschedulable:NoSchedule` when cordoned); and
//! pods that do not tolerate a node's NoExecute taints are evicted, after their
//! `tolerationSeconds` when they tolerate it for a while.

use shoal_runtime::controller::{Error, Pacer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use shoal_api::scheduling::{Taint, tolerates};

use crate::informer::{Informers, Memo};

/// Taint keys this controller owns.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The node stopped reporting.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The node is cordoned.
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The node's Ready condition status: `True`, `False` or `Unknown` (no condition = Unknown).
pub fn ready_status(node: &Value) -> &str {
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("Unknown")
}

/// When the node was last heard from: the later of its Lease renewal and its Ready
/// condition's heartbeat (or its creation, for a node that never reported).
pub fn last_heard(node: &Value, lease_renew: Option<&str>) -> Option<jiff::Timestamp> {
    let heartbeat = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastHeartbeatTime"].as_str())
        .and_then(ts);
    let created = node["metadata"]["creationTimestamp"].as_str().and_then(ts);
    [heartbeat, lease_renew.and_then(ts), created]
        .into_iter()
        .flatten()
        .max()
}

/// The conditions of a node that stopped reporting: every True/False condition becomes
/// Unknown (upstream's `NodeStatusUnknown`), heartbeat times kept.
pub fn unknown_conditions(node: &Value, now: &str) -> Option<Value> {
    let empty = Vec::new();
    let conds = node["status"]["conditions"].as_array().unwrap_or(&empty);
    if !conds.iter().any(|c| c["type"] == "Ready") {
        let mut out = conds.clone();
        out.push(
            json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.", "lastHeartbeatTime": null,
                        "lastTransitionTime": now}),
        );
        return Some(Value::Array(out));
    }
    let mut changed = false;
    let out: Vec<Value> = conds
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if c["status"] != "Unknown" {
                changed = true;
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(now);
            }
            c
        })
        .collect();
    changed.then_some(Value::Array(out))
}

/// The taints a node should carry: its own, minus the ones this controller manages, plus
/// those its Ready condition and cordon imply. `None` when nothing changes.
pub fn wanted_taints(node: &Value, now: &str) -> Option<Value> {
    let current: Vec<Value> = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    let managed = |t: &Value| {
        let k = t["key"].as_str().unwrap_or("");
        k == NOT_READY || k == UNREACHABLE || (k == UNSCHEDULABLE && t["effect"] == "NoSchedule")
    };
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    match ready_status(node) {
        "False" => wanted.extend([(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]),
        "Unknown" => wanted.extend([(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]),
        _ => {}
    }
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        wanted.push((UNSCHEDULABLE, "NoSchedule"));
    }
    let has = |k: &str, e: &str| current.iter().any(|t| t["key"] == k && t["effect"] == e);
    let extra = current
        .iter()
        .filter(|t| managed(t))
        .any(|t| !wanted.iter().any(|(k, e)| t["key"] == *k && t["effect"] == *e));
    let missing = wanted.iter().any(|(k, e)| !has(k, e));
    if !extra && !missing {
        return None;
    }
    let mut out: Vec<Value> = current.iter().filter(|t| !managed(t)).cloned().collect();
    for (k, e) in wanted {
        match current.iter().find(|t| t["key"] == k && t["effect"] == e) {
            Some(t) => out.push(t.clone()),
            None if e == "NoExecute" => out.push(json!({"key": k, "effect": e, "timeAdded": now})),
            None => out.push(json!({"key": k, "effect": e})),
        }
    }
    Some(Value::Array(out))
}

/// The node's NoExecute taints.
fn no_execute_taints(node: &Value) -> Vec<Value> {
    node["spec"]["taints"]
        .as_array()
        .map(|ts| ts.iter().filter(|t| t["effect"] == "NoExecute").cloned().collect())
        .unwrap_or_default()
}

/// When a pod must leave a node with these NoExecute taints: `Some(now)` for an
/// untolerated taint, `Some(added + seconds)` for the earliest limited toleration, `None`
/// when it tolerates them all forever.
pub fn eviction_time(pod_spec: &Value, node_taints: &[Value], now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let tolerations = pod_spec["tolerations"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut when: Option<jiff::Timestamp> = None;
    for t in node_taints.iter().filter(|t| t["effect"] == "NoExecute") {
        let taint = Taint {
            key: t["key"].as_str().unwrap_or("").into(),
            value: t["value"].as_str().unwrap_or("").into(),
            effect: "NoExecute".into(),
        };
        let matching: Vec<&Value> = tolerations.iter().filter(|tol| tolerates(tol, &taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // Forever if any matching toleration has no limit; else the smallest limit.
        if matching.iter().any(|tol| tol["tolerationSeconds"].as_i64().is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|tol| tol["tolerationSeconds"].as_i64())
            .min()
            .unwrap_or(0)
            .max(0);
        let added = t["timeAdded"].as_str().and_then(ts).unwrap_or(now);
        let at = added
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(jiff::Timestamp::MAX);
        when = Some(when.map_or(at, |w: jiff::Timestamp| w.min(at)));
    }
    when
}

/// The node `name` as the API has it (all its conditions), as JSON.
async fn node_from_api(nodes: &Api<Node>, name: &str) -> Option<Value> {
    match nodes.get(name).await {
        Ok(n) => serde_json::to_value(n).ok(),
        Err(e) => {
            tracing::debug!(node = %name, error = %e, "reading a node failed");
            None
        }
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers, grace: Duration) {
    informers.ready().await;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let pp = PatchParams {
        field_manager: Some("node-lifecycle-controller".into()),
        ..Default::default()
    };
    // Node changes (taints, conditions) wake a pass over the nodes that changed, and pod
    // changes while some node has a NoExecute taint. Every node, with its Lease renewal, is
    // looked at on the monitor passes: 5 s apart (upstream's node monitor period), sooner for
    // short grace periods.
    let monitor_period = Duration::from_secs(5).min(grace / 2).max(Duration::from_millis(200));
    let quiet = informers.interest(&[("", "nodes")]);
    let mut evicting = informers.interest(&[("", "nodes"), ("", "pods")]);
    let mut pacer = Pacer::new("nodelifecycle", quiet, |_| Duration::from_millis(50));
    // Each node's NoExecute taints, read once per version of the node; a version new to the
    // memo is a node that changed.
    let mut no_execute: Memo<Vec<Value>> = Memo::default();
    let mut tolerations = Tolerations::default();
    let mut last_monitor: Option<Instant> = None;
    loop {
        let mut failure: Option<Error> = None;
        let any_tainted = std::sync::atomic::AtomicBool::new(false);
        let pass = async {
            let now = jiff::Timestamp::now();
            let now_s = shoal_api::time::rfc3339(now);
            let nodes = informers.of("", "nodes");
            let mut changed = Vec::new();
            let taints = no_execute.refresh(
                &nodes,
                |n| n,
                |n| {
                    changed.push(n.clone());
                    no_execute_taints(n)
                },
            );
            let monitor = last_monitor.is_none_or(|t| t.elapsed() >= monitor_period);
            let lease_objects = if monitor {
                last_monitor = Some(Instant::now());
                changed = nodes.clone();
                informers.of("coordination.k8s.io", "leases")
            } else {
                Vec::new()
            };
            let leases: HashMap<&str, &str> = lease_objects
                .iter()
                .filter(|l| crate::informer::namespace(l) == "kube-node-lease")
                .filter_map(|l| Some((crate::informer::name(l), l["spec"]["renewTime"].as_str()?)))
                .collect();
            for node in &changed {
                let name = crate::informer::name(node).to_string();
                let silent = monitor && {
                    let heard = last_heard(node, leases.get(name.as_str()).copied());
                    heard.is_some_and(|h| now.as_second() - h.as_second() > grace.as_secs() as i64)
                };
                let mut node = Arc::clone(node);
                // The cache keeps only the Ready condition; every condition is rewritten, so
                // they are read from the API (a node going silent is rare).
                if silent
                    && let Some(conds) = node_from_api(&nodes_api, &name)
                        .await
                        .and_then(|n| unknown_conditions(&n, &now_s))
                {
                    let patch = json!({"status": {"conditions": conds}});
                    match nodes_api.patch_status(&name, &pp, &Patch::Merge(patch)).await {
                        Ok(_) => Arc::make_mut(&mut node)["status"]["conditions"] = conds,
                        Err(e) => {
                            failure.get_or_insert(e.into());
                        }
                    }
                }
                // A node that has not reported yet gets its grace period before any taint.
                let reported = node["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready"));
                if !reported {
                    continue;
                }
                if let Some(taints) = wanted_taints(&node, &now_s) {
                    let patch = json!({"spec": {"taints": taints}});
                    if let Err(e) = nodes_api.patch(&name, &pp, &Patch::Merge(patch)).await {
                        failure.get_or_insert(e.into());
                    }
                }
            }
            // Pods on nodes with NoExecute taints (as the cache shows them: a taint added above
            // counts once its node change arrives, which wakes the next pass).
            let tainted: HashMap<&str, &Vec<Value>> = nodes
                .iter()
                .zip(taints)
                .filter(|(_, t)| !t.is_empty())
                .map(|(n, t)| (crate::informer::name(n), t))
                .collect();
            let mut next_wake = last_monitor.map_or(monitor_period, |t| monitor_period.saturating_sub(t.elapsed()));
            let mut looked_at = Vec::new();
            if !tainted.is_empty() {
                for pod in informers.of("", "pods") {
                    let Some(taints) = pod["spec"]["nodeName"].as_str().and_then(|n| tainted.get(n)) else {
                        continue;
                    };
                    if pod["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null()) {
                        continue;
                    }
                    let Some(spec) = tolerations.of(&client, &pod).await else {
                        continue;
                    };
                    looked_at.push(crate::informer::uid(&pod).to_string());
                    match eviction_time(spec, taints, now) {
                        Some(at) if at <= now => evict(&client, &pod).await,
                        Some(at) => {
                            let wait = Duration::from_secs((at.as_second() - now.as_second()).max(1) as u64);
                            next_wake = next_wake.min(wait);
                        }
                        None => {}
                    }
                }
            }
            tolerations.keep(&looked_at);
            any_tainted.store(!tainted.is_empty(), std::sync::atomic::Ordering::Relaxed);
            failure.take().map_or(Ok(next_wake), Err)
        };
        // Pod changes matter only while some node has a NoExecute taint.
        pacer
            .pass_watching(&informers, pass, || {
                any_tainted
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .then_some(&mut evicting)
            })
            .await;
    }
}

/// The tolerations of pods on nodes with NoExecute taints, read from the API once per
/// version of each pod: the pod cache keeps no tolerations (thousands of pods, few of them
/// ever on such a node).
#[derive(Default)]
struct Tolerations {
    /// Pod uid -> (resourceVersion, `{"tolerations": [...]}`).
    by_uid: HashMap<String, (String, Value)>,
}

impl Tolerations {
    /// `{"tolerations": [...]}` of the cached `pod`; `None` when the API no longer has it.
    async fn of(&mut self, client: &kube::Client, pod: &Value) -> Option<&Value> {
        let uid = crate::informer::uid(pod);
        let rv = pod["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if self.by_uid.get(uid).is_none_or(|(seen, _)| seen != rv) {
            let ns = crate::informer::namespace(pod);
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let fresh = match api.get(crate::informer::name(pod)).await {
                Ok(p) if p.metadata.uid.as_deref() == Some(uid) => p,
                Ok(_) => return None,
                Err(e) => {
                    tracing::debug!(pod = %crate::informer::name(pod), error = %e, "reading a pod's tolerations failed");
                    return None;
                }
            };
            let tolerations = fresh.spec.and_then(|s| s.tolerations).unwrap_or_default();
            let spec = json!({"tolerations": tolerations});
            let rv = fresh.metadata.resource_version.unwrap_or_default();
            self.by_uid.insert(uid.to_string(), (rv, spec));
        }
        self.by_uid.get(uid).map(|(_, spec)| spec)
    }

    /// Forgets pods other than `uids`.
    fn keep(&mut self, uids: &[String]) {
        if self.by_uid.len() > uids.len() {
            let keep: std::collections::HashSet<&str> = uids.iter().map(String::as_str).collect();
            self.by_uid.retain(|uid, _| keep.contains(uid.as_str()));
        }
    }
}

async fn evict(client: &kube::Client, pod: &Value) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod["metadata"]["uid"].as_str().map(str::to_string),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "evicted a pod from a NoExecute-tainted node"),
        Err(e) => tracing::debug!(pod = %name, error = %e, "taint eviction failed; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn node(ready: &str, taints: Value, cordoned: bool) -> Value {
        json!({"metadata": {"name": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"taints": taints, "unschedulable": cordoned},
               "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": "2026-01-01T00:09:00Z"},
                                         {"type": "MemoryPressure", "status": "False"}]}})
    }

    #[test]
    fn taints_follow_readiness_and_cordon() {
        assert_eq!(wanted_taints(&node("True", json!([]), false), NOW), None);
        let t = wanted_taints(
            &node("Unknown", json!([{"key": "mine", "effect": "NoSchedule"}]), false),
            NOW,
        )
        .unwrap();
        assert_eq!(
            t,
            json!([{"key": "mine", "effect": "NoSchedule"},
                   {"key": UNREACHABLE, "effect": "NoSchedule"},
                   {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": NOW}])
        );
        // Back to Ready: the managed taints go, the user's stay.
        let recovered = node("True", t, false);
        assert_eq!(
            wanted_taints(&recovered, NOW).unwrap(),
            json!([{"key": "mine", "effect": "NoSchedule"}])
        );
        let cordoned = wanted_taints(&node("True", json!([]), true), NOW).unwrap();
        assert_eq!(cordoned, json!([{"key": UNSCHEDULABLE, "effect": "NoSchedule"}]));
        let not_ready = wanted_taints(&node("False", json!([]), false), NOW).unwrap();
        assert_eq!(not_ready.as_array().unwrap().len(), 2);
    }

    #[test]
    fn silent_nodes_become_unknown() {
        let n = node("True", json!([]), false);
        let heard = last_heard(&n, Some("2026-01-01T00:09:30Z")).unwrap();
        assert_eq!(heard.to_string(), "2026-01-01T00:09:30Z");
        let conds = unknown_conditions(&n, NOW).unwrap();
        assert_eq!(conds[0]["status"], "Unknown");
        assert_eq!(conds[0]["reason"], "NodeStatusUnknown");
        assert_eq!(conds[1]["status"], "Unknown");
        let already = json!({"status": {"conditions": conds}});
        assert_eq!(unknown_conditions(&already, NOW), None);
        let never = unknown_conditions(&json!({"status": {}}), NOW).unwrap();
        assert_eq!(never[0]["reason"], "NodeStatusNeverUpdated");
    }

    #[test]
    fn eviction_honours_toleration_seconds() {
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let taints = vec![json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:09:00Z"})];
        assert_eq!(eviction_time(&json!({}), &taints, now), Some(now), "untolerated: now");
        let limited = json!({"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]});
        assert_eq!(
            eviction_time(&limited, &taints, now).unwrap().to_string(),
            "2026-01-01T00:14:00Z"
        );
        let forever = json!({"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]});
        assert_eq!(eviction_time(&forever, &taints, now), None, "daemon pods stay");
        let no_schedule_only = vec![json!({"key": "x", "effect": "NoSchedule"})];
        assert_eq!(eviction_time(&json!({}), &no_schedule_only, now), None);
    }
}
