//! The simulated node pool.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

use shoal_runtime::events::{EventType, ObjectRef, Recorder};

use crate::pods::PodTiming;
use crate::{LEASE_DURATION_SECONDS, LEASE_RENEW, NODE_STATUS_REPORT, SIMULATED_ANNOTATION};

const MANAGER: &str = "shoal-simulated-node";

/// At most this many node heartbeats are in flight at once.
const HEARTBEAT_CONCURRENCY: usize = 64;
/// At most this many node creations are in flight at once.
pub const NODE_CREATE_CONCURRENCY: usize = 64;

/// Default capacity of a simulated node; each can be overridden by an annotation
/// `shoal.dev/capacity-<resource>` (e.g. `shoal.dev/capacity-cpu: "8"`).
pub const DEFAULT_CAPACITY: &[(&str, &str)] = &[
    ("cpu", "4"),
    ("memory", "16Gi"),
    ("pods", "110"),
    ("ephemeral-storage", "100Gi"),
];

/// The manifest of simulated node number `index` (1-based) named `name`: labels as a
/// kubelet sets them, the simulated annotation, and a pod CIDR. `control_plane` adds the
/// `node-role.kubernetes.io/control-plane` label.
pub fn node_manifest(name: &str, index: u32, control_plane: bool) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    });
    if control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    let cidr = pod_cidr(index);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {SIMULATED_ANNOTATION: "true"}},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    })
}

pub use shoal_api::network::pod_cidr;

/// The capacity annotations of `node` that are not quantities (or are negative), with why:
/// the node reports the default for those.
pub fn capacity_problems(node: &Node) -> Vec<String> {
    let annotations = node.metadata.annotations.as_ref();
    DEFAULT_CAPACITY
        .iter()
        .filter_map(|(res, default)| {
            let key = format!("shoal.dev/capacity-{res}");
            let v = annotations?.get(&key)?;
            let why = match shoal_api::validation::quantity::Quantity::parse(v.trim()) {
                Ok(q) if q.milli_value() < 0 => "must not be negative".to_string(),
                Ok(_) => return None,
                Err(e) => e.to_string(),
            };
            Some(format!(
                "annotation {key}: {v:?} is not a valid capacity ({why}); the node reports the default {default}"
            ))
        })
        .collect()
}

/// The status a simulated node reports (an invalid capacity annotation counts as absent: see
/// [`capacity_problems`]).
pub fn node_status(node: &Node, now: &str) -> Value {
    let annotations = node.metadata.annotations.clone().unwrap_or_default();
    let mut capacity = serde_json::Map::new();
    for (res, default) in DEFAULT_CAPACITY {
        let v = annotations
            .get(&format!("shoal.dev/capacity-{res}"))
            .map(|v| v.trim())
            .filter(|v| shoal_api::validation::quantity::Quantity::parse(v).is_ok_and(|q| q.milli_value() >= 0))
            .unwrap_or(default);
        capacity.insert((*res).into(), json!(v));
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let ip = internal_ip(node);
    let cond = |t: &str, status: &str, reason: &str, message: &str| json!({"type": t, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": "",
            "containerRuntimeVersion": "shoal-simulated://0.1.0",
            "kernelVersion": kernel_version(),
            "kubeProxyVersion": "",
            "kubeletVersion": "v1.33.0-shoal",
            "machineID": "",
            "operatingSystem": "linux",
            "osImage": "shoal simulated node",
            "systemUUID": node.metadata.uid.clone().unwrap_or_default(),
        },
    })
}

/// A simulated node's InternalIP, derived from its pod CIDR (`10.42.7.0/24` -> `172.20.42.7`).
fn internal_ip(node: &Node) -> String {
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).unwrap_or_default();
    let octets: Vec<&str> = cidr.split(['.', '/']).collect();
    match octets.as_slice() {
        [_, b, c, ..] => format!("172.20.{b}.{c}"),
        _ => "172.20.0.1".to_string(),
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn now_rfc3339() -> String {
    shoal_api::time::now_rfc3339()
}

fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// Keeps every simulated node alive: status on adoption, Lease and Ready heartbeats; and
/// runs the pods bound to them (see [`crate::pods`]).
#[derive(Clone)]
pub struct SimulatedPool {
    client: kube::Client,
    timing: PodTiming,
    as_node: NodeClients,
}

/// The client a simulated node writes its status, Lease and pods' statuses with.
pub type NodeClients = std::sync::Arc<dyn Fn(&str) -> kube::Client + Send + Sync>;

impl SimulatedPool {
    /// A pool that talks to the cluster through `client`, with the default (immediate) pod
    /// timing.
    pub fn new(client: kube::Client) -> Self {
        Self::with_timing(client, PodTiming::default())
    }

    /// A pool whose pods start, complete and go away with `timing`.
    pub fn with_timing(client: kube::Client, timing: PodTiming) -> Self {
        let shared = client.clone();
        SimulatedPool {
            client,
            timing,
            as_node: std::sync::Arc::new(move |_| shared.clone()),
        }
    }

    /// Each node writes with the client `as_node` gives for its name (as
    /// `system:node:<name>`, under the node authorizer, as a real kubelet); the pool's own
    /// client still registers the nodes and watches.
    pub fn writing_as_nodes(mut self, as_node: NodeClients) -> Self {
        self.as_node = as_node;
        self
    }

    /// Creates `node1`..`nodeN` if they do not exist (the first is the control plane),
    /// [`NODE_CREATE_CONCURRENCY`] at a time.
    pub async fn ensure_nodes(&self, count: u32) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let existing: HashSet<String> = nodes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        let missing: Vec<u32> = (1..=count)
            .filter(|i| !existing.contains(&format!("node{i}")))
            .collect();
        let results: Vec<Result<(), kube::Error>> = futures::stream::iter(missing)
            .map(|i| {
                let nodes = nodes.clone();
                async move { create_node(&nodes, &format!("node{i}"), i, i == 1).await }
            })
            .buffer_unordered(NODE_CREATE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Runs the pool until the process ends: node heartbeats here, pods in a task of their
    /// own (sharing the node cache).
    pub async fn run(self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let (reader, writer) = reflector::store();
        let watch = watcher(nodes.clone(), watcher::Config::default()).modify(trim_node);
        let stream = reflector(writer, watch).default_backoff();
        let (changes, changed) = tokio::sync::mpsc::channel::<String>(1024);
        // A node the pool has not reported yet is reported at once, not on the next tick:
        // until then the scheduler sees no allocatable resources on it.
        let seen = Arc::new(tokio::sync::Notify::new());
        let seen_tx = seen.clone();
        let mut tasks = shoal_runtime::Subtasks::new();
        tasks.spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n) | watcher::Event::Delete(n)) => {
                        if !is_ready(&n) {
                            seen_tx.notify_one();
                        }
                        if let Some(name) = n.metadata.name {
                            // The pod worker only ends with the process; a closed channel
                            // just means nobody listens.
                            let _ = changes.send(name).await;
                        }
                    }
                    // The cache was (re)filled: the pod worker looks at every node again.
                    Ok(watcher::Event::InitDone) => {
                        seen_tx.notify_one();
                        let _ = changes.send(String::new()).await;
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::debug!(error = %e, "simulated pool: node watch error"),
                }
            }
        });
        // Only this task waits for the node cache to be ready (kube's readiness signal wakes
        // a single waiter); the pod worker follows the change messages instead.
        tasks.spawn(crate::pods::run_pods(
            self.client.clone(),
            self.as_node.clone(),
            self.timing.clone(),
            reader.clone(),
            changed,
        ));
        // A panic in the node watch or the pod worker is the pool's: its supervisor starts
        // the whole pool again.
        tokio::select! {
            () = tasks.join_any() => {}
            () = self.heartbeats(reader, seen) => {}
        }
    }

    /// Node heartbeats: status and Lease renewals when due, for every simulated node.
    async fn heartbeats(&self, reader: reflector::Store<Node>, seen: Arc<tokio::sync::Notify>) {
        let _ = reader.wait_until_ready().await;
        let events = Recorder::new(self.client.clone(), "shoal-simulated-node");
        let mut beats = Heartbeats::default();
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = seen.notified() => {}
            }
            let sims: Vec<_> = reader.state().into_iter().filter(|n| is_simulated(n)).collect();
            let now = std::time::Instant::now();
            let stamp = now_rfc3339();
            let due: Vec<(Arc<Node>, Beat, bool)> = sims
                .iter()
                .filter_map(|n| {
                    let renewed = beats.knows(n.metadata.name.as_deref().unwrap_or_default());
                    Some((n.clone(), beats.due(n, now)?, renewed))
                })
                .collect();
            // Heartbeats go out concurrently (bounded), so thousands of nodes fit in a period.
            let done: Vec<(String, Beat, Result<(), kube::Error>)> = futures::stream::iter(due)
                .map(|(node, beat, renewed)| {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    let (client, stamp, events) = ((self.as_node)(&name), stamp.clone(), &events);
                    async move {
                        (
                            name,
                            beat,
                            heartbeat(client, events, &node, &stamp, beat, renewed).await,
                        )
                    }
                })
                .buffer_unordered(HEARTBEAT_CONCURRENCY)
                .collect()
                .await;
            for (name, beat, result) in done {
                match result {
                    Ok(()) => beats.done(name, beat, now),
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "simulated pool: heartbeat failed; will retry later");
                        beats.failed(name, now);
                    }
                }
            }
            let live: HashSet<&str> = sims.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
            beats.retain(&live);
        }
    }
}

/// What a node's heartbeat writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// Node status and Lease.
    Status,
    /// The Lease alone.
    Lease,
}

/// When each node last reported its status and renewed its Lease.
#[derive(Default)]
pub struct Heartbeats {
    /// Node -> (last status report, last Lease renewal).
    last: std::collections::HashMap<String, (std::time::Instant, std::time::Instant)>,
    /// Node -> (failures in a row, no retry before).
    failing: std::collections::HashMap<String, (u32, std::time::Instant)>,
}

/// A failed heartbeat is retried after 1 s, doubling to 5 minutes.
fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

impl Heartbeats {
    /// What `node` needs now, if anything: its status when it is new, not Ready or its
    /// report is [`NODE_STATUS_REPORT`] old; its Lease every [`LEASE_RENEW`]; nothing while
    /// a failed heartbeat waits for its retry.
    pub fn due(&self, node: &Node, now: std::time::Instant) -> Option<Beat> {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if self.failing.get(name).is_some_and(|(_, until)| now < *until) {
            return None;
        }
        match self.last.get(name) {
            None => Some(Beat::Status),
            Some(_) if !is_ready(node) => Some(Beat::Status),
            Some((status, _)) if now.duration_since(*status) >= NODE_STATUS_REPORT => Some(Beat::Status),
            Some((_, lease)) if now.duration_since(*lease) >= LEASE_RENEW => Some(Beat::Lease),
            Some(_) => None,
        }
    }

    /// Records a heartbeat. A node's first Lease renewal is moved earlier by up to one
    /// renewal period (by its name), so thousands of nodes started together do not all renew
    /// in the same tick afterwards.
    pub fn done(&mut self, name: String, beat: Beat, now: std::time::Instant) {
        let back = if self.last.contains_key(&name) {
            Duration::ZERO
        } else {
            let h = name
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            LEASE_RENEW.mul_f64((h % 1000) as f64 / 1000.0)
        };
        let lease_at = now.checked_sub(back).unwrap_or(now);
        self.failing.remove(&name);
        let entry = self.last.entry(name).or_insert((now, lease_at));
        match beat {
            Beat::Status => *entry = (now, lease_at),
            Beat::Lease => entry.1 = now,
        }
    }

    /// Whether `node` had a heartbeat done (its Lease renewed) by this pool.
    pub fn knows(&self, node: &str) -> bool {
        self.last.contains_key(node)
    }

    /// Records a failed heartbeat: the node is left alone for a while (longer each time).
    pub fn failed(&mut self, name: String, now: std::time::Instant) {
        let entry = self.failing.entry(name).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now + retry_after(entry.0);
    }

    /// Forgets nodes that are gone.
    pub fn retain(&mut self, live: &HashSet<&str>) {
        self.last.retain(|n, _| live.contains(n.as_str()));
        self.failing.retain(|n, _| live.contains(n.as_str()));
    }
}

/// Creates simulated node number `index` named `name`; one that exists already is left as
/// it is.
pub async fn create_node(nodes: &Api<Node>, name: &str, index: u32, control_plane: bool) -> Result<(), kube::Error> {
    // As a kubelet registers: with its status (capacity, addresses, conditions) in the
    // creation itself, so a pod for the node is schedulable as soon as the node exists.
    let mut node: Node =
        serde_json::from_value(node_manifest(name, index, control_plane)).map_err(kube::Error::SerdeError)?;
    node.status = Some(serde_json::from_value(node_status(&node, &now_rfc3339())).map_err(kube::Error::SerdeError)?);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match nodes.create(&pp, &node).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn heartbeat(
    client: kube::Client,
    events: &Recorder,
    node: &Node,
    now: &str,
    beat: Beat,
    renewed: bool,
) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    if beat == Beat::Lease {
        return renew_lease(client, node, &name, true).await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let status = node_status(node, now);
    let problems = capacity_problems(node);
    if !problems.is_empty() {
        let about = ObjectRef::of("v1", "Node", &serde_json::to_value(node).unwrap_or_default());
        let recorder = events.clone().on_host(&name);
        for p in problems {
            recorder.record(&about, EventType::Warning, "InvalidCapacity", &p).await;
        }
    }
    nodes
        .patch_status(&name, &pp, &Patch::Merge(json!({"status": status})))
        .await?;
    renew_lease(client, node, &name, renewed).await
}

/// Renews the node's Lease in `kube-node-lease`, creating it if it is missing. `renewed`
/// says whether this process has renewed it before: a Lease it has not is tried with a
/// create first (a new node has none; one that exists answers 409 and is renewed), one it
/// has with a patch first, so each renewal costs one request.
pub(crate) async fn renew_lease(
    client: kube::Client,
    node: &Node,
    name: &str,
    renewed: bool,
) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let spec =
        json!({"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now_micro()});
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let create = || async {
        let owner = json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.metadata.uid}]);
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": owner},
            "spec": spec,
        }))
        .map_err(kube::Error::SerdeError)?;
        leases.create(&PostParams::default(), &lease).await.map(|_| ())
    };
    let patch = || async {
        leases
            .patch(name, &pp, &Patch::Merge(json!({"spec": spec})))
            .await
            .map(|_| ())
    };
    let code = |r: &Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) => Some(e.code),
        _ => None,
    };
    if renewed {
        let first = patch().await;
        return if code(&first) == Some(404) {
            create().await
        } else {
            first
        };
    }
    let first = create().await;
    if code(&first) == Some(409) {
        patch().await
    } else {
        first
    }
}

/// What the pool and its pods keep of a node: identity and annotations (simulated,
/// capacity overrides), pod networks, addresses and the Ready condition. Status reports are
/// built afresh from these, never from the cached status.
fn trim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.labels = None;
    if let Some(status) = node.status.as_mut() {
        status.node_info = None;
        status.capacity = None;
        status.allocatable = None;
        status.daemon_endpoints = None;
        status.images = None;
        if let Some(conditions) = status.conditions.as_mut() {
            conditions.retain(|c| c.type_ == "Ready");
        }
    }
}

fn is_simulated(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SIMULATED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

pub(crate) fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Lists the simulated nodes (for callers that want to wait for the pool).
pub async fn simulated_nodes(client: &kube::Client) -> Result<Vec<Node>, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(is_simulated)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_label_the_control_plane_and_assign_distinct_cidrs() {
        let n1 = node_manifest("node1", 1, true);
        assert_eq!(n1["metadata"]["labels"]["node-role.kubernetes.io/control-plane"], "");
        assert_eq!(n1["metadata"]["annotations"][SIMULATED_ANNOTATION], "true");
        let n2 = node_manifest("node2", 2, false);
        assert!(
            n2["metadata"]["labels"]
                .get("node-role.kubernetes.io/control-plane")
                .is_none()
        );
        assert_ne!(n1["spec"]["podCIDR"], n2["spec"]["podCIDR"]);
        assert_eq!(
            pod_cidr(300),
            "10.64.44.0/24",
            "past 255 nodes, clear of the Service CIDR"
        );
    }

    #[tokio::test]
    async fn a_lease_costs_one_request_whether_new_or_renewed() {
        let api = shoal_apiserver::ApiServer::new(std::sync::Arc::new(shoal_store::MemoryStore::new()))
            .await
            .unwrap();
        let client = kube::Client::new(api.router(), "default");
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1", "uid": "u1"}})).unwrap();
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        // Lease writes answered with `code`.
        let requests = |code: &str| {
            let text = api.metrics().render();
            text.lines()
                .filter(|l| l.starts_with("apiserver_request_total{verb=\"P"))
                .filter(|l| l.contains("resource=\"leases\"") && l.contains(&format!("code=\"{code}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        };
        // A new node's Lease: created at once, no 404 first.
        renew_lease(client.clone(), &node, "n1", false).await.unwrap();
        assert_eq!((requests("201"), requests("404"), requests("409")), (1, 0, 0));
        let first = leases.get("n1").await.unwrap();
        assert_eq!(first.spec.as_ref().unwrap().holder_identity.as_deref(), Some("n1"));
        // Renewed: one patch.
        renew_lease(client.clone(), &node, "n1", true).await.unwrap();
        assert_eq!((requests("200"), requests("404"), requests("409")), (1, 0, 0));
        // A process that has not renewed it yet (a restart) finds it there and renews it.
        renew_lease(client.clone(), &node, "n1", false).await.unwrap();
        assert_eq!((requests("409"), requests("200")), (1, 2));
        let again = leases.get("n1").await.unwrap();
        assert_ne!(again.metadata.resource_version, first.metadata.resource_version);
        // Deleted behind the pool's back: the renewal makes it again.
        leases.delete("n1", &Default::default()).await.unwrap();
        renew_lease(client.clone(), &node, "n1", true).await.unwrap();
        assert_eq!((requests("404"), requests("201")), (1, 2));
        assert!(leases.get_opt("n1").await.unwrap().is_some());
    }

    #[test]
    fn heartbeats_report_status_first_then_renew_leases_spread_over_the_period() {
        let mut node: Node = serde_json::from_value(node_manifest("node3", 3, false)).unwrap();
        let t0 = std::time::Instant::now();
        let mut beats = Heartbeats::default();
        assert_eq!(
            beats.due(&node, t0),
            Some(Beat::Status),
            "a new node reports its status"
        );
        beats.done("node3".into(), Beat::Status, t0);
        assert_eq!(beats.due(&node, t0), Some(Beat::Status), "not Ready yet: report again");
        node.status = serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": "True"}]})).unwrap();
        assert_eq!(beats.due(&node, t0), None);
        assert_eq!(beats.due(&node, t0 + LEASE_RENEW), Some(Beat::Lease));
        let t1 = t0 + LEASE_RENEW;
        beats.done("node3".into(), Beat::Lease, t1);
        assert_eq!(beats.due(&node, t1 + LEASE_RENEW / 2), None);
        assert_eq!(beats.due(&node, t0 + NODE_STATUS_REPORT), Some(Beat::Status));
        // First renewals of nodes started together fall at different times.
        let mut many = Heartbeats::default();
        for i in 0..100 {
            many.done(format!("node{i}"), Beat::Status, t0);
        }
        let leases: HashSet<_> = many.last.values().map(|(_, l)| *l).collect();
        assert!(leases.len() > 50, "spread: {} distinct renewal times", leases.len());
        assert!(many.last.values().all(|(_, l)| t0.duration_since(*l) <= LEASE_RENEW));
    }

    #[test]
    fn failed_heartbeats_back_off() {
        let node: Node = serde_json::from_value(node_manifest("node3", 3, false)).unwrap();
        let t0 = std::time::Instant::now();
        let mut beats = Heartbeats::default();
        beats.failed("node3".into(), t0);
        assert_eq!(
            beats.due(&node, t0 + Duration::from_millis(500)),
            None,
            "not twice a second"
        );
        assert_eq!(beats.due(&node, t0 + Duration::from_secs(1)), Some(Beat::Status));
        for _ in 0..20 {
            beats.failed("node3".into(), t0);
        }
        assert_eq!(beats.due(&node, t0 + Duration::from_secs(299)), None);
        assert_eq!(
            beats.due(&node, t0 + Duration::from_secs(300)),
            Some(Beat::Status),
            "at most 5 minutes"
        );
        beats.done("node3".into(), Beat::Status, t0);
        beats.failed("node3".into(), t0);
        assert_eq!(
            beats.due(&node, t0 + Duration::from_secs(1)),
            Some(Beat::Status),
            "a success resets it"
        );
    }

    #[test]
    fn invalid_capacity_annotations_are_named_and_replaced_by_the_default() {
        let mut node: Node = serde_json::from_value(node_manifest("node3", 3, false)).unwrap();
        let annotations = node.metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert("shoal.dev/capacity-cpu".into(), "lots".into());
        annotations.insert("shoal.dev/capacity-memory".into(), "-1Gi".into());
        annotations.insert("shoal.dev/capacity-pods".into(), "50".into());
        let problems = capacity_problems(&node);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("annotation shoal.dev/capacity-cpu: \"lots\" is not a valid capacity"));
        assert!(
            problems[0].ends_with("the node reports the default 4"),
            "{}",
            problems[0]
        );
        let status = node_status(&node, "2026-01-01T00:00:00Z");
        assert_eq!(
            status["capacity"],
            json!({"cpu": "4", "memory": "16Gi", "pods": "50", "ephemeral-storage": "100Gi"})
        );
    }

    #[test]
    fn the_cached_node_keeps_what_reports_and_pods_read() {
        let mut node: Node = serde_json::from_value(node_manifest("node3", 3, false)).unwrap();
        node.status = Some(serde_json::from_value(node_status(&node, "2026-01-01T00:00:00Z")).unwrap());
        let before = node_status(&node, "2026-01-01T00:00:00Z");
        trim_node(&mut node);
        assert!(is_simulated(&node) && is_ready(&node));
        assert_eq!(
            node_status(&node, "2026-01-01T00:00:00Z"),
            before,
            "reports are unchanged"
        );
        let status = node.status.as_ref().unwrap();
        assert!(status.node_info.is_none() && status.capacity.is_none());
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
        assert!(
            crate::pods::NodeInfo::of(&node).is_some(),
            "addresses and pod networks stay"
        );
    }

    #[test]
    fn status_reports_capacity_overrides_and_ready() {
        let mut node: Node = serde_json::from_value(node_manifest("node3", 3, false)).unwrap();
        node.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("shoal.dev/capacity-cpu".into(), "8".into());
        let s = node_status(&node, "2026-01-01T00:00:00Z");
        assert_eq!(s["capacity"]["cpu"], "8");
        assert_eq!(s["allocatable"]["memory"], "16Gi");
        assert_eq!(s["addresses"][0]["address"], "172.20.42.3");
        assert!(
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        );
    }
}
