//! The scheduler's state between API calls: the caches fed by the watches, the pods assumed
//! bound, and when each unschedulable pod is due again. No I/O: the loop in `lib.rs` feeds it
//! watch events and bind results and performs the [`Action`]s a pass returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::algorithm::{Cluster, Decision, NodeInfo, PodInfo, Preemption};

/// How long a pod counts as bound to the node chosen for it while the cache does not show the
/// binding yet.
pub const ASSUME_TTL: Duration = Duration::from_secs(30);
/// First retry delay of an unschedulable pod after a cluster change (upstream's
/// `podInitialBackoffDuration`); it doubles per failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay, and the period of retries when nothing changes (upstream's
/// `podMaxBackoffDuration`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An identical `FailedScheduling` event is emitted again only after this long, or on a retry
/// caused by a cluster change once [`MAX_BACKOFF`] has passed.
pub const EVENT_REPEAT: Duration = Duration::from_secs(300);

/// What a scheduling pass asks the loop to do.
#[derive(Clone, Debug)]
pub enum Action {
    /// POST the binding of `pod` to `node`.
    Bind {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The node.
        node: String,
    },
    /// The pod fits nowhere until `victims` leave `node`: evict them and nominate the node.
    Preempt {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The nominated node.
        node: String,
        /// The pods to evict.
        victims: Vec<Arc<PodInfo>>,
        /// The `FailedScheduling` message.
        message: String,
        /// The merge patch for `pods/status` (nominatedNodeName, PodScheduled).
        status_patch: Value,
    },
    /// The pod fits nowhere.
    Unschedulable {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The `FailedScheduling` message.
        message: String,
        /// The merge patch for `pods/status`, when the PodScheduled condition must change.
        status_patch: Option<Value>,
        /// Whether to record the `FailedScheduling` event.
        event: bool,
    },
}

/// Pods being preempted for a pod: where, and who, until they are gone.
#[derive(Clone, Debug)]
struct Preempting {
    node: String,
    victims: Vec<String>,
}

/// How a binding ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// Bound.
    Bound,
    /// 409 (already bound) or 404 (gone): not an error, the cache will show the truth.
    Moot,
    /// Any other error: retry later.
    Failed,
}

struct Assumed {
    uid: String,
    node: String,
    pod: Arc<PodInfo>,
    at: Instant,
}

struct Attempt {
    uid: String,
    failures: u32,
    at: Instant,
    generation: u64,
    last_event: Option<(String, Instant)>,
}

/// Everything the scheduler knows.
#[derive(Default)]
pub struct State {
    pods: HashMap<String, Arc<PodInfo>>,
    pending: HashMap<String, Arc<PodInfo>>,
    cluster: Cluster,
    /// The node each pod key is counted on in `cluster`.
    placed: HashMap<String, String>,
    assumed: HashMap<String, Assumed>,
    attempts: HashMap<String, Attempt>,
    /// Bumped on every change of pods or nodes.
    generation: u64,
    pod_relist: Option<Vec<Arc<PodInfo>>>,
    node_relist: Option<Vec<Arc<NodeInfo>>>,
    pods_synced: bool,
    nodes_synced: bool,
    /// PersistentVolumeClaims by `namespace/name`.
    claims: HashMap<String, Claim>,
    /// StorageClasses by name: true when they bind when a pod first uses the claim
    /// (`WaitForFirstConsumer`).
    delayed_classes: HashMap<String, bool>,
    claims_synced: bool,
    classes_synced: bool,
    /// Pods waiting for the pods they preempted, by key.
    preempting: HashMap<String, Preempting>,
}

/// What the scheduler reads of a PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// `spec.volumeName` is set (the claim is bound or being bound).
    pub bound: bool,
    /// `spec.storageClassName`.
    pub class: String,
    /// Being deleted.
    pub deleting: bool,
}

impl Claim {
    /// Reads a claim.
    pub fn of(pvc: &Value) -> Claim {
        Claim {
            bound: pvc["spec"]["volumeName"].as_str().is_some_and(|v| !v.is_empty()),
            class: pvc["spec"]["storageClassName"].as_str().unwrap_or_default().to_string(),
            deleting: pvc["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null()),
        }
    }
}

/// The ordering key of the scheduling queue: higher priority first, then older, then name.
fn queue_order(p: &PodInfo) -> (std::cmp::Reverse<i64>, i64, &str) {
    (std::cmp::Reverse(p.priority), p.created, p.key.as_str())
}

fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// True once both caches have had their first list.
    pub fn synced(&self) -> bool {
        self.pods_synced && self.nodes_synced && self.claims_synced && self.classes_synced
    }

    /// The claim and class caches have had their first list (`claims`, `classes`).
    pub fn volumes_synced(&mut self, claims: bool, classes: bool) {
        self.claims_synced |= claims;
        self.classes_synced |= classes;
    }

    /// The cluster view (nodes and what is bound where, assumed pods included).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// How many pods are waiting for a node.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Recomputes where `key` is counted: on its node if the cache shows it bound (and not
    /// finished), else on the node it is assumed on, else nowhere.
    fn reindex(&mut self, key: &str) {
        if let Some(node) = self.placed.remove(key) {
            self.cluster.remove_pod(&node, key);
        }
        let target = match self.pods.get(key) {
            Some(p) if p.occupies_node() => Some(p.clone()),
            _ => self.assumed.get(key).map(|a| a.pod.clone()),
        };
        if let Some(p) = target {
            self.placed.insert(key.to_string(), p.node_name.clone());
            self.cluster.add_pod(&p.node_name.clone(), p);
        }
    }

    /// A pod was added or changed.
    pub fn pod_applied(&mut self, pod: Arc<PodInfo>) {
        let key = pod.key.clone();
        if pod.waits_for_another_scheduler() {
            // Not kept: thousands of another scheduler's pending pods would cost memory
            // for nothing. A bound one is seen again with its node.
            if self.pods.contains_key(&key) {
                self.pod_deleted(&key);
            }
            return;
        }
        if self
            .assumed
            .get(&key)
            .is_some_and(|a| !pod.node_name.is_empty() || a.uid != pod.uid)
        {
            self.assumed.remove(&key);
        }
        if self.attempts.get(&key).is_some_and(|a| a.uid != pod.uid) {
            self.attempts.remove(&key);
        }
        if pod.is_pending_for_us() {
            self.pending.insert(key.clone(), pod.clone());
        } else {
            self.pending.remove(&key);
            self.attempts.remove(&key);
        }
        self.pods.insert(key.clone(), pod);
        self.reindex(&key);
        self.generation += 1;
    }

    /// A pod was deleted.
    pub fn pod_deleted(&mut self, key: &str) {
        self.pods.remove(key);
        self.preempting.remove(key);
        self.pending.remove(key);
        self.assumed.remove(key);
        self.attempts.remove(key);
        self.reindex(key);
        self.generation += 1;
    }

    /// The pod watch restarted: a full list follows.
    pub fn pods_relist_started(&mut self) {
        self.pod_relist = Some(Vec::new());
    }

    /// One pod of the full list.
    pub fn pods_relist_item(&mut self, pod: Arc<PodInfo>) {
        self.pod_relist.get_or_insert_with(Vec::new).push(pod);
    }

    /// The full list is complete: it replaces the cache.
    pub fn pods_relist_done(&mut self) {
        let listed = self.pod_relist.take().unwrap_or_default();
        let keep: std::collections::HashSet<&str> = listed.iter().map(|p| p.key.as_str()).collect();
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|k| !keep.contains(k.as_str()))
            .cloned()
            .collect();
        for k in gone {
            self.pod_deleted(&k);
        }
        for p in listed {
            self.pod_applied(p);
        }
        self.pods_synced = true;
    }

    /// A PersistentVolumeClaim was added or changed (`None`: deleted).
    pub fn claim_changed(&mut self, key: String, claim: Option<Claim>) {
        let changed = match claim {
            Some(c) => self.claims.insert(key, c.clone()) != Some(c),
            None => self.claims.remove(&key).is_some(),
        };
        if changed {
            self.generation += 1;
        }
    }

    /// A StorageClass was added or changed (`None`: deleted).
    pub fn class_changed(&mut self, name: String, wait_for_first_consumer: Option<bool>) {
        match wait_for_first_consumer {
            Some(w) => self.delayed_classes.insert(name, w),
            None => self.delayed_classes.remove(&name),
        };
        self.generation += 1;
    }

    /// Why `pod`'s claims keep it from every node (upstream's VolumeBinding PreFilter): a
    /// claim that does not exist or is being deleted, or one not bound whose class binds at
    /// once (or does not exist). Claims of `WaitForFirstConsumer` classes bind after the
    /// pod is placed.
    pub fn volume_problem(&self, pod: &PodInfo) -> Option<String> {
        let mut unbound_immediate = false;
        for name in &pod.claims {
            let Some(claim) = self.claims.get(&format!("{}/{name}", pod.namespace)) else {
                return Some(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if claim.deleting {
                return Some(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            if !claim.bound && !self.delayed_classes.get(&claim.class).copied().unwrap_or(false) {
                unbound_immediate = true;
            }
        }
        unbound_immediate.then(|| "pod has unbound immediate PersistentVolumeClaims".to_string())
    }

    /// A node was added or changed.
    pub fn node_applied(&mut self, node: Arc<NodeInfo>) {
        self.cluster.upsert_node(node);
        self.generation += 1;
    }

    /// A node was deleted.
    pub fn node_deleted(&mut self, name: &str) {
        self.cluster.remove_node(name);
        self.generation += 1;
    }

    /// The node watch restarted: a full list follows.
    pub fn nodes_relist_started(&mut self) {
        self.node_relist = Some(Vec::new());
    }

    /// One node of the full list.
    pub fn nodes_relist_item(&mut self, node: Arc<NodeInfo>) {
        self.node_relist.get_or_insert_with(Vec::new).push(node);
    }

    /// The full list is complete: it replaces the cache.
    pub fn nodes_relist_done(&mut self) {
        let listed = self.node_relist.take().unwrap_or_default();
        let keep: std::collections::HashSet<&str> = listed.iter().map(|n| n.name.as_str()).collect();
        let current: Vec<String> = self
            .cluster
            .node_names()
            .filter(|n| !keep.contains(n))
            .map(str::to_string)
            .collect();
        for n in current {
            self.node_deleted(&n);
        }
        for n in listed {
            self.node_applied(n);
        }
        self.nodes_synced = true;
    }

    /// A binding finished.
    pub fn bind_finished(&mut self, key: &str, uid: &str, outcome: BindOutcome, now: Instant) {
        if outcome == BindOutcome::Bound {
            // Stays assumed until the cache shows the binding.
            return;
        }
        if self.assumed.get(key).is_some_and(|a| a.uid == uid) {
            self.assumed.remove(key);
            self.reindex(key);
        }
        if outcome == BindOutcome::Failed {
            self.attempts.insert(
                key.to_string(),
                Attempt {
                    uid: uid.to_string(),
                    failures: 1,
                    at: now,
                    generation: self.generation,
                    last_event: None,
                },
            );
        }
        self.generation += 1;
    }

    /// One scheduling pass over the pending pods, in queue order. Decisions are sequential
    /// (each binding is counted before the next pod is considered); the bindings and status
    /// writes are returned for the caller to perform.
    pub fn pass(&mut self, now: Instant) -> Vec<Action> {
        let expired: Vec<String> = self
            .assumed
            .iter()
            .filter(|(_, a)| now.saturating_duration_since(a.at) >= ASSUME_TTL)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.assumed.remove(&k);
            self.reindex(&k);
        }
        let mut queue: Vec<Arc<PodInfo>> = self
            .pending
            .values()
            .filter(|p| !self.assumed.contains_key(&p.key))
            .cloned()
            .collect();
        queue.sort_by(|a, b| queue_order(a).cmp(&queue_order(b)));
        let mut actions = Vec::new();
        for pod in queue {
            if let Some(a) = self.attempts.get(&pod.key) {
                let since = now.saturating_duration_since(a.at);
                let due = since >= backoff(a.failures) && (a.generation != self.generation || since >= MAX_BACKOFF);
                if !due {
                    continue;
                }
            }
            if let Some(why) = self.volume_problem(&pod) {
                let total = self.cluster.node_count();
                let message = format!(
                    "0/{total} nodes are available: {why}. preemption: 0/{total} nodes are available: \
                     {total} Preemption is not helpful for scheduling."
                );
                actions.push(self.unschedulable(pod, message, now));
                continue;
            }
            // Room that preemption freed is held for its pod: as upstream counts nominated
            // pods, those at least as important as this one take their nominated node's room.
            let held: Vec<(String, String)> = self
                .preempting
                .iter()
                .filter(|(k, _)| **k != pod.key)
                .filter_map(|(k, p)| {
                    let other = self.pending.get(k)?;
                    (other.priority >= pod.priority).then(|| {
                        self.cluster.add_pod(&p.node, Arc::new(other.assumed_on(&p.node)));
                        (p.node.clone(), k.clone())
                    })
                })
                .collect();
            let decision = self.cluster.decide(&pod);
            let preemption = matches!(decision, Decision::Unschedulable(_)).then(|| self.cluster.preemption(&pod));
            for (node, key) in &held {
                self.cluster.remove_pod(node, key);
            }
            match decision {
                Decision::Bind(node) => {
                    self.attempts.remove(&pod.key);
                    self.preempting.remove(&pod.key);
                    let assumed = Arc::new(pod.assumed_on(&node));
                    self.assumed.insert(
                        pod.key.clone(),
                        Assumed {
                            uid: pod.uid.clone(),
                            node: node.clone(),
                            pod: assumed,
                            at: now,
                        },
                    );
                    self.reindex(&pod.key);
                    actions.push(Action::Bind { pod, node });
                }
                Decision::Unschedulable(message) => {
                    // Victims still leaving the nominated node: wait for them.
                    let waiting = self.preempting.get(&pod.key).is_some_and(|p| {
                        p.victims
                            .iter()
                            .any(|v| self.placed.get(v).is_some_and(|n| *n == p.node))
                    });
                    if waiting {
                        let message = format!(
                            "{message} preemption: not eligible due to a terminating pod on the nominated node."
                        );
                        actions.push(self.unschedulable(pod, message, now));
                        continue;
                    }
                    match preemption.unwrap_or_else(|| Err(String::new())) {
                        Ok(p) => {
                            self.preempting.insert(
                                pod.key.clone(),
                                Preempting {
                                    node: p.node.clone(),
                                    victims: p.victims.iter().map(|v| v.key.clone()).collect(),
                                },
                            );
                            actions.push(self.preempt(pod, p, message, now));
                        }
                        Err(tail) => actions.push(self.unschedulable(pod, format!("{message} {tail}"), now)),
                    }
                }
            }
        }
        actions
    }

    /// Nominates `p.node` for `pod` and asks for its victims' eviction.
    fn preempt(&mut self, pod: Arc<PodInfo>, p: Preemption, message: String, now: Instant) -> Action {
        let (status_patch, _) = self.failed(&pod, &message, now);
        let mut status_patch = status_patch.unwrap_or_else(|| json!({"status": {}}));
        status_patch["status"]["nominatedNodeName"] = json!(p.node);
        Action::Preempt {
            pod,
            node: p.node,
            victims: p.victims,
            message,
            status_patch,
        }
    }

    fn unschedulable(&mut self, pod: Arc<PodInfo>, message: String, now: Instant) -> Action {
        let (status_patch, event) = self.failed(&pod, &message, now);
        Action::Unschedulable {
            pod,
            message,
            status_patch,
            event,
        }
    }

    /// Counts a failed attempt (for back-off); the PodScheduled patch, and whether to
    /// record the `FailedScheduling` event.
    fn failed(&mut self, pod: &PodInfo, message: &str, now: Instant) -> (Option<Value>, bool) {
        let generation = self.generation;
        let a = self.attempts.entry(pod.key.clone()).or_insert_with(|| Attempt {
            uid: pod.uid.clone(),
            failures: 0,
            at: now,
            generation,
            last_event: None,
        });
        let changed = a.generation != generation;
        a.failures = a.failures.saturating_add(1);
        a.at = now;
        a.generation = generation;
        let event = match &a.last_event {
            None => true,
            Some((last, at)) => {
                let since = now.saturating_duration_since(*at);
                *last != message || since >= EVENT_REPEAT || (changed && since >= MAX_BACKOFF)
            }
        };
        if event {
            a.last_event = Some((message.to_string(), now));
        }
        (unschedulable_patch(&pod.obj, message, now_rfc3339()), event)
    }

    /// Where the next pass should happen at the latest (the earliest retry or assumption
    /// expiry), if anything is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        let retries = self.attempts.values().map(|a| {
            if a.generation != self.generation {
                a.at + backoff(a.failures)
            } else {
                a.at + MAX_BACKOFF
            }
        });
        let expiries = self.assumed.values().map(|a| a.at + ASSUME_TTL);
        retries.chain(expiries).min()
    }

    /// Node names in the cluster view (for tests and relists).
    pub fn node_names(&self) -> Vec<String> {
        self.cluster.node_names().map(str::to_string).collect()
    }

    /// The node a pod is assumed on, if any.
    pub fn assumed_node(&self, key: &str) -> Option<&str> {
        self.assumed.get(key).map(|a| a.node.as_str())
    }
}

fn now_rfc3339() -> String {
    shoal_api::time::now_rfc3339()
}

/// The `pods/status` merge patch that sets PodScheduled=False/Unschedulable with `message`,
/// or `None` when the pod already says exactly that. The other conditions are kept (a merge
/// patch replaces the list); the transition time is kept when the status was already False.
pub fn unschedulable_patch(pod: &Value, message: &str, now: String) -> Option<Value> {
    let conditions = pod["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let current = conditions.iter().find(|c| c["type"] == "PodScheduled");
    if let Some(c) = current
        && c["status"] == "False"
        && c["reason"] == "Unschedulable"
        && c["message"] == message
    {
        return None;
    }
    let transition = match current {
        Some(c) if c["status"] == "False" && c["lastTransitionTime"].is_string() => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut out: Vec<Value> = conditions
        .iter()
        .filter(|c| c["type"] != "PodScheduled")
        .cloned()
        .collect();
    out.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }));
    Some(json!({"status": {"conditions": out}}))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, pods: &str) -> Arc<NodeInfo> {
        Arc::new(NodeInfo::new(Arc::new(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": pods}}}))))
    }

    fn pod_json(name: &str, uid: &str, node: &str, priority: i64, created: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "uid": uid, "creationTimestamp": created},
               "spec": {"nodeName": node, "priority": priority, "containers": [{"name": "c", "image": "x"}]},
               "status": {"phase": "Pending"}})
    }

    fn pod(name: &str, node: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(pod_json(
            name,
            &format!("uid-{name}"),
            node,
            0,
            "2024-01-01T00:00:00Z",
        ))))
    }

    fn synced(nodes: &[Arc<NodeInfo>], pods: &[Arc<PodInfo>]) -> State {
        let mut s = State::new();
        s.nodes_relist_started();
        for n in nodes {
            s.nodes_relist_item(n.clone());
        }
        s.nodes_relist_done();
        s.pods_relist_started();
        for p in pods {
            s.pods_relist_item(p.clone());
        }
        s.pods_relist_done();
        s.volumes_synced(true, true);
        assert!(s.synced());
        s
    }

    fn binds(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Bind { pod, node } => Some((pod.name.clone(), node.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn assumed_bindings_count_until_the_cache_shows_them() {
        // One slot left in total: the first pod takes it, the second must wait.
        let mut s = synced(&[node("n1", "2")], &[pod("old", "n1"), pod("a", ""), pod("b", "")]);
        let now = Instant::now();
        let actions = s.pass(now);
        assert_eq!(binds(&actions), vec![("a".to_string(), "n1".to_string())]);
        assert!(matches!(&actions[1], Action::Unschedulable { pod, message, .. }
            if pod.name == "b" && message == "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."));
        assert_eq!(s.assumed_node("ns/a"), Some("n1"));
        assert_eq!(s.cluster().usage("n1").pod_count(), 2);
        // A later pass does not bind "a" again.
        assert!(binds(&s.pass(now)).is_empty());
        // The cache shows the binding: no longer assumed, still counted once.
        s.bind_finished("ns/a", "uid-a", BindOutcome::Bound, now);
        s.pod_applied(pod("a", "n1"));
        assert_eq!(s.assumed_node("ns/a"), None);
        assert_eq!(s.cluster().usage("n1").pod_count(), 2);
        // "old" finishes: the slot frees up and "b" goes there after its back-off.
        let mut done = pod_json("old", "uid-old", "n1", 0, "2024-01-01T00:00:00Z");
        done["status"]["phase"] = json!("Succeeded");
        s.pod_applied(Arc::new(PodInfo::new(Arc::new(done))));
        assert!(
            binds(&s.pass(now + Duration::from_millis(100))).is_empty(),
            "still backing off"
        );
        assert_eq!(
            binds(&s.pass(now + INITIAL_BACKOFF)),
            vec![("b".to_string(), "n1".to_string())]
        );
    }

    #[test]
    fn another_schedulers_pending_pods_are_not_kept_until_bound() {
        let mut s = synced(&[node("n1", "10")], &[]);
        let mut foreign = pod_json("f", "uid-f", "", 0, "2024-01-01T00:00:00Z");
        foreign["spec"]["schedulerName"] = json!("other");
        s.pod_applied(Arc::new(PodInfo::cached(foreign.clone())));
        assert!(s.pods.is_empty() && s.pending.is_empty(), "neither kept nor placed");
        assert!(binds(&s.pass(Instant::now())).is_empty());
        // Bound by the other scheduler: it counts on its node like any other.
        foreign["spec"]["nodeName"] = json!("n1");
        s.pod_applied(Arc::new(PodInfo::cached(foreign)));
        assert_eq!(s.cluster().usage("n1").pod_count(), 1);
        // A pod of ours is kept and placed.
        s.pod_applied(pod("a", ""));
        assert_eq!(
            binds(&s.pass(Instant::now())),
            vec![("a".to_string(), "n1".to_string())]
        );
    }

    #[test]
    fn assumptions_end_on_moot_or_failed_bindings_and_expire() {
        let mut s = synced(&[node("n1", "10")], &[pod("a", "")]);
        let now = Instant::now();
        assert_eq!(binds(&s.pass(now)).len(), 1);
        s.bind_finished("ns/a", "uid-a", BindOutcome::Moot, now);
        assert_eq!(s.assumed_node("ns/a"), None);
        assert_eq!(s.cluster().usage("n1").pod_count(), 0);
        // Still pending in the cache: tried again at once (a 409 means someone else bound it,
        // and the cache will say so; a 404 means it is gone).
        assert_eq!(binds(&s.pass(now)).len(), 1);
        s.bind_finished("ns/a", "uid-a", BindOutcome::Failed, now);
        assert!(binds(&s.pass(now)).is_empty(), "a failed binding backs off");
        assert_eq!(binds(&s.pass(now + INITIAL_BACKOFF)).len(), 1);
        // Bound but never seen: after the TTL the pod is pending again.
        s.bind_finished("ns/a", "uid-a", BindOutcome::Bound, now);
        assert!(binds(&s.pass(now + Duration::from_secs(5))).is_empty());
        assert_eq!(binds(&s.pass(now + INITIAL_BACKOFF + ASSUME_TTL)).len(), 1);
    }

    #[test]
    fn deleted_pods_free_their_slots_and_relists_replace_the_cache() {
        let mut s = synced(&[node("n1", "10"), node("n2", "10")], &[pod("a", "n1"), pod("b", "n2")]);
        s.pod_deleted("ns/a");
        assert_eq!(s.cluster().usage("n1").pod_count(), 0);
        s.pods_relist_started();
        s.pods_relist_item(pod("c", "n1"));
        s.pods_relist_done();
        assert_eq!(s.cluster().usage("n2").pod_count(), 0, "b vanished in the relist");
        assert_eq!(s.cluster().usage("n1").pod_count(), 1);
        s.nodes_relist_started();
        s.nodes_relist_item(node("n3", "10"));
        s.nodes_relist_done();
        assert_eq!(s.node_names(), vec!["n3".to_string()]);
    }

    fn prioritized(name: &str, node: &str, priority: i64, never: bool) -> Arc<PodInfo> {
        let mut p = pod_json(name, &format!("uid-{name}"), node, priority, "2024-01-01T00:00:00Z");
        if never {
            p["spec"]["preemptionPolicy"] = json!("Never");
        }
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    #[test]
    fn higher_priority_pods_preempt_and_wait_for_their_victims() {
        let t0 = Instant::now();
        // Two slots: a priority-10 and a priority-0 pod hold them.
        let mut s = synced(
            &[node("n1", "2")],
            &[prioritized("mid", "n1", 10, false), prioritized("low", "n1", 0, false)],
        );
        s.pod_applied(prioritized("high", "", 100, false));
        let actions = s.pass(t0);
        let [
            Action::Preempt {
                pod,
                node,
                victims,
                message,
                status_patch,
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        assert_eq!((pod.name.as_str(), node.as_str()), ("high", "n1"));
        // One slot is enough: only the lowest priority goes.
        assert_eq!(victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["low"]);
        assert_eq!(message, "0/1 nodes are available: 1 Too many pods.");
        assert_eq!(status_patch["status"]["nominatedNodeName"], "n1");
        // While the victim is there, the pod waits, and preempts no one else.
        let actions = s.pass(t0 + MAX_BACKOFF);
        let [Action::Unschedulable { message, .. }] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert!(
            message.ends_with("preemption: not eligible due to a terminating pod on the nominated node."),
            "{message}"
        );
        // Once it is gone, the room is held for it: a newcomer of lower priority, tried
        // while the preemptor backs off, does not take it.
        s.pod_deleted("ns/low");
        s.pod_applied(prioritized("newcomer", "", 0, false));
        let actions = s.pass(t0 + MAX_BACKOFF + Duration::from_millis(1));
        assert!(binds(&actions).is_empty(), "{actions:?}");
        // The pod takes the slot.
        let actions = s.pass(t0 + MAX_BACKOFF * 3);
        assert_eq!(binds(&actions), [("high".to_string(), "n1".to_string())]);
    }

    #[test]
    fn preemption_needs_lower_priority_and_a_willing_pod() {
        let t0 = Instant::now();
        let mut s = synced(&[node("n1", "1")], &[prioritized("peer", "n1", 100, false)]);
        s.pod_applied(prioritized("same", "", 100, false));
        s.pod_applied(prioritized("polite", "", 1000, true));
        let actions = s.pass(t0);
        let messages: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Unschedulable { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            messages,
            [
                "0/1 nodes are available: 1 Too many pods. preemption: not eligible due to preemptionPolicy=Never.",
                "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
            ]
        );
    }

    #[test]
    fn queue_order_is_priority_then_age() {
        let mk = |name: &str, prio: i64, created: &str| {
            Arc::new(PodInfo::new(Arc::new(pod_json(
                name,
                &format!("uid-{name}"),
                "",
                prio,
                created,
            ))))
        };
        let pods = [
            mk("young", 0, "2024-01-02T00:00:00Z"),
            mk("old", 0, "2024-01-01T00:00:00Z"),
            mk("important", 1000, "2024-01-03T00:00:00Z"),
        ];
        let mut s = synced(&[node("n1", "2")], &pods);
        let actions = s.pass(Instant::now());
        assert_eq!(
            binds(&actions),
            vec![
                ("important".to_string(), "n1".to_string()),
                ("old".to_string(), "n1".to_string())
            ]
        );
        assert!(matches!(&actions[2], Action::Unschedulable { pod, .. } if pod.name == "young"));
    }

    #[test]
    fn unschedulable_pods_are_reported_once_and_retried_on_changes() {
        let mut s = synced(&[node("n1", "0")], &[pod("a", "")]);
        let t0 = Instant::now();
        let first = s.pass(t0);
        let Action::Unschedulable {
            message,
            status_patch,
            event,
            ..
        } = &first[0]
        else {
            panic!("{first:?}")
        };
        assert_eq!(
            message,
            "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        assert!(*event);
        let patch = status_patch.clone().expect("first report writes the condition");
        let cond = &patch["status"]["conditions"][0];
        assert_eq!(cond["type"], "PodScheduled");
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "Unschedulable");
        assert_eq!(cond["message"], *message);
        assert!(cond["lastProbeTime"].is_null());
        // Nothing changed: no retry within the period.
        assert!(s.pass(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(s.next_due(), Some(t0 + MAX_BACKOFF));
        // The cache now shows the condition; a change wakes a retry after the back-off,
        // which neither rewrites the condition nor repeats the event.
        let mut shown = pod_json("a", "uid-a", "", 0, "2024-01-01T00:00:00Z");
        shown["status"]["conditions"] = patch["status"]["conditions"].clone();
        s.pod_applied(Arc::new(PodInfo::new(Arc::new(shown))));
        assert_eq!(s.next_due(), Some(t0 + INITIAL_BACKOFF));
        let retry = s.pass(t0 + INITIAL_BACKOFF);
        let Action::Unschedulable {
            status_patch, event, ..
        } = &retry[0]
        else {
            panic!("{retry:?}")
        };
        assert!(status_patch.is_none());
        assert!(!*event);
        // A different reason is reported at once (after the back-off, now 2 s).
        s.node_applied(Arc::new(NodeInfo::new(Arc::new(json!({"metadata": {"name": "n1"},
            "spec": {"unschedulable": true}, "status": {"allocatable": {"pods": "0"}}})))));
        assert!(s.pass(t0 + Duration::from_secs(2)).is_empty());
        let third = s.pass(t0 + Duration::from_secs(3));
        let Action::Unschedulable {
            message,
            status_patch,
            event,
            ..
        } = &third[0]
        else {
            panic!("{third:?}")
        };
        assert_eq!(
            message,
            "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        assert!(*event);
        assert!(status_patch.is_some());
        // The node is uncordoned and grows: the pod is bound.
        s.node_applied(node("n1", "10"));
        assert_eq!(
            binds(&s.pass(t0 + Duration::from_secs(7))),
            vec![("a".to_string(), "n1".to_string())]
        );
    }

    #[test]
    fn status_patch_keeps_other_conditions_and_the_transition_time() {
        let pod = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "old", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        let p = unschedulable_patch(&pod, "new", "2025-01-01T00:00:00Z".into()).unwrap();
        let conds = p["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0]["type"], "Ready");
        assert_eq!(conds[1]["message"], "new");
        assert_eq!(conds[1]["lastTransitionTime"], "2024-01-01T00:00:00Z");
        assert_eq!(unschedulable_patch(&pod, "old", "2025-01-01T00:00:00Z".into()), None);
        let fresh = unschedulable_patch(&json!({}), "m", "2025-01-01T00:00:00Z".into()).unwrap();
        assert_eq!(
            fresh["status"]["conditions"][0]["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn other_schedulers_and_finished_or_deleting_pods_are_left_alone() {
        let mut other = pod_json("other", "u1", "", 0, "2024-01-01T00:00:00Z");
        other["spec"]["schedulerName"] = json!("my-scheduler");
        let mut deleting = pod_json("deleting", "u2", "", 0, "2024-01-01T00:00:00Z");
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let mut failed = pod_json("failed", "u3", "", 0, "2024-01-01T00:00:00Z");
        failed["status"]["phase"] = json!("Failed");
        let mut ours = pod_json("ours", "u4", "", 0, "2024-01-01T00:00:00Z");
        ours["spec"]["schedulerName"] = json!("default-scheduler");
        let pods: Vec<Arc<PodInfo>> = [other, deleting, failed, ours]
            .into_iter()
            .map(|p| Arc::new(PodInfo::new(Arc::new(p))))
            .collect();
        let mut s = synced(&[node("n1", "10")], &pods);
        assert_eq!(s.pending_count(), 1);
        assert_eq!(
            binds(&s.pass(Instant::now())),
            vec![("ours".to_string(), "n1".to_string())]
        );
    }

    #[test]
    fn pods_wait_for_their_claims_as_upstream() {
        let with_claim = |claim: &str| {
            let mut p = pod_json("p", "u1", "", 0, "2026-01-01T00:00:00Z");
            p["spec"]["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]);
            Arc::new(PodInfo::new(Arc::new(p)))
        };
        let mut s = synced(&[node("n1", "10")], &[]);
        let pod = with_claim("data");
        assert_eq!(
            s.volume_problem(&pod).unwrap(),
            "persistentvolumeclaim \"data\" not found"
        );
        let claim = |class: &str, volume: Option<&str>| {
            Claim::of(&json!({"spec": {"storageClassName": class, "volumeName": volume}}))
        };
        s.class_changed("local-path".into(), Some(true));
        s.class_changed("fast".into(), Some(false));
        s.claim_changed("ns/data".into(), Some(claim("fast", None)));
        assert_eq!(
            s.volume_problem(&pod).unwrap(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
        s.claim_changed("ns/data".into(), Some(claim("local-path", None)));
        assert_eq!(s.volume_problem(&pod), None, "bound when the pod is placed");
        s.claim_changed("ns/data".into(), Some(claim("fast", Some("pv-1"))));
        assert_eq!(s.volume_problem(&pod), None);
        s.claim_changed("ns/data".into(), Some(claim("nowhere", None)));
        s.pod_applied(pod.clone());
        let actions = s.pass(Instant::now());
        let Some(Action::Unschedulable { message, .. }) = actions.first() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            message,
            "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
    }
}
