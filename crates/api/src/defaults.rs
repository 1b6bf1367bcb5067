//! Upstream's defaulting for every kind in the catalogue, applied to request bodies as
//! `serde_json::Value`, plus the create-time mutations upstream's registry strategies and
//! default admission plugins make ([`prepare_for_create`]).
//!
//! [`apply_defaults`] is what decoding a request does in Kubernetes 1.33: `SetDefaults_*`
//! functions, the conversion round trip (deprecated mirror fields such as
//! `spec.serviceAccount`), resource quantities rewritten in canonical form, and the zero
//! values Go always prints (`resources: {}`, `creationTimestamp: null` in templates). It is
//! idempotent and safe on both create and update.
//!
//! [`prepare_for_create`] holds what upstream does only when an object is first created
//! (namespace finalizer, Job selector generation, pod priority and default tolerations,
//! pod and namespace initial status, Service IP-family policy); call it after
//! [`apply_defaults`] and after the name and uid are assigned. Cluster-IP, node-port and
//! IP-family allocation (`spec.clusterIP(s)`, `spec.ipFamilies`) and the service-account
//! token volume stay with the server. [`prepare_for_update`] carries allocated Service
//! values and Namespace finalizers over from the stored object on update.
//!
//! Nothing here panics on malformed input: members of the wrong JSON type are left alone
//! for validation to report.

use crate::validation::quantity::canonicalize_value;
use serde_json::{Map, Value, json};

mod more;
mod podspec;

pub use podspec::image_pull_policy;

/// Applies upstream's defaults for `group`/`kind` to `obj` in place.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => pod(root),
        ("", "ReplicationController") => replication_controller(root),
        ("", "Service") => service(root),
        ("", "Namespace") => namespace(root),
        ("", "Secret") => secret(root),
        ("", "PersistentVolume") => persistent_volume(root),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(root),
        ("", "Node") => node(root),
        ("", "Endpoints") => endpoints(root),
        ("", "Event") => core_event(root),
        ("events.k8s.io", "Event") => events_event(root),
        ("apps", "Deployment") => deployment(root),
        ("apps", "DaemonSet") => daemon_set(root),
        ("apps", "StatefulSet") => stateful_set(root),
        ("apps", "ReplicaSet") => replica_set(root),
        ("batch", "Job") => job(root),
        ("batch", "CronJob") => cron_job(root),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(root),
        ("storage.k8s.io", "StorageClass") => storage_class(root),
        _ => {
            more::apply(group, kind, root);
        }
    }
}

/// Create-time mutations made by upstream's registry strategies and default admission
/// plugins (see the module documentation). Call after [`apply_defaults`], once the object
/// has its final name and uid.
pub fn prepare_for_create(group: &str, kind: &str, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => podspec::prepare_pod(root),
        ("", "Namespace") => {
            if let Some(spec) = child(root, "spec") {
                match spec.get_mut("finalizers") {
                    Some(Value::Array(list)) => {
                        if !list.iter().any(|f| f.as_str() == Some("kubernetes")) {
                            list.push(json!("kubernetes"));
                        }
                    }
                    Some(Value::Null) | None => {
                        spec.insert("finalizers".into(), json!(["kubernetes"]));
                    }
                    Some(_) => {}
                }
            }
            root.insert("status".into(), json!({"phase": "Active"}));
        }
        ("batch", "Job") => generate_job_selector(root),
        ("", "Service") => service_create(root),
        _ => {}
    }
}

/// Update-time carry-overs upstream's registry makes before validating an update: a
/// Service keeps its allocated cluster IPs, IP families, node ports and health-check port
/// when the request leaves them empty; a Namespace keeps its `spec.finalizers` and status
/// (those change only through the `finalize` and `status` subresources). Call after
/// [`apply_defaults`] with the stored object as `old`.
pub fn prepare_for_update(group: &str, kind: &str, obj: &mut Value, old: &Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Service") => service_keep_allocations(root, old),
        ("", "Namespace") => {
            if let Some(spec) = child(root, "spec") {
                match old.get("spec").and_then(|s| s.get("finalizers")) {
                    Some(f) => spec.insert("finalizers".into(), f.clone()),
                    None => spec.remove("finalizers"),
                };
            }
            if let Some(status) = old.get("status") {
                root.insert("status".into(), status.clone());
            }
        }
        _ => {}
    }
}

fn service_keep_allocations(root: &mut Map<String, Value>, old: &Value) {
    let old_spec = old.get("spec");
    let old_type = owned_str(old_spec, "type", "ClusterIP");
    let Some(spec) = child(root, "spec") else {
        return;
    };
    let new_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let old_field = |k: &str| old_spec.and_then(|s| s.get(k)).filter(|v| !v.is_null()).cloned();
    if old_type != "ExternalName" && new_type != "ExternalName" {
        for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let missing = match spec.get(key) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            if missing && let Some(v) = old_field(key) {
                spec.insert(key.into(), v);
            }
        }
    }
    let node_ports = |t: &str| t == "NodePort" || t == "LoadBalancer";
    if node_ports(&old_type) && node_ports(&new_type) {
        let old_ports: Vec<(String, i64)> = old_spec
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let name = p.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                        (name, p.get("nodePort").and_then(Value::as_i64).unwrap_or(0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let new_used: Vec<i64> = spec
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("nodePort")?.as_i64())
            .collect();
        for port in each(spec, "ports") {
            if port.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                continue;
            }
            let name = port.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some((_, np)) = old_ports.iter().find(|(n, np)| n == name && *np != 0)
                && !new_used.contains(np)
            {
                port.insert("nodePort".into(), json!(np));
            }
        }
    }
    let needs_hc = |s: &Map<String, Value>, t: &str| {
        t == "LoadBalancer" && s.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
    };
    let old_needs_hc = old_type == "LoadBalancer"
        && old_spec
            .and_then(|s| s.get("externalTrafficPolicy"))
            .and_then(Value::as_str)
            == Some("Local");
    if old_needs_hc
        && needs_hc(spec, &new_type)
        && spec.get("healthCheckNodePort").and_then(Value::as_i64).unwrap_or(0) == 0
        && let Some(v) = old_field("healthCheckNodePort")
    {
        spec.insert("healthCheckNodePort".into(), v);
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers on JSON objects.

/// The string member `key` of `v`, or `or` when absent or not a string; owned, so that the
/// object holding `v` can be changed afterwards.
fn owned_str(v: Option<&Value>, key: &str, or: &str) -> String {
    v.and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or(or)
        .to_string()
}

/// A copy of the pod template's labels (`spec.template.metadata.labels`) when they are an
/// object.
fn template_labels(root: &Map<String, Value>) -> Option<Value> {
    root.get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned()
}

/// True when `key` is absent or null.
fn unset(m: &Map<String, Value>, key: &str) -> bool {
    matches!(m.get(key), None | Some(Value::Null))
}

/// True when `key` is absent, null or `""` (Go's empty string).
fn empty_str(m: &Map<String, Value>, key: &str) -> bool {
    matches!(m.get(key), None | Some(Value::Null)) || m.get(key).and_then(Value::as_str) == Some("")
}

/// Sets `key` when absent or null.
fn default(m: &mut Map<String, Value>, key: &str, v: Value) {
    if unset(m, key) {
        m.insert(key.into(), v);
    }
}

/// Sets a string `key` when absent, null or empty.
fn default_str(m: &mut Map<String, Value>, key: &str, v: &str) {
    if empty_str(m, key) {
        m.insert(key.into(), Value::from(v));
    }
}

/// The object member `key`, created (`{}`) when absent or null; `None` when it holds
/// something other than an object.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    if unset(m, key) {
        m.insert(key.into(), Value::Object(Map::new()));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The object member `key` when it already exists.
fn existing<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// The objects in the list member `key`.
fn each<'a>(m: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Canonicalizes every quantity of a resource list (rounding up to milli, as
/// `SetDefaults_ResourceList` does).
fn resource_list(m: &mut Map<String, Value>, key: &str) {
    if let Some(list) = existing(m, key) {
        for v in list.values_mut() {
            canonicalize_value(v, true);
        }
    }
}

/// Template metadata always prints `creationTimestamp: null` upstream.
fn template_metadata(tmpl: &mut Map<String, Value>) {
    if let Some(meta) = child(tmpl, "metadata")
        && !meta.contains_key("creationTimestamp")
    {
        meta.insert("creationTimestamp".into(), Value::Null);
    }
}

/// Defaults of a pod template (`spec.template` of workloads).
fn pod_template(spec: &mut Map<String, Value>) {
    if let Some(tmpl) = child(spec, "template") {
        template_metadata(tmpl);
        if let Some(ps) = child(tmpl, "spec") {
            podspec::pod_spec(ps);
        }
    }
}

// ---------------------------------------------------------------------------------------
// core/v1

fn pod(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        podspec::pod_only(spec);
        podspec::pod_spec(spec);
    }
    if let Some(status) = existing(root, "status") {
        mirror_ips(status, "podIP", "podIPs");
        mirror_ips(status, "hostIP", "hostIPs");
    }
}

/// The v1 conversion keeps a singular IP and its list in step.
fn mirror_ips(status: &mut Map<String, Value>, single: &str, list: &str) {
    let list_empty = status.get(list).and_then(Value::as_array).is_none_or(Vec::is_empty);
    if list_empty && let Some(ip) = status.get(single).and_then(Value::as_str).filter(|s| !s.is_empty()) {
        let ip = ip.to_string();
        status.insert(list.into(), json!([{"ip": ip}]));
    }
    let first = status
        .get(list)
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|x| x.get("ip"))
        .cloned();
    if let Some(ip) = first {
        status.insert(single.into(), ip);
    }
}

fn replication_controller(root: &mut Map<String, Value>) {
    if let Some(labels) = template_labels(root) {
        if let Some(spec) = child(root, "spec") {
            let empty = spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
            if empty {
                spec.insert("selector".into(), labels.clone());
            }
        }
        if let Some(meta) = child(root, "metadata") {
            let empty = meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty);
            if empty {
                meta.insert("labels".into(), labels);
            }
        }
    }
    if let Some(spec) = child(root, "spec") {
        default(spec, "replicas", json!(1));
        if existing(spec, "template").is_some() {
            pod_template(spec);
        }
    }
}

fn service(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in each(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if target_unset && let Some(p) = port.get("port").filter(|p| p.is_number()).cloned() {
            port.insert("targetPort".into(), p);
        }
    }
    let svc_type = spec.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        svc_type == "LoadBalancer" || svc_type == "NodePort" || (svc_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
        if let Some(lb) = existing(root, "status").and_then(|s| existing(s, "loadBalancer")) {
            for ing in each(lb, "ingress") {
                let has_ip = ing.get("ip").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
                if has_ip {
                    default(ing, "ipMode", json!("VIP"));
                }
            }
        }
    }
}

fn service_create(root: &mut Map<String, Value>) {
    let selector_empty = root
        .get("spec")
        .and_then(|s| s.get("selector"))
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let Some(spec) = child(root, "spec") else {
        return;
    };
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let ips_empty = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if let (Some(ip), true) = (cluster_ip, ips_empty) {
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return;
    }
    let headless = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() == 1 && a[0].as_str() == Some("None"));
    let policy = if headless && selector_empty {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    default(spec, "ipFamilyPolicy", json!(policy));
}

fn namespace(root: &mut Map<String, Value>) {
    let name = owned_str(root.get("metadata"), "name", "");
    if !name.is_empty()
        && let Some(labels) = child(root, "metadata").and_then(|m| child(m, "labels"))
    {
        labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
    }
    if let Some(status) = child(root, "status") {
        default_str(status, "phase", "Active");
    }
}

fn secret(root: &mut Map<String, Value>) {
    default_str(root, "type", "Opaque");
    let string_data = match root.remove("stringData") {
        Some(Value::Object(m)) => m,
        Some(other) => {
            root.insert("stringData".into(), other);
            return;
        }
        None => return,
    };
    if let Some(data) = child(root, "data") {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or("");
            data.insert(k, Value::String(base64(text.as_bytes())));
        }
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn persistent_volume(root: &mut Map<String, Value>) {
    if let Some(status) = child(root, "status") {
        default_str(status, "phase", "Pending");
    }
    if let Some(spec) = child(root, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default(spec, "volumeMode", json!("Filesystem"));
        resource_list(spec, "capacity");
        if let Some(hp) = existing(spec, "hostPath") {
            default(hp, "type", json!(""));
        }
    }
}

/// PVC defaults, also used for StatefulSet volume claim templates.
fn persistent_volume_claim(root: &mut Map<String, Value>) {
    if let Some(status) = child(root, "status") {
        default_str(status, "phase", "Pending");
        resource_list(status, "capacity");
        resource_list(status, "allocatedResources");
    }
    if let Some(spec) = child(root, "spec") {
        pvc_spec(spec);
    }
}

fn pvc_spec(spec: &mut Map<String, Value>) {
    default(spec, "volumeMode", json!("Filesystem"));
    if let Some(res) = existing(spec, "resources") {
        resource_list(res, "limits");
        resource_list(res, "requests");
    }
}

fn node(root: &mut Map<String, Value>) {
    if let Some(status) = existing(root, "status") {
        if unset(status, "allocatable") && status.get("capacity").is_some_and(Value::is_object) {
            let cap = status.get("capacity").cloned().unwrap_or(Value::Null);
            status.insert("allocatable".into(), cap);
        }
        resource_list(status, "capacity");
        resource_list(status, "allocatable");
    }
    if let Some(spec) = existing(root, "spec") {
        let cidrs_empty = spec.get("podCIDRs").and_then(Value::as_array).is_none_or(Vec::is_empty);
        if cidrs_empty && let Some(c) = spec.get("podCIDR").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            let c = c.to_string();
            spec.insert("podCIDRs".into(), json!([c]));
        }
        if let Some(first) = spec
            .get("podCIDRs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .cloned()
        {
            spec.insert("podCIDR".into(), first);
        }
    }
}

fn endpoints(root: &mut Map<String, Value>) {
    for subset in each(root, "subsets") {
        for port in each(subset, "ports") {
            default_str(port, "protocol", "TCP");
        }
    }
}

/// Zero values upstream always prints for core/v1 Events.
fn core_event(root: &mut Map<String, Value>) {
    for key in ["firstTimestamp", "lastTimestamp", "eventTime"] {
        if !root.contains_key(key) {
            root.insert(key.into(), Value::Null);
        }
    }
    default(root, "source", json!({}));
    default(root, "involvedObject", json!({}));
    default(root, "reportingComponent", json!(""));
    default(root, "reportingInstance", json!(""));
}

/// Zero values upstream always prints for events.k8s.io/v1 Events.
fn events_event(root: &mut Map<String, Value>) {
    for key in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp", "eventTime"] {
        if !root.contains_key(key) {
            root.insert(key.into(), Value::Null);
        }
    }
    default(root, "deprecatedSource", json!({}));
}

// ---------------------------------------------------------------------------------------
// apps/v1

fn deployment(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    if let Some(strategy) = child(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child(strategy, "rollingUpdate")
        {
            default(ru, "maxUnavailable", json!("25%"));
            default(ru, "maxSurge", json!("25%"));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    pod_template(spec);
}

fn daemon_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    if let Some(strategy) = child(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child(strategy, "rollingUpdate")
        {
            default(ru, "maxUnavailable", json!(1));
            default(ru, "maxSurge", json!(0));
        }
    }
    default(spec, "revisionHistoryLimit", json!(10));
    pod_template(spec);
}

fn stateful_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = child(spec, "updateStrategy") {
        if empty_str(strategy, "type") {
            strategy.insert("type".into(), json!("RollingUpdate"));
            default(strategy, "rollingUpdate", json!({}));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = existing(strategy, "rollingUpdate")
        {
            default(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = child(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    pod_template(spec);
    for vct in each(spec, "volumeClaimTemplates") {
        template_metadata(vct);
        persistent_volume_claim(vct);
    }
}

fn replica_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    default(spec, "replicas", json!(1));
    pod_template(spec);
}

// ---------------------------------------------------------------------------------------
// batch/v1

fn job(root: &mut Map<String, Value>) {
    if let Some(labels) = template_labels(root)
        && let Some(meta) = child(root, "metadata")
        && meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty)
    {
        meta.insert("labels".into(), labels);
    }
    let Some(spec) = child(root, "spec") else {
        return;
    };
    job_spec(spec);
}

fn job_spec(spec: &mut Map<String, Value>) {
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    if unset(spec, "backoffLimit") {
        let limit = if unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let has_pfp = !unset(spec, "podFailurePolicy");
    if let Some(pfp) = existing(spec, "podFailurePolicy") {
        for rule in each(pfp, "rules") {
            for pattern in each(rule, "onPodConditions") {
                default_str(pattern, "status", "True");
            }
        }
    }
    default(
        spec,
        "podReplacementPolicy",
        json!(if has_pfp { "Failed" } else { "TerminatingOrFailed" }),
    );
    pod_template(spec);
}

fn cron_job(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    default_str(spec, "concurrencyPolicy", "Allow");
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(jt) = child(spec, "jobTemplate") {
        template_metadata(jt);
        if let Some(js) = child(jt, "spec") {
            pod_template(js);
        }
    }
}

/// Job selector generation (upstream's job strategy on create): unless
/// `spec.manualSelector` is true, adds the `controller-uid`/`job-name` labels (legacy and
/// `batch.kubernetes.io/` forms) to the pod template and selects on
/// `batch.kubernetes.io/controller-uid`. Needs `metadata.uid` and `metadata.name`.
fn generate_job_selector(root: &mut Map<String, Value>) {
    let meta = root.get("metadata");
    let uid = owned_str(meta, "uid", "");
    let name = owned_str(meta, "name", "");
    let Some(spec) = child(root, "spec") else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(labels) = child(spec, "template")
        .and_then(|t| child(t, "metadata"))
        .and_then(|m| child(m, "labels"))
    {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            if !labels.contains_key(key) {
                labels.insert(key.into(), json!(name));
            }
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            if !labels.contains_key(key) {
                labels.insert(key.into(), json!(uid));
            }
        }
    }
    if let Some(ml) = child(spec, "selector").and_then(|s| child(s, "matchLabels"))
        && !ml.contains_key("batch.kubernetes.io/controller-uid")
    {
        ml.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
    }
}

// ---------------------------------------------------------------------------------------
// discovery, storage

fn endpoint_slice(root: &mut Map<String, Value>) {
    for port in each(root, "ports") {
        default(port, "name", json!(""));
        default(port, "protocol", json!("TCP"));
    }
}

fn storage_class(root: &mut Map<String, Value>) {
    default(root, "reclaimPolicy", json!("Delete"));
    default(root, "volumeBindingMode", json!("Immediate"));
}

#[cfg(test)]
mod tests;
