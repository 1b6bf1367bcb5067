//! Scenario tests of the whole reconcile, against the recording fake of the API and a fake
//! clock (upstream's `newTestController` with `fakePodControl`). The caches are snapshots
//! the test builds: a lagging cache is a snapshot the test did not update.

use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};
use shoal_runtime::controller::Outcome;
use shoal_runtime::events::Recorder;
use shoal_runtime::testing::FakeApi;

use super::Controller;
use super::history;

const NOW: &str = "2026-03-01T12:00:00Z";

fn now() -> jiff::Timestamp {
    NOW.parse().unwrap()
}

fn ds(extra_spec: Value) -> Arc<Value> {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"containers": [{"name": "a", "image": "agent:1"}]}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
        },
        "status": {}
    });
    if let Some(m) = extra_spec.as_object() {
        for (k, v) in m {
            d["spec"][k] = v.clone();
        }
    }
    Arc::new(d)
}

fn node(name: &str) -> Arc<Value> {
    Arc::new(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": format!("uid-{name}")},
                    "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
    )
}

/// A pod the DaemonSet made for `node` (as the fake answered its creation), Ready since
/// `ready_since` when given.
fn daemon_pod(d: &Value, node: &str, ready_since: Option<&str>) -> Arc<Value> {
    let hash = history::template_hash(d);
    let mut p = history::daemon_pod(d, node, &hash);
    p["metadata"]["name"] = json!(format!("agent-{node}"));
    p["metadata"]["uid"] = json!(format!("pod-{node}"));
    p["metadata"]["creationTimestamp"] = json!("2026-03-01T11:00:00Z");
    p["spec"]["nodeName"] = json!(node);
    p["status"] = json!({"phase": "Running"});
    if let Some(t) = ready_since {
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
    }
    Arc::new(p)
}

fn revision(d: &Value) -> Arc<Value> {
    let mut r = history::controller_revision(d, &history::template_hash(d), 1);
    r["metadata"]["uid"] = json!("rev-uid");
    Arc::new(r)
}

struct World {
    fake: FakeApi,
    client: kube::Client,
    recorder: Recorder,
    ctl: Controller,
}

impl World {
    fn new() -> World {
        let fake = FakeApi::new();
        let client = fake.client();
        let recorder = Recorder::new(client.clone(), "daemonset-controller");
        World {
            fake,
            client,
            recorder,
            ctl: Controller::default(),
        }
    }

    async fn reconcile(
        &mut self,
        d: &Value,
        nodes: &[Arc<Value>],
        pods: &[Arc<Value>],
        at: jiff::Timestamp,
    ) -> Result<Outcome, shoal_runtime::controller::Error> {
        let revisions = [revision(d)];
        self.ctl
            .reconcile(&self.client, &self.recorder, d, nodes, pods, &revisions, at)
            .await
    }

    /// The nodes of the pods created so far, sorted.
    fn created_for(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .fake
            .calls_to(&Method::POST, "pods")
            .iter()
            .map(|c| {
                c.body["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                    ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        nodes.sort();
        nodes
    }
}

#[tokio::test(start_paused = true)]
async fn create_one_pod_per_node_and_never_twice_while_the_cache_lags() {
    let mut w = World::new();
    let d = ds(json!({}));
    let nodes = [node("n1"), node("n2"), node("n3")];
    let out = w.reconcile(&d, &nodes, &[], now()).await.unwrap();
    assert_eq!(w.created_for(), ["n1", "n2", "n3"]);
    assert_eq!(out, Outcome::RequeueAfter(super::ROLLING), "pods are not available yet");
    let status = w.fake.calls_to(&Method::PATCH, "daemonsets/agent/status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].body["status"]["desiredNumberScheduled"], 3);
    assert_eq!(
        status[0].body["status"]["currentNumberScheduled"], 0,
        "counted before the creations"
    );
    // The pod cache has not caught up: nothing is created again.
    let mut d = (*d).clone();
    d["status"] = status[0].body["status"].clone();
    let d = Arc::new(d);
    w.fake.clear();
    w.reconcile(&d, &nodes, &[], now()).await.unwrap();
    assert!(w.created_for().is_empty(), "expectations hold the creations in flight");
    let status = w.fake.calls_to(&Method::PATCH, "daemonsets/agent/status");
    assert_eq!(
        status[0].body["status"]["currentNumberScheduled"], 3,
        "creations in flight count as scheduled"
    );
    // The cache shows two of them; the third lapses after the expectation timeout.
    let pods = [daemon_pod(&d, "n1", None), daemon_pod(&d, "n2", None)];
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    assert!(w.created_for().is_empty());
    tokio::time::advance(shoal_runtime::expectations::TTL).await;
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    assert_eq!(
        w.created_for(),
        ["n3"],
        "a lost watch event cannot stall the node forever"
    );
}

#[tokio::test(start_paused = true)]
async fn adopt_a_matching_orphan_and_release_a_pod_that_stopped_matching() {
    let mut w = World::new();
    let d = ds(json!({}));
    let nodes = [node("n1"), node("n2")];
    let mut orphan = (*daemon_pod(&d, "n1", None)).clone();
    orphan["metadata"]["ownerReferences"] = json!([]);
    orphan["metadata"]["name"] = json!("orphan");
    let mut relabelled = (*daemon_pod(&d, "n2", None)).clone();
    relabelled["metadata"]["labels"]["app"] = json!("debugging");
    relabelled["metadata"]["name"] = json!("pulled-out");
    let foreign = {
        let mut p = (*daemon_pod(&d, "n2", None)).clone();
        p["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
        p["metadata"]["name"] = json!("foreign");
        p
    };
    w.fake.know(&[&orphan, &relabelled]);
    let pods = [Arc::new(orphan), Arc::new(relabelled), Arc::new(foreign)];
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    let adopt = w.fake.calls_to(&Method::PATCH, "pods/orphan");
    assert_eq!(adopt.len(), 1);
    assert_eq!(adopt[0].body["metadata"]["ownerReferences"][0]["uid"], "ds-uid");
    assert_eq!(adopt[0].body["metadata"]["uid"], "pod-n1", "guarded by the pod's uid");
    let release = w.fake.calls_to(&Method::PATCH, "pods/pulled-out");
    assert_eq!(release.len(), 1);
    assert_eq!(release[0].body["metadata"]["ownerReferences"][0]["$patch"], "delete");
    assert!(w.fake.calls_to(&Method::PATCH, "pods/foreign").is_empty());
    assert_eq!(w.created_for(), ["n2"], "n1 has the adopted pod; n2's pod was released");
}

#[tokio::test(start_paused = true)]
async fn failing_creations_stop_at_the_first_batch_and_are_retried_with_back_off() {
    let mut w = World::new();
    let d = ds(json!({}));
    let nodes: Vec<Arc<Value>> = (1..=20).map(|i| node(&format!("n{i:02}"))).collect();
    w.fake
        .fail_when(|m, path| (m == Method::POST && path.ends_with("/pods")).then_some((403, "Forbidden")));
    let err = w.reconcile(&d, &nodes, &[], now()).await.unwrap_err();
    assert_eq!(err.kind(), "forbidden");
    assert_eq!(
        w.fake.calls_to(&Method::POST, "pods").len(),
        1,
        "slow start: one failing call, not twenty"
    );
    let events = w.fake.calls_to(&Method::POST, "events");
    assert!(events.iter().any(|e| e.body["reason"] == "FailedCreate"));
    // Nothing is expected for the failed or skipped nodes: the retry creates them all.
    w.fake.heal();
    w.fake.clear();
    w.reconcile(&d, &nodes, &[], now()).await.unwrap();
    assert_eq!(w.created_for().len(), 20);
}

#[tokio::test(start_paused = true)]
async fn availability_follows_the_clock_it_is_given() {
    let mut w = World::new();
    let d = ds(json!({"minReadySeconds": 30}));
    let nodes = [node("n1")];
    let pods = [daemon_pod(&d, "n1", Some("2026-03-01T11:59:50Z"))];
    let out = w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    assert_eq!(out, Outcome::RequeueAfter(super::SOON), "ready, not yet available");
    let status = w.fake.calls_to(&Method::PATCH, "daemonsets/agent/status");
    assert_eq!(status[0].body["status"]["numberAvailable"], 0);
    assert_eq!(status[0].body["status"]["numberUnavailable"], 1);
    // Twenty seconds later by the clock (no real wait): available, and nothing to look at.
    let mut d2 = (*d).clone();
    d2["status"] = status[0].body["status"].clone();
    w.fake.clear();
    let later = now().checked_add(jiff::SignedDuration::from_secs(20)).unwrap();
    let out = w.reconcile(&d2, &nodes, &pods, later).await.unwrap();
    assert_eq!(out, Outcome::Done);
    let status = w.fake.calls_to(&Method::PATCH, "daemonsets/agent/status");
    assert_eq!(status[0].body["status"]["numberAvailable"], 1);
}

#[tokio::test(start_paused = true)]
async fn failed_pods_are_deleted_with_back_off() {
    let mut w = World::new();
    let d = ds(json!({}));
    let nodes = [node("n1")];
    let mut failed = (*daemon_pod(&d, "n1", None)).clone();
    failed["status"]["phase"] = json!("Failed");
    let pods = [Arc::new(failed.clone())];
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    assert_eq!(w.fake.calls_to(&Method::DELETE, "pods/agent-n1").len(), 1);
    // Its replacement fails at once: inside the 1 s window it is not deleted.
    let mut again = failed;
    again["metadata"]["name"] = json!("agent-n1b");
    again["metadata"]["uid"] = json!("pod-n1b");
    let pods = [Arc::new(again)];
    w.fake.clear();
    let out = w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    assert!(w.fake.calls_to(&Method::DELETE, "pods/agent-n1b").is_empty());
    assert_eq!(out, Outcome::RequeueAfter(super::SOON));
    tokio::time::advance(std::time::Duration::from_millis(1100)).await;
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    assert_eq!(w.fake.calls_to(&Method::DELETE, "pods/agent-n1b").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_deletes_each_pod_once_while_the_cache_lags() {
    // Upstream's deletion expectations: a pod the controller deleted still shows as it was
    // in a lagging cache; it counts as terminating (unavailable, not deleted again), so the
    // rollout stays within maxUnavailable.
    let mut w = World::new();
    let old = ds(json!({}));
    let nodes = [node("n1"), node("n2"), node("n3")];
    let pods: Vec<Arc<Value>> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| daemon_pod(&old, n, Some("2026-03-01T11:00:00Z")))
        .collect();
    let mut d = (*old).clone();
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("agent:2");
    d["metadata"]["generation"] = json!(2);
    let d = Arc::new(d);
    let known: Vec<&Value> = pods.iter().map(|p| &**p).collect();
    w.fake.know(&known);
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    let deleted = |w: &World| {
        ["n1", "n2", "n3"]
            .iter()
            .map(|n| w.fake.calls_to(&Method::DELETE, &format!("pods/agent-{n}")).len())
            .sum::<usize>()
    };
    assert_eq!(deleted(&w), 1, "maxUnavailable 1: one old pod goes");
    // The cache has not seen the deletion yet.
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    assert_eq!(
        deleted(&w),
        1,
        "no second delete, and no other pod beyond maxUnavailable"
    );
    // The cache shows it gone: the node gets its new pod, and nothing else is deleted
    // until that pod is available.
    let first = ["n1", "n2", "n3"]
        .iter()
        .position(|n| !w.fake.calls_to(&Method::DELETE, &format!("pods/agent-{n}")).is_empty())
        .unwrap();
    let rest: Vec<Arc<Value>> = pods
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, p)| p.clone())
        .collect();
    w.reconcile(&d, &nodes, &rest, now()).await.unwrap();
    assert_eq!(w.created_for().len(), 1);
    assert_eq!(deleted(&w), 1);
}

/// The cost of one reconcile of a settled DaemonSet on 5,000 nodes (no action, no status
/// change): what every change of one node or pod pays. Run with
/// `cargo test --release -p shoal-controllers -- --ignored settled_reconcile_cost --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn settled_reconcile_cost() {
    let mut w = World::new();
    let mut d = (*ds(json!({}))).clone();
    let nodes: Vec<Arc<Value>> = (0..5000).map(|i| node(&format!("node{i}"))).collect();
    let pods: Vec<Arc<Value>> = (0..5000)
        .map(|i| daemon_pod(&d, &format!("node{i}"), Some("2026-03-01T11:00:00Z")))
        .collect();
    w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    let status = w.fake.calls_to(&Method::PATCH, "daemonsets/agent/status");
    d["status"] = status.last().unwrap().body["status"].clone();
    let t = std::time::Instant::now();
    let rounds: u32 = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    for _ in 0..rounds {
        w.reconcile(&d, &nodes, &pods, now()).await.unwrap();
    }
    eprintln!("settled reconcile at 5,000 nodes: {:?}", t.elapsed() / rounds);
    assert_eq!(w.fake.calls_to(&Method::POST, "pods").len(), 0);
}
