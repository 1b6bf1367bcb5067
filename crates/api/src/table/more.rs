//! Printers of the kinds shoal stores and validates beyond the workloads: RBAC, policy,
//! networking, autoscaling, scheduling, quota, storage (CSI), certificates, admission,
//! flow control and the aggregator. Columns and cells as upstream's printers compute them
//! (the server always prints wide: priority-1 cells are always there).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{
    AGE, ApiType, Column, Doc, NAME, api, format_label_selector, format_labels, human_duration, int, text, wide,
};
use super::{age, name};
use crate::selector::json::{at, bool_at, int_at, list_at, str_at};

/// A boolean column shown by default.
const fn boolean(name: &'static str, doc: Doc) -> Column {
    Column {
        name,
        kind: "boolean",
        format: "",
        priority: 0,
        doc,
    }
}

/// The printer of `group`/`kind`, if this module has one.
pub(super) fn printer(group: &str, kind: &str) -> Option<(&'static [Column], super::CellFn)> {
    Some(match (group, kind) {
        ("", "PodTemplate") => (POD_TEMPLATE_COLUMNS, pod_template_cells),
        ("", "ResourceQuota") => (RESOURCE_QUOTA_COLUMNS, resource_quota_cells),
        ("", "ComponentStatus") => (COMPONENT_STATUS_COLUMNS, component_status_cells),
        ("policy", "PodDisruptionBudget") => (PDB_COLUMNS, pdb_cells),
        ("networking.k8s.io", "NetworkPolicy") => (NETWORK_POLICY_COLUMNS, network_policy_cells),
        ("networking.k8s.io", "Ingress") => (INGRESS_COLUMNS, ingress_cells),
        ("networking.k8s.io", "IngressClass") => (INGRESS_CLASS_COLUMNS, ingress_class_cells),
        ("networking.k8s.io", "IPAddress") => (IP_ADDRESS_COLUMNS, ip_address_cells),
        ("networking.k8s.io", "ServiceCIDR") => (SERVICE_CIDR_COLUMNS, service_cidr_cells),
        ("rbac.authorization.k8s.io", "RoleBinding") => (ROLE_BINDING_COLUMNS, binding_cells),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => (CLUSTER_ROLE_BINDING_COLUMNS, binding_cells),
        ("autoscaling", "HorizontalPodAutoscaler") => (HPA_COLUMNS, hpa_cells),
        ("scheduling.k8s.io", "PriorityClass") => (PRIORITY_CLASS_COLUMNS, priority_class_cells),
        ("node.k8s.io", "RuntimeClass") => (RUNTIME_CLASS_COLUMNS, runtime_class_cells),
        ("storage.k8s.io", "CSIDriver") => (CSI_DRIVER_COLUMNS, csi_driver_cells),
        ("storage.k8s.io", "CSINode") => (CSI_NODE_COLUMNS, csi_node_cells),
        ("storage.k8s.io", "VolumeAttachment") => (VOLUME_ATTACHMENT_COLUMNS, volume_attachment_cells),
        ("storage.k8s.io", "CSIStorageCapacity") => (CSI_STORAGE_CAPACITY_COLUMNS, csi_storage_capacity_cells),
        ("certificates.k8s.io", "CertificateSigningRequest") => (CSR_COLUMNS, csr_cells),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            (WEBHOOK_COLUMNS, webhook_cells)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => (VAP_COLUMNS, vap_cells),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => (VAPB_COLUMNS, vapb_cells),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => (FLOW_SCHEMA_COLUMNS, flow_schema_cells),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => (PLC_COLUMNS, plc_cells),
        ("apiregistration.k8s.io", "APIService") => (API_SERVICE_COLUMNS, api_service_cells),
        _ => return None,
    })
}

fn joined(values: impl IntoIterator<Item = String>, sep: &str) -> String {
    values.into_iter().collect::<Vec<_>>().join(sep)
}

/// A number, or `"<none>"` when the value is absent (the cells upstream types as strings
/// but fills with numbers when set).
fn number_or_none(v: &Value) -> Value {
    if v.is_number() { v.clone() } else { json!("<none>") }
}

// --- core --------------------------------------------------------------------------------------

const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    text("Containers", Doc::Text("Names of each container in the template.")),
    text(
        "Images",
        Doc::Text("Images referenced by each container in the template."),
    ),
    text("Pod Labels", Doc::Text("The labels for the pod template.")),
];

fn pod_template_cells(t: &Value, _now: Timestamp) -> Vec<Value> {
    let containers = list_at(t, "template.spec.containers");
    let names = joined(containers.iter().map(|c| str_at(c, "name").to_string()), ",");
    let images = joined(containers.iter().map(|c| str_at(c, "image").to_string()), ",");
    vec![
        name(t),
        names.into(),
        images.into(),
        format_labels(at(t, "template.metadata.labels")).into(),
    ]
}

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    text(
        "Request",
        Doc::Text("Request represents a minimum amount of cpu/memory that a container may consume."),
    ),
    text(
        "Limit",
        Doc::Text(
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
    ),
    AGE,
];

fn resource_quota_cells(q: &Value, now: Timestamp) -> Vec<Value> {
    let hard = at(q, "status.hard").as_object().cloned().unwrap_or_default();
    let mut names: Vec<&String> = hard.keys().collect();
    names.sort();
    let used = at(q, "status.used");
    let entry = |n: &String| {
        let used = used.get(n.as_str()).and_then(Value::as_str).unwrap_or("0");
        format!("{n}: {used}/{}", hard[n.as_str()].as_str().unwrap_or_default())
    };
    let is_limit = |n: &str| {
        let mut parts = n.split('.');
        parts.next() == Some("limits") && parts.next().is_some()
    };
    let request = joined(names.iter().filter(|n| !is_limit(n)).map(|n| entry(n)), ", ");
    let limit = joined(names.iter().filter(|n| is_limit(n)).map(|n| entry(n)), ", ");
    vec![name(q), request.into(), limit.into(), age(q, now)]
}

const COMPONENT_STATUS_COLUMNS: &[Column] = &[
    NAME,
    text("Status", Doc::Text("Status of the component conditions")),
    text("Message", Doc::Text("Message of the component conditions")),
    text("Error", Doc::Text("Error of the component conditions")),
];

fn component_status_cells(cs: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy = list_at(cs, "conditions")
        .iter()
        .find(|c| str_at(c, "type") == "Healthy")
        .cloned();
    let (status, message, error) = match &healthy {
        None => ("Unknown", "", ""),
        Some(c) => (
            if str_at(c, "status") == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            str_at(c, "message"),
            str_at(c, "error"),
        ),
    };
    vec![name(cs), status.into(), message.into(), error.into()]
}

// --- policy, networking --------------------------------------------------------------------------

const PDB_COLUMNS: &[Column] = &[
    NAME,
    text(
        "Min Available",
        Doc::Text("The minimum number of pods that must be available."),
    ),
    text(
        "Max Unavailable",
        Doc::Text("The maximum number of pods that may be unavailable."),
    ),
    int(
        "Allowed Disruptions",
        Doc::Text("Calculated number of pods that may be disrupted at this time."),
    ),
    AGE,
];

fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".to_string(),
    }
}

fn pdb_cells(pdb: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(pdb),
        int_or_string(at(pdb, "spec.minAvailable")).into(),
        int_or_string(at(pdb, "spec.maxUnavailable")).into(),
        int_at(pdb, "status.disruptionsAllowed").into(),
        age(pdb, now),
    ]
}

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    text("Pod-Selector", api(ApiType::NetworkPolicySpec, "podSelector")),
    AGE,
];

fn network_policy_cells(np: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(np),
        format_label_selector(at(np, "spec.podSelector")).into(),
        age(np, now),
    ]
}

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    text(
        "Class",
        Doc::Text("The name of the IngressClass resource that should be used for additional configuration"),
    ),
    text(
        "Hosts",
        Doc::Text("Hosts that incoming requests are matched against before the ingress rule"),
    ),
    text(
        "Address",
        Doc::Text("Address is a list containing ingress points for the load-balancer"),
    ),
    text("Ports", Doc::Text("Ports of TLS configurations that open")),
    AGE,
];

fn ingress_cells(ing: &Value, now: Timestamp) -> Vec<Value> {
    let class = at(ing, "spec.ingressClassName")
        .as_str()
        .unwrap_or("<none>")
        .to_string();
    let rules = list_at(ing, "spec.rules");
    let mut hosts: Vec<String> = Vec::new();
    let mut more = false;
    for r in rules {
        if hosts.len() == 3 {
            more = true;
        }
        if !more && !str_at(r, "host").is_empty() {
            hosts.push(str_at(r, "host").to_string());
        }
    }
    let mut host_cell = if hosts.is_empty() {
        "*".to_string()
    } else {
        hosts.join(",")
    };
    if more {
        host_cell.push_str(&format!(" + {} more...", rules.len().saturating_sub(3)));
    }
    let mut addresses: Vec<String> = list_at(ing, "status.loadBalancer.ingress")
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, "ip");
            let host = str_at(i, "hostname");
            (!ip.is_empty())
                .then_some(ip)
                .or((!host.is_empty()).then_some(host))
                .map(str::to_string)
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    let ports = if list_at(ing, "spec.tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ing),
        class.into(),
        host_cell.into(),
        addresses.join(",").into(),
        ports.into(),
        age(ing, now),
    ]
}

const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    text(
        "Controller",
        Doc::Text("Controller that is responsible for handling this class"),
    ),
    text(
        "Parameters",
        Doc::Text("A reference to a resource with additional parameters"),
    ),
    AGE,
];

fn ingress_class_cells(ic: &Value, now: Timestamp) -> Vec<Value> {
    let p = at(ic, "spec.parameters");
    let params = if p.is_object() {
        let group = p["apiGroup"].as_str().map(|g| format!(".{g}")).unwrap_or_default();
        format!("{}{group}/{}", str_at(p, "kind"), str_at(p, "name"))
    } else {
        "<none>".to_string()
    };
    vec![
        name(ic),
        str_at(ic, "spec.controller").into(),
        params.into(),
        age(ic, now),
    ]
}

const IP_ADDRESS_COLUMNS: &[Column] = &[NAME, text("ParentRef", api(ApiType::IpAddressSpec, "parentRef"))];

fn ip_address_cells(ip: &Value, now: Timestamp) -> Vec<Value> {
    let p = at(ip, "spec.parentRef");
    let parent = if p.is_object() {
        let resource = match str_at(p, "group") {
            "" => str_at(p, "resource").to_lowercase(),
            g => format!("{}.{g}", str_at(p, "resource")).to_lowercase(),
        };
        let ns = str_at(p, "namespace");
        let ns = if ns.is_empty() { String::new() } else { format!("/{ns}") };
        format!("{resource}{ns}/{}", str_at(p, "name"))
    } else {
        "<none>".to_string()
    };
    // Upstream sends the age as a third cell without a column.
    vec![name(ip), parent.into(), age(ip, now)]
}

const SERVICE_CIDR_COLUMNS: &[Column] = &[NAME, text("CIDRs", api(ApiType::ServiceCidrSpec, "cidrs")), AGE];

fn service_cidr_cells(sc: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs = joined(
        list_at(sc, "spec.cidrs")
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_string()),
        ",",
    );
    vec![name(sc), cidrs.into(), age(sc, now)]
}

// --- rbac --------------------------------------------------------------------------------------

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    text("Role", api(ApiType::RoleBinding, "roleRef")),
    AGE,
    wide("Users", Doc::Text("Users in the roleBinding")),
    wide("Groups", Doc::Text("Groups in the roleBinding")),
    wide("ServiceAccounts", Doc::Text("ServiceAccounts in the roleBinding")),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    text("Role", api(ApiType::ClusterRoleBinding, "roleRef")),
    AGE,
    wide("Users", Doc::Text("Users in the clusterRoleBinding")),
    wide("Groups", Doc::Text("Groups in the clusterRoleBinding")),
    wide(
        "ServiceAccounts",
        Doc::Text("ServiceAccounts in the clusterRoleBinding"),
    ),
];

fn binding_cells(b: &Value, now: Timestamp) -> Vec<Value> {
    let subjects = list_at(b, "subjects");
    let of = |kind: &str| {
        joined(
            subjects.iter().filter(|s| str_at(s, "kind") == kind).map(|s| {
                if kind == "ServiceAccount" {
                    format!("{}/{}", str_at(s, "namespace"), str_at(s, "name"))
                } else {
                    str_at(s, "name").to_string()
                }
            }),
            ", ",
        )
    };
    vec![
        name(b),
        format!("{}/{}", str_at(b, "roleRef.kind"), str_at(b, "roleRef.name")).into(),
        age(b, now),
        of("User").into(),
        of("Group").into(),
        of("ServiceAccount").into(),
    ]
}

// --- autoscaling, scheduling, node -------------------------------------------------------------

const HPA_COLUMNS: &[Column] = &[
    NAME,
    text("Reference", api(ApiType::HpaSpec, "scaleTargetRef")),
    text("Targets", api(ApiType::HpaSpec, "metrics")),
    text("MinPods", api(ApiType::HpaSpec, "minReplicas")),
    text("MaxPods", api(ApiType::HpaSpec, "maxReplicas")),
    text("Replicas", api(ApiType::HpaStatus, "currentReplicas")),
    AGE,
];

/// `cpu: 45%/80%` and the like, from spec.metrics and status.currentMetrics (by index).
fn hpa_metrics(hpa: &Value) -> String {
    let specs = list_at(hpa, "spec.metrics");
    // An autoscaling/v1 object names its CPU target directly.
    if specs.is_empty() {
        if let Some(target) = at(hpa, "spec.targetCPUUtilizationPercentage").as_i64() {
            let current = at(hpa, "status.currentCPUUtilizationPercentage")
                .as_i64()
                .map_or("<unknown>".to_string(), |c| format!("{c}%"));
            return format!("cpu: {current}/{target}%");
        }
        return "<none>".to_string();
    }
    let statuses = list_at(hpa, "status.currentMetrics");
    let quantity = |v: &Value| v.as_str().map_or("<nil>".to_string(), str::to_string);
    let entries: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i).filter(|s| s["type"] == spec["type"]);
            let cur = |path: &str| status.map(|s| at(s, path)).filter(|v| !v.is_null());
            match str_at(spec, "type") {
                t @ ("External" | "Object") => {
                    let field = if t == "External" { "external" } else { "object" };
                    let target = at(spec, &format!("{field}.target"));
                    if !target["averageValue"].is_null() {
                        let c = cur(&format!("{field}.current.averageValue")).map_or("<unknown>".into(), quantity);
                        format!("{c}/{} (avg)", quantity(&target["averageValue"]))
                    } else {
                        let c = cur(&format!("{field}.current.value")).map_or("<unknown>".into(), quantity);
                        format!("{c}/{}", quantity(&target["value"]))
                    }
                }
                "Pods" => {
                    let c = cur("pods.current.averageValue").map_or("<unknown>".into(), quantity);
                    format!("{c}/{}", quantity(at(spec, "pods.target.averageValue")))
                }
                t @ ("Resource" | "ContainerResource") => {
                    let field = if t == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let target = at(spec, &format!("{field}.target"));
                    let res = str_at(spec, &format!("{field}.name"));
                    if !target["averageValue"].is_null() {
                        let c = cur(&format!("{field}.current.averageValue")).map_or("<unknown>".into(), quantity);
                        format!("{res}: {c}/{}", quantity(&target["averageValue"]))
                    } else {
                        let c = cur(&format!("{field}.current.averageUtilization"))
                            .and_then(Value::as_i64)
                            .map_or("<unknown>".to_string(), |n| format!("{n}%"));
                        let t = target["averageUtilization"]
                            .as_i64()
                            .map_or("<auto>".to_string(), |n| format!("{n}%"));
                        format!("{res}: {c}/{t}")
                    }
                }
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    let mut out = entries.iter().take(2).cloned().collect::<Vec<_>>().join(", ");
    if entries.len() > 2 {
        out.push_str(&format!(" + {} more...", entries.len() - 2));
    }
    out
}

fn hpa_cells(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let min = at(hpa, "spec.minReplicas")
        .as_i64()
        .map_or("<unset>".to_string(), |n| n.to_string());
    vec![
        name(hpa),
        format!(
            "{}/{}",
            str_at(hpa, "spec.scaleTargetRef.kind"),
            str_at(hpa, "spec.scaleTargetRef.name")
        )
        .into(),
        hpa_metrics(hpa).into(),
        min.into(),
        int_at(hpa, "spec.maxReplicas").into(),
        int_at(hpa, "status.currentReplicas").into(),
        age(hpa, now),
    ]
}

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    int("Value", api(ApiType::PriorityClass, "value")),
    boolean("Global-Default", api(ApiType::PriorityClass, "globalDefault")),
    AGE,
    text("PreemptionPolicy", api(ApiType::PriorityClass, "preemptionPolicy")),
];

fn priority_class_cells(pc: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(pc),
        int_at(pc, "value").into(),
        bool_at(pc, "globalDefault").into(),
        age(pc, now),
        str_at(pc, "preemptionPolicy").into(),
    ]
}

const RUNTIME_CLASS_COLUMNS: &[Column] = &[NAME, text("Handler", Doc::Text("")), AGE];

fn runtime_class_cells(rc: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(rc), str_at(rc, "handler").into(), age(rc, now)]
}

// --- storage -----------------------------------------------------------------------------------

const CSI_DRIVER_COLUMNS: &[Column] = &[
    NAME,
    boolean("AttachRequired", api(ApiType::CsiDriverSpec, "attachRequired")),
    boolean("PodInfoOnMount", api(ApiType::CsiDriverSpec, "podInfoOnMount")),
    boolean("StorageCapacity", api(ApiType::CsiDriverSpec, "storageCapacity")),
    text("TokenRequests", api(ApiType::CsiDriverSpec, "tokenRequests")),
    boolean("RequiresRepublish", api(ApiType::CsiDriverSpec, "requiresRepublish")),
    text("Modes", api(ApiType::CsiDriverSpec, "volumeLifecycleModes")),
    AGE,
];

fn csi_driver_cells(d: &Value, now: Timestamp) -> Vec<Value> {
    let flag = |path: &str, default: bool| at(d, path).as_bool().unwrap_or(default);
    let tokens = match at(d, "spec.tokenRequests").as_array() {
        None => "<unset>".to_string(),
        Some(t) => joined(t.iter().map(|r| str_at(r, "audience").to_string()), ","),
    };
    let modes = joined(
        list_at(d, "spec.volumeLifecycleModes")
            .iter()
            .map(|m| m.as_str().unwrap_or_default().to_string()),
        ",",
    );
    vec![
        name(d),
        flag("spec.attachRequired", true).into(),
        flag("spec.podInfoOnMount", false).into(),
        flag("spec.storageCapacity", false).into(),
        tokens.into(),
        flag("spec.requiresRepublish", false).into(),
        (if modes.is_empty() { "<none>".to_string() } else { modes }).into(),
        age(d, now),
    ]
}

const CSI_NODE_COLUMNS: &[Column] = &[
    NAME,
    int(
        "Drivers",
        Doc::Text("Drivers indicates the number of CSI drivers registered on the node"),
    ),
    AGE,
];

fn csi_node_cells(n: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(n), (list_at(n, "spec.drivers").len() as i64).into(), age(n, now)]
}

const VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Attacher",
        kind: "string",
        format: "name",
        priority: 0,
        doc: api(ApiType::VolumeAttachmentSpec, "attacher"),
    },
    text(
        "PV",
        Doc::Text("persistentVolumeName represents the name of the persistent volume to attach."),
    ),
    text("Node", api(ApiType::VolumeAttachmentSpec, "nodeName")),
    boolean("Attached", api(ApiType::VolumeAttachmentStatus, "attached")),
    AGE,
];

fn volume_attachment_cells(va: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(va),
        str_at(va, "spec.attacher").into(),
        str_at(va, "spec.source.persistentVolumeName").into(),
        str_at(va, "spec.nodeName").into(),
        bool_at(va, "status.attached").into(),
        age(va, now),
    ]
}

const CSI_STORAGE_CAPACITY_COLUMNS: &[Column] = &[
    NAME,
    text("StorageClassName", api(ApiType::CsiStorageCapacity, "storageClassName")),
    text("Capacity", api(ApiType::CsiStorageCapacity, "capacity")),
];

fn csi_storage_capacity_cells(c: &Value, _now: Timestamp) -> Vec<Value> {
    let capacity = at(c, "capacity").as_str().unwrap_or("<unset>").to_string();
    vec![name(c), str_at(c, "storageClassName").into(), capacity.into()]
}

// --- certificates, admission, flow control, aggregator --------------------------------------

const CSR_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    text("SignerName", api(ApiType::CsrSpec, "signerName")),
    text("Requestor", api(ApiType::CsrSpec, "request")),
    text("RequestedDuration", api(ApiType::CsrSpec, "expirationSeconds")),
    text("Condition", api(ApiType::CsrStatus, "conditions")),
];

fn csr_cells(csr: &Value, now: Timestamp) -> Vec<Value> {
    let signer = str_at(csr, "spec.signerName");
    let duration = at(csr, "spec.expirationSeconds")
        .as_i64()
        .map_or("<none>".to_string(), |s| {
            human_duration(std::time::Duration::from_secs(s.max(0).unsigned_abs()))
        });
    let conditions = list_at(csr, "status.conditions");
    let has = |t: &str| conditions.iter().any(|c| str_at(c, "type") == t);
    let mut condition = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !str_at(csr, "status.certificate").is_empty() {
        condition.push_str(",Issued");
    }
    vec![
        name(csr),
        age(csr, now),
        (if signer.is_empty() { "<none>" } else { signer }).into(),
        str_at(csr, "spec.username").into(),
        duration.into(),
        condition.into(),
    ]
}

const WEBHOOK_COLUMNS: &[Column] = &[
    NAME,
    int(
        "Webhooks",
        Doc::Text("Webhooks indicates the number of webhooks registered in this configuration"),
    ),
    AGE,
];

fn webhook_cells(w: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(w), (list_at(w, "webhooks").len() as i64).into(), age(w, now)]
}

const VAP_COLUMNS: &[Column] = &[
    NAME,
    int(
        "Validations",
        Doc::Text("Validations indicates the number of validation rules defined in this configuration"),
    ),
    text(
        "ParamKind",
        Doc::Text("ParamKind specifies the kind of resources used to parameterize this policy"),
    ),
    AGE,
];

fn vap_cells(p: &Value, now: Timestamp) -> Vec<Value> {
    let kind = at(p, "spec.paramKind");
    let param = if kind.is_object() {
        format!("{}/{}", str_at(kind, "apiVersion"), str_at(kind, "kind"))
    } else {
        "<unset>".to_string()
    };
    vec![
        name(p),
        (list_at(p, "spec.validations").len() as i64).into(),
        param.into(),
        age(p, now),
    ]
}

const VAPB_COLUMNS: &[Column] = &[
    NAME,
    text(
        "PolicyName",
        Doc::Text("PolicyName indicates the policy definition which the policy binding binded to"),
    ),
    text(
        "ParamRef",
        Doc::Text("ParamRef indicates the param resource which sets the configration param"),
    ),
    AGE,
];

fn vapb_cells(b: &Value, now: Timestamp) -> Vec<Value> {
    let r = at(b, "spec.paramRef");
    let param = if !r.is_object() {
        "<unset>".to_string()
    } else if !str_at(r, "name").is_empty() {
        match str_at(r, "namespace") {
            "" => format!("*/{}", str_at(r, "name")),
            ns => format!("{ns}/{}", str_at(r, "name")),
        }
    } else if r["selector"].is_object() {
        format_label_selector(&r["selector"])
    } else {
        "<unset>".to_string()
    };
    vec![name(b), str_at(b, "spec.policyName").into(), param.into(), age(b, now)]
}

const FLOW_SCHEMA_COLUMNS: &[Column] = &[
    NAME,
    text("PriorityLevel", api(ApiType::PriorityLevelReference, "name")),
    text("MatchingPrecedence", api(ApiType::FlowSchemaSpec, "matchingPrecedence")),
    text(
        "DistinguisherMethod",
        api(ApiType::FlowSchemaSpec, "distinguisherMethod"),
    ),
    AGE,
    text(
        "MissingPL",
        Doc::Text("references a broken or non-existent PriorityLevelConfiguration"),
    ),
];

fn flow_schema_cells(fs: &Value, now: Timestamp) -> Vec<Value> {
    let method = at(fs, "spec.distinguisherMethod.type")
        .as_str()
        .unwrap_or("<none>")
        .to_string();
    let missing = list_at(fs, "status.conditions")
        .iter()
        .find(|c| str_at(c, "type") == "Dangling")
        .map_or("?".to_string(), |c| str_at(c, "status").to_string());
    vec![
        name(fs),
        str_at(fs, "spec.priorityLevelConfiguration.name").into(),
        int_at(fs, "spec.matchingPrecedence").into(),
        method.into(),
        age(fs, now),
        missing.into(),
    ]
}

const PLC_COLUMNS: &[Column] = &[
    NAME,
    text("Type", api(ApiType::PriorityLevelSpec, "type")),
    text(
        "NominalConcurrencyShares",
        api(ApiType::LimitedPriorityLevel, "nominalConcurrencyShares"),
    ),
    text("Queues", api(ApiType::QueuingConfiguration, "queues")),
    text("HandSize", api(ApiType::QueuingConfiguration, "handSize")),
    text(
        "QueueLengthLimit",
        api(ApiType::QueuingConfiguration, "queueLengthLimit"),
    ),
    AGE,
];

fn plc_cells(p: &Value, now: Timestamp) -> Vec<Value> {
    let limited = at(p, "spec.limited");
    let queuing = &limited["limitResponse"]["queuing"];
    vec![
        name(p),
        str_at(p, "spec.type").into(),
        number_or_none(&limited["nominalConcurrencyShares"]),
        number_or_none(&queuing["queues"]),
        number_or_none(&queuing["handSize"]),
        number_or_none(&queuing["queueLengthLimit"]),
        age(p, now),
    ]
}

const API_SERVICE_COLUMNS: &[Column] = &[
    NAME,
    text(
        "Service",
        Doc::Text("The reference to the service that hosts this API endpoint."),
    ),
    text("Available", Doc::Text("Whether this service is available.")),
    AGE,
];

fn api_service_cells(a: &Value, now: Timestamp) -> Vec<Value> {
    let svc = at(a, "spec.service");
    let service = if svc.is_object() {
        format!("{}/{}", str_at(svc, "namespace"), str_at(svc, "name"))
    } else {
        "Local".to_string()
    };
    let available = list_at(a, "status.conditions")
        .iter()
        .find(|c| str_at(c, "type") == "Available")
        .map_or("Unknown".to_string(), |c| {
            let status = str_at(c, "status");
            let reason = str_at(c, "reason");
            if status == "True" || reason.is_empty() {
                status.to_string()
            } else {
                format!("{status} ({reason})")
            }
        });
    vec![name(a), service.into(), available.into(), age(a, now)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn bindings_list_their_subjects_by_kind() {
        let b = json!({"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                         {"kind": "Group", "name": "devs"}, {"kind": "User", "name": "joe"}]});
        assert_eq!(
            binding_cells(&b, now()),
            vec![
                json!("b"),
                json!("ClusterRole/admin"),
                json!("10m"),
                json!("jane, joe"),
                json!("devs"),
                json!("ns/sa")
            ]
        );
    }

    #[test]
    fn hpa_targets_read_spec_and_current_metrics() {
        let hpa = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 5, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}]}});
        assert_eq!(hpa_metrics(&hpa), "cpu: 45%/80%, <unknown>/10 + 1 more...");
        let cells = hpa_cells(&hpa, now());
        assert_eq!(
            (cells[1].clone(), cells[3].clone(), cells[4].clone()),
            (json!("Deployment/web"), json!("<unset>"), json!(5))
        );
        let v1 = json!({"spec": {"targetCPUUtilizationPercentage": 60}});
        assert_eq!(hpa_metrics(&v1), "cpu: <unknown>/60%");
    }

    #[test]
    fn quotas_split_requests_and_limits() {
        let q = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "limits.cpu": "4", "requests.memory": "1Gi", "cpu": "2"},
            "used": {"pods": "3", "limits.cpu": "1"}}});
        let cells = resource_quota_cells(&q, now());
        assert_eq!(cells[1], "cpu: 0/2, pods: 3/10, requests.memory: 0/1Gi");
        assert_eq!(cells[2], "limits.cpu: 1/4");
    }

    #[test]
    fn pdbs_print_unset_limits_as_n_a() {
        let pdb =
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 2}});
        let cells = pdb_cells(&pdb, now());
        assert_eq!(
            (cells[1].clone(), cells[2].clone(), cells[3].clone()),
            (json!("50%"), json!("N/A"), json!(2))
        );
    }

    #[test]
    fn ingresses_show_hosts_addresses_and_ports() {
        let ing = json!({"metadata": {"name": "i"}, "spec": {"tls": [{}], "rules": [
            {"host": "a"}, {"host": ""}, {"host": "b"}, {"host": "c"}, {"host": "d"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb"}, {"ip": "10.0.0.2"}]}}});
        let cells = ingress_cells(&ing, now());
        assert_eq!(cells[1], "<none>");
        assert_eq!(cells[2], "a,b,c + 2 more...");
        assert_eq!(cells[3], "10.0.0.2,lb");
        assert_eq!(cells[4], "80, 443");
    }
}
