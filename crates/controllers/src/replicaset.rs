//! The ReplicaSet and ReplicationController controller: `spec.replicas` pods from the
//! template, as upstream's `ReplicaSetController` keeps them.
//!
//! Each pass over a set: claim pods (adopt matching orphans, release owned pods that no
//! longer match), count the active ones (not terminal, not being deleted), create or delete
//! the difference, and write the status. Creations and deletions in flight are remembered
//! (expectations) until the pod cache shows them, so a lagging cache never doubles a pod or
//! deletes one twice; while some are pending, the set is not resized again. Which pods go
//! first when scaling down follows upstream's ranking ([`deletion_order`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use shoal_api::selector::LabelSelector;

use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{self, Informers, name as name_of, uid as uid_of};
use shoal_runtime::claim::{Claim, adopt_patch, claim, release_patch};
use shoal_runtime::controller::{Error, Keyed, Outcome, ignore_not_found};

const MANAGER: &str = "replicaset-controller";
/// Creations and deletions issued at once.
const CONCURRENCY: usize = 64;
/// Upstream's cap on creations or deletions in one pass.
const BURST: usize = 500;
/// Lower values go first when scaling down (upstream's annotation).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The two kinds this controller keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// v1 ReplicationController (its selector is a plain label map).
    ReplicationController,
}

impl Kind {
    fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "apps/v1",
            Kind::ReplicationController => "v1",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
        }
    }

    fn resource(self) -> (&'static str, &'static str) {
        match self {
            Kind::ReplicaSet => ("apps", "replicasets"),
            Kind::ReplicationController => ("", "replicationcontrollers"),
        }
    }

    /// The set's selector. A ReplicationController without one selects its template's
    /// labels (the API defaults it so).
    pub fn selector(self, set: &Value) -> Option<LabelSelector> {
        let raw = &set["spec"]["selector"];
        let selector = match self {
            Kind::ReplicaSet => LabelSelector::from_api(raw).ok()?,
            Kind::ReplicationController => LabelSelector::from_map(
                raw.as_object()
                    .or_else(|| set["spec"]["template"]["metadata"]["labels"].as_object())?,
            ),
        };
        (!selector.is_empty()).then_some(selector)
    }
}

/// A pod as the controller reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Its node, if scheduled.
    pub node: Option<String>,
    /// `Pending`, `Running`, ...
    pub phase: String,
    /// Its `Ready` condition is true; since when (RFC 3339).
    pub ready_since: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: String,
    /// The deletion-cost annotation.
    pub deletion_cost: i64,
    /// Being deleted.
    pub terminating: bool,
    /// Labels.
    pub labels: serde_json::Map<String, Value>,
}

impl PodView {
    /// Reads a (cached) pod.
    pub fn of(pod: &Value) -> PodView {
        let ready_since = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
            .map(|c| c["lastTransitionTime"].as_str().unwrap_or_default().to_string());
        PodView {
            name: name_of(pod).to_string(),
            uid: uid_of(pod).to_string(),
            node: pod["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            phase: pod["status"]["phase"].as_str().unwrap_or("Pending").to_string(),
            ready_since,
            created: pod["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            deletion_cost: pod["metadata"]["annotations"][DELETION_COST]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            terminating: pod["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            labels: pod["metadata"]["labels"].as_object().cloned().unwrap_or_default(),
        }
    }

    /// Counts toward the replicas: not terminal and not being deleted.
    pub fn active(&self) -> bool {
        !self.terminating && self.phase != "Succeeded" && self.phase != "Failed"
    }

    /// Ready for at least `min_ready` at `now`.
    pub fn available(&self, min_ready: Duration, now: jiff::Timestamp) -> bool {
        let Some(since) = self.ready_since.as_deref() else {
            return false;
        };
        if min_ready.is_zero() {
            return true;
        }
        since
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| now.duration_since(t).try_into().ok())
            .is_some_and(|d: Duration| d >= min_ready)
    }
}

/// The order in which active pods are deleted when there are too many (upstream's
/// `ActivePodsWithRanks`): unscheduled before scheduled; Pending before Unknown before
/// Running; not ready before ready; lower deletion cost first; pods doubled up on a node
/// (more of this set's pods on it) first; ready for less time first; newer first.
pub fn deletion_order(pods: &[&PodView]) -> Vec<usize> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(n) = p.node.as_deref() {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let phase_rank = |p: &str| match p {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let mut idx: Vec<usize> = (0..pods.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (pods[a], pods[b]);
        x.node
            .is_some()
            .cmp(&y.node.is_some())
            .then(phase_rank(&x.phase).cmp(&phase_rank(&y.phase)))
            .then(x.ready_since.is_some().cmp(&y.ready_since.is_some()))
            .then(x.deletion_cost.cmp(&y.deletion_cost))
            .then_with(|| {
                let doubled = |p: &PodView| p.node.as_deref().map_or(0, |n| per_node[n]);
                doubled(y).cmp(&doubled(x))
            })
            // Ready more recently (a later timestamp) goes first.
            .then_with(|| y.ready_since.cmp(&x.ready_since))
            .then_with(|| y.created.cmp(&x.created))
    });
    idx
}

/// The pods a reconcile creates and deletes to resize one set.
#[derive(Debug, Default, PartialEq)]
pub struct Resize {
    /// How many pods to create.
    pub create: usize,
    /// Which pods to delete: (name, uid).
    pub delete: Vec<(String, String)>,
}

/// Creations or deletions that bring `active` pods to `replicas` (at most [`BURST`]).
pub fn resize(replicas: usize, active: &[&PodView]) -> Resize {
    if active.len() < replicas {
        return Resize {
            create: (replicas - active.len()).min(BURST),
            delete: Vec::new(),
        };
    }
    let extra = (active.len() - replicas).min(BURST);
    let delete = deletion_order(active)
        .into_iter()
        .take(extra)
        .map(|i| (active[i].name.clone(), active[i].uid.clone()))
        .collect();
    Resize { create: 0, delete }
}

/// The status fields counted from the owned pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Active pods.
    pub replicas: i64,
    /// Active pods whose labels include every label of the template.
    pub fully_labeled: i64,
    /// Active and ready.
    pub ready: i64,
    /// Ready for `minReadySeconds`.
    pub available: i64,
}

/// Counts `active` pods against the template labels and `min_ready`.
pub fn counts(
    active: &[&PodView],
    template_labels: &serde_json::Map<String, Value>,
    min_ready: Duration,
    now: jiff::Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for p in active {
        c.replicas += 1;
        if template_labels.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
            c.fully_labeled += 1;
        }
        if p.ready_since.is_some() {
            c.ready += 1;
        }
        if p.available(min_ready, now) {
            c.available += 1;
        }
    }
    c
}

/// The pod a set creates: its template, named `<set>-<random>`, owned by the set.
pub fn pod_for(kind: Kind, set: &Value) -> Value {
    let template = &set["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", name_of(set)),
        "namespace": set["metadata"]["namespace"],
        "ownerReferences": [owner_reference(kind, set)],
    });
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template["metadata"].get(k).filter(|v| !v.is_null()) {
            meta[k] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

fn owner_reference(kind: Kind, set: &Value) -> Value {
    informer::controller_ref(kind.api_version(), kind.kind(), set)
}

/// A write in flight for one set: a pod created under this name and not yet seen, or a pod
/// of this uid deleted and still seen active.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Expected {
    /// Created under this name.
    Create(String),
    /// Deleted, by uid.
    Delete(String),
}

/// Writes in flight per set uid.
pub(crate) type Expectations = shoal_runtime::expectations::Expectations<String, Expected>;

/// Why a reconcile's writes failed: the `ReplicaFailure` condition's reason and the error.
type Failure = (&'static str, Error);

/// Runs the controller for both kinds until the process ends: one keyed queue per kind,
/// ReplicaSets written with `client` (upstream's replicaset controller) and
/// ReplicationControllers with `rc_client` (its replication controller).
pub async fn run(client: kube::Client, rc_client: kube::Client, informers: Informers) {
    let recorder = Recorder::new(client.clone(), MANAGER);
    let rc_recorder = Recorder::new(rc_client.clone(), MANAGER);
    let expectations = Arc::new(tokio::sync::Mutex::new(Expectations::new()));
    type Ctx = (kube::Client, Recorder, Arc<tokio::sync::Mutex<Expectations>>, Kind);
    let reconcile = |ctx: Arc<Ctx>, informers: Informers, set: Option<Arc<Value>>| async move {
        let (client, recorder, expectations, kind) = &*ctx;
        let mut exp = expectations.lock().await;
        let Some(set) = set else {
            let live: HashSet<String> = [Kind::ReplicaSet, Kind::ReplicationController]
                .iter()
                .flat_map(|k| informers.of(k.resource().0, k.resource().1))
                .map(|s| uid_of(&s).to_string())
                .collect();
            exp.retain_owners(|uid| live.contains(uid));
            return Ok(Outcome::Done);
        };
        let pods = informers.of("", "pods");
        sync(client, recorder, *kind, &set, &pods, &mut exp, jiff::Timestamp::now()).await
    };
    let keyed = |kind: Kind, name: &'static str| {
        let (group, plural) = kind.resource();
        let ctx = match kind {
            Kind::ReplicaSet => (client.clone(), recorder.clone(), expectations.clone(), kind),
            Kind::ReplicationController => (rc_client.clone(), rc_recorder.clone(), expectations.clone(), kind),
        };
        Keyed::new(name, group, plural)
            .owns("", "pods", kind.kind())
            .run_cached(informers.clone(), ctx, reconcile)
    };
    tokio::join!(
        keyed(Kind::ReplicaSet, "replicaset"),
        keyed(Kind::ReplicationController, "replicationcontroller")
    );
}

/// Which pods of its namespace a set owns, takes over, or lets go.
#[derive(Debug, Default, PartialEq)]
pub struct Claims {
    /// Its pods: owned, and adopted (counted as its own from the adoption on).
    pub owned: Vec<PodView>,
    /// Matching orphans to adopt (name, guarded patch).
    pub adopt: Vec<(String, Value)>,
    /// Owned pods that stopped matching (name, patch).
    pub release: Vec<(String, Value)>,
}

/// Claims `set`'s pods among `pods` (upstream's ControllerRefManager rules).
pub fn claim_pods(kind: Kind, set: &Value, selector: &LabelSelector, pods: &[Arc<Value>]) -> Claims {
    let ns = informer::namespace(set);
    let uid = uid_of(set);
    let mut out = Claims::default();
    for p in pods.iter().filter(|p| informer::namespace(p) == ns) {
        match claim(set, p, selector.matches_object(p)) {
            Claim::Owned => out.owned.push(PodView::of(p)),
            Claim::Release => out.release.push((name_of(p).to_string(), release_patch(p, uid))),
            Claim::Adopt => {
                out.adopt
                    .push((name_of(p).to_string(), adopt_patch(p, owner_reference(kind, set))));
                out.owned.push(PodView::of(p));
            }
            Claim::Ignore => {}
        }
    }
    out
}

/// What one reconcile of a set does, decided from its claims, the writes still in flight
/// and the time given. [`apply`] carries it out.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Orphans to adopt (name, guarded patch).
    pub adopt: Vec<(String, Value)>,
    /// Pods to let go (name, patch).
    pub release: Vec<(String, Value)>,
    /// Pods to create and delete; `None` while writes of an earlier reconcile are in
    /// flight (the set is not resized again until the cache shows them).
    pub resize: Option<Resize>,
    /// The status counts.
    pub counts: Counts,
    /// What to do next: look again soon while a ready pod is not yet available.
    pub next: Outcome,
}

/// Decides one reconcile of `set` from its `claims`; `in_flight` says earlier writes are
/// not in the cache yet, `deleting(uid)` that a pod's deletion is one of them.
pub fn plan(
    set: &Value,
    claims: Claims,
    in_flight: bool,
    deleting: &dyn Fn(&str) -> bool,
    now: jiff::Timestamp,
) -> Plan {
    let active: Vec<&PodView> = claims
        .owned
        .iter()
        .filter(|p| p.active() && !deleting(&p.uid))
        .collect();
    let replicas = set["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    let min_ready = Duration::from_secs(set["spec"]["minReadySeconds"].as_u64().unwrap_or(0));
    let template_labels = set["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let counts = counts(&active, &template_labels, min_ready, now);
    let next = if counts.ready > counts.available {
        Outcome::RequeueAfter(Duration::from_secs(1))
    } else {
        Outcome::Done
    };
    Plan {
        resize: (!in_flight).then(|| resize(replicas, &active)),
        adopt: claims.adopt,
        release: claims.release,
        counts,
        next,
    }
}

/// Carries out `plan` for `set`: claims, then creations (slow start) and deletions, each
/// noted in `exp` once made, then the status, whose `ReplicaFailure` condition names the
/// first failed write (as upstream, the status is written whatever the pod writes did).
/// The first error is returned.
pub(crate) async fn apply(
    client: &kube::Client,
    recorder: &Recorder,
    kind: Kind,
    set: &Value,
    plan: Plan,
    exp: &mut Expectations,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    let ns = informer::namespace(set);
    let owner = uid_of(set).to_string();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let about = ObjectRef::of(kind.api_version(), kind.kind(), set);
    let mut failure: Option<Failure> = None;
    for (name, body) in plan.release {
        if let Err(e) = ignore_not_found(pod_api.patch(&name, &pp, &Patch::Strategic(body)).await) {
            failure.get_or_insert(("FailedRelease", e.into()));
        }
    }
    for (name, body) in plan.adopt {
        if let Err(e) = ignore_not_found(pod_api.patch(&name, &pp, &Patch::Merge(body)).await) {
            failure.get_or_insert(("FailedAdopt", e.into()));
        }
    }
    if let Some(resize) = plan.resize {
        let bodies = vec![pod_for(kind, set); resize.create];
        let (made, failed) = create_pods(&pod_api, bodies, MANAGER, recorder, &about).await;
        for name in made {
            exp.expect(&owner, Expected::Create(name));
        }
        if let Some(e) = failed {
            failure = Some(("FailedCreate", e));
        }
        let gone = futures::stream::iter(resize.delete.into_iter().map(|(name, pod_uid)| {
            let api = pod_api.clone();
            async move {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(pod_uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let r = api.delete(&name, &dp).await.map(|_| ());
                (name, pod_uid, r)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        for (name, pod_uid, r) in gone {
            match r {
                Ok(()) => {
                    exp.expect(&owner, Expected::Delete(pod_uid));
                    recorder
                        .record(
                            &about,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await;
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => {
                    let msg = format!("Error deleting: {e}");
                    recorder.record(&about, EventType::Warning, "FailedDelete", &msg).await;
                    failure = Some(("FailedDelete", e.into()));
                }
            }
        }
    }
    let condition = failure.as_ref().map(|(reason, e)| {
        let verb = if *reason == "FailedDelete" {
            "deleting"
        } else {
            "creating"
        };
        (*reason, format!("Error {verb}: {e}"))
    });
    write_status(client, kind, set, &plan.counts, condition, now).await?;
    match failure {
        Some((_, e)) => Err(e),
        None => Ok(plan.next),
    }
}

/// Reconciles one set against snapshots of the caches at `now`; asks to be looked at again
/// soon while some pod is ready but not yet available.
pub(crate) async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    kind: Kind,
    set: &Value,
    pods: &[Arc<Value>],
    exp: &mut Expectations,
    now: jiff::Timestamp,
) -> Result<Outcome, Error> {
    if informer::deleting(set) {
        return Ok(Outcome::Done);
    }
    let Some(selector) = kind.selector(set) else {
        return Ok(Outcome::Done);
    };
    let claims = claim_pods(kind, set, &selector, pods);
    let owner = uid_of(set).to_string();
    let names: HashSet<&str> = claims.owned.iter().map(|p| p.name.as_str()).collect();
    let active_uids: HashSet<&str> = claims
        .owned
        .iter()
        .filter(|p| p.active())
        .map(|p| p.uid.as_str())
        .collect();
    let in_flight = !exp
        .settle(&owner, |e| match e {
            Expected::Create(name) => names.contains(name.as_str()),
            Expected::Delete(uid) => !active_uids.contains(uid.as_str()),
        })
        .is_empty();
    let deleting = |uid: &str| exp.pending(&owner, &Expected::Delete(uid.to_string()));
    let plan = plan(set, claims, in_flight, &deleting, now);
    apply(client, recorder, kind, set, plan, exp, now).await
}

/// Creates pods from `bodies` in slow-start batches (1, 2, 4, ..., at most [`CONCURRENCY`]
/// at once, stopping after the first batch with a failure), as `manager`, with upstream's
/// `SuccessfulCreate` / `FailedCreate` events about `about`. Returns the names created and
/// the first error, if any (the Job controller creates its pods through it too).
pub(crate) async fn create_pods(
    api: &Api<Pod>,
    bodies: Vec<Value>,
    manager: &str,
    recorder: &Recorder,
    about: &ObjectRef,
) -> (Vec<String>, Option<Error>) {
    let made = shoal_runtime::batch::slow_start(bodies, 1, CONCURRENCY, |body| {
        let api = api.clone();
        async move {
            let pod: Pod = serde_json::from_value(body).map_err(|source| Error::Encode { what: "pod", source })?;
            let pp = PostParams {
                field_manager: Some(manager.into()),
                ..Default::default()
            };
            Ok::<_, Error>(api.create(&pp, &pod).await?)
        }
    })
    .await;
    let (mut names, mut failure) = (Vec::new(), None);
    for (_, r) in made.done {
        match r {
            Ok(pod) => {
                let name = pod.metadata.name.unwrap_or_default();
                let msg = format!("Created pod: {name}");
                recorder
                    .record(about, EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
                names.push(name);
            }
            Err(e) => {
                let msg = format!("Error creating: {e}");
                recorder.record(about, EventType::Warning, "FailedCreate", &msg).await;
                failure.get_or_insert(e);
            }
        }
    }
    (names, failure)
}

/// Writes the status when it changed. A failed creation or deletion sets the
/// `ReplicaFailure` condition, which the next clean pass removes.
async fn write_status(
    client: &kube::Client,
    kind: Kind,
    set: &Value,
    c: &Counts,
    failure: Option<(&'static str, String)>,
    now: jiff::Timestamp,
) -> Result<(), kube::Error> {
    let old = &set["status"];
    let mut conditions: Vec<Value> = old["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "ReplicaFailure")
        .collect();
    if let Some((reason, msg)) = &failure {
        conditions.push(json!({"type": "ReplicaFailure", "status": "True", "reason": reason,
                               "message": msg, "lastTransitionTime": shoal_api::time::rfc3339(now)}));
    }
    let generation = set["metadata"]["generation"].as_i64().unwrap_or(0);
    let mut status = json!({
        "replicas": c.replicas,
        "fullyLabeledReplicas": c.fully_labeled,
        "readyReplicas": c.ready,
        "availableReplicas": c.available,
        "observedGeneration": generation,
    });
    if !conditions.is_empty() {
        status["conditions"] = Value::Array(conditions);
    }
    let same = [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .all(|k| old[*k].as_i64().unwrap_or(0) == status[*k].as_i64().unwrap_or(0))
        && old["conditions"].as_array().map_or(0, Vec::len) == status["conditions"].as_array().map_or(0, Vec::len)
        && failure.is_none();
    if same {
        return Ok(());
    }
    let (group, plural) = kind.resource();
    let ar = ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: kind.api_version().into(),
        kind: kind.kind().into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        set["metadata"]["namespace"].as_str().unwrap_or("default"),
        &ar,
    );
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let mut patch = status.clone();
    if patch.get("conditions").is_none() {
        // Removes a ReplicaFailure condition a clean pass no longer reports.
        patch["conditions"] = Value::Null;
    }
    api.patch_status(name_of(set), &pp, &Patch::Merge(json!({"status": patch})))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_since: Option<&str>, created: &str) -> PodView {
        PodView {
            name: name.into(),
            uid: format!("uid-{name}"),
            node: node.map(str::to_string),
            phase: phase.into(),
            ready_since: ready_since.map(str::to_string),
            created: created.into(),
            deletion_cost: 0,
            terminating: false,
            labels: serde_json::Map::new(),
        }
    }

    #[test]
    fn scaling_creates_the_difference_and_deletes_by_rank() {
        let a = pod(
            "a",
            Some("n1"),
            "Running",
            Some("2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let b = pod("b", None, "Pending", None, "2026-01-01T00:00:05Z");
        let c = pod("c", Some("n2"), "Pending", None, "2026-01-01T00:00:03Z");
        let d = pod(
            "d",
            Some("n1"),
            "Running",
            Some("2026-01-01T00:01:00Z"),
            "2026-01-01T00:00:01Z",
        );
        let e = pod(
            "e",
            Some("n3"),
            "Running",
            Some("2026-01-01T00:01:00Z"),
            "2026-01-01T00:00:02Z",
        );
        assert_eq!(resize(5, &[&a]).create, 4);
        assert_eq!(resize(1000, &[]).create, BURST);
        let all = [&a, &b, &c, &d, &e];
        let names: Vec<&str> = deletion_order(&all).into_iter().map(|i| all[i].name.as_str()).collect();
        // Unscheduled, then pending, then doubled-up on n1 (d ready later than a, so first),
        // then e.
        assert_eq!(names, ["b", "c", "d", "a", "e"]);
        let p = resize(3, &all);
        assert_eq!(p.create, 0);
        assert_eq!(
            p.delete,
            [
                ("b".to_string(), "uid-b".to_string()),
                ("c".to_string(), "uid-c".to_string())
            ]
        );
    }

    #[test]
    fn deletion_cost_and_readiness_rank_pods() {
        let mut cheap = pod("cheap", Some("n1"), "Running", Some("t"), "t");
        cheap.deletion_cost = -10;
        let dear = pod("dear", Some("n2"), "Running", Some("t"), "t");
        let unready = pod("unready", Some("n3"), "Running", None, "t");
        let all = [&dear, &cheap, &unready];
        let names: Vec<&str> = deletion_order(&all).into_iter().map(|i| all[i].name.as_str()).collect();
        assert_eq!(names, ["unready", "cheap", "dear"]);
    }

    #[test]
    fn counts_follow_labels_readiness_and_min_ready_seconds() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let mut a = pod("a", Some("n1"), "Running", Some("2026-01-01T00:00:00Z"), "t");
        a.labels.insert("app".into(), json!("x"));
        let b = pod("b", Some("n1"), "Running", Some("2026-01-01T00:00:50Z"), "t");
        let c = pod("c", Some("n1"), "Pending", None, "t");
        let labels = json!({"app": "x"}).as_object().cloned().unwrap();
        let got = counts(&[&a, &b, &c], &labels, Duration::from_secs(30), now);
        assert_eq!(
            got,
            Counts {
                replicas: 3,
                fully_labeled: 1,
                ready: 2,
                available: 1
            }
        );
    }

    #[test]
    fn pods_come_from_the_template_and_are_owned() {
        let rs = json!({"metadata": {"name": "echo-rs", "namespace": "default", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "echo"}}, "spec": {"containers": [{"name": "echo", "image": "e"}]}}}});
        let p = pod_for(Kind::ReplicaSet, &rs);
        assert_eq!(p["metadata"]["generateName"], "echo-rs-");
        assert_eq!(p["metadata"]["labels"]["app"], "echo");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["spec"]["containers"][0]["name"], "echo");
        let rc =
            json!({"metadata": {"name": "r", "uid": "u2"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}});
        assert!(
            Kind::ReplicationController.selector(&rc).is_some(),
            "defaults to the template labels"
        );
        assert_eq!(
            pod_for(Kind::ReplicationController, &rc)["metadata"]["ownerReferences"][0]["apiVersion"],
            "v1"
        );
    }

    #[test]
    fn terminal_and_terminating_pods_do_not_count() {
        let mut t = pod("t", None, "Running", None, "t");
        t.terminating = true;
        assert!(!t.active());
        assert!(!pod("s", None, "Succeeded", None, "t").active());
        assert!(pod("r", None, "Running", None, "t").active());
    }
}
