//! The default scheduler (`default-scheduler`): places pending pods on nodes through the
//! Kubernetes API, as upstream's kube-scheduler does for the behaviour users can see.
//!
//! - Watches Pods and Nodes (kube watchers feeding the caches in [`state`]).
//! - A pod is ours when it has no `spec.nodeName`, `spec.schedulerName` is
//!   `default-scheduler` or absent, it is not being deleted and has not finished.
//! - Decisions are made one pod at a time, in queue order (higher priority, then older), by
//!   the pure [`algorithm`]; a chosen node counts the pod at once ("assumed") so a lagging
//!   cache never over-commits a node. Bindings are posted concurrently (at most
//!   [`BIND_CONCURRENCY`] at a time).
//! - A pod that fits nowhere gets `PodScheduled=False` (`Unschedulable`, with upstream's
//!   message) and a `FailedScheduling` event, and is retried when pods or nodes change (with
//!   upstream's 1 s to 10 s back-off) and every 10 s.
//! - Before that, preemption ([`algorithm::Cluster::preemption`]): lower-priority pods whose
//!   eviction lets the pod fit are evicted (`DisruptionTarget` condition, `Preempted` event,
//!   deletion with their grace period), the node is nominated in `status.nominatedNodeName`,
//!   and until the pod is placed its room there is held from pods of lower priority.

pub mod algorithm;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ApiResource, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use shoal_runtime::events::{EventType, ObjectRef, Recorder};
use shoal_runtime::informer::{self, JsonObject};
use tokio::sync::{Semaphore, mpsc};

pub use algorithm::{Decision, decide};

use crate::algorithm::{NodeInfo, PodInfo};
use crate::state::{Action, BindOutcome, State};

/// The scheduler's name (`spec.schedulerName`, and the component of its events).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// How many bindings and status writes run at once.
pub const BIND_CONCURRENCY: usize = 64;
/// The longest the loop sleeps without a pass.
const PERIOD: Duration = Duration::from_secs(5);
/// The most watch events taken in before a pass.
const DRAIN_LIMIT: usize = 8192;

fn on_pod_event(state: &mut State, ev: Result<watcher::Event<JsonObject>, watcher::Error>) {
    match ev {
        Ok(watcher::Event::Apply(o)) => state.pod_applied(Arc::new(PodInfo::cached(o.value))),
        Ok(watcher::Event::Delete(o)) => state.pod_deleted(&format!(
            "{}/{}",
            informer::namespace(&o.value),
            informer::name(&o.value)
        )),
        Ok(watcher::Event::Init) => state.pods_relist_started(),
        Ok(watcher::Event::InitApply(o)) => state.pods_relist_item(Arc::new(PodInfo::cached(o.value))),
        Ok(watcher::Event::InitDone) => state.pods_relist_done(),
        Err(e) => tracing::warn!(error = %e, "scheduler: pod watch failed; retrying"),
    }
}

fn on_node_event(state: &mut State, ev: Result<watcher::Event<JsonObject>, watcher::Error>) {
    match ev {
        Ok(watcher::Event::Apply(o)) => state.node_applied(Arc::new(NodeInfo::cached(o.value))),
        Ok(watcher::Event::Delete(o)) => state.node_deleted(informer::name(&o.value)),
        Ok(watcher::Event::Init) => state.nodes_relist_started(),
        Ok(watcher::Event::InitApply(o)) => state.nodes_relist_item(Arc::new(NodeInfo::cached(o.value))),
        Ok(watcher::Event::InitDone) => state.nodes_relist_done(),
        Err(e) => tracing::warn!(error = %e, "scheduler: node watch failed; retrying"),
    }
}

fn on_claim_event(state: &mut State, ev: Result<watcher::Event<JsonObject>, watcher::Error>) {
    let key = |o: &Value| format!("{}/{}", informer::namespace(o), informer::name(o));
    match ev {
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
            state.claim_changed(key(&o.value), Some(state::Claim::of(&o.value)))
        }
        Ok(watcher::Event::Delete(o)) => state.claim_changed(key(&o.value), None),
        Ok(watcher::Event::InitDone) => state.volumes_synced(true, false),
        Ok(watcher::Event::Init) => {}
        Err(e) => tracing::warn!(error = %e, "scheduler: claim watch failed; retrying"),
    }
}

fn on_class_event(state: &mut State, ev: Result<watcher::Event<JsonObject>, watcher::Error>) {
    match ev {
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
            let delayed = o.value["volumeBindingMode"] == "WaitForFirstConsumer";
            state.class_changed(informer::name(&o.value).to_string(), Some(delayed))
        }
        Ok(watcher::Event::Delete(o)) => state.class_changed(informer::name(&o.value).to_string(), None),
        Ok(watcher::Event::InitDone) => state.volumes_synced(false, true),
        Ok(watcher::Event::Init) => {}
        Err(e) => tracing::warn!(error = %e, "scheduler: storage class watch failed; retrying"),
    }
}

type Done = (String, String, BindOutcome);

/// Runs the scheduler until the process ends.
pub async fn run(client: kube::Client) {
    let pods: Api<JsonObject> = Api::all_with(client.clone(), &ApiResource::erase::<Pod>(&()));
    let nodes: Api<JsonObject> = Api::all_with(client.clone(), &ApiResource::erase::<Node>(&()));
    let pod_events = watcher(pods, watcher::Config::default()).default_backoff();
    let node_events = watcher(nodes, watcher::Config::default()).default_backoff();
    let claims: Api<JsonObject> = Api::all_with(client.clone(), &ApiResource::erase::<PersistentVolumeClaim>(&()));
    let classes: Api<JsonObject> = Api::all_with(client.clone(), &ApiResource::erase::<StorageClass>(&()));
    let claim_events = watcher(claims, watcher::Config::default()).default_backoff();
    let class_events = watcher(classes, watcher::Config::default()).default_backoff();
    futures::pin_mut!(pod_events, node_events, claim_events, class_events);
    let recorder = Recorder::new(client.clone(), SCHEDULER_NAME);
    let limit = Arc::new(Semaphore::new(BIND_CONCURRENCY));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut state = State::new();
    loop {
        let now = Instant::now();
        let deadline = state.next_due().map_or(now + PERIOD, |d| d.min(now + PERIOD));
        tokio::select! {
            Some(ev) = pod_events.next() => on_pod_event(&mut state, ev),
            Some(ev) = node_events.next() => on_node_event(&mut state, ev),
            Some(ev) = claim_events.next() => on_claim_event(&mut state, ev),
            Some(ev) = class_events.next() => on_class_event(&mut state, ev),
            Some((key, uid, outcome)) = done_rx.recv() => state.bind_finished(&key, &uid, outcome, Instant::now()),
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        // Take in whatever else is ready, so a burst of events costs one pass.
        let mut taken = 0;
        while taken < DRAIN_LIMIT {
            if let Some(Some(ev)) = pod_events.next().now_or_never() {
                on_pod_event(&mut state, ev);
            } else if let Some(Some(ev)) = node_events.next().now_or_never() {
                on_node_event(&mut state, ev);
            } else if let Some(Some(ev)) = claim_events.next().now_or_never() {
                on_claim_event(&mut state, ev);
            } else if let Some(Some(ev)) = class_events.next().now_or_never() {
                on_class_event(&mut state, ev);
            } else if let Ok((key, uid, outcome)) = done_rx.try_recv() {
                state.bind_finished(&key, &uid, outcome, Instant::now());
            } else {
                break;
            }
            taken += 1;
        }
        if !state.synced() {
            continue;
        }
        for action in state.pass(Instant::now()) {
            let client = client.clone();
            let recorder = recorder.clone();
            let limit = limit.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                match action {
                    Action::Bind { pod, node } => {
                        let outcome = bind(&client, &recorder, &pod, &node).await;
                        let _ = done_tx.send((pod.key.clone(), pod.uid.clone(), outcome));
                    }
                    Action::Preempt {
                        pod,
                        node,
                        victims,
                        message,
                        status_patch,
                    } => {
                        preempt(&client, &recorder, &pod, &node, &victims).await;
                        report_unschedulable(&client, &recorder, &pod, &message, Some(status_patch), true).await;
                    }
                    Action::Unschedulable {
                        pod,
                        message,
                        status_patch,
                        event,
                    } => {
                        report_unschedulable(&client, &recorder, &pod, &message, status_patch, event).await;
                    }
                }
            });
        }
    }
}

/// POSTs the binding; records `Scheduled` on success.
async fn bind(client: &kube::Client, recorder: &Recorder, pod: &PodInfo, node: &str) -> BindOutcome {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let about = ObjectRef::of("v1", "Pod", &pod.obj);
    match api
        .create_subresource::<_, Value>("binding", &pod.name, &PostParams::default(), &binding)
        .await
    {
        Ok(_) => {
            tracing::debug!(pod = %pod.key, node, "scheduler: bound");
            let message = format!("Successfully assigned {} to {node}", pod.key);
            recorder.record(&about, EventType::Normal, "Scheduled", &message).await;
            BindOutcome::Bound
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
            tracing::debug!(pod = %pod.key, node, code = s.code, "scheduler: binding moot");
            BindOutcome::Moot
        }
        Err(e) => {
            tracing::warn!(pod = %pod.key, node, error = %e, "scheduler: binding failed");
            let message = format!("Binding rejected: {e}");
            recorder
                .record(&about, EventType::Warning, "FailedScheduling", &message)
                .await;
            BindOutcome::Failed
        }
    }
}

/// Evicts the victims of a preemption as upstream's scheduler does: each gets the
/// `DisruptionTarget` condition (`PreemptionByScheduler`), a `Preempted` event, and is
/// deleted with its own grace period.
async fn preempt(client: &kube::Client, recorder: &Recorder, pod: &PodInfo, node: &str, victims: &[Arc<PodInfo>]) {
    for v in victims {
        let api: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": format!("{SCHEDULER_NAME}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": shoal_api::time::now_rfc3339(),
        }]}});
        if let Err(e) = api
            .patch_status(&v.name, &PatchParams::default(), &Patch::Strategic(&condition))
            .await
        {
            tracing::debug!(pod = %v.key, error = %e, "scheduler: marking a victim failed");
        }
        let about = ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: v.namespace.clone(),
            name: v.name.clone(),
            uid: v.uid.clone(),
        };
        let message = format!("Preempted by pod {} on node {node}", pod.uid);
        recorder.record(&about, EventType::Normal, "Preempted", &message).await;
        let dp = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(v.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&v.name, &dp).await {
            Ok(_) => tracing::debug!(victim = %v.key, preemptor = %pod.key, node, "scheduler: preempted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %v.key, error = %e, "scheduler: evicting a victim failed"),
        }
    }
}

/// Writes the PodScheduled=False condition (when it changed) and the `FailedScheduling` event.
async fn report_unschedulable(
    client: &kube::Client,
    recorder: &Recorder,
    pod: &PodInfo,
    message: &str,
    status_patch: Option<Value>,
    event: bool,
) {
    if let Some(patch) = status_patch {
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
        match api
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod.key, error = %e, "scheduler: writing PodScheduled failed"),
        }
    }
    if event {
        let about = ObjectRef::of("v1", "Pod", &pod.obj);
        recorder
            .record(&about, EventType::Warning, "FailedScheduling", message)
            .await;
    }
}
