//! The DaemonSet controller: one daemon pod on every eligible node.
//!
//! Each pass over a DaemonSet: claim pods (adopt matching orphans, release owned pods that no
//! longer match), make sure the ControllerRevision of the current template exists, [`plan`]
//! the creations and deletions, apply them, and write the status. Creations in flight are
//! remembered per node (expectations) until the pod cache shows them, so a lagging cache
//! never produces two pods for one node.

pub mod facts;
pub mod history;
pub mod placement;
pub mod plan;
pub mod rollout;
#[cfg(test)]
mod scenario;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use shoal_api::selector::LabelSelector;
use shoal_runtime::claim::{Claim, adopt_patch, claim, release_patch};
use shoal_runtime::clock::Clock;
use shoal_runtime::controller::{Error, Keyed, Outcome, primary_keys};
use shoal_runtime::expectations::Expectations;
use shoal_runtime::informer::Change;
use tokio::time::Instant;

use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{Informers, Memo, name as name_of, uid as uid_of};
use placement::Placement;
use plan::{Action, DeleteReason, NodeView, PodFacts, controller_uid};

/// The controller's name, in metrics, spans and its work queue.
const NAME: &str = "daemonset";
/// Creations and deletions in flight at once.
const CONCURRENCY: usize = 64;
const MANAGER: &str = "daemonset-controller";
/// How soon a DaemonSet is looked at again while one of its pods is Ready but not yet
/// available (minReadySeconds), or while a failed pod waits for its deletion back-off.
const SOON: Duration = Duration::from_secs(1);
/// How soon a DaemonSet with a rollout under way is looked at again (its progress deadline).
const ROLLING: Duration = Duration::from_secs(5);

/// State kept across reconciles.
#[derive(Default)]
pub struct Controller {
    /// DaemonSet uid -> nodes with a pod creation in flight.
    expected: Expectations<String, String>,
    /// DaemonSet uid -> uids of its pods with a deletion in flight.
    deleted: Expectations<String, String>,
    /// Failed-pod deletions per (DaemonSet uid, observed generation, node).
    backoff: Backoff,
    /// Per DaemonSet uid: the template hash and each node's name and placement under it.
    placements: HashMap<String, (String, Memo<(String, Placement)>)>,
    /// Per DaemonSet uid: its selector and whether each candidate pod matches it.
    matches: HashMap<String, (Value, Memo<bool>)>,
    /// Every pod's entry, derived once per version of it.
    pods: Memo<PodEntry>,
}

/// A pod as the controller sees it, derived once per version of it.
struct PodEntry {
    /// `metadata.namespace`.
    namespace: String,
    /// The uid of its controller owner, if any.
    controller: Option<String>,
    /// What planning reads.
    facts: PodFacts,
}

impl PodEntry {
    fn of(pod: &Value) -> PodEntry {
        PodEntry {
            namespace: crate::informer::namespace(pod).to_string(),
            controller: controller_uid(pod).map(str::to_string),
            facts: PodFacts::of(pod),
        }
    }
}

/// A cached pod with its entry.
type PodRef<'a> = (&'a Arc<Value>, &'a PodEntry);

/// Exponential backoff of failed-pod deletions, as upstream: the first deletion is
/// immediate and opens a 1 s window; each deletion doubles it up to 15 minutes; an entry
/// idle for twice the maximum starts over.
#[derive(Default)]
pub struct Backoff {
    entries: HashMap<(String, i64, String), (Instant, Duration)>,
}

const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

impl Backoff {
    /// True (and the window advanced) when a failed pod for `key` may be deleted now.
    pub fn try_delete(&mut self, key: (String, i64, String), now: Instant) -> bool {
        match self.entries.get(&key).copied() {
            Some((last, delay)) if now.duration_since(last) < delay => false,
            Some((last, delay)) if now.duration_since(last) <= 2 * BACKOFF_MAX => {
                self.entries.insert(key, (now, (delay * 2).min(BACKOFF_MAX)));
                true
            }
            _ => {
                self.entries.insert(key, (now, BACKOFF_INITIAL));
                true
            }
        }
    }

    /// Forgets entries idle for longer than twice the maximum delay.
    pub fn gc(&mut self, now: Instant) {
        self.entries
            .retain(|_, (last, _)| now.duration_since(*last) <= 2 * BACKOFF_MAX);
    }
}

/// True when a node changed in what placement reads (labels, taints, unschedulable,
/// allocatable resources), or appeared or went: heartbeats and conditions wake no one.
fn node_placement_changed(old: Option<&Value>, new: Option<&Value>) -> bool {
    match (old, new) {
        (Some(a), Some(b)) => {
            a["metadata"]["labels"] != b["metadata"]["labels"]
                || a["spec"] != b["spec"]
                || a["status"]["allocatable"] != b["status"]["allocatable"]
        }
        _ => true,
    }
}

/// Runs the controller until the process ends, on the system clock.
pub async fn run(client: kube::Client, informers: Informers) {
    run_with(client, informers, shoal_runtime::clock::system()).await
}

/// Runs the controller with `clock`: a work queue of DaemonSet keys fed by the informers
/// (a DaemonSet's own changes, its pods' and revisions' changes, orphans of its namespace,
/// and node changes that matter to placement), reconciled one key at a time.
pub async fn run_with(client: kube::Client, informers: Informers, clock: Arc<dyn Clock>) {
    let recorder = Recorder::new(client.clone(), MANAGER);
    type Ctx = (kube::Client, Recorder, tokio::sync::Mutex<Controller>, Arc<dyn Clock>);
    let reconcile = |ctx: Arc<Ctx>, informers: Informers, ds: Option<Arc<Value>>| async move {
        let (client, recorder, state, clock) = &*ctx;
        let mut state = state.lock().await;
        let Some(ds) = ds else {
            state.forget_gone(&informers.of("apps", "daemonsets"));
            return Ok(Outcome::Done);
        };
        let nodes = informers.of("", "nodes");
        let pods = informers.of("", "pods");
        let revisions = informers.of("apps", "controllerrevisions");
        state
            .reconcile(client, recorder, &ds, &nodes, &pods, &revisions, clock.now())
            .await
    };
    let ctx = (client, recorder, tokio::sync::Mutex::new(Controller::default()), clock);
    Keyed::new(NAME, "apps", "daemonsets")
        .owns("", "pods", "DaemonSet")
        .owns("apps", "controllerrevisions", "DaemonSet")
        .watches("", "nodes", |informers, change| match change {
            Change::Object { old, new } if !node_placement_changed(old.as_deref(), new.as_deref()) => Vec::new(),
            _ => primary_keys(informers, ("apps", "daemonsets"), None),
        })
        .run_cached(informers, ctx, reconcile)
        .await
}

impl Controller {
    /// Forgets what it kept for DaemonSets that are gone.
    fn forget_gone(&mut self, daemonsets: &[Arc<Value>]) {
        let live: HashSet<&str> = daemonsets.iter().map(|d| uid_of(d)).collect();
        self.expected.retain_owners(|uid| live.contains(uid.as_str()));
        self.deleted.retain_owners(|uid| live.contains(uid.as_str()));
        self.placements.retain(|uid, _| live.contains(uid.as_str()));
        self.matches.retain(|uid, _| live.contains(uid.as_str()));
        self.backoff.gc(Instant::now());
    }

    /// Reconciles one DaemonSet against snapshots of the caches, at `now`: the whole of the
    /// controller's work for one key. Tests call it with snapshots they build and a fake API.
    #[allow(clippy::too_many_arguments)]
    pub async fn reconcile(
        &mut self,
        client: &kube::Client,
        recorder: &Recorder,
        ds: &Value,
        nodes: &[Arc<Value>],
        pods: &[Arc<Value>],
        revisions: &[Arc<Value>],
        now: jiff::Timestamp,
    ) -> Result<Outcome, Error> {
        let mut memo = std::mem::take(&mut self.pods);
        let entries = memo.refresh(pods, |p| p, |p| PodEntry::of(p));
        let pods: Vec<PodRef> = pods.iter().zip(entries).collect();
        let result = self.sync(client, recorder, ds, nodes, &pods, revisions, now).await;
        drop(pods);
        self.pods = memo;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync(
        &mut self,
        client: &kube::Client,
        recorder: &Recorder,
        ds: &Value,
        nodes: &[Arc<Value>],
        pods: &[PodRef<'_>],
        revisions: &[Arc<Value>],
        now: jiff::Timestamp,
    ) -> Result<Outcome, Error> {
        // Being deleted: the garbage collector owns what happens next.
        if crate::informer::deleting(ds) {
            return Ok(Outcome::Done);
        }
        let ns = ds["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let uid = uid_of(ds).to_string();
        let Ok(selector) = LabelSelector::from_api(&ds["spec"]["selector"]) else {
            return Ok(Outcome::Done);
        };
        if selector.is_empty() {
            return Ok(Outcome::Done);
        }
        let mut failure: Option<Error> = None;
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let (mut owned, adopted) = self.claim(&pod_api, ds, &selector, pods, &ns, &mut failure).await;
        owned.extend(adopted.iter());
        // Deletions in flight (upstream's deletion expectations): a pod deleted by an earlier
        // pass that a lagging cache still shows as it was counts as terminating, so it is
        // neither deleted again nor counted available by the rollout.
        let marked: Vec<PodFacts>;
        if !self.deleted.satisfied(&uid) {
            let shown: HashMap<&str, bool> = owned.iter().map(|p| (p.uid.as_str(), p.terminating)).collect();
            let in_flight: HashSet<String> = self
                .deleted
                .settle(&uid, |pod| {
                    shown.get(pod.as_str()).is_none_or(|terminating| *terminating)
                })
                .into_iter()
                .collect();
            let at: Vec<usize> = (0..owned.len())
                .filter(|&i| in_flight.contains(&owned[i].uid))
                .collect();
            marked = at
                .iter()
                .map(|&i| PodFacts {
                    terminating: true,
                    ..owned[i].clone()
                })
                .collect();
            for (&i, m) in at.iter().zip(&marked) {
                owned[i] = m;
            }
        }
        let hash = history::template_hash(ds);
        // Pods of one revision mostly sit together: skip a hash just inserted.
        let mut in_use: HashSet<&str> = HashSet::new();
        let mut last = None;
        for h in owned.iter().filter_map(|p| p.hash.as_deref()) {
            if last != Some(h) {
                in_use.insert(h);
                last = Some(h);
            }
        }
        ensure_revision(client, ds, &hash, revisions, &ns, &in_use).await?;

        // Expectations: a node with a creation in flight and no pod in the cache yet (the
        // owned pods' nodes are looked at only while some creation is in flight).
        let expected: HashSet<String> = if self.expected.satisfied(&uid) {
            HashSet::new()
        } else {
            let seen: HashSet<&str> = owned.iter().filter_map(|p| p.node.as_deref()).collect();
            self.expected
                .settle(&uid, |node| seen.contains(node.as_str()))
                .into_iter()
                .collect()
        };
        // Placement is decided again only for nodes that changed, or when the template did.
        let spec = placement::template_spec(ds);
        let (placed_for, placed) = self.placements.entry(uid.clone()).or_default();
        if *placed_for != hash {
            placed.clear();
            placed_for.clone_from(&hash);
        }
        let views: Vec<NodeView> = nodes
            .iter()
            .zip(placed.refresh(
                nodes,
                |n| n,
                |n| (name_of(n).to_string(), placement::placement(&spec, n)),
            ))
            .map(|(n, (name, placement))| NodeView {
                name,
                object: n,
                placement,
            })
            .collect();
        let pending = |n: &str| expected.contains(n);
        let in_place_hashes = if ds["metadata"]["annotations"][rollout::IN_PLACE] == "true" {
            history::image_only_revisions(ds, revisions)
        } else {
            HashSet::new()
        };
        let in_place = |p: &PodFacts| p.hash.as_deref().is_some_and(|h| in_place_hashes.contains(h));
        let result = plan::plan_views(ds, &views, &owned, &hash, &pending, &in_place, now);

        let about = ObjectRef::of("apps/v1", "DaemonSet", ds);
        let creates: Vec<String> = result
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { node } => Some(node.clone()),
                _ => None,
            })
            .collect();
        for node in &creates {
            self.expected.expect(&uid, node.clone());
        }
        // Slow start: 1, 2, 4, ... creations at once (at most CONCURRENCY), stopping after
        // the first batch with a failure. Bodies are built as the creations go out.
        let made = shoal_runtime::batch::slow_start(creates, 1, CONCURRENCY, |node: String| {
            let pod_api = pod_api.clone();
            let body = history::daemon_pod(ds, &node, &hash);
            async move {
                let pp = PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                };
                let pod: Pod = serde_json::from_value(body).map_err(|source| Error::Encode {
                    what: "daemon pod",
                    source,
                })?;
                Ok(pod_api
                    .create(&pp, &pod)
                    .await
                    .map(|p| p.metadata.name.unwrap_or_default())?)
            }
        })
        .await;
        for node in &made.skipped {
            // Never tried: the next reconcile (after the back-off) tries again.
            self.expected.cancel(&uid, node);
        }
        for (node, r) in made.done {
            match r {
                Ok(name) => {
                    recorder
                        .record(
                            &about,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await
                }
                Err(e) => {
                    // Nothing was created: the node is tried again on the next reconcile.
                    self.expected.cancel(&uid, &node);
                    // The namespace is being deleted (upstream's NamespaceTerminating cause):
                    // no event, nothing to retry.
                    let terminating = matches!(&e, Error::Api(kube::Error::Api(s))
                        if s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")));
                    if !terminating {
                        recorder
                            .record(
                                &about,
                                EventType::Warning,
                                "FailedCreate",
                                &format!("Error creating: {e}"),
                            )
                            .await;
                        failure.get_or_insert(e);
                    }
                }
            }
        }
        let generation = ds["status"]["observedGeneration"].as_i64().unwrap_or(0);
        let instant = Instant::now();
        let mut backing_off = false;
        let deletes: Vec<(String, String, String, DeleteReason)> = result
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { pod, uid, node, reason } => {
                    Some((pod.clone(), uid.clone(), node.clone(), reason.clone()))
                }
                _ => None,
            })
            .filter(|(_, _, node, reason)| {
                let go = *reason != DeleteReason::Failed
                    || self
                        .backoff
                        .try_delete((uid.clone(), generation, node.clone()), instant);
                backing_off |= !go;
                go
            })
            .collect();
        for (pod, _, node, reason) in &deletes {
            match reason {
                DeleteReason::Failed => {
                    let msg = format!("Found failed daemon pod {ns}/{pod} on node {node}, will try to kill it");
                    recorder
                        .record(&about, EventType::Warning, "FailedDaemonPod", &msg)
                        .await;
                }
                DeleteReason::Succeeded => {
                    let msg = format!("Found succeeded daemon pod {ns}/{pod} on node {node}, will try to delete it");
                    recorder
                        .record(&about, EventType::Normal, "SucceededDaemonPod", &msg)
                        .await;
                }
                _ => {}
            }
        }
        // In-place updates: the pod's images and revision labels change; the agent restarts
        // just the containers whose image changed (the pod's `metadata.uid` in the patch is
        // its precondition).
        for a in &result.actions {
            let Action::UpdateInPlace {
                pod,
                uid: pod_uid,
                node,
            } = a
            else {
                continue;
            };
            let mut patch = history::in_place_patch(ds, &hash);
            patch["metadata"]["uid"] = json!(pod_uid);
            let pp = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            match pod_api.patch(pod, &pp, &Patch::Strategic(&patch)).await {
                Ok(_) => {
                    let msg = format!("Updated pod {pod} on node {node} in place to revision {hash} (images only)");
                    recorder.record(&about, EventType::Normal, "InPlaceUpdate", &msg).await;
                }
                Err(e) => {
                    failure.get_or_insert(Error::from(e));
                }
            }
        }
        let targets: Vec<(String, String)> = deletes
            .iter()
            .map(|(pod, uid, _, _)| (pod.clone(), uid.clone()))
            .collect();
        for (_, pod_uid) in &targets {
            self.deleted.expect(&uid, pod_uid.clone());
        }
        let done = shoal_runtime::batch::slow_start(targets, CONCURRENCY, CONCURRENCY, |(pod, pod_uid)| {
            let pod_api = pod_api.clone();
            async move {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(pod_uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pod_api.delete(&pod, &dp).await {
                    Ok(_) => Ok(true),
                    // Already gone, or replaced by a pod of the same name.
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
                    Err(e) => Err(Error::from(e)),
                }
            }
        })
        .await;
        for (_, pod_uid) in &done.skipped {
            self.deleted.cancel(&uid, pod_uid);
        }
        for ((pod, pod_uid), r) in done.done {
            match r {
                Ok(true) => {
                    recorder
                        .record(
                            &about,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {pod}"),
                        )
                        .await
                }
                Ok(false) => {}
                Err(e) => {
                    // Not deleted: the pod is live as the cache shows it.
                    self.deleted.cancel(&uid, &pod_uid);
                    recorder
                        .record(
                            &about,
                            EventType::Warning,
                            "FailedDelete",
                            &format!("Error deleting: {e}"),
                        )
                        .await;
                    failure.get_or_insert(e);
                }
            }
        }
        let st = &result.status;
        let mut conditions = None;
        if let Some((cond, exceeded)) = rollout::progressing(ds, st.desired, st.updated, st.available, now) {
            let mut list: Vec<Value> = ds["status"]["conditions"].as_array().cloned().unwrap_or_default();
            list.retain(|c| c["type"] != "Progressing");
            let message = cond["message"].as_str().unwrap_or_default().to_string();
            list.push(cond);
            conditions = Some(Value::Array(list));
            if exceeded {
                recorder
                    .record(&about, EventType::Warning, "ProgressDeadlineExceeded", &message)
                    .await;
                if ds["metadata"]["annotations"][rollout::AUTO_REVERT].as_str() == Some("true") {
                    revert(client, recorder, &about, ds, revisions, &ns).await?;
                }
            }
        }
        write_status(client, ds, &result.status, &ns, conditions).await?;
        if let Some(e) = failure {
            return Err(e);
        }
        // Pods becoming available after minReadySeconds, failed pods waiting for their
        // deletion back-off and rollout deadlines change nothing in the caches: look again.
        Ok(if st.ready > st.available || backing_off {
            Outcome::RequeueAfter(SOON)
        } else if st.updated < st.desired || st.available < st.desired {
            Outcome::RequeueAfter(ROLLING)
        } else {
            Outcome::Done
        })
    }

    /// Adopts matching orphans and releases owned pods that no longer match; returns the
    /// facts of the pods the DaemonSet owns afterwards: those it owned (borrowed) and those it
    /// adopted just now. A failed adoption or release is kept in `failure` (the reconcile is
    /// retried with back-off) and the others go on.
    async fn claim<'a>(
        &mut self,
        api: &Api<Pod>,
        ds: &Value,
        selector: &LabelSelector,
        pods: &[PodRef<'a>],
        ns: &str,
        failure: &mut Option<Error>,
    ) -> (Vec<&'a PodFacts>, Vec<PodFacts>) {
        let uid = uid_of(ds);
        let pp = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        // Only pods this DaemonSet owns or nobody owns are candidates; whether each matches
        // the (immutable) selector is remembered per pod version.
        let candidates: Vec<PodRef<'a>> = pods
            .iter()
            .copied()
            .filter(|(_, e)| e.namespace == ns && e.controller.as_deref().is_none_or(|c| c == uid))
            .collect();
        let (matched_for, memo) = self.matches.entry(uid.to_string()).or_default();
        if *matched_for != ds["spec"]["selector"] {
            memo.clear();
            matched_for.clone_from(&ds["spec"]["selector"]);
        }
        let matched: Vec<bool> = memo
            .refresh(&candidates, |(p, _)| p, |(p, _)| selector.matches_object(p))
            .into_iter()
            .copied()
            .collect();
        let mut owned = Vec::new();
        let mut adopted = Vec::new();
        for (&(p, entry), matches) in candidates.iter().zip(matched) {
            // Owned pods that match (the common case) need no JSON lookups.
            if entry.controller.is_some() && matches {
                owned.push(&entry.facts);
                continue;
            }
            match claim(ds, p, matches) {
                Claim::Owned => owned.push(&entry.facts),
                Claim::Release => {
                    let patch = Patch::Strategic(release_patch(p, uid));
                    match api.patch(name_of(p), &pp, &patch).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => {
                            failure.get_or_insert(e.into());
                        }
                    }
                }
                Claim::Adopt => {
                    let patch = Patch::Merge(adopt_patch(p, history::owner_reference(ds)));
                    match api.patch(name_of(p), &pp, &patch).await {
                        Ok(pod) => match serde_json::to_value(pod) {
                            Ok(pod) => adopted.push(PodFacts::of(&pod)),
                            Err(source) => {
                                failure.get_or_insert(Error::Encode {
                                    what: "adopted pod",
                                    source,
                                });
                            }
                        },
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => {
                            failure.get_or_insert(e.into());
                        }
                    }
                }
                Claim::Ignore => {}
            }
        }
        (owned, adopted)
    }
}

/// Makes sure the ControllerRevision of the current template exists, owned by the DaemonSet,
/// with the highest revision number; adopts matching orphan revisions.
async fn ensure_revision(
    client: &kube::Client,
    ds: &Value,
    hash: &str,
    revisions: &[Arc<Value>],
    ns: &str,
    in_use: &HashSet<&str>,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let uid = uid_of(ds);
    let selector = LabelSelector::from_api(&ds["spec"]["selector"]).unwrap_or_else(|_| LabelSelector::nothing());
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let mut mine: Vec<&Value> = Vec::new();
    for cr in revisions
        .iter()
        .filter(|c| c["metadata"]["namespace"].as_str() == Some(ns))
    {
        match controller_uid(cr) {
            Some(owner) if owner == uid => mine.push(cr),
            None if claim(ds, cr, selector.matches_object(cr)) == Claim::Adopt => {
                let patch = adopt_patch(cr, history::owner_reference(ds));
                api.patch(name_of(cr), &pp, &Patch::Merge(patch)).await?;
                mine.push(cr);
            }
            _ => {}
        }
    }
    let data = history::revision_data(ds);
    let current = mine.iter().find(|c| c["data"] == data);
    let max_old = mine
        .iter()
        .filter(|c| c["data"] != data)
        .filter_map(|c| c["revision"].as_i64())
        .max()
        .unwrap_or(0);
    // Old revisions beyond revisionHistoryLimit go, lowest first, unless a pod still runs one.
    let limit = ds["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
    for old in history::revisions_to_prune(&mine, &data, in_use, limit) {
        match api.delete(name_of(old), &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    match current {
        Some(cr) => {
            if cr["revision"].as_i64().unwrap_or(0) <= max_old {
                let patch = json!({"revision": max_old.saturating_add(1)});
                api.patch(name_of(cr), &pp, &Patch::Merge(patch)).await?;
            }
            Ok(())
        }
        None => {
            let body: ControllerRevision =
                serde_json::from_value(history::controller_revision(ds, hash, max_old.saturating_add(1))).map_err(
                    |source| Error::Encode {
                        what: "controller revision",
                        source,
                    },
                )?;
            match api
                .create(
                    &PostParams {
                        field_manager: Some(MANAGER.into()),
                        ..Default::default()
                    },
                    &body,
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Rolls a DaemonSet back to its previous revision (the highest one that is not current),
/// as `kubectl rollout undo` does: a strategic merge patch with the revision's data.
async fn revert(
    client: &kube::Client,
    recorder: &Recorder,
    about: &ObjectRef,
    ds: &Value,
    revisions: &[Arc<Value>],
    ns: &str,
) -> Result<(), Error> {
    let uid = uid_of(ds);
    let current = history::revision_data(ds);
    let previous = revisions
        .iter()
        .filter(|c| c["metadata"]["namespace"].as_str() == Some(ns) && controller_uid(c) == Some(uid))
        .filter(|c| c["data"] != current)
        .max_by_key(|c| c["revision"].as_i64().unwrap_or(0));
    let Some(previous) = previous else { return Ok(()) };
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.patch(name_of(ds), &pp, &Patch::Strategic(previous["data"].clone()))
        .await?;
    let n = previous["revision"].as_i64().unwrap_or(0);
    let msg = format!("Rolled back to revision {n} after the progress deadline");
    recorder.record(about, EventType::Normal, "RolledBack", &msg).await;
    Ok(())
}

/// Writes the counters and observedGeneration when they changed.
async fn write_status(
    client: &kube::Client,
    ds: &Value,
    status: &plan::Status,
    ns: &str,
    conditions: Option<Value>,
) -> Result<(), Error> {
    let mut wanted = status.to_json();
    let generation = ds["metadata"]["generation"].as_i64().unwrap_or(0);
    wanted["observedGeneration"] = json!(generation);
    if let Some(c) = conditions {
        wanted["conditions"] = c;
    }
    let current = &ds["status"];
    let same = wanted
        .as_object()
        .is_some_and(|w| w.iter().all(|(k, v)| &current[k] == v))
        && (status.desired - status.available > 0
            || current.get("numberUnavailable").is_none_or(|v| v.is_null() || v == 0));
    if same {
        return Ok(());
    }
    if wanted.get("numberUnavailable").is_none() {
        wanted["numberUnavailable"] = Value::Null;
    }
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.patch_status(name_of(ds), &pp, &Patch::Merge(json!({"status": wanted})))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_pod_deletions_back_off_exponentially() {
        let mut b = Backoff::default();
        let key = || ("ds".to_string(), 1, "n1".to_string());
        let t0 = Instant::now();
        assert!(b.try_delete(key(), t0), "the first deletion is immediate");
        assert!(
            !b.try_delete(key(), t0 + Duration::from_millis(500)),
            "inside the 1 s window"
        );
        assert!(b.try_delete(key(), t0 + Duration::from_millis(1100)));
        assert!(
            !b.try_delete(key(), t0 + Duration::from_millis(2500)),
            "the window doubled to 2 s"
        );
        assert!(b.try_delete(key(), t0 + Duration::from_millis(3200)));
        // Another generation or node has its own window.
        assert!(b.try_delete(
            ("ds".to_string(), 2, "n1".to_string()),
            t0 + Duration::from_millis(3300)
        ));
        // Idle for more than twice the maximum: starts over at 1 s.
        let later = t0 + 2 * BACKOFF_MAX + Duration::from_secs(10);
        assert!(b.try_delete(key(), later));
        assert!(b.try_delete(key(), later + Duration::from_millis(1001)));
    }
}
