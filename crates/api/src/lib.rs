//! The Kubernetes API as data: the resource catalogue, defaulting, validation, label and
//! field selectors, table printers, JSON schemas, OpenAPI documents and strategic merge
//! patch. Pure: no I/O, no clocks (callers pass `now`).
//!
//! Objects are handled as `serde_json::Value` at the edges (the API server stores and serves
//! JSON) and decoded into k8s-openapi types where a kind needs typed logic.

pub mod catalogue;
pub mod cel;
pub mod defaults;
pub mod field;
pub mod limits;
pub mod network;
pub mod openapi;
pub mod podsecurity;
pub mod quota;
pub mod scheduling;
pub mod schema;
pub mod selector;
pub mod shape;
pub mod smp;
pub mod structural;
pub mod table;
pub mod time;
pub mod validation;

/// The `status` fields of a Pod or Node that the in-process controllers and the scheduler
/// read from their caches. Their caches keep only these: container statuses, pod IPs, node
/// info and addresses take most of a status and are never read there. A node's images are
/// kept: the DaemonSet rollout waits for a real node to list a new image (simulated nodes
/// report none, so they cost nothing). A node's resources are read only by the scheduler,
/// which takes them before it trims a node, and of its conditions only `Ready` is read (the
/// node lifecycle controller reads the node from the API before it rewrites them all).
const READ_STATUS: &[(&str, &[&str])] = &[
    (
        "Pod",
        &[
            "phase",
            "conditions",
            "reason",
            "message",
            "podIP",
            "containerStatuses",
            "initContainerStatuses",
        ],
    ),
    ("Node", &["conditions", "images"]),
];

/// The `spec` fields of a bound Pod that are read from caches: its node. (The node
/// lifecycle controller reads the tolerations of the few pods on nodes with NoExecute
/// taints from the API.)
/// The node annotation naming where its local volumes live (the one annotation cached).
pub const NODE_STORAGE_DIR: &str = "shoal.dev/storage-dir";

const READ_BOUND_POD_SPEC: &[&str] = &["nodeName", "hostname", "subdomain", "containers", "volumes"];

/// The `spec` fields of a Pod that no in-process cache reads: the containers and volumes,
/// about half of a decoded pod. The scheduler takes a pod's requests and host ports from
/// its containers before it trims the pod; the controllers read placement (node name,
/// affinity, tolerations), never the containers.
const UNREAD_POD_SPEC: &[&str] = &["initContainers", "ephemeralContainers"];

/// Drops from `obj`, a Pod or Node as `kind` says, what no in-process component reads: the
/// `status` fields outside [`READ_STATUS`], a node's annotations and conditions other than
/// `Ready`, and, for pods, the init containers ([`UNREAD_POD_SPEC`]), all of the containers but
/// their ports and all of the volumes but the claims they name. A bound pod keeps only its
/// node, hostname, subdomain, container ports and claims ([`READ_BOUND_POD_SPEC`]):
/// placement, affinity and tolerations included, is read only to choose a node. It also
/// keeps only its `Ready` condition (what availability reads; only the scheduler writes
/// conditions, and only for unbound pods), unless it failed: a failed pod keeps every
/// condition and its containers' exit codes, which a Job's podFailurePolicy reads. Other
/// kinds are left as they are. The caller
/// names the kind: list items need not carry theirs. For caches only: an object trimmed so
/// must never be written back whole.
pub fn trim_for_cache(kind: &str, obj: &mut serde_json::Value) {
    let Some(keep) = READ_STATUS.iter().find(|(k, _)| *k == kind).map(|(_, keep)| *keep) else {
        return;
    };
    if let Some(status) = obj.get_mut("status").and_then(serde_json::Value::as_object_mut) {
        status.retain(|k, _| keep.contains(&k.as_str()));
    }
    if kind == "Node" {
        if let Some(meta) = obj.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
            // Only where the node keeps local volumes is read of its annotations.
            let kept = meta.get("annotations").and_then(|a| a.get(NODE_STORAGE_DIR)).cloned();
            meta.remove("annotations");
            if let Some(dir) = kept {
                meta.insert("annotations".into(), serde_json::json!({NODE_STORAGE_DIR: dir}));
            }
        }
        if let Some(conditions) = obj
            .get_mut("status")
            .and_then(|s| s.get_mut("conditions"))
            .and_then(serde_json::Value::as_array_mut)
        {
            conditions.retain(|c| c["type"] == "Ready");
        }
    }
    if kind != "Pod" {
        return;
    }
    // A failed pod keeps its containers' exit codes and all its conditions: a Job's
    // podFailurePolicy reads them. Other pods keep neither.
    let failed = obj["status"]["phase"] == "Failed";
    if let Some(status) = obj.get_mut("status").and_then(serde_json::Value::as_object_mut) {
        for key in ["containerStatuses", "initContainerStatuses"] {
            let Some(list) = status.remove(key) else {
                continue;
            };
            if failed {
                let codes: Vec<serde_json::Value> = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        serde_json::json!({"name": c["name"],
                            "state": {"terminated": {"exitCode": c["state"]["terminated"]["exitCode"]}}})
                    })
                    .collect();
                status.insert(key.into(), serde_json::Value::Array(codes));
            }
        }
    }
    let mut bound = false;
    if let Some(spec) = obj.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
        spec.retain(|k, _| !UNREAD_POD_SPEC.contains(&k.as_str()));
        // Of the containers, only their named ports are read (Services' named targetPorts).
        let ports: Vec<serde_json::Value> = spec
            .get("containers")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("ports").filter(|p| p.as_array().is_some_and(|a| !a.is_empty())))
            .map(|p| serde_json::json!({"ports": p}))
            .collect();
        if ports.is_empty() {
            spec.remove("containers");
        } else {
            spec.insert("containers".into(), serde_json::Value::Array(ports));
        }
        // Of the volumes, only the claims they name are read (binding local volumes).
        let claims: Vec<serde_json::Value> = spec
            .get("volumes")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.get("persistentVolumeClaim"))
            .map(|c| serde_json::json!({"persistentVolumeClaim": {"claimName": c["claimName"]}}))
            .collect();
        if claims.is_empty() {
            spec.remove("volumes");
        } else {
            spec.insert("volumes".into(), serde_json::Value::Array(claims));
        }
        bound = spec
            .get("nodeName")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if bound {
            spec.retain(|k, _| READ_BOUND_POD_SPEC.contains(&k.as_str()));
        }
    }
    if bound
        && !failed
        && let Some(conditions) = obj
            .get_mut("status")
            .and_then(|s| s.get_mut("conditions"))
            .and_then(serde_json::Value::as_array_mut)
    {
        conditions.retain(|c| c["type"] == "Ready");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn cached_objects_keep_what_is_read_and_only_pods_and_nodes_are_trimmed() {
        let conditions = json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]);
        let mut pod = json!({"kind": "Pod",
            "spec": {"tolerations": [{"operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}],
                     "affinity": {"nodeAffinity": {}}, "restartPolicy": "Always",
                     "containers": [{"name": "c"}], "initContainers": [], "volumes": [{"name": "v"}]},
            "status": {"phase": "Pending", "conditions": conditions, "podIP": "10.0.0.1",
                       "containerStatuses": [{"name": "c"}]}});
        let ported = json!([{"name": "web", "containerPort": 80}]);
        let mut unbound = pod.clone();
        super::trim_for_cache("Pod", &mut unbound);
        assert_eq!(
            unbound["status"],
            json!({"phase": "Pending", "conditions": conditions, "podIP": "10.0.0.1"})
        );
        assert_eq!(
            unbound["spec"],
            json!({"tolerations": [{"operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}],
                   "affinity": {"nodeAffinity": {}}, "restartPolicy": "Always"})
        );
        pod["spec"]["nodeName"] = json!("n1");
        pod["spec"]["hostname"] = json!("web-0");
        pod["spec"]["containers"] = json!([{"name": "c", "image": "i", "ports": ported}, {"name": "d"}]);
        pod["spec"]["volumes"] =
            json!([{"name": "v", "emptyDir": {}}, {"name": "w", "persistentVolumeClaim": {"claimName": "www-0"}}]);
        super::trim_for_cache("Pod", &mut pod);
        assert_eq!(
            pod["spec"],
            json!({"nodeName": "n1", "hostname": "web-0", "containers": [{"ports": ported}],
                   "volumes": [{"persistentVolumeClaim": {"claimName": "www-0"}}]})
        );
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
        // A failed pod keeps its exit codes and every condition (podFailurePolicy reads them).
        let mut failed = json!({"kind": "Pod", "spec": {"nodeName": "n1"},
            "status": {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}],
                       "containerStatuses": [{"name": "main", "image": "i", "restartCount": 0,
                           "state": {"terminated": {"exitCode": 42, "reason": "Error"}}}]}});
        super::trim_for_cache("Pod", &mut failed);
        assert_eq!(
            failed["status"],
            json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}],
                   "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 42}}}]})
        );
        let ready = json!({"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"});
        let mut node = json!({"kind": "Node", "metadata": {"name": "n", "annotations": {"a": "b"}, "labels": {"l": "v"}},
            "spec": {"taints": []},
            "status": {"capacity": {"cpu": "4"}, "nodeInfo": {}, "addresses": [],
                       "conditions": [{"type": "MemoryPressure", "status": "False"}, ready]}});
        super::trim_for_cache("Node", &mut node);
        assert_eq!(node["status"], json!({"conditions": [ready]}));
        assert_eq!(node["metadata"], json!({"name": "n", "labels": {"l": "v"}}));
        assert_eq!(node["spec"], json!({"taints": []}));
        let mut ds = json!({"kind": "DaemonSet", "spec": {"template": {"spec": {"containers": []}}},
            "status": {"numberReady": 3}});
        let before = ds.clone();
        super::trim_for_cache("DaemonSet", &mut ds);
        assert_eq!(ds, before);
    }
}
