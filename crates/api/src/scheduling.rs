//! Placement rules shared by the DaemonSet controller, the scheduler and `shoal why`: node
//! selectors, required node affinity (`matchExpressions` and `matchFields`), taints and
//! tolerations, cordoned nodes, resource requests against allocatable, and host ports.
//!
//! Every check says *why* a node does not fit ([`Unfit`]), in words close to the scheduler's
//! own messages, so the same answer serves `FailedScheduling` events and `shoal why`.
//! Pure functions over JSON objects (`serde_json::Value`); malformed members never panic, they
//! simply do not match.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::validation::Quantity;

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// `key`.
    pub key: String,
    /// `value` (empty when absent).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl fmt::Display for Taint {
    /// `key=value:Effect` (or `key:Effect` without a value), as kubectl prints taints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect)
        }
    }
}

/// Why a pod does not fit a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// `spec.nodeName` names another node.
    NodeName { wanted: String },
    /// A `nodeSelector` entry the node's labels do not satisfy.
    NodeSelector {
        key: String,
        wanted: String,
        actual: Option<String>,
    },
    /// No term of the required node affinity matches.
    NodeAffinity,
    /// A NoSchedule/NoExecute taint the pod does not tolerate.
    Taint(Taint),
    /// The node is cordoned (`spec.unschedulable`) and the pod does not tolerate it.
    Unschedulable,
    /// Requests exceed what is left of allocatable (resource names, e.g. `cpu`, `pods`).
    Insufficient(Vec<String>),
    /// A requested host port is already used on the node.
    HostPort,
}

impl Unfit {
    /// The scheduler's per-node reason text, used to build
    /// `0/3 nodes are available: 1 node(s) had untolerated taint {...}, 2 Insufficient cpu.`
    pub fn scheduler_reasons(&self) -> Vec<String> {
        match self {
            Unfit::NodeName { .. } => vec!["node(s) didn't match the requested node name".into()],
            Unfit::NodeSelector { .. } | Unfit::NodeAffinity => {
                vec!["node(s) didn't match Pod's node affinity/selector".into()]
            }
            Unfit::Taint(t) => {
                let shown = if t.value.is_empty() {
                    format!("{}: ", t.key)
                } else {
                    format!("{}: {}", t.key, t.value)
                };
                vec![format!("node(s) had untolerated taint {{{shown}}}")]
            }
            Unfit::Unschedulable => vec!["node(s) were unschedulable".into()],
            Unfit::Insufficient(names) => names
                .iter()
                .map(|n| {
                    if n == "pods" {
                        "Too many pods".to_string()
                    } else {
                        format!("Insufficient {n}")
                    }
                })
                .collect(),
            Unfit::HostPort => vec!["node(s) didn't have free ports for the requested pod ports".into()],
        }
    }
}

impl fmt::Display for Unfit {
    /// A precise explanation for people (`shoal why`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NodeName { wanted } => write!(f, "the pod template pins spec.nodeName to {wanted}"),
            Unfit::NodeSelector {
                key,
                wanted,
                actual: Some(actual),
            } => {
                write!(
                    f,
                    "nodeSelector {key}={wanted} does not match: the node has {key}={actual}"
                )
            }
            Unfit::NodeSelector {
                key,
                wanted,
                actual: None,
            } => {
                write!(
                    f,
                    "nodeSelector {key}={wanted} does not match: the node has no label {key}"
                )
            }
            Unfit::NodeAffinity => write!(f, "no term of the required node affinity matches the node"),
            Unfit::Taint(t) => write!(f, "the node has taint {t}, which the pod does not tolerate"),
            Unfit::Unschedulable => write!(f, "the node is cordoned (spec.unschedulable)"),
            Unfit::Insufficient(names) => write!(f, "insufficient {} on the node", names.join(", ")),
            Unfit::HostPort => write!(f, "a requested host port is already in use on the node"),
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The node's taints.
pub fn taints(node: &Value) -> Vec<Taint> {
    list_of(&node["spec"], "taints")
        .iter()
        .map(|t| Taint {
            key: str_of(t, "key").to_string(),
            value: str_of(t, "value").to_string(),
            effect: str_of(t, "effect").to_string(),
        })
        .collect()
}

/// True when `toleration` tolerates `taint`: matching effect (empty tolerates every effect),
/// matching key (an empty key with `Exists` tolerates every key), and `Exists` or an equal
/// value.
pub fn tolerates(toleration: &Value, taint: &Taint) -> bool {
    let effect = str_of(toleration, "effect");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = str_of(toleration, "key");
    let op = str_of(toleration, "operator");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "" | "Equal" => str_of(toleration, "value") == taint.value,
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn untolerated<'a>(tolerations: &[Value], taints: &'a [Taint], effects: &[&str]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn node_labels(node: &Value) -> Option<&serde_json::Map<String, Value>> {
    node["metadata"]["labels"].as_object()
}

/// The first `nodeSelector` entry of `pod_spec` the node does not satisfy.
pub fn node_selector_mismatch(pod_spec: &Value, node: &Value) -> Option<Unfit> {
    let selector = pod_spec.get("nodeSelector")?.as_object()?;
    let labels = node_labels(node);
    for (key, wanted) in selector {
        let wanted = wanted.as_str().unwrap_or("");
        let actual = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        if actual != Some(wanted) {
            return Some(Unfit::NodeSelector {
                key: key.clone(),
                wanted: wanted.to_string(),
                actual: actual.map(str::to_string),
            });
        }
    }
    None
}

/// One node selector requirement (`matchExpressions` against labels, `matchFields` against
/// `metadata.name`). Malformed requirements do not match.
fn requirement_matches(req: &Value, actual: Option<&str>, fields: bool) -> bool {
    let values: Vec<&str> = list_of(req, "values").iter().filter_map(Value::as_str).collect();
    let op = str_of(req, "operator");
    if fields && !(matches!(op, "In" | "NotIn") && values.len() == 1) {
        return false;
    }
    let int = |s: &str| s.parse::<i64>().ok();
    match op {
        "In" => actual.is_some_and(|a| values.contains(&a)),
        "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
        "Exists" => values.is_empty() && actual.is_some(),
        "DoesNotExist" => values.is_empty() && actual.is_none(),
        "Gt" | "Lt" => match (values.as_slice(), actual.and_then(int)) {
            ([v], Some(a)) => match int(v) {
                Some(v) if op == "Gt" => a > v,
                Some(v) => a < v,
                None => false,
            },
            _ => false,
        },
        _ => false,
    }
}

/// True when a node selector term matches: all of its requirements hold; a term with no
/// requirements matches nothing.
pub fn term_matches(term: &Value, node: &Value) -> bool {
    let exprs = list_of(term, "matchExpressions");
    let fields = list_of(term, "matchFields");
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node_labels(node);
    let name = node["metadata"]["name"].as_str();
    exprs.iter().all(|r| {
        let actual = labels.and_then(|l| l.get(str_of(r, "key"))).and_then(Value::as_str);
        requirement_matches(r, actual, false)
    }) && fields
        .iter()
        .all(|r| str_of(r, "key") == "metadata.name" && requirement_matches(r, name, true))
}

/// The required node affinity terms of a pod spec (`None` when there is no requirement).
pub fn required_terms(pod_spec: &Value) -> Option<&[Value]> {
    let required = pod_spec
        .get("affinity")?
        .get("nodeAffinity")?
        .get("requiredDuringSchedulingIgnoredDuringExecution")?;
    Some(list_of(required, "nodeSelectorTerms"))
}

/// Node name, nodeSelector and required node affinity: what the pod requires of a node's
/// identity and labels.
pub fn node_affinity_unfit(pod_spec: &Value, node: &Value) -> Option<Unfit> {
    let pinned = str_of(pod_spec, "nodeName");
    if !pinned.is_empty() && Some(pinned) != node["metadata"]["name"].as_str() {
        return Some(Unfit::NodeName {
            wanted: pinned.to_string(),
        });
    }
    if let Some(u) = node_selector_mismatch(pod_spec, node) {
        return Some(u);
    }
    match required_terms(pod_spec) {
        Some(terms) if !terms.iter().any(|t| term_matches(t, node)) => Some(Unfit::NodeAffinity),
        _ => None,
    }
}

/// Resource amounts in milli-units by resource name.
pub type Resources = BTreeMap<String, i128>;

fn add_requests(into: &mut Resources, requests: &Value) {
    if let Some(m) = requests.as_object() {
        for (name, q) in m {
            if let Ok(q) = Quantity::from_json(q) {
                *into.entry(name.clone()).or_default() += q.milli_value();
            }
        }
    }
}

/// What a pod requests, as the scheduler counts it: the sum over containers, or the largest
/// init container when that is more, plus `overhead`. `pods` is always 1 (in milli-units: 1000).
pub fn pod_requests(pod_spec: &Value) -> Resources {
    let mut sum = Resources::new();
    for c in list_of(pod_spec, "containers") {
        add_requests(&mut sum, &c["resources"]["requests"]);
    }
    for c in list_of(pod_spec, "initContainers") {
        let mut one = Resources::new();
        add_requests(&mut one, &c["resources"]["requests"]);
        for (name, v) in one {
            let e = sum.entry(name).or_default();
            *e = (*e).max(v);
        }
    }
    add_requests(&mut sum, &pod_spec["overhead"]);
    sum.insert("pods".into(), 1000);
    sum
}

/// The node's allocatable resources (falling back to capacity).
pub fn allocatable(node: &Value) -> Resources {
    let mut out = Resources::new();
    let status = &node["status"];
    let source = if status["allocatable"].is_object() {
        &status["allocatable"]
    } else {
        &status["capacity"]
    };
    add_requests(&mut out, source);
    out
}

/// The resources `requests` needs beyond what is `free`, in the scheduler's order
/// (`pods` first, then cpu, memory, then the rest by name). Resources the node does not
/// list count as zero available, except for requests of zero.
pub fn insufficient(requests: &Resources, free: &Resources) -> Vec<String> {
    let mut names: Vec<&String> = requests.keys().collect();
    let rank = |n: &str| match n {
        "pods" => 0,
        "cpu" => 1,
        "memory" => 2,
        _ => 3,
    };
    names.sort_by_key(|n| (rank(n), n.to_string()));
    names
        .into_iter()
        .filter(|n| {
            let want = requests[*n];
            want > 0 && want > free.get(*n).copied().unwrap_or(0)
        })
        .cloned()
        .collect()
}

/// The host ports (protocol, hostIP, port) a pod spec asks for.
pub fn host_ports(pod_spec: &Value) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for c in list_of(pod_spec, "containers")
        .iter()
        .chain(list_of(pod_spec, "initContainers"))
    {
        for p in list_of(c, "ports") {
            if let Some(port) = p["hostPort"].as_i64().filter(|p| *p > 0) {
                let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
                let ip = p["hostIP"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("0.0.0.0")
                    .to_string();
                out.push((proto, ip, port));
            }
        }
    }
    out
}

/// True when two host-port sets collide (same protocol and port, and the same or a
/// wildcard address).
pub fn host_ports_conflict(a: &[(String, String, i64)], b: &[(String, String, i64)]) -> bool {
    a.iter().any(|(pa, ia, na)| {
        b.iter()
            .any(|(pb, ib, nb)| pa == pb && na == nb && (ia == ib || ia == "0.0.0.0" || ib == "0.0.0.0"))
    })
}

/// The scheduler's filters for placing a pod with `pod_spec` on `node`, given the specs of
/// the pods already bound there: NodeName, NodeAffinity (nodeSelector and required terms),
/// NodeUnschedulable, TaintToleration, NodePorts and NodeResourcesFit, in that order.
pub fn scheduler_unfit<'a>(
    pod_spec: &Value,
    node: &Value,
    bound: impl IntoIterator<Item = &'a Value>,
) -> Option<Unfit> {
    if let Some(u) = node_affinity_unfit(pod_spec, node) {
        return Some(u);
    }
    let tolerations = list_of(pod_spec, "tolerations");
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        };
        if !tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Some(Unfit::Unschedulable);
        }
    }
    let node_taints = taints(node);
    if let Some(t) = untolerated(tolerations, &node_taints, &["NoSchedule", "NoExecute"]) {
        return Some(Unfit::Taint(t.clone()));
    }
    let wanted_ports = host_ports(pod_spec);
    let mut used = Resources::new();
    for other in bound {
        if !wanted_ports.is_empty() && host_ports_conflict(&wanted_ports, &host_ports(other)) {
            return Some(Unfit::HostPort);
        }
        for (k, v) in pod_requests(other) {
            *used.entry(k).or_default() += v;
        }
    }
    let mut free = allocatable(node);
    for (k, v) in &used {
        let e = free.entry(k.clone()).or_default();
        *e -= v;
    }
    let short = insufficient(&pod_requests(pod_spec), &free);
    if !short.is_empty() {
        return Some(Unfit::Insufficient(short));
    }
    None
}

/// The reason upstream gives for nodes a pod's `matchFields metadata.name` term ruled out
/// before filtering (the scheduler never looks at them).
pub const NODE_AFFINITY_PREFILTER_REASON: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";

/// Upstream's `FailedScheduling` message: `0/3 nodes are available: 1 node(s) had untolerated
/// taint {k: v}, 2 Insufficient cpu.` without the preemption part. Reasons are counted over
/// nodes; `prefiltered` nodes count under [`NODE_AFFINITY_PREFILTER_REASON`]; the
/// "count reason" strings are sorted, as upstream does.
pub fn failed_scheduling_message(total_nodes: usize, unfit: &[Unfit], prefiltered: usize) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for u in unfit {
        for r in u.scheduler_reasons() {
            *counts.entry(r).or_default() += 1;
        }
    }
    if prefiltered > 0 {
        *counts.entry(NODE_AFFINITY_PREFILTER_REASON.to_string()).or_default() += prefiltered;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}})
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = Taint {
            key: "k".into(),
            value: "v".into(),
            effect: "NoSchedule".into(),
        };
        assert!(tolerates(&json!({"key": "k", "operator": "Equal", "value": "v"}), &t));
        assert!(tolerates(
            &json!({"key": "k", "value": "v", "effect": "NoSchedule"}),
            &t
        ));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &t));
        assert!(tolerates(&json!({"key": "k", "operator": "Exists"}), &t));
        assert!(
            tolerates(&json!({"operator": "Exists"}), &t),
            "empty key with Exists tolerates all"
        );
        assert!(!tolerates(&json!({"operator": "Equal"}), &t));
        assert!(!tolerates(
            &json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            &t
        ));
        assert_eq!(t.to_string(), "k=v:NoSchedule");
    }

    #[test]
    fn node_affinity_terms_and_fields() {
        let n = node("n1", json!({"role": "worker", "size": "8"}), json!([]));
        let term = |e: Value| json!({"matchExpressions": e});
        assert!(term_matches(
            &term(json!([{"key": "role", "operator": "In", "values": ["worker"]}])),
            &n
        ));
        assert!(!term_matches(
            &term(json!([{"key": "role", "operator": "NotIn", "values": ["worker"]}])),
            &n
        ));
        assert!(term_matches(
            &term(json!([{"key": "gpu", "operator": "DoesNotExist"}])),
            &n
        ));
        assert!(term_matches(
            &term(json!([{"key": "size", "operator": "Gt", "values": ["4"]}])),
            &n
        ));
        assert!(!term_matches(
            &term(json!([{"key": "size", "operator": "Lt", "values": ["4"]}])),
            &n
        ));
        assert!(!term_matches(&json!({}), &n), "an empty term matches nothing");
        let by_name = json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]});
        assert!(term_matches(&by_name, &n));
        let two_values = json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]}]});
        assert!(!term_matches(&two_values, &n), "matchFields takes exactly one value");
        let spec = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "role", "operator": "In", "values": ["db"]}]}, by_name]}}}});
        assert_eq!(node_affinity_unfit(&spec, &n), None, "terms are ORed");
        let other = node("n2", json!({}), json!([]));
        assert_eq!(node_affinity_unfit(&spec, &other), Some(Unfit::NodeAffinity));
    }

    #[test]
    fn node_selector_reports_the_differing_key() {
        let n = node("n1", json!({"role": "db"}), json!([]));
        let spec = json!({"nodeSelector": {"role": "worker"}});
        let u = node_selector_mismatch(&spec, &n).unwrap();
        assert_eq!(
            u.to_string(),
            "nodeSelector role=worker does not match: the node has role=db"
        );
        let bare = node("n2", json!({}), json!([]));
        assert_eq!(
            node_selector_mismatch(&spec, &bare).unwrap().to_string(),
            "nodeSelector role=worker does not match: the node has no label role"
        );
    }

    #[test]
    fn scheduler_filters_and_message() {
        let tainted = node(
            "n1",
            json!({}),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        );
        let small = node("n2", json!({}), json!([]));
        let pod = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]});
        let busy = json!({"containers": [{"name": "b", "resources": {"requests": {"cpu": "2"}}}]});
        let u1 = scheduler_unfit(&pod, &tainted, []).unwrap();
        let u2 = scheduler_unfit(&pod, &small, [&busy]).unwrap();
        assert_eq!(u2, Unfit::Insufficient(vec!["cpu".into()]));
        assert_eq!(
            failed_scheduling_message(2, &[u1, u2], 0),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
        );
        assert_eq!(scheduler_unfit(&pod, &small, []), None);
        let cordoned = json!({"metadata": {"name": "n3"}, "spec": {"unschedulable": true}, "status": {"allocatable": {"pods": "1"}}});
        assert_eq!(scheduler_unfit(&json!({}), &cordoned, []), Some(Unfit::Unschedulable));
        let tolerant = json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]});
        assert_eq!(scheduler_unfit(&tolerant, &cordoned, []), None);
    }

    #[test]
    fn host_ports_collide_on_same_protocol_and_port() {
        let a = json!({"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}]}]});
        let b = json!({"containers": [{"ports": [{"containerPort": 81, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]});
        let c = json!({"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]});
        assert!(host_ports_conflict(&host_ports(&a), &host_ports(&b)));
        assert!(!host_ports_conflict(&host_ports(&a), &host_ports(&c)));
        let n = node("n1", json!({}), json!([]));
        assert_eq!(scheduler_unfit(&a, &n, [&b]), Some(Unfit::HostPort));
    }

    #[test]
    fn requests_take_the_larger_of_init_and_regular_containers() {
        let spec = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}, {"resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}}],
                          "initContainers": [{"resources": {"requests": {"cpu": "1"}}}]});
        let r = pod_requests(&spec);
        assert_eq!(r["cpu"], 1000);
        assert_eq!(r["memory"], 1024 * 1024 * 1024 * 1000);
        assert_eq!(r["pods"], 1000);
    }
}
