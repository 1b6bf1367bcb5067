//! Pod spec defaults (shared by pods and every pod template), the pod-only defaults, the
//! image pull policy rule and the create-time pod admission defaults.

use super::{child, default, default_str, each, empty_str, existing, resource_list};
use serde_json::{Map, Value, json};

/// Volume source members; a volume with none of them becomes an `emptyDir`.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

/// `SetDefaults_PodSpec` and everything nested in a pod spec.
pub(super) fn pod_spec(ps: &mut Map<String, Value>) {
    default_str(ps, "dnsPolicy", "ClusterFirst");
    default_str(ps, "restartPolicy", "Always");
    default(ps, "securityContext", json!({}));
    default(ps, "terminationGracePeriodSeconds", json!(30));
    default_str(ps, "schedulerName", "default-scheduler");
    mirror_service_account(ps);
    for vol in each(ps, "volumes") {
        volume(vol);
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each(ps, list) {
            container(c);
        }
    }
    resource_list(ps, "overhead");
}

/// The v1 conversion keeps the deprecated `serviceAccount` equal to `serviceAccountName`.
fn mirror_service_account(ps: &mut Map<String, Value>) {
    let name = [ps.get("serviceAccountName"), ps.get("serviceAccount")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(name) = name {
        ps.insert("serviceAccountName".into(), Value::String(name.clone()));
        ps.insert("serviceAccount".into(), Value::String(name));
    }
}

fn volume(vol: &mut Map<String, Value>) {
    let has_source = VOLUME_SOURCES.iter().any(|k| vol.get(*k).is_some_and(|v| !v.is_null()));
    if !has_source {
        vol.insert("emptyDir".into(), json!({}));
    }
    if let Some(hp) = existing(vol, "hostPath") {
        default(hp, "type", json!(""));
    }
    for key in ["secret", "configMap"] {
        if let Some(src) = existing(vol, key) {
            default(src, "defaultMode", json!(420));
        }
    }
    if let Some(d) = existing(vol, "downwardAPI") {
        default(d, "defaultMode", json!(420));
        downward_items(d);
    }
    if let Some(p) = existing(vol, "projected") {
        default(p, "defaultMode", json!(420));
        for src in each(p, "sources") {
            if let Some(d) = existing(src, "downwardAPI") {
                downward_items(d);
            }
            if let Some(t) = existing(src, "serviceAccountToken") {
                default(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(i) = existing(vol, "iscsi") {
        default_str(i, "iscsiInterface", "default");
    }
    if let Some(r) = existing(vol, "rbd") {
        default_str(r, "pool", "rbd");
        default_str(r, "user", "admin");
        default_str(r, "keyring", "/etc/ceph/keyring");
    }
    if let Some(a) = existing(vol, "azureDisk") {
        default(a, "cachingMode", json!("ReadWrite"));
        default(a, "fsType", json!("ext4"));
        default(a, "readOnly", json!(false));
        default(a, "kind", json!("Shared"));
    }
    if let Some(s) = existing(vol, "scaleIO") {
        default_str(s, "storageMode", "ThinProvisioned");
        default_str(s, "fsType", "xfs");
    }
    if let Some(spec) = existing(vol, "ephemeral")
        .and_then(|e| existing(e, "volumeClaimTemplate"))
        .and_then(|t| existing(t, "spec"))
    {
        super::pvc_spec(spec);
    }
}

fn downward_items(d: &mut Map<String, Value>) {
    for item in each(d, "items") {
        if let Some(fr) = existing(item, "fieldRef") {
            default_str(fr, "apiVersion", "v1");
        }
    }
}

/// `SetDefaults_Container` and the nested container defaults.
fn container(c: &mut Map<String, Value>) {
    if empty_str(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = image_pull_policy(image);
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for port in each(c, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for env in each(c, "env") {
        if let Some(fr) = existing(env, "valueFrom").and_then(|vf| existing(vf, "fieldRef")) {
            default_str(fr, "apiVersion", "v1");
        }
    }
    if let Some(res) = child(c, "resources") {
        resource_list(res, "limits");
        resource_list(res, "requests");
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing(c, key) {
            for (field, value) in [
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ] {
                let zero = matches!(probe.get(field), None | Some(Value::Null))
                    || probe.get(field).and_then(Value::as_i64) == Some(0);
                if zero {
                    probe.insert(field.into(), json!(value));
                }
            }
            http_get(probe);
            if let Some(grpc) = existing(probe, "grpc") {
                default(grpc, "service", json!(""));
            }
        }
    }
    if let Some(lc) = existing(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(h) = existing(lc, key) {
                http_get(h);
            }
        }
    }
}

fn http_get(handler: &mut Map<String, Value>) {
    if let Some(h) = existing(handler, "httpGet") {
        default_str(h, "path", "/");
        default_str(h, "scheme", "HTTP");
    }
}

/// Pod-only defaults (`SetDefaults_Pod`): requests copied from limits, service links on,
/// host ports mirrored from container ports under host networking.
pub(super) fn pod_only(spec: &mut Map<String, Value>) {
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers"] {
        for c in each(spec, list) {
            let limits = c
                .get("resources")
                .and_then(|r| r.get("limits"))
                .and_then(Value::as_object)
                .cloned();
            if let Some(limits) = limits
                && let Some(requests) = child(c, "resources").and_then(|r| child(r, "requests"))
            {
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
            if host_network {
                for port in each(c, "ports") {
                    let unset = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0;
                    if unset && let Some(cp) = port.get("containerPort").filter(|v| v.is_number()).cloned() {
                        port.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
    default(spec, "enableServiceLinks", json!(true));
}

/// The image pull policy upstream picks when none is given: `Always` for a `latest` tag
/// (or no tag and no digest), `IfNotPresent` otherwise (including unparseable names).
pub fn image_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference (`latest` when neither tag nor digest is given), or
/// `None` when the reference does not parse.
fn image_tag(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/');
    let last = &name[last_slash.map_or(0, |i| i + 1)..];
    let (repo_last, tag) = match last.split_once(':') {
        Some((r, t)) => (r, Some(t)),
        None => (last, None),
    };
    let repo = match last_slash {
        Some(i) => format!("{}/{repo_last}", &name[..i]),
        None => repo_last.to_string(),
    };
    // Domain: the first component when it looks like a host.
    let remainder = match repo.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first => {
            rest
        }
        _ => repo.as_str(),
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if remainder.is_empty() || !remainder.split('/').all(component_ok) {
        return None;
    }
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return None;
        }
    }
    if let Some(d) = digest {
        let valid = d
            .split_once(':')
            .is_some_and(|(alg, hex)| !alg.is_empty() && hex.len() >= 32);
        if !valid {
            return None;
        }
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => Some(String::new()),
        (None, None) => Some("latest".to_string()),
    }
}

/// Create-time pod mutations: the ServiceAccount and DefaultTolerationSeconds admission
/// plugins' defaults and the strategy's initial status (the Priority plugin, which reads
/// PriorityClasses, is the API server's).
pub(super) fn prepare_pod(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        if empty_str(spec, "serviceAccountName") && empty_str(spec, "serviceAccount") {
            spec.insert("serviceAccountName".into(), json!("default"));
        }
        mirror_service_account(spec);
        let tolerates = |key: &str, list: &[Value]| {
            list.iter().any(|t| {
                let k = t.get("key").and_then(Value::as_str).unwrap_or("");
                let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
                (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
            })
        };
        let existing_tols = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut added = Vec::new();
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            if !tolerates(key, &existing_tols) {
                added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
        if !added.is_empty() {
            match spec.get_mut("tolerations") {
                Some(Value::Array(list)) => list.extend(added),
                Some(Value::Null) | None => {
                    spec.insert("tolerations".into(), Value::Array(added));
                }
                Some(_) => {}
            }
        }
    }
    let qos = crate::validation::pod_qos_class(&Value::Object(root.clone()));
    root.insert("status".into(), json!({"phase": "Pending", "qosClass": qos}));
}
