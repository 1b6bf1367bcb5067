//! The Kubernetes API as data: the resource catalogue, defaulting, validation, label and
//! field selectors, table printers, JSON schemas, OpenAPI documents and strategic merge
//! patch. Pure: no I/O, no clocks (callers pass `now`).
//!
//! Objects are handled as `serde_json::Value` at the edges (the API server stores and serves
//! JSON) and decoded into k8s-openapi types where a kind needs typed logic.

pub mod catalogue;
pub mod defaults;
pub mod field;
pub mod network;
pub mod openapi;
pub mod scheduling;
pub mod schema;
pub mod selector;
pub mod smp;
pub mod table;
pub mod validation;

/// The `status` fields of a Pod or Node that the in-process controllers and the scheduler
/// read. Their caches keep only these: container statuses, pod IPs, node info, addresses
/// and images take most of a status and are never read there.
const READ_STATUS: &[(&str, &[&str])] = &[
    ("Pod", &["phase", "conditions", "reason", "message"]),
    ("Node", &["allocatable", "capacity", "conditions"]),
];

/// Drops from the `status` of `obj`, a Pod or Node as `kind` says, what no in-process
/// component reads (see [`READ_STATUS`]); other kinds are left as they are. The caller
/// names the kind: list items need not carry theirs. For caches only: an object trimmed so
/// must never be written back whole.
pub fn trim_status_for_cache(kind: &str, obj: &mut serde_json::Value) {
    let Some(keep) = READ_STATUS.iter().find(|(k, _)| *k == kind).map(|(_, keep)| *keep) else {
        return;
    };
    if let Some(status) = obj.get_mut("status").and_then(serde_json::Value::as_object_mut) {
        status.retain(|k, _| keep.contains(&k.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn cached_status_keeps_what_is_read_and_only_for_pods_and_nodes() {
        let mut pod = json!({"kind": "Pod", "status": {"phase": "Running", "conditions": [], "podIP": "10.0.0.1",
            "containerStatuses": [{"name": "c"}]}});
        super::trim_status_for_cache("Pod", &mut pod);
        assert_eq!(pod["status"], json!({"phase": "Running", "conditions": []}));
        let mut node = json!({"kind": "Node", "status": {"capacity": {"cpu": "4"}, "nodeInfo": {}, "addresses": []}});
        super::trim_status_for_cache("Node", &mut node);
        assert_eq!(node["status"], json!({"capacity": {"cpu": "4"}}));
        let mut ds = json!({"kind": "DaemonSet", "status": {"numberReady": 3}});
        super::trim_status_for_cache("DaemonSet", &mut ds);
        assert_eq!(ds["status"]["numberReady"], 3);
    }
}
