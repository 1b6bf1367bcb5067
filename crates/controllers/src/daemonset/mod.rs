//! The DaemonSet controller: one daemon pod on every eligible node.
//!
//! Each pass over a DaemonSet: claim pods (adopt matching orphans, release owned pods that no
//! longer match), make sure the ControllerRevision of the current template exists, [`plan`]
//! the creations and deletions, apply them, and write the status. Creations in flight are
//! remembered per node (expectations) until the pod cache shows them, so a lagging cache
//! never produces two pods for one node.

pub mod history;
pub mod placement;
pub mod plan;
pub mod rollout;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use shoal_api::selector::LabelSelector;

use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{Informers, Memo, name as name_of, uid as uid_of};
use placement::Placement;
use plan::{Action, DeleteReason, NodeView, PodFacts, controller_uid};

/// How long a creation waits to show up in the cache before it is tried again.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Creations and deletions issued at once.
const CONCURRENCY: usize = 64;
const MANAGER: &str = "daemonset-controller";

/// State kept across passes.
#[derive(Default)]
struct Controller {
    /// (DaemonSet uid, node) -> when a pod was created for it.
    expected: HashMap<(String, String), Instant>,
    /// Failed-pod deletions per (DaemonSet uid, observed generation, node).
    backoff: Backoff,
    /// Some pod is Ready but not yet available (minReadySeconds): wake up sooner.
    waiting_for_availability: bool,
    /// Per DaemonSet uid: the template hash and each node's name and placement under it.
    placements: HashMap<String, (String, Memo<(String, Placement)>)>,
    /// Per DaemonSet uid: its selector and whether each candidate pod matches it.
    matches: HashMap<String, (Value, Memo<bool>)>,
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

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    informers.ready().await;
    let recorder = Recorder::new(client.clone(), MANAGER);
    let mut state = Controller::default();
    let mut pod_memo: Memo<PodEntry> = Memo::default();
    let mut interest = informers.interest(&[
        ("apps", "daemonsets"),
        ("", "pods"),
        ("", "nodes"),
        ("apps", "controllerrevisions"),
    ]);
    loop {
        let pass = Instant::now();
        let daemonsets = informers.of("apps", "daemonsets");
        if !daemonsets.is_empty() {
            let nodes = informers.of("", "nodes");
            let pods = informers.of("", "pods");
            let entries = pod_memo.refresh(&pods, |p| p, |p| PodEntry::of(p));
            let pods: Vec<PodRef> = pods.iter().zip(entries).collect();
            let revisions = informers.of("apps", "controllerrevisions");
            for ds in &daemonsets {
                if let Err(e) = state.sync(&client, &recorder, ds, &nodes, &pods, &revisions).await {
                    tracing::debug!(daemonset = name_of(ds), error = %e, "daemonset sync failed; will retry");
                }
            }
            state.backoff.gc(Instant::now());
            let live: std::collections::HashSet<&str> = daemonsets.iter().map(|d| uid_of(d)).collect();
            state
                .expected
                .retain(|(uid, _), at| live.contains(uid.as_str()) && at.elapsed() < EXPECTATION_TIMEOUT);
            state.placements.retain(|uid, _| live.contains(uid.as_str()));
            state.matches.retain(|uid, _| live.contains(uid.as_str()));
        }
        // Pods becoming available after minReadySeconds change nothing in the caches, so poll
        // briskly while some are on their way.
        let idle = if std::mem::take(&mut state.waiting_for_availability) {
            1
        } else {
            5
        };
        // Changes that arrive together cost one pass: the next pass starts no sooner than
        // the last one took (20 to 100 ms: a pass that waited on many writes was not busy)
        // after it ended, so a change in a quiet cluster is handled at once.
        tracing::debug!(
            took_ms = pass.elapsed().as_millis() as u64,
            "daemonset controller: pass"
        );
        let took = pass
            .elapsed()
            .clamp(Duration::from_millis(20), Duration::from_millis(100));
        let earliest = tokio::time::Instant::now() + took;
        informers.wait(&mut interest, Duration::from_secs(idle)).await;
        tokio::time::sleep_until(earliest).await;
    }
}

impl Controller {
    async fn sync(
        &mut self,
        client: &kube::Client,
        recorder: &Recorder,
        ds: &Value,
        nodes: &[Arc<Value>],
        pods: &[PodRef<'_>],
        revisions: &[Arc<Value>],
    ) -> Result<(), kube::Error> {
        // Being deleted: the garbage collector owns what happens next.
        if ds["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null()) {
            return Ok(());
        }
        let ns = ds["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let uid = uid_of(ds).to_string();
        let Ok(selector) = LabelSelector::from_api(&ds["spec"]["selector"]) else {
            return Ok(());
        };
        if selector.is_empty() {
            return Ok(());
        }
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let (mut owned, adopted) = self.claim(&pod_api, ds, &selector, pods, &ns).await;
        owned.extend(adopted.iter());
        let hash = history::template_hash(ds);
        let in_use: std::collections::HashSet<&str> = owned.iter().filter_map(|p| p.hash.as_deref()).collect();
        ensure_revision(client, ds, &hash, revisions, &ns, &in_use).await?;

        // Expectations: a node with a creation in flight and no pod in the cache yet.
        let seen: std::collections::HashSet<&str> = owned.iter().filter_map(|p| p.node.as_deref()).collect();
        self.expected
            .retain(|(u, node), _| !(u == &uid && seen.contains(node.as_str())));
        let expected: std::collections::HashSet<String> = self
            .expected
            .keys()
            .filter(|(u, _)| u == &uid)
            .map(|(_, n)| n.clone())
            .collect();
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
        let result = plan::plan_views(ds, &views, &owned, &hash, &pending, jiff::Timestamp::now());

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
            self.expected.insert((uid.clone(), node.clone()), Instant::now());
        }
        // Bodies are built as the creations go out, not all at once.
        let made = futures::stream::iter(creates.into_iter().map(|node: String| {
            let pod_api = pod_api.clone();
            let body = history::daemon_pod(ds, &node, &hash);
            async move {
                let pp = PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                };
                let created = match serde_json::from_value::<Pod>(body) {
                    Ok(pod) => pod_api
                        .create(&pp, &pod)
                        .await
                        .map(|p| p.metadata.name.unwrap_or_default()),
                    Err(e) => Err(kube::Error::SerdeError(e)),
                };
                (node, created)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        for (node, r) in made {
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
                    // Nothing was created: the node is tried again on the next pass.
                    self.expected.remove(&(uid.clone(), node));
                    let terminating = matches!(&e, kube::Error::Api(a) if a.message.contains("being terminated"));
                    if !terminating {
                        recorder
                            .record(
                                &about,
                                EventType::Warning,
                                "FailedCreate",
                                &format!("Error creating: {e}"),
                            )
                            .await;
                    }
                }
            }
        }
        let generation = ds["status"]["observedGeneration"].as_i64().unwrap_or(0);
        let now = Instant::now();
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
                *reason != DeleteReason::Failed || self.backoff.try_delete((uid.clone(), generation, node.clone()), now)
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
        let targets: Vec<(String, String)> = deletes
            .iter()
            .map(|(pod, uid, _, _)| (pod.clone(), uid.clone()))
            .collect();
        let done = futures::stream::iter(targets.into_iter().map(|(pod, pod_uid)| {
            let pod_api = pod_api.clone();
            async move {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(pod_uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let r = pod_api.delete(&pod, &dp).await.map(|_| ());
                (pod, r)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        for (pod, r) in done {
            match r {
                Ok(()) => {
                    recorder
                        .record(
                            &about,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {pod}"),
                        )
                        .await
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => {
                    recorder
                        .record(
                            &about,
                            EventType::Warning,
                            "FailedDelete",
                            &format!("Error deleting: {e}"),
                        )
                        .await
                }
            }
        }
        if result.status.ready > result.status.available {
            self.waiting_for_availability = true;
        }
        let now = jiff::Timestamp::now();
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
                    revert(client, recorder, &about, ds, revisions, &ns).await;
                }
            }
        }
        write_status(client, ds, &result.status, &ns, conditions).await
    }

    /// Adopts matching orphans and releases owned pods that no longer match; returns the
    /// facts of the pods the DaemonSet owns afterwards: those it owned (borrowed) and those it
    /// adopted just now.
    async fn claim<'a>(
        &mut self,
        api: &Api<Pod>,
        ds: &Value,
        selector: &LabelSelector,
        pods: &[PodRef<'a>],
        ns: &str,
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
            match entry.controller.as_deref() {
                Some(_) if matches => owned.push(&entry.facts),
                Some(_) => {
                    let patch =
                        json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": uid_of(p)}});
                    if let Err(e) = api.patch(name_of(p), &pp, &Patch::Strategic(patch)).await {
                        tracing::debug!(pod = name_of(p), error = %e, "releasing a pod failed");
                    }
                }
                None if matches && !entry.facts.terminating => {
                    let mut refs = p["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
                    refs.push(history::owner_reference(ds));
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": uid_of(p), "resourceVersion": p["metadata"]["resourceVersion"]}});
                    match api.patch(name_of(p), &pp, &Patch::Merge(patch)).await {
                        Ok(pod) => adopted.push(PodFacts::of(&serde_json::to_value(pod).unwrap_or_default())),
                        Err(e) => tracing::debug!(pod = name_of(p), error = %e, "adopting a pod failed"),
                    }
                }
                None => {}
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
    in_use: &std::collections::HashSet<&str>,
) -> Result<(), kube::Error> {
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
            None if selector.matches_object(cr) => {
                let mut refs = cr["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                refs.push(history::owner_reference(ds));
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": cr["metadata"]["resourceVersion"]}});
                if api.patch(name_of(cr), &pp, &Patch::Merge(patch)).await.is_ok() {
                    mine.push(cr);
                }
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
            Err(e) => tracing::debug!(revision = name_of(old), error = %e, "pruning a revision failed"),
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
                serde_json::from_value(history::controller_revision(ds, hash, max_old.saturating_add(1)))
                    .map_err(kube::Error::SerdeError)?;
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
                Err(e) => Err(e),
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
) {
    let uid = uid_of(ds);
    let current = history::revision_data(ds);
    let previous = revisions
        .iter()
        .filter(|c| c["metadata"]["namespace"].as_str() == Some(ns) && controller_uid(c) == Some(uid))
        .filter(|c| c["data"] != current)
        .max_by_key(|c| c["revision"].as_i64().unwrap_or(0));
    let Some(previous) = previous else { return };
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(name_of(ds), &pp, &Patch::Strategic(previous["data"].clone()))
        .await
    {
        Ok(_) => {
            let n = previous["revision"].as_i64().unwrap_or(0);
            let msg = format!("Rolled back to revision {n} after the progress deadline");
            recorder.record(about, EventType::Normal, "RolledBack", &msg).await;
        }
        Err(e) => tracing::warn!(daemonset = name_of(ds), error = %e, "automatic rollback failed"),
    }
}

/// Writes the counters and observedGeneration when they changed.
async fn write_status(
    client: &kube::Client,
    ds: &Value,
    status: &plan::Status,
    ns: &str,
    conditions: Option<Value>,
) -> Result<(), kube::Error> {
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
        .await
        .map(|_| ())
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
