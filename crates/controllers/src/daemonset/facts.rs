//! What the DaemonSet controller's plan and rollout read and produce: the facts of a pod
//! and a node, the actions, the status counters, and the pod predicates (ready, available,
//! updated). Both [`super::plan`] and [`super::rollout`] build on this module; it depends on
//! neither.

use serde_json::{Value, json};

use super::placement::Placement;

/// Label carrying the revision hash of the template a daemon pod was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// Label carrying the template generation a daemon pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation holding its template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Why a pod is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// The node should no longer run it (selector, affinity, NoExecute taint, node gone).
    NotWanted,
    /// A second pod on the same node.
    Duplicate,
    /// The pod failed.
    Failed,
    /// The pod succeeded (daemon pods must keep running).
    Succeeded,
    /// A rolling update replaces it with a pod of the current template.
    Outdated,
}

/// One step for the apply layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create a daemon pod for `node`.
    Create { node: String },
    /// Delete a pod (`uid` is a precondition).
    Delete {
        pod: String,
        uid: String,
        node: String,
        reason: DeleteReason,
    },
    /// Move a pod to the current template in place: its containers' images and its revision
    /// labels are changed, the pod stays (see [`super::rollout::IN_PLACE`]).
    UpdateInPlace { pod: String, uid: String, node: String },
}

/// The counters of a DaemonSet's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Nodes that should run a daemon pod.
    pub desired: i64,
    /// Of those, nodes that have one.
    pub current: i64,
    /// Nodes whose daemon pod is Ready.
    pub ready: i64,
    /// Nodes whose daemon pod is available (Ready for minReadySeconds).
    pub available: i64,
    /// Nodes whose daemon pod runs the current template.
    pub updated: i64,
    /// Nodes that should not run a daemon pod but have one.
    pub misscheduled: i64,
}

impl Status {
    /// The status fields, as stored.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "desiredNumberScheduled": self.desired,
            "currentNumberScheduled": self.current,
            "numberReady": self.ready,
            "numberMisscheduled": self.misscheduled,
            "updatedNumberScheduled": self.updated,
            "numberAvailable": self.available,
        });
        let unavailable = self.desired - self.available;
        if unavailable > 0 {
            v["numberUnavailable"] = json!(unavailable);
        }
        v
    }
}

/// The node a daemon pod is for: its `spec.nodeName`, or the single `metadata.name In [...]`
/// value of its required node affinity while it is unbound.
pub fn target_node(pod: &Value) -> Option<&str> {
    if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = shoal_api::scheduling::required_terms(&pod["spec"])?;
    terms.iter().find_map(|t| {
        t["matchFields"].as_array()?.iter().find_map(|f| {
            let values = f["values"].as_array()?;
            (f["key"] == "metadata.name" && f["operator"] == "In" && values.len() == 1)
                .then(|| values[0].as_str())
                .flatten()
        })
    })
}

/// What planning reads of a pod, derived once per version of it (see
/// [`crate::informer::Memo`]): a pass over thousands of pods then costs no JSON lookups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// The node it is for ([`target_node`]).
    pub node: Option<String>,
    /// Bound to its node.
    pub bound: bool,
    /// `metadata.creationTimestamp`, as written (RFC 3339 UTC sorts as time does).
    pub created: String,
    /// Being deleted.
    pub terminating: bool,
    /// `status.phase` ("" when unset).
    pub phase: String,
    /// When its Ready condition turned True, if it is True.
    pub ready_since: Option<jiff::Timestamp>,
    /// The `controller-revision-hash` label.
    pub hash: Option<String>,
    /// The `pod-template-generation` label.
    pub generation: Option<String>,
}

impl PodFacts {
    /// The facts of `pod`.
    pub fn of(pod: &Value) -> PodFacts {
        let meta = &pod["metadata"];
        let label = |k: &str| meta["labels"][k].as_str().map(str::to_string);
        PodFacts {
            name: meta["name"].as_str().unwrap_or_default().to_string(),
            uid: meta["uid"].as_str().unwrap_or_default().to_string(),
            node: target_node(pod).map(str::to_string),
            bound: pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()),
            created: meta["creationTimestamp"].as_str().unwrap_or_default().to_string(),
            terminating: meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            phase: pod["status"]["phase"].as_str().unwrap_or_default().to_string(),
            ready_since: ready_since(pod),
            hash: label(REVISION_HASH_LABEL),
            generation: label(TEMPLATE_GENERATION_LABEL),
        }
    }

    /// Finished: Failed or Succeeded.
    pub fn finished(&self) -> bool {
        matches!(self.phase.as_str(), "Failed" | "Succeeded")
    }

    /// Not being deleted and not finished: what counts on a node for the rollout.
    pub fn live(&self) -> bool {
        !self.terminating && !self.finished()
    }
}

/// A node as planning sees it: its name, its object and the DaemonSet's placement on it.
pub struct NodeView<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// The Node.
    pub object: &'a Value,
    /// Where the DaemonSet's pods may run (see [`placement`]).
    pub placement: &'a Placement,
}

pub use crate::informer::controller_uid;

/// True when the pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    ready_since(pod).is_some()
}

fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    let cond = pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    if cond["status"] != "True" {
        return None;
    }
    Some(
        cond["lastTransitionTime"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Ready and, with `min_ready_seconds`, Ready for at least that long.
pub fn is_available(pod: &PodFacts, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    match pod.ready_since {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.as_second().saturating_add(min_ready_seconds) <= now.as_second(),
    }
}

/// A pod runs the current template: its hash label is the current hash, or its template
/// generation label is the DaemonSet's template generation.
pub fn is_updated(pod: &PodFacts, hash: &str, template_generation: Option<&str>) -> bool {
    pod.hash.as_deref() == Some(hash) || template_generation.is_some_and(|g| pod.generation.as_deref() == Some(g))
}
