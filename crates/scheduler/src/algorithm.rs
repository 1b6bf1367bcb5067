//! The scheduling algorithm, pure (no I/O, no clock): which node a pending pod goes to, or
//! why it goes nowhere.
//!
//! As upstream's scheduling cycle: PreFilter (required node affinity that pins nodes by
//! `matchFields metadata.name` narrows the candidates, which is how DaemonSet pods are placed
//! in O(1)), Filter (the filters of [`shoal_api::scheduling::scheduler_unfit`], evaluated
//! against per-node totals kept incrementally instead of re-summing every bound pod), a
//! bounded search for feasible nodes on large clusters (`percentageOfNodesToScore`'s adaptive
//! default, starting where the previous search stopped), Score (TaintToleration ×3,
//! NodeAffinity ×2, NodeResourcesFit least-allocated ×1, NodeResourcesBalancedAllocation ×1)
//! and the choice of the best node (ties: fewest pods, then name).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;
use shoal_api::scheduling::{self, Resources, Taint, Unfit};
use shoal_api::validation::Quantity;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;
/// The CPU a container without a CPU request counts as when scoring (100m, in milli-units).
const DEFAULT_MILLI_CPU: i128 = 100;
/// The memory a container without a memory request counts as when scoring (200Mi, in
/// milli-units).
const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024 * 1000;
/// Upstream's minimum number of feasible nodes to look for before scoring.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream's minimum percentage of nodes to look for before scoring.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

const PLUGIN_WEIGHT_TAINT: i64 = 3;
const PLUGIN_WEIGHT_AFFINITY: i64 = 2;
const PLUGIN_WEIGHT_FIT: i64 = 1;
const PLUGIN_WEIGHT_BALANCED: i64 = 1;

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn quantity(v: &Value) -> i128 {
    Quantity::from_json(v).map(|q| q.milli_value()).unwrap_or(0)
}

/// The pod's CPU and memory requests as scoring counts them: containers without a request
/// count as 100m CPU and 200Mi memory (upstream's `GetNonzeroRequests`), in milli-units.
pub fn nonzero_requests(spec: &Value) -> (i128, i128) {
    let one = |c: &Value| {
        let req = &c["resources"]["requests"];
        let cpu = req.get("cpu").map(quantity).unwrap_or(DEFAULT_MILLI_CPU);
        let mem = req.get("memory").map(quantity).unwrap_or(DEFAULT_MEMORY);
        (cpu, mem)
    };
    let (mut cpu, mut mem) = (0, 0);
    for c in list_at(spec, "containers") {
        let (c, m) = one(c);
        cpu += c;
        mem += m;
    }
    for c in list_at(spec, "initContainers") {
        let (c, m) = one(c);
        cpu = cpu.max(c);
        mem = mem.max(m);
    }
    let overhead = &spec["overhead"];
    cpu += overhead.get("cpu").map(quantity).unwrap_or(0);
    mem += overhead.get("memory").map(quantity).unwrap_or(0);
    (cpu, mem)
}

/// A pod with what the scheduler needs from it computed once.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// The pod as JSON.
    pub obj: Arc<Value>,
    /// `namespace/name`.
    pub key: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName` (for an assumed pod: the node it is being bound to).
    pub node_name: String,
    /// Requests as the filters count them ([`scheduling::pod_requests`], `pods` included).
    pub requests: Resources,
    /// CPU and memory as scoring counts them ([`nonzero_requests`]).
    pub nonzero: (i128, i128),
    /// Host ports (protocol, hostIP, port).
    pub ports: Vec<(String, String, i64)>,
    /// `spec.priority` (0 when absent).
    pub priority: i64,
    /// `spec.preemptionPolicy: Never`: the pod waits rather than preempt.
    pub never_preempts: bool,
    /// `metadata.creationTimestamp` in seconds since the epoch (0 when absent).
    pub created: i64,
    /// Finished: `status.phase` is `Succeeded` or `Failed`.
    pub terminal: bool,
    /// The PersistentVolumeClaims its volumes name (`persistentVolumeClaim.claimName`, and
    /// `<pod>-<volume>` for generic ephemeral volumes).
    pub claims: Vec<String>,
}

/// The object of every cached bound pod: nothing is read of it (see [`PodInfo::cached`]).
static BOUND: std::sync::LazyLock<Arc<Value>> = std::sync::LazyLock::new(|| Arc::new(Value::Null));

impl PodInfo {
    /// Reads a pod.
    pub fn new(obj: Arc<Value>) -> PodInfo {
        let meta = &obj["metadata"];
        let spec = &obj["spec"];
        let namespace = str_at(meta, "namespace").to_string();
        let name = str_at(meta, "name").to_string();
        let created = str_at(meta, "creationTimestamp")
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .unwrap_or(0);
        PodInfo {
            key: format!("{namespace}/{name}"),
            namespace,
            name,
            uid: str_at(meta, "uid").to_string(),
            node_name: str_at(spec, "nodeName").to_string(),
            requests: scheduling::pod_requests(spec),
            nonzero: nonzero_requests(spec),
            ports: scheduling::host_ports(spec),
            priority: spec["priority"].as_i64().unwrap_or(0),
            never_preempts: spec["preemptionPolicy"] == "Never",
            created,
            terminal: matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed")),
            claims: spec["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(
                    |v| match (v["persistentVolumeClaim"]["claimName"].as_str(), v.get("ephemeral")) {
                        (Some(claim), _) => Some(claim.to_string()),
                        (None, Some(_)) => Some(format!("{}-{}", str_at(meta, "name"), str_at(v, "name"))),
                        _ => None,
                    },
                )
                .collect(),
            obj,
        }
    }

    /// Reads a pod from a watch and keeps only what the scheduler reads of it afterwards.
    /// Its requests, host ports, priority, creation time and phase are taken first. A pod
    /// to place keeps its spec without containers and volumes ([`shoal_api::trim_for_cache`]),
    /// its status phase and conditions, and its identity, labels and deletion. A bound pod
    /// only counts on its node: nothing more is read of its object, and all of them share
    /// one empty one. Thousands of cached pods take a fraction of the memory of whole ones.
    pub fn cached(obj: Value) -> PodInfo {
        let mut info = PodInfo::new(Arc::new(obj));
        if !info.node_name.is_empty() {
            info.obj = BOUND.clone();
            return info;
        }
        if let Some(v) = Arc::get_mut(&mut info.obj) {
            shoal_api::trim_for_cache("Pod", v);
            // Ports and the pod IP (kept for Services' endpoints) were read above or are
            // not read here.
            if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("containers");
                spec.remove("volumes");
            }
            if let Some(status) = v.get_mut("status").and_then(Value::as_object_mut) {
                status.remove("podIP");
            }
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| KEPT_POD_METADATA.contains(&k.as_str()));
            }
        }
        info
    }

    /// `spec`.
    pub fn spec(&self) -> &Value {
        &self.obj["spec"]
    }

    /// True when the pod has finished (`Succeeded` or `Failed`).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// True when the default scheduler should place this pod: no node yet, our scheduler
    /// name (or none), not being deleted, not finished.
    pub fn is_pending_for_us(&self) -> bool {
        let scheduler = str_at(self.spec(), "schedulerName");
        self.node_name.is_empty()
            && (scheduler.is_empty() || scheduler == crate::SCHEDULER_NAME)
            && self.obj["metadata"].get("deletionTimestamp").is_none_or(Value::is_null)
            && !self.is_terminal()
    }

    /// True when the pod is not bound and names another scheduler: this one neither places
    /// it nor counts it anywhere until it is bound (as upstream, whose scheduler keeps the
    /// unassigned pods of its own profiles only).
    pub fn waits_for_another_scheduler(&self) -> bool {
        let scheduler = str_at(self.spec(), "schedulerName");
        self.node_name.is_empty() && !scheduler.is_empty() && scheduler != crate::SCHEDULER_NAME
    }

    /// True when the pod takes room on its node: bound and not finished.
    pub fn occupies_node(&self) -> bool {
        !self.node_name.is_empty() && !self.is_terminal()
    }

    /// The same pod as if bound to `node` (what the scheduler assumes until its cache shows
    /// the binding).
    pub fn assumed_on(&self, node: &str) -> PodInfo {
        PodInfo {
            node_name: node.to_string(),
            ..self.clone()
        }
    }
}

/// A node with what the scheduler needs from it computed once.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node as JSON.
    pub obj: Arc<Value>,
    /// `metadata.name`.
    pub name: String,
    /// `status.allocatable` (or capacity), milli-units.
    pub allocatable: Resources,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
}

/// The pod metadata the scheduler reads after [`PodInfo::new`]: identity for bindings and
/// events, labels, and deletion.
const KEPT_POD_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "deletionTimestamp",
];

impl NodeInfo {
    /// Reads a node from a watch and keeps only what the scheduler reads of it afterwards:
    /// its allocatable resources and taints are taken first; the filters then read its name
    /// and labels (node affinity) and whether it is unschedulable, never the status.
    pub fn cached(obj: Value) -> NodeInfo {
        let mut info = NodeInfo::new(Arc::new(obj));
        if let Some(map) = Arc::get_mut(&mut info.obj).and_then(Value::as_object_mut) {
            map.retain(|k, _| k == "metadata" || k == "spec");
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| k == "name" || k == "labels");
            }
            if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
                spec.retain(|k, _| k == "unschedulable");
            }
        }
        info
    }

    /// Reads a node.
    pub fn new(obj: Arc<Value>) -> NodeInfo {
        NodeInfo {
            name: str_at(&obj["metadata"], "name").to_string(),
            allocatable: scheduling::allocatable(&obj),
            taints: scheduling::taints(&obj),
            obj,
        }
    }

    fn allocatable_of(&self, name: &str) -> i128 {
        self.allocatable.get(name).copied().unwrap_or(0)
    }
}

/// The pods on one node and their totals.
#[derive(Clone, Debug, Default)]
pub struct NodeUsage {
    pods: BTreeMap<String, Arc<PodInfo>>,
    requested: Resources,
    nonzero: (i128, i128),
}

static NO_USAGE: NodeUsage = NodeUsage {
    pods: BTreeMap::new(),
    requested: BTreeMap::new(),
    nonzero: (0, 0),
};

impl NodeUsage {
    fn add(&mut self, pod: Arc<PodInfo>) {
        if let Some(old) = self.pods.insert(pod.key.clone(), pod.clone()) {
            self.subtract(&old);
        }
        for (k, v) in &pod.requests {
            *self.requested.entry(k.clone()).or_default() += v;
        }
        self.nonzero.0 += pod.nonzero.0;
        self.nonzero.1 += pod.nonzero.1;
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.pods.remove(key) {
            self.subtract(&old);
        }
    }

    fn subtract(&mut self, pod: &PodInfo) {
        for (k, v) in &pod.requests {
            if let Some(e) = self.requested.get_mut(k) {
                *e -= v;
            }
        }
        self.nonzero.0 -= pod.nonzero.0;
        self.nonzero.1 -= pod.nonzero.1;
    }

    /// How many pods the node has.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The pods on the node by `namespace/name`.
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods.values()
    }

    /// The summed requests (filter view, `pods` included).
    pub fn requested(&self) -> &Resources {
        &self.requested
    }

    fn requested_of(&self, name: &str) -> i128 {
        self.requested.get(name).copied().unwrap_or(0)
    }
}

/// The outcome of one scheduling attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod to this node.
    Bind(String),
    /// No node fits; the `FailedScheduling` message.
    Unschedulable(String),
}

/// The scheduler's view of the cluster: nodes (by name, and in name order for the bounded
/// search) and what is bound to each.
#[derive(Debug, Default)]
pub struct Cluster {
    nodes: HashMap<String, Arc<NodeInfo>>,
    order: BTreeSet<String>,
    usage: HashMap<String, NodeUsage>,
    /// Where the next bounded search over all nodes starts (upstream's `nextStartNodeIndex`).
    next_start: Option<String>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Cluster {
        Cluster::default()
    }

    /// A cluster from node objects and, per node name, the pods bound there.
    pub fn from_values(nodes: &[Value], bound: &HashMap<String, Vec<Value>>) -> Cluster {
        let mut c = Cluster::new();
        for n in nodes {
            c.upsert_node(Arc::new(NodeInfo::new(Arc::new(n.clone()))));
        }
        for (node, pods) in bound {
            for p in pods {
                c.add_pod(node, Arc::new(PodInfo::new(Arc::new(p.clone()))));
            }
        }
        c
    }

    /// Adds or replaces a node.
    pub fn upsert_node(&mut self, node: Arc<NodeInfo>) {
        if !self.nodes.contains_key(&node.name) {
            self.order.insert(node.name.clone());
        }
        self.nodes.insert(node.name.clone(), node);
    }

    /// Removes a node (its pods stay counted under its name, as they are still bound there).
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
        self.order.remove(name);
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(name)
    }

    /// The node names, in order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// How many nodes there are.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Counts `pod` as bound to `node` (replacing an earlier entry with the same key).
    pub fn add_pod(&mut self, node: &str, pod: Arc<PodInfo>) {
        self.usage.entry(node.to_string()).or_default().add(pod);
    }

    /// Stops counting the pod `key` on `node`.
    pub fn remove_pod(&mut self, node: &str, key: &str) {
        if let Some(u) = self.usage.get_mut(node) {
            u.remove(key);
            if u.pods.is_empty() {
                self.usage.remove(node);
            }
        }
    }

    /// What is bound to `node`.
    pub fn usage(&self, node: &str) -> &NodeUsage {
        self.usage.get(node).unwrap_or(&NO_USAGE)
    }

    /// One scheduling attempt for `pod`. Only the start of the next bounded search changes.
    pub fn decide(&mut self, pod: &PodInfo) -> Decision {
        let total = self.nodes.len();
        if total == 0 {
            return Decision::Unschedulable(scheduling::failed_scheduling_message(0, &[], 0));
        }
        let mut unfit = Vec::new();
        let mut feasible: Vec<&NodeInfo> = Vec::new();
        let mut absent = 0;
        let mut next_start = self.next_start.clone();
        match pinned_nodes(pod.spec()) {
            Some(names) => {
                // The DaemonSet path: only the named nodes are candidates.
                let mut present = 0;
                for node in names.iter().filter_map(|n| self.nodes.get(n)) {
                    present += 1;
                    match filter(pod, node, self.usage(&node.name)) {
                        None => feasible.push(node),
                        Some(u) => unfit.push(u),
                    }
                }
                absent = total - present;
            }
            None => {
                let want = feasible_nodes_to_find(total);
                let start = self.next_start.as_deref();
                let (first, second) = match start {
                    Some(s) => (
                        self.order.range::<str, _>((Bound::Included(s), Bound::Unbounded)),
                        self.order.range::<str, _>((Bound::Unbounded, Bound::Excluded(s))),
                    ),
                    None => (
                        self.order.range::<str, _>((Bound::Unbounded, Bound::Unbounded)),
                        self.order.range::<str, _>((Bound::Unbounded, Bound::Excluded(""))),
                    ),
                };
                let mut names = first.chain(second);
                for name in names.by_ref() {
                    let node = &self.nodes[name];
                    match filter(pod, node, self.usage(name)) {
                        None => feasible.push(node),
                        Some(u) => unfit.push(u),
                    }
                    if feasible.len() >= want {
                        break;
                    }
                }
                if let Some(next) = names.next() {
                    next_start = Some(next.clone());
                }
            }
        }
        let decision = match feasible.len() {
            0 => Decision::Unschedulable(scheduling::failed_scheduling_message(total, &unfit, absent)),
            1 => Decision::Bind(feasible[0].name.clone()),
            _ => {
                let candidates: Vec<(&NodeInfo, &NodeUsage)> =
                    feasible.iter().map(|n| (*n, self.usage(&n.name))).collect();
                let scores = score(pod, &candidates);
                let best = candidates
                    .iter()
                    .zip(&scores)
                    .max_by(|((a, ua), sa), ((b, ub), sb)| {
                        sa.cmp(sb)
                            .then_with(|| ub.pod_count().cmp(&ua.pod_count()))
                            .then_with(|| b.name.cmp(&a.name))
                    })
                    .map(|((n, _), _)| n.name.clone())
                    .unwrap_or_default();
                Decision::Bind(best)
            }
        };
        self.next_start = next_start;
        decision
    }
}

/// Where preempting lower-priority pods makes room for a pod.
#[derive(Clone, Debug)]
pub struct Preemption {
    /// The node (upstream's nominated node).
    pub node: String,
    /// The pods to evict from it.
    pub victims: Vec<Arc<PodInfo>>,
}

/// Upstream's reason for a node where evicting pods cannot help (the pod's affinity,
/// tolerations or the node's cordon stand in the way).
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Upstream's reason for a node where even evicting every lower-priority pod is not enough.
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

impl Cluster {
    /// Upstream's default preemption (the DefaultPreemption PostFilter) for a pod that fits
    /// nowhere. On each node where only room is missing (resources, pod count, host ports),
    /// every pod of lower priority is taken away; if the pod then fits, the victims are
    /// given back, highest priority first, as long as it still fits. The chosen node has the
    /// lowest highest-victim priority, then the lowest sum of victim priorities, then the
    /// fewest victims. When no node qualifies, the `preemption: ...` text that upstream adds
    /// to the `FailedScheduling` message.
    pub fn preemption(&self, pod: &PodInfo) -> Result<Preemption, String> {
        if pod.never_preempts {
            return Err("preemption: not eligible due to preemptionPolicy=Never.".into());
        }
        let total = self.nodes.len();
        let names: Vec<&str> = match pinned_nodes(pod.spec()) {
            Some(pinned) => pinned
                .iter()
                .filter_map(|n| self.nodes.get(n).map(|n| n.name.as_str()))
                .collect(),
            None => self.order.iter().map(String::as_str).collect(),
        };
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        if total > names.len() {
            reasons.insert(NOT_HELPFUL, total - names.len());
        }
        let mut best: Option<((i64, i128, usize), Preemption)> = None;
        for name in names {
            let node = &self.nodes[name];
            let usage = self.usage(name);
            match filter(pod, node, usage) {
                Some(Unfit::Insufficient(_) | Unfit::HostPort) => {}
                None => continue,
                Some(_) => {
                    *reasons.entry(NOT_HELPFUL).or_default() += 1;
                    continue;
                }
            }
            let mut lower: Vec<Arc<PodInfo>> = usage
                .pods()
                .filter(|p| p.priority < pod.priority && p.occupies_node())
                .cloned()
                .collect();
            if lower.is_empty() {
                *reasons.entry(NO_VICTIMS).or_default() += 1;
                continue;
            }
            let mut trial = usage.clone();
            for v in &lower {
                trial.remove(&v.key);
            }
            if filter(pod, node, &trial).is_some() {
                *reasons.entry(NO_VICTIMS).or_default() += 1;
                continue;
            }
            // Reprieve: the most important (then the oldest) go back first.
            lower.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created.cmp(&b.created)));
            let mut victims = Vec::new();
            for v in lower {
                trial.add(v.clone());
                if filter(pod, node, &trial).is_some() {
                    trial.remove(&v.key);
                    victims.push(v);
                }
            }
            let rank = (
                victims.iter().map(|v| v.priority).max().unwrap_or(i64::MIN),
                victims.iter().map(|v| i128::from(v.priority)).sum::<i128>(),
                victims.len(),
            );
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((
                    rank,
                    Preemption {
                        node: name.to_string(),
                        victims,
                    },
                ));
            }
        }
        if let Some((_, p)) = best {
            return Ok(p);
        }
        let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        Err(format!(
            "preemption: 0/{total} nodes are available: {}.",
            parts.join(", ")
        ))
    }
}

/// The candidate node names when the required node affinity pins nodes by name (upstream's
/// NodeAffinity PreFilter): every term must have a `matchFields metadata.name In` requirement
/// (the terms are ORed, the requirements of one term ANDed); `None` means all nodes.
pub fn pinned_nodes(spec: &Value) -> Option<BTreeSet<String>> {
    let terms = scheduling::required_terms(spec)?;
    let mut names = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in list_at(term, "matchFields") {
            if str_at(r, "key") == "metadata.name" && str_at(r, "operator") == "In" {
                let values: BTreeSet<String> = list_at(r, "values")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                term_names = Some(match term_names {
                    None => values,
                    Some(prev) => prev.intersection(&values).cloned().collect(),
                });
            }
        }
        names.extend(term_names?);
    }
    Some(names)
}

/// How many feasible nodes to find before scoring (upstream's adaptive
/// `percentageOfNodesToScore`): all of a small cluster, 50% less 1% per 125 nodes of a large
/// one, at least 5% and at least 100 nodes.
pub fn feasible_nodes_to_find(total: usize) -> usize {
    if total < MIN_FEASIBLE_NODES_TO_FIND {
        return total;
    }
    let percentage = 50usize.saturating_sub(total / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (total * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The filters (NodeName, NodeAffinity, NodeUnschedulable, TaintToleration, NodePorts,
/// NodeResourcesFit), in [`scheduling::scheduler_unfit`]'s order and with its answers, against
/// the node's precomputed totals.
pub fn filter(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> Option<Unfit> {
    let spec = pod.spec();
    if let Some(u) = scheduling::node_affinity_unfit(spec, &node.obj) {
        return Some(u);
    }
    let tolerations = list_at(spec, "tolerations");
    if node.obj["spec"]["unschedulable"].as_bool() == Some(true) {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        };
        if !tolerations.iter().any(|t| scheduling::tolerates(t, &cordon)) {
            return Some(Unfit::Unschedulable);
        }
    }
    if let Some(t) = scheduling::untolerated(tolerations, &node.taints, &["NoSchedule", "NoExecute"]) {
        return Some(Unfit::Taint(t.clone()));
    }
    if !pod.ports.is_empty()
        && usage
            .pods()
            .any(|p| scheduling::host_ports_conflict(&pod.ports, &p.ports))
    {
        return Some(Unfit::HostPort);
    }
    let mut free = node.allocatable.clone();
    for (k, v) in usage.requested() {
        *free.entry(k.clone()).or_default() -= v;
    }
    let short = scheduling::insufficient(&pod.requests, &free);
    if !short.is_empty() {
        return Some(Unfit::Insufficient(short));
    }
    None
}

/// Upstream's `DefaultNormalizeScore`: scales to 0..=100 by the maximum, reversed if asked.
fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        if max == 0 {
            if reverse {
                *s = MAX_NODE_SCORE;
            }
            continue;
        }
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// The number of PreferNoSchedule taints of the node the pod does not tolerate.
fn untolerated_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let tolerations = list_at(pod.spec(), "tolerations");
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| scheduling::tolerates(tol, t)))
        .count() as i64
}

/// The summed weights of the pod's preferred node affinity terms the node matches.
fn preferred_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let preferred = &pod.spec()["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    preferred
        .as_array()
        .map(|terms| {
            terms
                .iter()
                .filter(|t| scheduling::term_matches(&t["preference"], &node.obj))
                .map(|t| t["weight"].as_i64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// NodeResourcesFit's LeastAllocated score: the mean over cpu and memory of the free
/// fraction left after placing the pod (requests defaulted as [`nonzero_requests`]).
fn least_allocated(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> i64 {
    let resources = [
        (node.allocatable_of("cpu"), usage.nonzero.0 + pod.nonzero.0),
        (node.allocatable_of("memory"), usage.nonzero.1 + pod.nonzero.1),
    ];
    let (mut sum, mut weights) = (0i128, 0i128);
    for (capacity, requested) in resources {
        if capacity == 0 {
            continue;
        }
        let score = if requested > capacity {
            0
        } else {
            (capacity - requested) * i128::from(MAX_NODE_SCORE) / capacity
        };
        sum += score;
        weights += 1;
    }
    if weights == 0 { 0 } else { (sum / weights) as i64 }
}

/// NodeResourcesBalancedAllocation: 100 when cpu and memory would be equally used after
/// placing the pod, less as they differ. Pods requesting neither get 0 everywhere (upstream
/// skips the plugin for them).
fn balanced_allocation(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> i64 {
    let pod_cpu = pod.requests.get("cpu").copied().unwrap_or(0);
    let pod_mem = pod.requests.get("memory").copied().unwrap_or(0);
    if pod_cpu == 0 && pod_mem == 0 {
        return 0;
    }
    let mut fractions = Vec::with_capacity(2);
    for (name, want) in [("cpu", pod_cpu), ("memory", pod_mem)] {
        let capacity = node.allocatable_of(name);
        if capacity == 0 {
            continue;
        }
        let f = (usage.requested_of(name) + want) as f64 / capacity as f64;
        fractions.push(f.min(1.0));
    }
    let std = if fractions.len() == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// The weighted total score of each feasible node (same order as `nodes`).
pub fn score(pod: &PodInfo, nodes: &[(&NodeInfo, &NodeUsage)]) -> Vec<i64> {
    let mut taint: Vec<i64> = nodes
        .iter()
        .map(|(n, _)| untolerated_prefer_no_schedule(pod, n))
        .collect();
    normalize(&mut taint, true);
    let mut affinity: Vec<i64> = nodes.iter().map(|(n, _)| preferred_affinity(pod, n)).collect();
    normalize(&mut affinity, false);
    nodes
        .iter()
        .enumerate()
        .map(|(i, (n, u))| {
            taint[i] * PLUGIN_WEIGHT_TAINT
                + affinity[i] * PLUGIN_WEIGHT_AFFINITY
                + least_allocated(pod, n, u) * PLUGIN_WEIGHT_FIT
                + balanced_allocation(pod, n, u) * PLUGIN_WEIGHT_BALANCED
        })
        .collect()
}

/// One decision over plain objects: `nodes`, and per node name the pods bound there.
pub fn decide(pod: &Value, nodes: &[Value], bound: &HashMap<String, Vec<Value>>) -> Decision {
    let mut cluster = Cluster::from_values(nodes, bound);
    cluster.decide(&PodInfo::new(Arc::new(pod.clone())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
               "spec": {}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}})
    }

    fn with_labels(mut n: Value, labels: Value) -> Value {
        for (k, v) in labels.as_object().unwrap() {
            n["metadata"]["labels"][k] = v.clone();
        }
        n
    }

    fn with_taint(mut n: Value, key: &str, value: &str, effect: &str) -> Value {
        let t = if value.is_empty() {
            json!({"key": key, "effect": effect})
        } else {
            json!({"key": key, "value": value, "effect": effect})
        };
        match n["spec"]["taints"].as_array_mut() {
            Some(a) => a.push(t),
            None => n["spec"]["taints"] = json!([t]),
        }
        n
    }

    fn pod(name: &str, spec: Value) -> Value {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        }
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                            "creationTimestamp": "2024-01-01T00:00:00Z"},
               "spec": spec, "status": {"phase": "Pending"}})
    }

    #[test]
    fn cached_pods_and_nodes_keep_what_scheduling_reads() {
        let mut full = requesting("p", "500m", "1Gi");
        full["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        full["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        full["metadata"]["labels"] = json!({"app": "a"});
        full["metadata"]["annotations"] = json!({"big": "x"});
        full["status"]["podIP"] = json!("10.0.0.1");
        let whole = PodInfo::new(Arc::new(full.clone()));
        let cached = PodInfo::cached(full);
        assert_eq!(cached.requests, whole.requests);
        assert_eq!(cached.nonzero, whole.nonzero);
        assert_eq!(cached.ports, whole.ports);
        assert_eq!(
            (cached.key.as_str(), cached.uid.as_str(), cached.created),
            ("default/p", "uid-p", whole.created)
        );
        assert!(cached.spec().get("containers").is_none());
        assert_eq!(cached.spec()["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(cached.obj["metadata"]["labels"], json!({"app": "a"}));
        assert!(cached.obj["metadata"].get("annotations").is_none());
        assert_eq!(cached.obj["status"], json!({"phase": "Pending"}));
        assert!(cached.is_pending_for_us());
        let mut bound = requesting("b", "500m", "1Gi");
        bound["spec"]["nodeName"] = json!("n1");
        bound["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        let cached = PodInfo::cached(bound);
        assert_eq!(
            (cached.node_name.as_str(), cached.requests.get("cpu")),
            ("n1", Some(&500))
        );
        assert!(cached.occupies_node());
        assert!(cached.obj.is_null(), "nothing more is read of a bound pod");
        assert_eq!((cached.key.as_str(), cached.uid.as_str()), ("default/b", "uid-b"));
        let mut done = requesting("d", "1", "1Gi");
        done["spec"]["nodeName"] = json!("n1");
        done["status"] = json!({"phase": "Succeeded"});
        let done = PodInfo::cached(done);
        assert!(done.is_terminal() && !done.occupies_node());

        let n = with_taint(node("n1", "4", "8Gi", "110"), "k", "v", "NoSchedule");
        let whole = NodeInfo::new(Arc::new(n.clone()));
        let cached = NodeInfo::cached(n);
        assert_eq!(cached.allocatable, whole.allocatable);
        assert_eq!(cached.taints.len(), 1);
        assert!(cached.obj.get("status").is_none());
        assert_eq!(cached.obj["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert_eq!(cached.obj["metadata"]["name"], "n1");
        let mut cordoned = node("n2", "4", "8Gi", "110");
        cordoned["spec"]["unschedulable"] = json!(true);
        cordoned["spec"]["podCIDR"] = json!("10.42.2.0/24");
        let cached = NodeInfo::cached(cordoned);
        assert_eq!(cached.obj["spec"], json!({"unschedulable": true}));
    }

    fn requesting(name: &str, cpu: &str, memory: &str) -> Value {
        pod(
            name,
            json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
        )
    }

    fn pinned(name: &str, node: &str) -> Value {
        pod(
            name,
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}}),
        )
    }

    fn none() -> HashMap<String, Vec<Value>> {
        HashMap::new()
    }

    fn bind(node: &str) -> Decision {
        Decision::Bind(node.to_string())
    }

    fn unschedulable(msg: &str) -> Decision {
        Decision::Unschedulable(msg.to_string())
    }

    #[test]
    fn taints_need_tolerations_and_prefer_no_schedule_only_scores() {
        let tainted = with_taint(node("a", "4", "8Gi", "110"), "dedicated", "gpu", "NoSchedule");
        let plain = node("b", "4", "8Gi", "110");
        let nodes = [tainted.clone(), plain.clone()];
        // Without a toleration only the plain node fits; the tainted one never gets it.
        assert_eq!(decide(&pod("p", json!({})), &nodes, &none()), bind("b"));
        assert_eq!(
            decide(&pod("p", json!({})), std::slice::from_ref(&tainted), &none()),
            unschedulable("0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.")
        );
        let tolerant = pod(
            "p",
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        );
        assert_eq!(decide(&tolerant, std::slice::from_ref(&tainted), &none()), bind("a"));
        let wrong_value = pod(
            "p",
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "cpu"}]}),
        );
        assert!(matches!(
            decide(&wrong_value, std::slice::from_ref(&tainted), &none()),
            Decision::Unschedulable(_)
        ));
        let exists_all = pod("p", json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(decide(&exists_all, std::slice::from_ref(&tainted), &none()), bind("a"));
        // NoExecute filters too.
        let no_exec = with_taint(
            node("c", "4", "8Gi", "110"),
            "node.kubernetes.io/not-ready",
            "",
            "NoExecute",
        );
        assert_eq!(
            decide(&pod("p", json!({})), &[no_exec], &none()),
            unschedulable("0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.")
        );
        // PreferNoSchedule never filters, but the node without it wins the score; "a" sorts
        // first, so the name tie-break cannot be what picks "b".
        let prefer = with_taint(node("a", "4", "8Gi", "110"), "soft", "", "PreferNoSchedule");
        assert_eq!(
            decide(&pod("p", json!({})), &[prefer.clone(), plain.clone()], &none()),
            bind("b")
        );
        assert_eq!(
            decide(&pod("p", json!({})), std::slice::from_ref(&prefer), &none()),
            bind("a")
        );
        let tolerates_soft = pod(
            "p",
            json!({"tolerations": [{"key": "soft", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        // Tolerated: both nodes score the same, the name decides.
        assert_eq!(decide(&tolerates_soft, &[prefer, plain], &none()), bind("a"));
    }

    #[test]
    fn node_selector_picks_the_labelled_node() {
        let nodes = [
            with_labels(node("a", "4", "8Gi", "110"), json!({"disk": "hdd"})),
            with_labels(node("b", "4", "8Gi", "110"), json!({"disk": "ssd"})),
            node("c", "4", "8Gi", "110"),
        ];
        assert_eq!(
            decide(&pod("p", json!({"nodeSelector": {"disk": "ssd"}})), &nodes, &none()),
            bind("b")
        );
        assert_eq!(
            decide(&pod("p", json!({"nodeSelector": {"disk": "nvme"}})), &nodes, &none()),
            unschedulable("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")
        );
        let expr = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}]}}}}),
        );
        assert_eq!(decide(&expr, &nodes, &none()), bind("a"));
    }

    #[test]
    fn match_fields_pins_one_node_and_reports_the_others_as_prefiltered() {
        let nodes: Vec<Value> = (0..5).map(|i| node(&format!("n{i}"), "1", "1Gi", "110")).collect();
        assert_eq!(decide(&pinned("ds-1", "n3"), &nodes, &none()), bind("n3"));
        let mut bound = HashMap::new();
        bound.insert("n3".to_string(), vec![requesting("big", "1", "100Mi")]);
        let mut big = pinned("ds-2", "n3");
        big["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "100m"}});
        assert_eq!(
            decide(&big, &nodes, &bound),
            unschedulable(
                "0/5 nodes are available: 1 Insufficient cpu, 4 node(s) didn't satisfy plugin(s) [NodeAffinity]."
            )
        );
        assert_eq!(
            decide(&pinned("ds-3", "missing"), &nodes, &none()),
            unschedulable("0/5 nodes are available: 5 node(s) didn't satisfy plugin(s) [NodeAffinity].")
        );
        assert_eq!(
            pinned_nodes(&pinned("x", "n1")["spec"]),
            Some(BTreeSet::from(["n1".to_string()]))
        );
        // A term without matchFields means every node is a candidate.
        let mixed = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}});
        assert_eq!(pinned_nodes(&mixed), None);
        assert_eq!(decide(&pod("p", mixed.clone()), &nodes, &none()), bind("n1"));
        assert_eq!(pinned_nodes(&json!({})), None);
    }

    #[test]
    fn preemption_picks_the_node_with_the_least_important_victims() {
        let node = |name: &str, labels: Value| {
            json!({"metadata": {"name": name, "labels": labels},
                   "status": {"allocatable": {"cpu": "1", "memory": "8Gi", "pods": "110"}}})
        };
        let bound = |name: &str, node: &str, priority: i64, cpu: &str| {
            json!({"metadata": {"name": name, "namespace": "ns", "uid": name},
                   "spec": {"nodeName": node, "priority": priority,
                            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
                   "status": {"phase": "Running"}})
        };
        let nodes = [
            node("a", json!({"zone": "x"})),
            node("b", json!({"zone": "x"})),
            node("c", json!({"zone": "y"})),
        ];
        let mut pods = HashMap::new();
        pods.insert(
            "a".to_string(),
            vec![bound("a-mid", "a", 50, "600m"), bound("a-low", "a", 1, "300m")],
        );
        pods.insert(
            "b".to_string(),
            vec![bound("b-low1", "b", 5, "500m"), bound("b-low2", "b", 5, "500m")],
        );
        pods.insert("c".to_string(), vec![bound("c-low", "c", 0, "1")]);
        let c = Cluster::from_values(&nodes, &pods);
        let incoming = |priority: i64, selector: Value| {
            PodInfo::new(Arc::new(
                json!({"metadata": {"name": "p", "namespace": "ns", "uid": "p"},
                "spec": {"priority": priority, "nodeSelector": selector,
                         "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}),
            ))
        };
        // Node a would lose its priority-50 pod (a-low alone frees too little); node b one
        // priority-5 pod. Node c is outside the selector.
        let p = c.preemption(&incoming(100, json!({"zone": "x"}))).expect("a node");
        assert_eq!(p.node, "b");
        assert_eq!(p.victims.len(), 1);
        // Nothing below priority 5 on b, and a's pods are too important: no victims there.
        let err = c.preemption(&incoming(5, json!({"zone": "x"}))).unwrap_err();
        assert_eq!(
            err,
            "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn daemon_pods_on_a_large_cluster_take_their_node_directly() {
        let mut cluster = Cluster::new();
        for i in 0..10_000 {
            cluster.upsert_node(Arc::new(NodeInfo::new(Arc::new(node(
                &format!("node-{i:05}"),
                "2",
                "4Gi",
                "110",
            )))));
        }
        let started = std::time::Instant::now();
        for i in 0..10_000 {
            let p = PodInfo::new(Arc::new(pinned(&format!("ds-{i}"), &format!("node-{i:05}"))));
            assert_eq!(cluster.decide(&p), bind(&format!("node-{i:05}")));
            cluster.add_pod(&format!("node-{i:05}"), Arc::new(p.assumed_on(&format!("node-{i:05}"))));
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(cluster.usage("node-00042").pod_count(), 1);
    }

    #[test]
    fn cordoned_nodes_take_only_pods_that_tolerate_it() {
        let mut cordoned = node("a", "4", "8Gi", "110");
        cordoned["spec"]["unschedulable"] = json!(true);
        assert_eq!(
            decide(&pod("p", json!({})), std::slice::from_ref(&cordoned), &none()),
            unschedulable("0/1 nodes are available: 1 node(s) were unschedulable.")
        );
        assert_eq!(
            decide(
                &pod("p", json!({})),
                &[cordoned.clone(), node("b", "4", "8Gi", "110")],
                &none()
            ),
            bind("b")
        );
        let daemon = pod(
            "p",
            json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(decide(&daemon, &[cordoned], &none()), bind("a"));
    }

    #[test]
    fn resources_add_up_over_the_bound_pods() {
        let nodes = [node("a", "2", "4Gi", "110"), node("b", "2", "4Gi", "3")];
        let mut bound = HashMap::new();
        bound.insert(
            "a".to_string(),
            vec![requesting("a1", "500m", "1Gi"), requesting("a2", "1", "1Gi")],
        );
        bound.insert(
            "b".to_string(),
            vec![requesting("b1", "100m", "1Gi"), requesting("b2", "100m", "1Gi")],
        );
        // 600m fits b only (a has 500m left).
        assert_eq!(decide(&requesting("p", "600m", "100Mi"), &nodes, &bound), bind("b"));
        // 500m fits both; a is fuller, so b scores higher.
        assert_eq!(decide(&requesting("p", "500m", "100Mi"), &nodes, &bound), bind("b"));
        // Memory: 2.5Gi fits nowhere (a and b have 2Gi free each).
        assert_eq!(
            decide(&requesting("p", "100m", "2560Mi"), &nodes, &bound),
            unschedulable("0/2 nodes are available: 2 Insufficient memory.")
        );
        bound.get_mut("b").unwrap().push(requesting("b3", "100m", "100Mi"));
        assert_eq!(
            decide(&requesting("p", "1600m", "1Gi"), &nodes, &bound),
            unschedulable("0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods.")
        );
        // Every short resource of a node is counted.
        assert_eq!(
            decide(&requesting("p", "1800m", "3Gi"), &nodes, &bound),
            unschedulable("0/2 nodes are available: 1 Too many pods, 2 Insufficient cpu, 2 Insufficient memory.")
        );
        // Unknown extended resources are insufficient everywhere.
        let gpu = pod(
            "p",
            json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"example.com/gpu": "1"}}}]}),
        );
        assert_eq!(
            decide(&gpu, &nodes, &bound),
            unschedulable("0/2 nodes are available: 1 Too many pods, 2 Insufficient example.com/gpu.")
        );
    }

    #[test]
    fn host_ports_conflict_with_bound_pods() {
        let port = |name: &str, p: i64, proto: &str| {
            pod(
                name,
                json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": p, "protocol": proto}]}]}),
            )
        };
        let nodes = [node("a", "4", "8Gi", "110"), node("b", "4", "8Gi", "110")];
        let mut bound = HashMap::new();
        bound.insert("a".to_string(), vec![port("web", 8080, "TCP")]);
        assert_eq!(decide(&port("p", 8080, "TCP"), &nodes, &bound), bind("b"));
        assert_eq!(decide(&port("p", 8080, "UDP"), &nodes[..1], &bound), bind("a"));
        bound.insert("b".to_string(), vec![port("web2", 8080, "TCP")]);
        assert_eq!(
            decide(&port("p", 8080, "TCP"), &nodes, &bound),
            unschedulable("0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.")
        );
    }

    #[test]
    fn preferred_affinity_scores_by_weight() {
        let nodes = [
            with_labels(node("a", "4", "8Gi", "110"), json!({"zone": "z1"})),
            with_labels(node("b", "4", "8Gi", "110"), json!({"zone": "z2", "disk": "ssd"})),
            with_labels(node("c", "4", "8Gi", "110"), json!({"zone": "z3", "disk": "ssd"})),
        ];
        let preferring = |terms: Value| {
            pod(
                "p",
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}}),
            )
        };
        let term = |key: &str, value: &str, weight: i64| json!({"weight": weight, "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}});
        assert_eq!(
            decide(&preferring(json!([term("zone", "z3", 10)])), &nodes, &none()),
            bind("c")
        );
        // ssd (b, c) at 5 plus z2 (b) at 1 beats z3 (c) at... c has ssd (5) + nothing; b has 6.
        assert_eq!(
            decide(
                &preferring(json!([term("disk", "ssd", 5), term("zone", "z2", 1)])),
                &nodes,
                &none()
            ),
            bind("b")
        );
        // Heavier preference wins.
        assert_eq!(
            decide(
                &preferring(json!([term("zone", "z1", 80), term("disk", "ssd", 20)])),
                &nodes,
                &none()
            ),
            bind("a")
        );
        // Scores: normalised affinity ×2 on top of the resource scores.
        let p = PodInfo::new(Arc::new(preferring(json!([
            term("zone", "z1", 50),
            term("zone", "z2", 100)
        ]))));
        let infos: Vec<NodeInfo> = nodes.iter().map(|n| NodeInfo::new(Arc::new(n.clone()))).collect();
        let candidates: Vec<(&NodeInfo, &NodeUsage)> = infos.iter().map(|n| (n, &NO_USAGE)).collect();
        let s = score(&p, &candidates);
        assert_eq!(s[1] - s[0], 100, "z2 normalises to 100, z1 to 50, ×2: {s:?}");
        assert_eq!(s[0] - s[2], 100, "z1 50 ×2 over nothing: {s:?}");
    }

    #[test]
    fn equal_nodes_share_the_pods() {
        let nodes: Vec<Value> = ["a", "b", "c"].iter().map(|n| node(n, "4", "8Gi", "110")).collect();
        let mut cluster = Cluster::from_values(&nodes, &none());
        for i in 0..9 {
            for (j, p) in [
                pod(&format!("plain-{i}"), json!({})),
                requesting(&format!("req-{i}"), "100m", "128Mi"),
            ]
            .into_iter()
            .enumerate()
            {
                let p = PodInfo::new(Arc::new(p));
                let Decision::Bind(n) = cluster.decide(&p) else {
                    panic!("{i} {j} unschedulable")
                };
                cluster.add_pod(&n, Arc::new(p.assumed_on(&n)));
            }
        }
        for n in ["a", "b", "c"] {
            assert_eq!(cluster.usage(n).pod_count(), 6, "{n}");
        }
    }

    #[test]
    fn balanced_allocation_prefers_the_node_left_even() {
        // a is cpu-heavy already; a cpu+memory pod is better balanced on b, even though a has
        // as much free in total.
        let nodes = [node("a", "4", "4Gi", "110"), node("b", "4", "4Gi", "110")];
        let mut bound = HashMap::new();
        bound.insert("a".to_string(), vec![requesting("x", "2", "0")]);
        bound.insert("b".to_string(), vec![requesting("y", "1", "1Gi")]);
        assert_eq!(decide(&requesting("p", "1", "1Gi"), &nodes, &bound), bind("b"));
    }

    #[test]
    fn failed_scheduling_message_for_a_mixed_case() {
        let mut cordoned = node("n1", "4", "8Gi", "110");
        cordoned["spec"]["unschedulable"] = json!(true);
        let nodes = [
            cordoned,
            with_taint(node("n2", "4", "8Gi", "110"), "dedicated", "infra", "NoSchedule"),
            with_taint(
                node("n3", "4", "8Gi", "110"),
                "node.kubernetes.io/not-ready",
                "",
                "NoExecute",
            ),
            node("n4", "1", "8Gi", "110"),
            node("n5", "1", "8Gi", "110"),
            with_labels(node("n6", "8", "8Gi", "110"), json!({"disk": "hdd"})),
            node("n7", "8", "8Gi", "1"),
            node("n8", "8", "8Gi", "110"),
            node("n9", "8", "8Gi", "110"),
            node("n10", "8", "8Gi", "110"),
            node("n11", "8", "8Gi", "110"),
        ];
        let mut p = requesting("p", "2", "1Gi");
        p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["hdd"]}]}]}}});
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]);
        let mut bound = HashMap::new();
        bound.insert("n7".to_string(), vec![pod("full", json!({}))]);
        let dns = pod(
            "dns",
            json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]}]}),
        );
        for n in ["n8", "n9", "n10", "n11"] {
            bound.insert(n.to_string(), vec![dns.clone()]);
        }
        assert_eq!(
            decide(&p, &nodes, &bound),
            unschedulable(
                "0/11 nodes are available: 1 Too many pods, 1 node(s) didn't match Pod's node affinity/selector, \
                 1 node(s) had untolerated taint {dedicated: infra}, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
                 1 node(s) were unschedulable, 2 Insufficient cpu, 4 node(s) didn't have free ports for the requested pod ports."
            )
        );
        assert_eq!(
            decide(&p, &[], &none()),
            unschedulable("no nodes available to schedule pods")
        );
    }

    #[test]
    fn message_sorts_count_and_reason_as_strings() {
        let cpu = Unfit::Insufficient(vec!["cpu".into()]);
        let taint = Unfit::Taint(Taint {
            key: "k".into(),
            value: "v".into(),
            effect: "NoSchedule".into(),
        });
        let unfit = vec![cpu.clone(), cpu.clone(), taint.clone()];
        assert_eq!(
            scheduling::failed_scheduling_message(3, &unfit, 0),
            "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu."
        );
    }

    #[test]
    fn filter_agrees_with_scheduler_unfit() {
        let nodes = [
            node("a", "2", "4Gi", "3"),
            with_taint(node("b", "2", "4Gi", "110"), "k", "v", "NoSchedule"),
            with_labels(node("c", "2", "4Gi", "110"), json!({"role": "db"})),
            {
                let mut n = node("d", "2", "4Gi", "110");
                n["spec"]["unschedulable"] = json!(true);
                n
            },
        ];
        let bound = [
            requesting("x", "1", "1Gi"),
            pod(
                "y",
                json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 1, "hostPort": 9000}]}]}),
            ),
        ];
        let pods = [
            pod("p0", json!({})),
            requesting("p1", "1500m", "1Gi"),
            requesting("p2", "500m", "3Gi"),
            pod("p3", json!({"nodeSelector": {"role": "db"}})),
            pod("p4", json!({"tolerations": [{"operator": "Exists"}]})),
            pod(
                "p5",
                json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 1, "hostPort": 9000}]}]}),
            ),
            pinned("p6", "c"),
        ];
        for n in &nodes {
            let info = NodeInfo::new(Arc::new(n.clone()));
            let mut usage = NodeUsage::default();
            for b in &bound {
                usage.add(Arc::new(PodInfo::new(Arc::new(b.clone()))));
            }
            for p in &pods {
                let want = scheduling::scheduler_unfit(&p["spec"], n, bound.iter().map(|b| &b["spec"]));
                let got = filter(&PodInfo::new(Arc::new(p.clone())), &info, &usage);
                assert_eq!(
                    got, want,
                    "pod {} on node {}",
                    p["metadata"]["name"], n["metadata"]["name"]
                );
            }
        }
    }

    #[test]
    fn usage_totals_follow_adds_and_removes() {
        let mut u = NodeUsage::default();
        let a = Arc::new(PodInfo::new(Arc::new(requesting("a", "1", "1Gi"))));
        let b = Arc::new(PodInfo::new(Arc::new(requesting("b", "500m", "1Gi"))));
        u.add(a.clone());
        u.add(b.clone());
        u.add(a.clone());
        assert_eq!(u.pod_count(), 2);
        assert_eq!(u.requested()["cpu"], 1500);
        assert_eq!(u.requested()["pods"], 2000);
        u.remove("default/a");
        assert_eq!(u.requested()["cpu"], 500);
        assert_eq!(u.nonzero, b.nonzero);
        // Containers without requests count 100m / 200Mi when scoring.
        assert_eq!(
            nonzero_requests(&json!({"containers": [{}, {}]})),
            (200, 2 * DEFAULT_MEMORY)
        );
    }

    #[test]
    fn large_clusters_search_a_share_of_the_nodes_and_rotate() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(10_000), 500);
        let nodes: Vec<Value> = (0..1000)
            .map(|i| node(&format!("n{i:04}"), "4", "8Gi", "110"))
            .collect();
        let mut cluster = Cluster::from_values(&nodes, &none());
        let p = PodInfo::new(Arc::new(pod("p", json!({}))));
        let Decision::Bind(first) = cluster.decide(&p) else {
            panic!()
        };
        assert!(first.as_str() < "n0420", "{first}");
        assert_eq!(cluster.next_start.as_deref(), Some("n0420"));
        let Decision::Bind(second) = cluster.decide(&p) else {
            panic!()
        };
        assert!(second.as_str() >= "n0420" && second.as_str() < "n0840", "{second}");
        // A pod that fits nowhere still looks at every node.
        let huge = PodInfo::new(Arc::new(requesting("huge", "64", "1Gi")));
        assert_eq!(
            cluster.decide(&huge),
            unschedulable("0/1000 nodes are available: 1000 Insufficient cpu.")
        );
    }
}
