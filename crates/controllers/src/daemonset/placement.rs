//! Which nodes should run a daemon pod (upstream's `NodeShouldRunDaemonPod`), and the
//! tolerations every daemon pod gets.
//!
//! The check runs against the DaemonSet's template plus the automatic tolerations, never
//! against live pods. Only the node's name, labels and taints matter: node conditions,
//! resources and ports are the scheduler's business (a daemon pod that does not fit is still
//! created and stays Pending).

use serde_json::{Value, json};
use shoal_api::scheduling::{self, Taint, Unfit};

/// The tolerations added to every daemon pod (operator `Exists`, tolerated forever).
/// `network-unavailable` only for `hostNetwork` pods.
pub fn automatic_tolerations(host_network: bool) -> Vec<Value> {
    let mut out: Vec<Value> = [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    .iter()
    .map(|(k, e)| json!({"key": k, "operator": "Exists", "effect": e}))
    .collect();
    if host_network {
        out.push(
            json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}),
        );
    }
    out
}

/// Adds the automatic tolerations to a pod spec: one with the same key, effect, operator and
/// value replaces the user's (dropping its tolerationSeconds); others are appended.
pub fn add_automatic_tolerations(pod_spec: &mut Value) {
    let host_network = pod_spec["hostNetwork"].as_bool() == Some(true);
    let mut list = pod_spec["tolerations"].as_array().cloned().unwrap_or_default();
    for auto in automatic_tolerations(host_network) {
        let same = |t: &Value| {
            ["key", "effect", "operator", "value"].iter().all(|k| {
                t.get(*k).and_then(Value::as_str).unwrap_or("") == auto.get(*k).and_then(Value::as_str).unwrap_or("")
            })
        };
        match list.iter().position(same) {
            Some(i) => list[i] = auto,
            None => list.push(auto),
        }
    }
    if let Some(spec) = pod_spec.as_object_mut() {
        spec.insert("tolerations".into(), Value::Array(list));
    }
}

/// The placement of a DaemonSet on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A daemon pod should be created if there is none.
    pub should_run: bool,
    /// An existing daemon pod may stay.
    pub should_continue_running: bool,
    /// Why not (when `should_run` is false).
    pub reason: Option<Unfit>,
}

/// Decides placement for a template pod spec that already carries the automatic
/// tolerations (see [`add_automatic_tolerations`]).
pub fn placement(pod_spec: &Value, node: &Value) -> Placement {
    if let Some(reason) = scheduling::node_affinity_unfit(pod_spec, node) {
        return Placement {
            should_run: false,
            should_continue_running: false,
            reason: Some(reason),
        };
    }
    let tolerations = pod_spec["tolerations"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let taints: Vec<Taint> = scheduling::taints(node);
    match scheduling::untolerated(tolerations, &taints, &["NoSchedule", "NoExecute"]) {
        None => Placement {
            should_run: true,
            should_continue_running: true,
            reason: None,
        },
        Some(t) => {
            let evicting = scheduling::untolerated(tolerations, &taints, &["NoExecute"]).is_some();
            Placement {
                should_run: false,
                should_continue_running: !evicting,
                reason: Some(Unfit::Taint(t.clone())),
            }
        }
    }
}

/// The template pod spec of a DaemonSet with the automatic tolerations, as placement sees it.
pub fn template_spec(ds: &Value) -> Value {
    let mut spec = ds["spec"]["template"]["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    add_automatic_tolerations(&mut spec);
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})
    }

    #[test]
    fn automatic_tolerations_replace_equal_ones_and_append_the_rest() {
        let mut spec = json!({"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "mine", "operator": "Exists"}]});
        add_automatic_tolerations(&mut spec);
        let list = spec["tolerations"].as_array().unwrap();
        assert_eq!(list.len(), 7);
        assert_eq!(
            list[0],
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"})
        );
        assert_eq!(list[1]["key"], "mine");
        assert!(
            !list
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/network-unavailable")
        );
        let mut host = json!({"hostNetwork": true});
        add_automatic_tolerations(&mut host);
        assert!(
            host["tolerations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/network-unavailable")
        );
    }

    #[test]
    fn no_schedule_blocks_new_pods_but_keeps_old_ones_no_execute_evicts() {
        let spec = template_spec(&json!({"spec": {"template": {"spec": {}}}}));
        let ok = placement(&spec, &node(json!({}), json!([])));
        assert!(ok.should_run && ok.should_continue_running);
        let ns = placement(
            &spec,
            &node(json!({}), json!([{"key": "k", "value": "v", "effect": "NoSchedule"}])),
        );
        assert_eq!((ns.should_run, ns.should_continue_running), (false, true));
        assert_eq!(
            ns.reason.unwrap().to_string(),
            "the node has taint k=v:NoSchedule, which the pod does not tolerate"
        );
        let ne = placement(&spec, &node(json!({}), json!([{"key": "k", "effect": "NoExecute"}])));
        assert_eq!((ne.should_run, ne.should_continue_running), (false, false));
        let prefer = placement(
            &spec,
            &node(json!({}), json!([{"key": "k", "effect": "PreferNoSchedule"}])),
        );
        assert!(prefer.should_run, "PreferNoSchedule is ignored");
        // Cordoned and not-ready nodes: the automatic tolerations cover them.
        let cordoned = placement(
            &spec,
            &node(
                json!({}),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
            ),
        );
        assert!(cordoned.should_run);
        let not_ready = placement(
            &spec,
            &node(
                json!({}),
                json!([
            {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            ),
        );
        assert_eq!((not_ready.should_run, not_ready.should_continue_running), (false, true));
    }

    #[test]
    fn selectors_and_affinity_stop_both() {
        let spec = template_spec(&json!({"spec": {"template": {"spec": {"nodeSelector": {"role": "worker"}}}}}));
        let p = placement(&spec, &node(json!({"role": "db"}), json!([])));
        assert_eq!((p.should_run, p.should_continue_running), (false, false));
        assert!(placement(&spec, &node(json!({"role": "worker"}), json!([]))).should_run);
    }
}
