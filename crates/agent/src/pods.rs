//! Pods on simulated nodes: what a kubelet would report, without running anything.
//!
//! One watch of all pods feeds a queue of pod keys; each key is looked at against the cached
//! pod and node, and at most one write follows. Delays are deadlines in a sorted set (no task
//! per pod), and writes run concurrently, at most [`WRITE_CONCURRENCY`] at a time.
//!
//! For a pod bound (`spec.nodeName`) to a simulated node:
//!
//! - **Start**: a pod without a phase or in `Pending`, not being deleted, is written (through
//!   `pods/status`) as `Running` after [`PodTiming::start_delay`]: `hostIP`/`hostIPs` (the
//!   node's InternalIP), `podIP`/`podIPs` from the node's `spec.podCIDRs` (unique among the
//!   node's live pods, from `.2` up, reused once freed; `hostNetwork` pods get the host IP),
//!   `startTime`, the conditions `PodReadyToStartContainers`, `Initialized`, `Ready` and
//!   `ContainersReady` all `True` (other conditions, e.g. `PodScheduled`, are kept; a missing
//!   `PodScheduled` is added as `True`), a running, ready and started status per container,
//!   and init containers terminated with `Completed` (exit 0; sidecars running).
//! - **Completion**: pods with `restartPolicy` `Never` or `OnFailure` complete
//!   [`PodTiming::run_time`] after they started: phase `Succeeded`, containers terminated
//!   (`Completed`, exit 0), `Ready`/`ContainersReady` `False` with reason `PodCompleted`.
//!   `restartPolicy: Always` pods run until deleted.
//! - **Deletion**: a pod with `metadata.deletionTimestamp` is finished after
//!   `min(deletionGracePeriodSeconds, PodTiming::grace_cap)` by a DELETE with
//!   `gracePeriodSeconds=0` and a UID precondition; its IP is freed.
//!
//! Pod annotations:
//!
//! - `shoal.dev/run-seconds: "N"` ([`RUN_SECONDS_ANNOTATION`]): how long a `Never`/`OnFailure`
//!   pod runs before it completes (seconds, fractions allowed; overrides
//!   [`PodTiming::run_time`]).
//! - `shoal.dev/ready: "false"` ([`READY_ANNOTATION`]): a running pod's containers are not
//!   ready (as under a failing readiness probe) until the annotation goes or changes.
//! - `shoal.dev/exit-code: "N"` ([`EXIT_CODE_ANNOTATION`]): the exit code its containers end
//!   with; non-zero makes the pod `Failed` (containers terminated with reason `Error`,
//!   conditions with reason `PodFailed`). A list such as `"0,1"` gives the pod of Job
//!   completion index `i` the item `i` modulo the list's length.
//!
//! Pods whose node is deleted are left to the pod garbage collector. Not simulated: probes
//! and readiness gates (containers are ready at once), container restarts (an `OnFailure` pod
//! with a non-zero exit code goes `Failed` instead of restarting), and the terminal status a
//! kubelet writes before it finishes a deleted pod, except for a pod that finalizers hold
//! (it goes `Failed`, its containers terminated with exit code 137, before the final
//! delete). Pods on a node without a pod CIDR wait for one (unless `hostNetwork`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodStatus};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::SIMULATED_ANNOTATION;

/// Pod annotation: seconds a `Never`/`OnFailure` pod runs before it completes.
pub const RUN_SECONDS_ANNOTATION: &str = "shoal.dev/run-seconds";

/// Pod annotation: `"false"` makes a running pod's containers not ready (as a failing
/// readiness probe would), anything else or none ready.
pub const READY_ANNOTATION: &str = "shoal.dev/ready";

/// The exit code of a simulated container stopped by a pod's deletion (SIGKILL).
const KILLED_EXIT_CODE: i32 = 137;

/// Pod annotation: the exit code of its containers when it completes (non-zero: `Failed`).
pub const EXIT_CODE_ANNOTATION: &str = "shoal.dev/exit-code";

/// At most this many pod writes are in flight at once.
pub const WRITE_CONCURRENCY: usize = 64;

/// The field manager of pod status writes (as a kubelet's).
const FIELD_MANAGER: &str = "kubelet";

/// Pause before retrying a write that failed for another reason than a conflict.
const RETRY: Duration = Duration::from_secs(1);

/// Pause before looking again at a pod whose node has no free pod IP.
const FULL_RETRY: Duration = Duration::from_secs(5);

/// At most this many keys are looked at before the worker looks at its inputs again.
const BATCH: usize = 512;

/// The conditions a kubelet owns (upstream `PodConditionByKubelet`).
const KUBELET_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// How long simulated pods take. All default to zero: pods start at once, run-to-completion
/// pods complete as soon as they run, and deleted pods go at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodTiming {
    /// From the moment a pod is seen bound to a simulated node to its `Running` status.
    pub start_delay: Duration,
    /// How long `Never`/`OnFailure` pods run (the pod annotation
    /// [`RUN_SECONDS_ANNOTATION`] overrides it).
    pub run_time: Duration,
    /// Cap on the grace period of deleted pods: a pod is removed after
    /// `min(deletionGracePeriodSeconds, grace_cap)`, but not before `stop_time`.
    pub grace_cap: Duration,
    /// How long a deleted pod's containers take to stop, at least (never more than its grace
    /// period): the time a kubelet takes between a DELETE and its final delete of the pod.
    pub stop_time: Duration,
    /// Up to this much more, spread over pods by their uid: pods deleted together do not go
    /// in the same instant (a kubelet's do not either).
    pub stop_jitter: Duration,
}

impl PodTiming {
    /// How long `pod`, once deleted, takes to go: `min(grace, grace_cap)`, but at least its
    /// stop time (its share of the jitter added), and never more than its grace period.
    fn stop_after(&self, pod: &Pod) -> Duration {
        let grace = grace(pod);
        let share = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            pod.metadata.uid.hash(&mut h);
            (h.finish() % 1000) as u32
        };
        let stop = self.stop_time + self.stop_jitter * share / 1000;
        grace.min(self.grace_cap).max(stop.min(grace))
    }
}

// ---------------------------------------------------------------------------------------
// Node addresses and pod IPs

/// An IP network (`10.42.7.0/24`, `fd00::/64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = s.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = Self::bits(ip);
        if prefix > bits {
            return None;
        }
        let host_bits = u32::from(bits - prefix);
        let mask = if host_bits >= 128 { 0 } else { !0u128 << host_bits };
        let base = match ip {
            IpAddr::V4(v) => IpAddr::V4((u32::from(v) & mask as u32).into()),
            IpAddr::V6(v) => IpAddr::V6((u128::from(v) & mask).into()),
        };
        Some(Cidr { base, prefix })
    }

    fn bits(ip: IpAddr) -> u8 {
        if ip.is_ipv4() { 32 } else { 128 }
    }

    /// One past the last offset that may be given to a pod: the IPv4 broadcast address is
    /// never given.
    pub(crate) fn limit(&self) -> u32 {
        let host_bits = Self::bits(self.base) - self.prefix;
        let size: u64 = if host_bits >= 32 { 1 << 32 } else { 1u64 << host_bits };
        let limit = if self.base.is_ipv4() {
            size.saturating_sub(1)
        } else {
            size
        };
        u32::try_from(limit).unwrap_or(u32::MAX)
    }

    /// The address `offset` places into the network.
    pub(crate) fn nth(&self, offset: u32) -> IpAddr {
        match self.base {
            IpAddr::V4(v) => IpAddr::V4(u32::from(v).wrapping_add(offset).into()),
            IpAddr::V6(v) => IpAddr::V6(u128::from(v).wrapping_add(u128::from(offset)).into()),
        }
    }

    /// The offset of `ip` in the network, if it is inside.
    pub(crate) fn offset_of(&self, ip: IpAddr) -> Option<u32> {
        let off = match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(i)) => u128::from(u32::from(i).checked_sub(u32::from(b))?),
            (IpAddr::V6(b), IpAddr::V6(i)) => u128::from(i).checked_sub(u128::from(b))?,
            _ => return None,
        };
        u32::try_from(off).ok().filter(|o| *o < self.limit().max(1))
    }
}

/// What pods need from their simulated node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    /// InternalIP addresses (the pods' `hostIPs`).
    pub(crate) host_ips: Vec<String>,
    /// The pod networks (`spec.podCIDRs`, else `spec.podCIDR`).
    pub(crate) cidrs: Vec<Cidr>,
}

impl NodeInfo {
    /// The info of a simulated node that reports an InternalIP, else `None`.
    pub(crate) fn of(node: &Node) -> Option<NodeInfo> {
        let simulated = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIMULATED_ANNOTATION))
            .is_some_and(|v| v == "true");
        if !simulated {
            return None;
        }
        let host_ips: Vec<String> = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(|a| {
                a.iter()
                    .filter(|a| a.type_ == "InternalIP")
                    .map(|a| a.address.clone())
                    .collect()
            })
            .unwrap_or_default();
        if host_ips.is_empty() {
            return None;
        }
        let spec = node.spec.as_ref();
        let cidrs: Vec<Cidr> = match spec.and_then(|s| s.pod_cidrs.as_ref()).filter(|c| !c.is_empty()) {
            Some(list) => list.iter().filter_map(|c| Cidr::parse(c)).collect(),
            None => spec
                .and_then(|s| s.pod_cidr.as_deref())
                .and_then(Cidr::parse)
                .into_iter()
                .collect(),
        };
        Some(NodeInfo { host_ips, cidrs })
    }

    /// One past the largest offset valid in every pod network.
    fn limit(&self) -> u32 {
        self.cidrs.iter().map(Cidr::limit).min().unwrap_or(0)
    }
}

/// A pod's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PodKey {
    pub(crate) ns: String,
    pub(crate) name: String,
}

impl PodKey {
    fn of(pod: &Pod) -> PodKey {
        PodKey {
            ns: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Assigned {
    uid: String,
    node: String,
    offset: u32,
}

/// Pod IPs per node, as offsets into the node's pod networks (the same offset in each network
/// of a dual-stack node). Offsets 0 (the network) and 1 (the gateway) are never given; the
/// lowest free offset is, so freed addresses are reused.
#[derive(Debug, Default)]
pub(crate) struct IpAllocator {
    by_pod: HashMap<PodKey, Assigned>,
    used: HashMap<String, HashSet<u32>>,
}

impl IpAllocator {
    /// The offset of pod `key` (with `uid`) on `node`: its current one, else the lowest free
    /// offset below `limit`; `None` when the network is full.
    pub(crate) fn assign(&mut self, key: &PodKey, uid: &str, node: &str, limit: u32) -> Option<u32> {
        if let Some(a) = self.by_pod.get(key)
            && a.uid == uid
            && a.node == node
            && a.offset < limit
        {
            return Some(a.offset);
        }
        self.release(key);
        let used = self.used.entry(node.to_string()).or_default();
        let offset = (2..limit).find(|o| !used.contains(o))?;
        used.insert(offset);
        self.by_pod.insert(
            key.clone(),
            Assigned {
                uid: uid.to_string(),
                node: node.to_string(),
                offset,
            },
        );
        Some(offset)
    }

    /// Records that pod `key` holds `offset` on `node` (read back from its status). False if
    /// another pod holds it.
    pub(crate) fn reserve(&mut self, key: &PodKey, uid: &str, node: &str, offset: u32) -> bool {
        let want = Assigned {
            uid: uid.to_string(),
            node: node.to_string(),
            offset,
        };
        if self.by_pod.get(key) == Some(&want) {
            return true;
        }
        if self.used.get(node).is_some_and(|u| u.contains(&offset)) {
            return false;
        }
        self.release(key);
        self.used.entry(node.to_string()).or_default().insert(offset);
        self.by_pod.insert(key.clone(), want);
        true
    }

    /// Frees the address of pod `key`.
    pub(crate) fn release(&mut self, key: &PodKey) {
        if let Some(a) = self.by_pod.remove(key)
            && let Some(used) = self.used.get_mut(&a.node)
        {
            used.remove(&a.offset);
            if used.is_empty() {
                self.used.remove(&a.node);
            }
        }
    }

    #[cfg(test)]
    fn in_use(&self, node: &str) -> usize {
        self.used.get(node).map_or(0, HashSet::len)
    }
}

// ---------------------------------------------------------------------------------------
// What to do next (pure)

/// Where a pod is in its simulated life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// No phase yet, or `Pending`.
    Pending,
    Running,
    /// `Succeeded` or `Failed`.
    Finished,
    /// `metadata.deletionTimestamp` is set (whatever the phase).
    Deleting,
}

pub(crate) fn stage(pod: &Pod) -> Stage {
    if pod.metadata.deletion_timestamp.is_some() {
        return Stage::Deleting;
    }
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        None | Some("Pending" | "") => Stage::Pending,
        Some("Running") => Stage::Running,
        Some("Succeeded" | "Failed") => Stage::Finished,
        // An unknown phase is not ours to change.
        Some(_) => Stage::Finished,
    }
}

/// The next thing to do for a pod that has been in `stage` for `elapsed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Idle,
    Wait(Duration),
    Start,
    Complete { exit_code: i32 },
    Delete,
}

fn after(elapsed: Duration, wait: Duration, step: Step) -> Step {
    if elapsed >= wait {
        step
    } else {
        Step::Wait(wait - elapsed)
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|v| v.trim())
}

/// How long a run-to-completion pod runs.
pub(crate) fn run_time(pod: &Pod, timing: &PodTiming) -> Duration {
    annotation(pod, RUN_SECONDS_ANNOTATION)
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(timing.run_time)
}

/// The exit code a run-to-completion pod ends with: the annotation's number, or for a list
/// such as `0,1` the item at the pod's Job completion index, modulo the list's length (so
/// `0,1` fails the odd indexes, as upstream's `failOddSucceedEven` test pods do).
pub(crate) fn exit_code(pod: &Pod) -> i32 {
    let Some(v) = annotation(pod, EXIT_CODE_ANNOTATION) else {
        return 0;
    };
    let codes: Vec<i32> = v.split(',').filter_map(|c| c.trim().parse().ok()).collect();
    if codes.is_empty() {
        return 0;
    }
    let index = annotation(pod, "batch.kubernetes.io/job-completion-index")
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or(0);
    codes[index % codes.len()]
}

fn runs_to_completion(pod: &Pod) -> bool {
    matches!(
        pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
        Some("Never" | "OnFailure")
    )
}

fn grace(pod: &Pod) -> Duration {
    Duration::from_secs(
        pod.metadata
            .deletion_grace_period_seconds
            .unwrap_or(0)
            .max(0)
            .unsigned_abs(),
    )
}

pub(crate) fn next_step(pod: &Pod, stage: Stage, elapsed: Duration, timing: &PodTiming) -> Step {
    match stage {
        Stage::Finished => Step::Idle,
        Stage::Pending => after(elapsed, timing.start_delay, Step::Start),
        Stage::Running if runs_to_completion(pod) => after(
            elapsed,
            run_time(pod, timing),
            Step::Complete {
                exit_code: exit_code(pod),
            },
        ),
        Stage::Running => Step::Idle,
        Stage::Deleting => after(elapsed, timing.stop_after(pod), Step::Delete),
    }
}

/// How long the pod has been in `stage` by its own timestamps (for pods found already in it,
/// e.g. after a restart): since `startTime` when running, since the delete request when
/// deleting.
pub(crate) fn wall_elapsed(pod: &Pod, stage: Stage, now: jiff::Timestamp) -> Duration {
    let since = match stage {
        Stage::Running => pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        Stage::Deleting => pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .and_then(|t| t.0.checked_sub(jiff::SignedDuration::try_from(grace(pod)).ok()?).ok()),
        Stage::Pending | Stage::Finished => None,
    };
    since
        .and_then(|s| Duration::try_from(now.duration_since(s)).ok())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Statuses (pure)

/// The status reference and image ID a runtime reports for `image`:
/// `nginx` -> (`docker.io/library/nginx:latest`, `docker.io/library/nginx@sha256:<hex>`),
/// the digest derived from the image string.
pub(crate) fn image_ref(image: &str) -> (String, String) {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (image, None),
    };
    let last = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last..].rfind(':') {
        Some(i) => (&name[..last + i], Some(&name[last + i + 1..])),
        None => (name, None),
    };
    let first = repo.split('/').next().unwrap_or_default();
    let has_domain = repo.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    let repo = if has_domain {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    let digest = digest.unwrap_or_else(|| {
        let d = ring::digest::digest(&ring::digest::SHA256, image.as_bytes());
        let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    });
    let reference = match (tag, image.contains('@')) {
        (Some(t), _) => format!("{repo}:{t}"),
        (None, true) => format!("{repo}@{digest}"),
        (None, false) => format!("{repo}:latest"),
    };
    (reference, format!("{repo}@{digest}"))
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn container_id(pod: &Pod, name: &str) -> String {
    format!("shoal://{}-{name}", uid(pod))
}

pub(crate) fn volume_mounts(c: &Container) -> Option<Value> {
    let mounts = c.volume_mounts.as_ref().filter(|m| !m.is_empty())?;
    Some(Value::Array(
        mounts
            .iter()
            .map(|m| {
                let mut v = json!({"name": m.name, "mountPath": m.mount_path});
                if m.read_only == Some(true) {
                    v["readOnly"] = json!(true);
                    let rro = match m.recursive_read_only.as_deref() {
                        Some("Enabled" | "IfPossible") => "Enabled",
                        _ => "Disabled",
                    };
                    v["recursiveReadOnly"] = json!(rro);
                }
                v
            })
            .collect(),
    ))
}

fn container_status(pod: &Pod, c: &Container, state: Value, ready: bool, started: bool) -> Value {
    let (image, image_id) = image_ref(c.image.as_deref().unwrap_or_default());
    let mut s = json!({
        "name": c.name,
        "image": image,
        "imageID": image_id,
        "containerID": container_id(pod, &c.name),
        "ready": ready,
        "started": started,
        "restartCount": 0,
        "lastState": {},
        "state": state,
    });
    if let Some(m) = volume_mounts(c) {
        s["volumeMounts"] = m;
    }
    s
}

fn running(started_at: &str) -> Value {
    json!({"running": {"startedAt": started_at}})
}

fn terminated(pod: &Pod, name: &str, exit_code: i32, started_at: &str, finished_at: &str) -> Value {
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    json!({"terminated": {
        "containerID": container_id(pod, name),
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at,
    }})
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

pub(crate) fn old_status(pod: &Pod) -> Value {
    pod.status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// The kubelet's conditions after `ours` (type, status, reason), in upstream's order: the
/// conditions of other owners first, then the kubelet's; `lastTransitionTime` is kept when a
/// condition keeps its status, and `PodScheduled` is kept as it is (added as `True` if
/// missing).
pub(crate) fn conditions(old: &Value, ours: &[(&str, bool, Option<&str>)], now: &str) -> Value {
    let old: &[Value] = old["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let find = |t: &str| old.iter().find(|c| c["type"] == t);
    let mut out: Vec<Value> = old
        .iter()
        .filter(|c| !c["type"].as_str().is_some_and(|t| KUBELET_CONDITIONS.contains(&t)))
        .cloned()
        .collect();
    let make = |t: &str, status: bool, reason: Option<&str>| {
        let status = if status { "True" } else { "False" };
        let since = find(t)
            .filter(|c| c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime"))
            .filter(|v| v.is_string())
            .cloned()
            .unwrap_or_else(|| json!(now));
        let mut c = json!({"type": t, "status": status, "lastTransitionTime": since});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    for (t, status, reason) in ours {
        out.push(make(t, *status, *reason));
    }
    out.push(
        find("PodScheduled")
            .cloned()
            .unwrap_or_else(|| make("PodScheduled", true, None)),
    );
    Value::Array(out)
}

pub(crate) fn ips(list: &[String]) -> Value {
    Value::Array(list.iter().map(|ip| json!({"ip": ip})).collect())
}

/// The status of `pod` once its containers run on a node with `host_ips`, the pod holding
/// `pod_ips`. Fields not a kubelet's (e.g. `qosClass`) are kept.
pub(crate) fn running_status(pod: &Pod, host_ips: &[String], pod_ips: &[String], now: &str) -> Value {
    let mut s = old_status(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    s["phase"] = json!("Running");
    if let Some(h) = host_ips.first() {
        s["hostIP"] = json!(h);
        s["hostIPs"] = ips(host_ips);
    }
    if let Some(p) = pod_ips.first() {
        s["podIP"] = json!(p);
        s["podIPs"] = ips(pod_ips);
    }
    if !s["startTime"].is_string() {
        s["startTime"] = json!(now);
    }
    let ready = wants_ready(pod);
    let unready = (!ready).then_some("ContainersNotReady");
    let ours = [
        ("PodReadyToStartContainers", true, None),
        ("Initialized", true, None),
        ("Ready", ready, unready),
        ("ContainersReady", ready, unready),
    ];
    s["conditions"] = conditions(&s, &ours, now);
    let mut statuses: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| container_status(pod, c, running(now), ready, true))
        .collect();
    // The kubelet sorts container statuses by name; init containers stay in spec order.
    statuses.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    s["containerStatuses"] = Value::Array(statuses);
    if let Some(inits) = spec.init_containers.as_ref().filter(|i| !i.is_empty()) {
        let inits = inits
            .iter()
            .map(|c| {
                if is_sidecar(c) {
                    container_status(pod, c, running(now), true, true)
                } else {
                    container_status(pod, c, terminated(pod, &c.name, 0, now, now), true, false)
                }
            })
            .collect();
        s["initContainerStatuses"] = Value::Array(inits);
    }
    s
}

/// Whether the pod's containers are to be ready ([`READY_ANNOTATION`]).
fn wants_ready(pod: &Pod) -> bool {
    annotation(pod, READY_ANNOTATION) != Some("false")
}

/// The status of a running `pod` whose readiness ([`READY_ANNOTATION`]) differs from what it
/// reports: its Ready and ContainersReady conditions and its containers' `ready` turned.
/// `None` when they agree.
pub(crate) fn readiness_status(pod: &Pod, now: &str) -> Option<Value> {
    // Read off the typed status first: this runs for every change of every running pod.
    let want = wants_ready(pod);
    let is = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if is == want {
        return None;
    }
    let mut s = old_status(pod);
    let unready = (!want).then_some("ContainersNotReady");
    let ours = [
        ("PodReadyToStartContainers", true, None),
        ("Initialized", true, None),
        ("Ready", want, unready),
        ("ContainersReady", want, unready),
    ];
    s["conditions"] = conditions(&s, &ours, now);
    for c in s["containerStatuses"].as_array_mut().into_iter().flatten() {
        c["ready"] = json!(want);
    }
    Some(s)
}

/// The status of a running `pod` whose containers all exited with `exit_code`: `Succeeded`
/// (0) or `Failed`.
pub(crate) fn finished_status(pod: &Pod, exit_code: i32, now: &str) -> Value {
    let mut s = old_status(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let (phase, reason) = if exit_code == 0 {
        ("Succeeded", "PodCompleted")
    } else {
        ("Failed", "PodFailed")
    };
    s["phase"] = json!(phase);
    let has_inits = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
    let init_reason = (has_inits && exit_code == 0).then_some("PodCompleted");
    let ours = [
        ("PodReadyToStartContainers", false, None),
        ("Initialized", true, init_reason),
        ("Ready", false, Some(reason)),
        ("ContainersReady", false, Some(reason)),
    ];
    s["conditions"] = conditions(&s, &ours, now);
    let start = s["startTime"].as_str().unwrap_or(now).to_string();
    let started_at = |list: &Value, name: &str| -> String {
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == name))
            .and_then(|c| c["state"]["running"]["startedAt"].as_str())
            .unwrap_or(&start)
            .to_string()
    };
    let mut statuses: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            let since = started_at(&s["containerStatuses"], &c.name);
            container_status(pod, c, terminated(pod, &c.name, exit_code, &since, now), false, false)
        })
        .collect();
    statuses.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    s["containerStatuses"] = Value::Array(statuses);
    if let Some(inits) = spec.init_containers.as_ref().filter(|i| !i.is_empty()) {
        let inits = inits
            .iter()
            .map(|c| {
                let since = started_at(&s["initContainerStatuses"], &c.name);
                let state = if is_sidecar(c) {
                    terminated(pod, &c.name, 0, &since, now)
                } else {
                    s["initContainerStatuses"]
                        .as_array()
                        .and_then(|l| l.iter().find(|x| x["name"] == c.name.as_str()))
                        .map(|x| x["state"].clone())
                        .filter(|st| st.get("terminated").is_some())
                        .unwrap_or_else(|| terminated(pod, &c.name, 0, &since, &since))
                };
                container_status(pod, c, state, !is_sidecar(c), false)
            })
            .collect();
        s["initContainerStatuses"] = Value::Array(inits);
    }
    s
}

fn now_rfc3339() -> String {
    shoal_api::time::now_rfc3339()
}

// ---------------------------------------------------------------------------------------
// The worker

struct Tracked {
    node: String,
    uid: String,
    /// The stage the pod was last seen in, and since when.
    seen: Option<(Stage, Instant)>,
    /// The resourceVersion a write was based on: nothing more is done until a newer version
    /// arrives (the write's own event, or what made it conflict).
    acted_on: Option<String>,
}

struct Outcome {
    key: PodKey,
    rv: Option<String>,
    what: &'static str,
    result: Result<(), kube::Error>,
}

/// The pod side of the simulated node pool: one watch of all pods, a queue of keys, sorted
/// deadlines and bounded concurrent writes.
pub(crate) struct PodWorker {
    client: kube::Client,
    /// The client of the node a pod is bound to.
    as_node: crate::simulated::NodeClients,
    timing: PodTiming,
    nodes: Store<Node>,
    pods: Store<Pod>,
    synced: bool,
    node_infos: HashMap<String, NodeInfo>,
    pods_by_node: HashMap<String, HashSet<PodKey>>,
    tracked: HashMap<PodKey, Tracked>,
    ips: IpAllocator,
    queue: VecDeque<PodKey>,
    queued: HashSet<PodKey>,
    timers: BTreeSet<(Instant, PodKey)>,
    timer_of: HashMap<PodKey, Instant>,
    inflight: HashSet<PodKey>,
    dirty: HashSet<PodKey>,
}

/// Runs the pod side of the pool until the process ends. `nodes` is the pool's node cache;
/// `node_changes` names each node the cache saw change, and `""` when the cache was
/// (re)filled from a list (so pods waiting for their node's addresses or pod CIDR are looked
/// at again). The node cache need not be ready: pods wait for their node.
pub(crate) async fn run_pods(
    client: kube::Client,
    as_node: crate::simulated::NodeClients,
    timing: PodTiming,
    nodes: Store<Node>,
    mut node_changes: mpsc::Receiver<String>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    // Managed fields, labels, owners and placement (affinity, tolerations) are never read
    // here: the cache does without them. Status writes go to `pods/status`, which takes
    // only the status from the body, so a cached pod without them is a complete update.
    let stream = watcher(api, watcher::Config::default()).modify(|p| {
        p.metadata.managed_fields = None;
        p.metadata.labels = None;
        p.metadata.owner_references = None;
        if let Some(spec) = p.spec.as_mut() {
            spec.affinity = None;
            spec.tolerations = None;
        }
    });
    let events = reflector(writer, stream).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut w = PodWorker::new(client, as_node, timing, nodes, reader);
    let mut writes: FuturesUnordered<BoxFuture<'static, Outcome>> = FuturesUnordered::new();
    let mut nodes_open = true;
    loop {
        w.fire_timers(Instant::now());
        let mut looked = 0;
        while writes.len() < WRITE_CONCURRENCY && looked < BATCH {
            let Some(key) = w.next_key() else { break };
            looked += 1;
            if let Some(write) = w.process(key) {
                writes.push(write);
            }
        }
        let more = w.synced && !w.queue.is_empty() && writes.len() < WRITE_CONCURRENCY;
        let deadline = w.timers.first().map(|(at, _)| *at);
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => w.on_pod_event(ev),
                Some(Err(e)) => tracing::debug!(error = %e, "simulated pods: pod watch error"),
                None => return,
            },
            name = node_changes.recv(), if nodes_open => match name {
                Some(name) => w.on_node_change(&name),
                None => nodes_open = false,
            },
            Some(out) = writes.next(), if !writes.is_empty() => w.on_outcome(out),
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            () = tokio::task::yield_now(), if more => {}
        }
    }
}

impl PodWorker {
    /// A worker with nothing tracked yet, waiting for its first list.
    fn new(
        client: kube::Client,
        as_node: crate::simulated::NodeClients,
        timing: PodTiming,
        nodes: Store<Node>,
        pods: Store<Pod>,
    ) -> PodWorker {
        PodWorker {
            client,
            as_node,
            timing,
            nodes,
            pods,
            synced: false,
            node_infos: HashMap::new(),
            pods_by_node: HashMap::new(),
            tracked: HashMap::new(),
            ips: IpAllocator::default(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
            inflight: HashSet::new(),
            dirty: HashSet::new(),
        }
    }

    /// The client of the node `pod` is bound to (the pool's for an unbound pod).
    fn node_client(&self, pod: &Pod) -> kube::Client {
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(node) if !node.is_empty() => (self.as_node)(node),
            _ => self.client.clone(),
        }
    }

    fn enqueue(&mut self, key: PodKey) {
        if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    fn next_key(&mut self) -> Option<PodKey> {
        if !self.synced {
            return None;
        }
        let key = self.queue.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    fn schedule(&mut self, key: &PodKey, at: Instant) {
        if let Some(old) = self.timer_of.get(key) {
            if *old <= at {
                return;
            }
            self.timers.remove(&(*old, key.clone()));
        }
        self.timer_of.insert(key.clone(), at);
        self.timers.insert((at, key.clone()));
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((at, _)) = self.timers.first()
            && *at <= now
        {
            let Some((_, key)) = self.timers.pop_first() else { break };
            self.timer_of.remove(&key);
            self.enqueue(key);
        }
    }

    fn on_pod_event(&mut self, ev: watcher::Event<Pod>) {
        match ev {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let key = PodKey::of(&pod);
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or_default();
                if !node.is_empty() {
                    self.track(&key, node, uid(&pod));
                    self.enqueue(key);
                } else if self.tracked.contains_key(&key) {
                    self.enqueue(key);
                }
            }
            watcher::Event::Delete(pod) => {
                let key = PodKey::of(&pod);
                if self.tracked.contains_key(&key) {
                    self.enqueue(key);
                }
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => self.resync(),
        }
    }

    /// After a (re)list: holds the addresses pods already report, and looks again at every
    /// bound pod not finished and at pods that went away unseen. (The cache takes a relist
    /// in whole only now: a pod first seen in it was looked at against the old cache, found
    /// missing, and would otherwise wait for a change that may never come.)
    fn resync(&mut self) {
        self.synced = true;
        for pod in self.pods.state() {
            if stage(&pod) == Stage::Finished {
                continue;
            }
            let key = PodKey::of(&pod);
            self.reserve_reported(&key, &pod);
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
            {
                self.enqueue(key);
            }
        }
        let gone: Vec<PodKey> = self
            .tracked
            .keys()
            .filter(|k| self.pods.get(&objref(k)).is_none())
            .cloned()
            .collect();
        for key in gone {
            self.enqueue(key);
        }
    }

    /// Takes note of the pod IP a live pod reports.
    fn reserve_reported(&mut self, key: &PodKey, pod: &Pod) {
        let spec = pod.spec.as_ref();
        if spec.and_then(|s| s.host_network) == Some(true) {
            return;
        }
        let Some(node) = spec.and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            return;
        };
        let Some(info) = self.node_info(node) else { return };
        let Some(offset) = info.cidrs.first().and_then(|c| c.offset_of(ip)) else {
            return;
        };
        if !self.ips.reserve(key, uid(pod), node, offset) {
            tracing::warn!(pod = %key.name, namespace = %key.ns, %ip, "simulated pods: pod IP held twice");
        }
    }

    fn node_info(&self, node: &str) -> Option<NodeInfo> {
        self.nodes.get(&ObjectRef::new(node)).and_then(|n| NodeInfo::of(&n))
    }

    fn on_node_change(&mut self, name: &str) {
        if name.is_empty() {
            self.on_nodes_listed();
            return;
        }
        let info = self.node_info(name);
        if self.node_infos.get(name) == info.as_ref() {
            return;
        }
        match info {
            Some(info) => {
                self.node_infos.insert(name.to_string(), info);
                let keys: Vec<PodKey> = self
                    .pods_by_node
                    .get(name)
                    .map(|k| k.iter().cloned().collect())
                    .unwrap_or_default();
                for key in keys {
                    self.enqueue(key);
                }
            }
            None => {
                self.node_infos.remove(name);
            }
        }
    }

    /// After the node cache was (re)filled: looks at every node again.
    fn on_nodes_listed(&mut self) {
        let mut names: HashSet<String> = self.node_infos.keys().cloned().collect();
        names.extend(self.nodes.state().iter().filter_map(|n| n.metadata.name.clone()));
        for name in names {
            if !name.is_empty() {
                self.on_node_change(&name);
            }
        }
    }

    fn track(&mut self, key: &PodKey, node: &str, uid: &str) {
        if let Some(t) = self.tracked.get(key)
            && t.uid == uid
            && t.node == node
        {
            return;
        }
        self.forget(key);
        self.tracked.insert(
            key.clone(),
            Tracked {
                node: node.to_string(),
                uid: uid.to_string(),
                seen: None,
                acted_on: None,
            },
        );
        self.pods_by_node
            .entry(node.to_string())
            .or_default()
            .insert(key.clone());
    }

    fn forget(&mut self, key: &PodKey) {
        if let Some(t) = self.tracked.remove(key)
            && let Some(keys) = self.pods_by_node.get_mut(&t.node)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.pods_by_node.remove(&t.node);
            }
        }
        self.ips.release(key);
        if let Some(at) = self.timer_of.remove(key) {
            self.timers.remove(&(at, key.clone()));
        }
    }

    /// Looks at one pod; returns the write to make, if any.
    fn process(&mut self, key: PodKey) -> Option<BoxFuture<'static, Outcome>> {
        if self.inflight.contains(&key) {
            self.dirty.insert(key);
            return None;
        }
        let Some(pod) = self.pods.get(&objref(&key)) else {
            self.forget(&key);
            return None;
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if node.is_empty() {
            self.forget(&key);
            return None;
        }
        self.track(&key, &node, uid(&pod));
        let rv = pod.metadata.resource_version.clone();
        let tracked = self.tracked.get_mut(&key)?;
        if tracked.acted_on.is_some() && tracked.acted_on == rv {
            return None;
        }
        tracked.acted_on = None;
        let info = self.node_info(&node)?;
        let stage = stage(&pod);
        match stage {
            Stage::Finished => {
                self.ips.release(&key);
                self.tracked.get_mut(&key)?.seen = None;
                return None;
            }
            Stage::Running => {
                self.reserve_reported(&key, &pod);
                if let Some(status) = readiness_status(&pod, &now_rfc3339()) {
                    return self.write_status(key, &pod, status, "readiness");
                }
            }
            Stage::Pending | Stage::Deleting => {}
        }
        let now = Instant::now();
        let tracked = self.tracked.get_mut(&key)?;
        let since = match tracked.seen {
            Some((s, t)) if s == stage => t,
            previous => {
                // Found already in this stage: go by the pod's own timestamps.
                let back = if previous.is_none() {
                    wall_elapsed(&pod, stage, jiff::Timestamp::now())
                } else {
                    Duration::ZERO
                };
                let t = now.checked_sub(back).unwrap_or(now);
                tracked.seen = Some((stage, t));
                t
            }
        };
        match next_step(&pod, stage, now - since, &self.timing) {
            Step::Idle => None,
            Step::Wait(d) => {
                self.schedule(&key, shoal_api::time::instant_after(now.into_std(), d).into());
                None
            }
            Step::Start => {
                let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
                let pod_ips: Vec<String> = if host_network {
                    info.host_ips.clone()
                } else if info.cidrs.is_empty() {
                    // Looked at again when the node gets a pod CIDR.
                    tracing::debug!(pod = %key.name, namespace = %key.ns, node = %node,
                        "simulated pods: the node has no pod CIDR");
                    return None;
                } else {
                    let Some(offset) = self.ips.assign(&key, uid(&pod), &node, info.limit()) else {
                        tracing::warn!(pod = %key.name, namespace = %key.ns, node = %node,
                            "simulated pods: no free pod IP on the node");
                        self.schedule(&key, now + FULL_RETRY);
                        return None;
                    };
                    info.cidrs.iter().map(|c| c.nth(offset).to_string()).collect()
                };
                let status = running_status(&pod, &info.host_ips, &pod_ips, &now_rfc3339());
                self.write_status(key, &pod, status, "start")
            }
            Step::Complete { exit_code } => {
                let status = finished_status(&pod, exit_code, &now_rfc3339());
                self.write_status(key, &pod, status, "complete")
            }
            Step::Delete => {
                // A pod that finalizers hold after the delete shows how it ended, as a
                // kubelet's does: its containers killed (exit code 137), the pod Failed.
                // (Without finalizers it is gone at once, and nobody would read it.)
                let held = pod.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty());
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if held && !matches!(phase, Some("Succeeded" | "Failed")) {
                    let status = finished_status(&pod, KILLED_EXIT_CODE, &now_rfc3339());
                    return self.write_status(key, &pod, status, "terminate");
                }
                let api: Api<Pod> = Api::namespaced(self.node_client(&pod), &key.ns);
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: pod.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                self.inflight.insert(key.clone());
                Some(Box::pin(async move {
                    let result = api.delete(&key.name, &dp).await.map(|_| ());
                    Outcome {
                        key,
                        rv,
                        what: "delete",
                        result,
                    }
                }))
            }
        }
    }

    fn write_status(
        &mut self,
        key: PodKey,
        pod: &Pod,
        status: Value,
        what: &'static str,
    ) -> Option<BoxFuture<'static, Outcome>> {
        let status: PodStatus = match serde_json::from_value(status) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(pod = %key.name, error = %e, "simulated pods: bad status");
                return None;
            }
        };
        if pod.status.as_ref() == Some(&status) {
            return None;
        }
        let mut obj = pod.clone();
        obj.status = Some(status);
        obj.metadata.managed_fields = None;
        let rv = obj.metadata.resource_version.clone();
        let api: Api<Pod> = Api::namespaced(self.node_client(pod), &key.ns);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.inflight.insert(key.clone());
        Some(Box::pin(async move {
            let result = api.replace_status(&key.name, &pp, &obj).await.map(|_| ());
            Outcome { key, rv, what, result }
        }))
    }

    fn on_outcome(&mut self, out: Outcome) {
        let key = out.key;
        self.inflight.remove(&key);
        match out.result {
            Ok(()) => {}
            // A newer version (or the delete) is on its way through the watch.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                tracing::debug!(pod = %key.name, namespace = %key.ns, what = out.what, code = e.code,
                    "simulated pods: write overtaken");
            }
            Err(e) => {
                tracing::warn!(pod = %key.name, namespace = %key.ns, what = out.what, error = %e,
                    "simulated pods: write failed");
                self.schedule(&key, Instant::now() + RETRY);
                if self.dirty.remove(&key) {
                    self.enqueue(key);
                }
                return;
            }
        }
        if let Some(t) = self.tracked.get_mut(&key) {
            t.acted_on = out.rv;
        }
        if self.dirty.remove(&key) {
            self.enqueue(key);
        }
    }
}

fn objref(key: &PodKey) -> ObjectRef<Pod> {
    ObjectRef::new(&key.name).within(&key.ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2025-01-02T00:00:01Z";
    const T2: &str = "2025-01-02T00:00:02Z";

    /// A pod first seen in a relist (a watch that expired) is looked at once the cache holds
    /// the relist: looked at during it, against the old cache, it was found missing and
    /// forgotten, and stayed Pending for good (813 of 5,000 daemon pods in one CI run).
    #[tokio::test]
    async fn a_pod_first_seen_in_a_relist_is_looked_at_once_the_cache_holds_it() {
        let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let as_node: crate::simulated::NodeClients = {
            let c = client.clone();
            std::sync::Arc::new(move |_: &str| c.clone())
        };
        let (pods, mut writer) = reflector::store::<Pod>();
        let (nodes, _) = reflector::store::<Node>();
        let mut w = PodWorker::new(client, as_node, PodTiming::default(), nodes, pods);
        w.synced = true;
        let a = pod(
            json!({"metadata": {"name": "a", "namespace": "default", "uid": "u1", "resourceVersion": "5"},
                           "spec": {"nodeName": "node1", "containers": [{"name": "c"}]}}),
        );
        // The relist: its pods reach the worker before the cache takes them.
        for ev in [watcher::Event::Init, watcher::Event::InitApply(a.clone())] {
            writer.apply_watcher_event(&ev);
            w.on_pod_event(ev);
        }
        while let Some(k) = w.next_key() {
            assert!(w.process(k).is_none(), "not in the cache yet");
        }
        assert!(w.queue.is_empty());
        writer.apply_watcher_event(&watcher::Event::InitDone);
        w.on_pod_event(watcher::Event::InitDone);
        assert_eq!(w.next_key(), Some(key("a")), "looked at again");
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn key(name: &str) -> PodKey {
        PodKey {
            ns: "default".into(),
            name: name.into(),
        }
    }

    fn web() -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "nodeName": "node1",
                "containers": [
                    {"name": "web", "image": "nginx:1.27",
                     "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets", "readOnly": true}]},
                    {"name": "a-sidecar", "image": "ghcr.io/x/y"},
                ],
                "initContainers": [{"name": "init", "image": "busybox"}],
            },
            "status": {
                "phase": "Pending",
                "qosClass": "BestEffort",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                    {"type": "DisruptionTarget", "status": "False", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                ],
            },
        }))
    }

    /// Every field name is one of the type's: a round trip through k8s-openapi keeps it all.
    fn assert_upstream_fields(status: &Value) {
        let typed: PodStatus = serde_json::from_value(status.clone()).unwrap();
        assert_eq!(&serde_json::to_value(typed).unwrap(), status);
    }

    #[test]
    fn cidrs_parse_and_count_addresses() {
        let c = Cidr::parse("10.42.7.9/24").unwrap();
        assert_eq!(c.nth(0).to_string(), "10.42.7.0");
        assert_eq!(c.nth(2).to_string(), "10.42.7.2");
        assert_eq!(c.limit(), 255);
        assert_eq!(c.offset_of("10.42.7.200".parse().unwrap()), Some(200));
        assert_eq!(c.offset_of("10.42.8.1".parse().unwrap()), None);
        assert_eq!(c.offset_of("10.42.7.255".parse().unwrap()), None);
        let v6 = Cidr::parse("fd00:1::/120").unwrap();
        assert_eq!(v6.nth(5).to_string(), "fd00:1::5");
        assert_eq!(v6.limit(), 256);
        assert_eq!(Cidr::parse("fd00::/64").unwrap().limit(), u32::MAX);
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert_eq!(Cidr::parse("10.0.0.4/30").unwrap().limit(), 3);
    }

    #[test]
    fn allocator_skips_network_and_gateway_and_reuses_freed_addresses() {
        let mut a = IpAllocator::default();
        assert_eq!(a.assign(&key("a"), "ua", "n1", 255), Some(2));
        assert_eq!(a.assign(&key("b"), "ub", "n1", 255), Some(3));
        assert_eq!(a.assign(&key("a"), "ua", "n1", 255), Some(2), "stable for the same pod");
        assert_eq!(a.assign(&key("c"), "uc", "n2", 255), Some(2), "per node");
        a.release(&key("a"));
        assert_eq!(
            a.assign(&key("d"), "ud", "n1", 255),
            Some(2),
            "freed addresses are reused"
        );
        // A pod recreated under the same name gets a fresh address.
        assert_eq!(a.assign(&key("b"), "ub2", "n1", 255), Some(3));
        assert_eq!(a.in_use("n1"), 2);
        // A full network.
        assert_eq!(a.assign(&key("x"), "ux", "n3", 3), Some(2));
        assert_eq!(a.assign(&key("y"), "uy", "n3", 3), None);
    }

    #[test]
    fn allocator_reserves_reported_addresses() {
        let mut a = IpAllocator::default();
        assert!(a.reserve(&key("a"), "ua", "n1", 2));
        assert!(a.reserve(&key("a"), "ua", "n1", 2));
        assert!(!a.reserve(&key("b"), "ub", "n1", 2));
        assert_eq!(a.assign(&key("b"), "ub", "n1", 255), Some(3));
        a.release(&key("a"));
        a.release(&key("b"));
        assert_eq!(a.in_use("n1"), 0);
    }

    #[test]
    fn node_info_reads_internal_ips_and_pod_cidrs() {
        let mut node: Node = serde_json::from_value(crate::node_manifest("node3", 3, false)).unwrap();
        assert_eq!(NodeInfo::of(&node), None, "no address yet");
        node.status = Some(serde_json::from_value(crate::simulated::node_status(&node, T1)).unwrap());
        let info = NodeInfo::of(&node).unwrap();
        assert_eq!(info.host_ips, ["172.20.42.3"]);
        assert_eq!(info.cidrs, [Cidr::parse("10.42.3.0/24").unwrap()]);
        node.metadata.annotations = None;
        assert_eq!(NodeInfo::of(&node), None, "not simulated");
    }

    #[test]
    fn images_get_references_and_stable_digests() {
        let (r, id) = image_ref("nginx");
        assert_eq!(r, "docker.io/library/nginx:latest");
        assert!(id.starts_with("docker.io/library/nginx@sha256:"));
        assert_eq!(id.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert_eq!(image_ref("nginx").1, id, "deterministic");
        assert_ne!(image_ref("nginx:1.27").1, id);
        assert_eq!(image_ref("nginx:1.27").0, "docker.io/library/nginx:1.27");
        assert_eq!(image_ref("bitnami/redis").0, "docker.io/bitnami/redis:latest");
        assert_eq!(image_ref("localhost:5000/app:v1").0, "localhost:5000/app:v1");
        assert!(
            image_ref("localhost:5000/app:v1")
                .1
                .starts_with("localhost:5000/app@sha256:")
        );
        assert_eq!(image_ref("registry.k8s.io/pause:3.10").0, "registry.k8s.io/pause:3.10");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            image_ref(&format!("busybox@{d}")).1,
            format!("docker.io/library/busybox@{d}")
        );
    }

    #[test]
    fn running_status_looks_like_a_kubelets() {
        let p = web();
        let now = "2025-01-02T03:04:05Z";
        let s = running_status(&p, &["172.20.42.1".into()], &["10.42.1.2".into()], now);
        assert_upstream_fields(&s);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["hostIP"], "172.20.42.1");
        assert_eq!(s["hostIPs"], json!([{"ip": "172.20.42.1"}]));
        assert_eq!(s["podIP"], "10.42.1.2");
        assert_eq!(s["podIPs"], json!([{"ip": "10.42.1.2"}]));
        assert_eq!(s["startTime"], now);
        assert_eq!(s["qosClass"], "BestEffort");
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "DisruptionTarget",
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        for c in s["conditions"].as_array().unwrap().iter().skip(1) {
            assert_eq!(c["status"], "True", "{c}");
        }
        assert_eq!(
            s["conditions"][5]["lastTransitionTime"], "2025-01-01T00:00:00Z",
            "PodScheduled kept"
        );
        assert_eq!(s["conditions"][3]["lastTransitionTime"], now);
        let cs = s["containerStatuses"].as_array().unwrap();
        assert_eq!(cs[0]["name"], "a-sidecar", "sorted by name");
        let web = &cs[1];
        assert_eq!(web["image"], "docker.io/library/nginx:1.27");
        assert_eq!(web["containerID"], "shoal://u1-web");
        assert_eq!(
            (web["ready"].clone(), web["started"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(web["restartCount"], 0);
        assert_eq!(web["state"]["running"]["startedAt"], now);
        assert_eq!(
            web["volumeMounts"],
            json!([{"name": "token", "mountPath": "/var/run/secrets", "readOnly": true, "recursiveReadOnly": "Disabled"}])
        );
        let init = &s["initContainerStatuses"][0];
        assert_eq!(init["state"]["terminated"]["reason"], "Completed");
        assert_eq!(init["state"]["terminated"]["exitCode"], 0);
        assert_eq!(
            (init["ready"].clone(), init["started"].clone()),
            (json!(true), json!(false))
        );
    }

    #[test]
    fn running_status_adds_pod_scheduled_and_keeps_transition_times() {
        let p = pod(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "pause"}]},
        }));
        let s = running_status(&p, &["1.2.3.4".into()], &["1.2.3.4".into()], T1);
        assert_eq!(
            s["conditions"][4],
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": T1})
        );
        assert!(s.get("initContainerStatuses").is_none());
        let mut again = p.clone();
        again.status = Some(serde_json::from_value(s).unwrap());
        let s2 = running_status(&again, &["1.2.3.4".into()], &["1.2.3.4".into()], T2);
        assert_eq!(s2["conditions"][2]["lastTransitionTime"], T1);
        assert_eq!(s2["startTime"], T1);
    }

    #[test]
    fn finished_status_terminates_containers() {
        let p = web();
        let mut running = p.clone();
        running.status =
            Some(serde_json::from_value(running_status(&p, &["h".into()], &["10.42.1.2".into()], T1)).unwrap());
        let s = finished_status(&running, 0, T2);
        assert_upstream_fields(&s);
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(s["podIP"], "10.42.1.2");
        let cond = |t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Ready")["status"], "False");
        assert_eq!(cond("Ready")["reason"], "PodCompleted");
        assert_eq!(cond("ContainersReady")["reason"], "PodCompleted");
        assert_eq!(cond("PodReadyToStartContainers")["status"], "False");
        assert_eq!(cond("Initialized")["lastTransitionTime"], T1);
        let web = &s["containerStatuses"][1];
        assert_eq!(web["ready"], false);
        assert_eq!(
            web["state"]["terminated"],
            json!({"containerID": "shoal://u1-web", "exitCode": 0, "reason": "Completed", "startedAt": T1, "finishedAt": T2})
        );
        assert_eq!(s["initContainerStatuses"][0]["state"]["terminated"]["finishedAt"], T1);

        let failed = finished_status(&running, 3, T2);
        assert_eq!(failed["phase"], "Failed");
        assert_eq!(failed["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);
        assert_eq!(failed["containerStatuses"][0]["state"]["terminated"]["reason"], "Error");
    }

    #[test]
    fn steps_follow_stage_and_timing() {
        let timing = PodTiming {
            start_delay: Duration::from_secs(2),
            run_time: Duration::from_secs(5),
            grace_cap: Duration::from_secs(10),
            stop_time: Duration::ZERO,
            stop_jitter: Duration::ZERO,
        };
        let mut p = web();
        assert_eq!(stage(&p), Stage::Pending);
        assert_eq!(
            next_step(&p, Stage::Pending, Duration::from_secs(1), &timing),
            Step::Wait(Duration::from_secs(1))
        );
        assert_eq!(
            next_step(&p, Stage::Pending, Duration::from_secs(2), &timing),
            Step::Start
        );
        assert_eq!(
            next_step(&p, Stage::Pending, Duration::ZERO, &PodTiming::default()),
            Step::Start
        );
        // Running: Always runs on, Never completes after the run time.
        assert_eq!(
            next_step(&p, Stage::Running, Duration::from_secs(99), &timing),
            Step::Idle
        );
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert_eq!(
            next_step(&p, Stage::Running, Duration::from_secs(4), &timing),
            Step::Wait(Duration::from_secs(1))
        );
        assert_eq!(
            next_step(&p, Stage::Running, Duration::from_secs(5), &timing),
            Step::Complete { exit_code: 0 }
        );
        let ann = p.metadata.annotations.get_or_insert_default();
        ann.insert(RUN_SECONDS_ANNOTATION.into(), "0.5".into());
        ann.insert(EXIT_CODE_ANNOTATION.into(), "2".into());
        assert_eq!(
            next_step(&p, Stage::Running, Duration::from_secs(1), &timing),
            Step::Complete { exit_code: 2 }
        );
        // Readiness follows the annotation, and only a change is written.
        let mut r = p.clone();
        r.spec.as_mut().unwrap().restart_policy = Some("Always".into());
        let rs: Value = running_status(&r, &["10.0.0.1".into()], &["10.42.0.5".into()], "2026-01-01T00:00:00Z");
        r.status = Some(serde_json::from_value(rs).unwrap());
        assert_eq!(readiness_status(&r, "2026-01-01T00:00:05Z"), None, "ready, as wanted");
        r.metadata
            .annotations
            .get_or_insert_default()
            .insert(READY_ANNOTATION.into(), "false".into());
        let turned = readiness_status(&r, "2026-01-01T00:00:05Z").expect("a change");
        let ready = turned["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(
            (&ready["status"], &ready["reason"], &ready["lastTransitionTime"]),
            (
                &json!("False"),
                &json!("ContainersNotReady"),
                &json!("2026-01-01T00:00:05Z")
            )
        );
        assert!(
            turned["containerStatuses"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["ready"] == false)
        );
        assert_eq!(turned["podIP"], "10.42.0.5", "the rest kept");
        // A list: the item at the Job completion index, modulo its length.
        let ann = p.metadata.annotations.get_or_insert_default();
        ann.insert(EXIT_CODE_ANNOTATION.into(), "0, 1".into());
        assert_eq!(exit_code(&p), 0, "no index: the first");
        for (i, code) in [(2, 0), (3, 1)] {
            let ann = p.metadata.annotations.get_or_insert_default();
            ann.insert("batch.kubernetes.io/job-completion-index".into(), i.to_string());
            assert_eq!(exit_code(&p), code);
        }
        assert_eq!(
            next_step(&p, Stage::Finished, Duration::from_secs(99), &timing),
            Step::Idle
        );
        // Deleting: min(grace, cap).
        p.metadata.deletion_grace_period_seconds = Some(30);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2025-01-01T00:00:30Z".parse().unwrap(),
        ));
        assert_eq!(stage(&p), Stage::Deleting);
        assert_eq!(
            next_step(&p, Stage::Deleting, Duration::from_secs(4), &timing),
            Step::Wait(Duration::from_secs(6))
        );
        assert_eq!(
            next_step(&p, Stage::Deleting, Duration::ZERO, &PodTiming::default()),
            Step::Delete
        );
        // A stop time: at least that long, never longer than the grace period.
        let stopping = PodTiming {
            stop_time: Duration::from_millis(300),
            ..Default::default()
        };
        assert_eq!(
            next_step(&p, Stage::Deleting, Duration::from_millis(100), &stopping),
            Step::Wait(Duration::from_millis(200))
        );
        assert_eq!(
            next_step(&p, Stage::Deleting, Duration::from_millis(300), &stopping),
            Step::Delete
        );
        // Jitter: pods deleted together go at different moments, each within its range.
        let jittered = PodTiming {
            stop_time: Duration::from_millis(500),
            stop_jitter: Duration::from_millis(500),
            ..Default::default()
        };
        let stops: std::collections::BTreeSet<Duration> = (0..20)
            .map(|i| {
                let mut q = p.clone();
                q.metadata.uid = Some(format!("uid-{i}"));
                jittered.stop_after(&q)
            })
            .collect();
        assert!(stops.len() > 10, "{stops:?}");
        assert!(
            stops
                .iter()
                .all(|d| *d >= Duration::from_millis(500) && *d < Duration::from_secs(1))
        );
        p.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(next_step(&p, Stage::Deleting, Duration::ZERO, &stopping), Step::Delete);
        assert_eq!(next_step(&p, Stage::Deleting, Duration::ZERO, &jittered), Step::Delete);
        p.metadata.deletion_grace_period_seconds = Some(3);
        assert_eq!(
            next_step(&p, Stage::Deleting, Duration::from_secs(1), &timing),
            Step::Wait(Duration::from_secs(2))
        );
        // The delete was requested at 00:00:27 (timestamp minus grace).
        let now: jiff::Timestamp = "2025-01-01T00:00:29Z".parse().unwrap();
        assert_eq!(wall_elapsed(&p, Stage::Deleting, now), Duration::from_secs(2));
        assert_eq!(wall_elapsed(&p, Stage::Pending, now), Duration::ZERO);
    }

    #[test]
    fn stages_from_phase() {
        let mut p = web();
        for (phase, want) in [
            ("Running", Stage::Running),
            ("Succeeded", Stage::Finished),
            ("Failed", Stage::Finished),
            ("Pending", Stage::Pending),
        ] {
            p.status.as_mut().unwrap().phase = Some(phase.into());
            assert_eq!(stage(&p), want, "{phase}");
        }
        p.status = None;
        assert_eq!(stage(&p), Stage::Pending);
    }
}
