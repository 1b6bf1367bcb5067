//! The scheduler against a real (in-process) API server: pods are bound to the nodes they
//! fit, `Scheduled` events are recorded, an unschedulable pod gets PodScheduled=False with
//! upstream's message and a `FailedScheduling` event, and is bound once a node for it appears.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use shoal_apiserver::ApiServer;

async fn create<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: K = serde_json::from_value(obj).expect("object");
    api.create(&PostParams::default(), &typed).await.expect("create");
}

fn node(name: &str, cpu: &str, labels: Value, taints: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
           "spec": {"taints": taints},
           "status": {"capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                      "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}})
}

fn pod(name: &str, cpu: &str, extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
                                          "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

/// Polls `f` until it returns `Some`, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn node_of(pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("{name} to be bound"), || async {
        let p = pods.get(name).await.ok()?;
        p.spec?.node_name.filter(|n| !n.is_empty())
    })
    .await
}

async fn events_about(events: &Api<Event>, pod: &str, reason: &str) -> Vec<Event> {
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_pods_and_reports_unschedulable_ones() {
    let api = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
    let client = kube::Client::new(api.router(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");

    create(&nodes, node("worker", "4", json!({"role": "worker"}), json!([]))).await;
    create(
        &nodes,
        node(
            "infra",
            "8",
            json!({"role": "infra"}),
            json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]),
        ),
    )
    .await;
    // A pod created before the scheduler starts is found by the initial list.
    create(&pods, pod("early", "100m", json!({}))).await;

    tokio::spawn(shoal_scheduler::run(client.clone()));

    assert_eq!(node_of(&pods, "early").await, "worker");
    // infra has more room but a taint: untolerating pods all go to worker.
    for i in 0..3 {
        create(&pods, pod(&format!("web-{i}"), "500m", json!({}))).await;
    }
    let tolerations = json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]);
    create(
        &pods,
        pod(
            "agent",
            "100m",
            json!({"tolerations": tolerations, "nodeSelector": {"role": "infra"}}),
        ),
    )
    .await;
    // A daemon pod pinned by matchFields.
    create(
        &pods,
        pod(
            "daemon",
            "100m",
            json!({"tolerations": tolerations, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["infra"]}]}]}}}}),
        ),
    )
    .await;
    // Fits nowhere: too big for worker, not tolerating infra.
    create(&pods, pod("huge", "6", json!({}))).await;

    for i in 0..3 {
        assert_eq!(node_of(&pods, &format!("web-{i}")).await, "worker");
    }
    assert_eq!(node_of(&pods, "agent").await, "infra");
    assert_eq!(node_of(&pods, "daemon").await, "infra");

    let bound = pods.get("web-0").await.unwrap();
    let conds = bound.status.unwrap().conditions.unwrap_or_default();
    assert!(
        conds.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"),
        "{conds:?}"
    );
    let scheduled = eventually("Scheduled event", || async {
        events_about(&events, "web-0", "Scheduled").await.into_iter().next()
    })
    .await;
    assert_eq!(
        scheduled.message.as_deref(),
        Some("Successfully assigned default/web-0 to worker")
    );
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
    assert_eq!(
        scheduled.source.and_then(|s| s.component).as_deref(),
        Some("default-scheduler")
    );

    let expected = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: infra}. \
                    preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
                    1 Preemption is not helpful for scheduling.";
    let cond = eventually("PodScheduled=False on huge", || async {
        let p = pods.get("huge").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(cond.message.as_deref(), Some(expected));
    assert!(cond.last_transition_time.is_some());
    let failed = eventually("FailedScheduling event", || async {
        events_about(&events, "huge", "FailedScheduling")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(failed.message.as_deref(), Some(expected));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert!(pods.get("huge").await.unwrap().spec.unwrap().node_name.is_none());

    // Level-triggered: a node that fits appears, and the waiting pod goes there.
    create(&nodes, node("big", "16", json!({"role": "worker"}), json!([]))).await;
    assert_eq!(node_of(&pods, "huge").await, "big");
    // One FailedScheduling event (at most a repeat count), not one per retry.
    assert_eq!(events_about(&events, "huge", "FailedScheduling").await.len(), 1);
}
