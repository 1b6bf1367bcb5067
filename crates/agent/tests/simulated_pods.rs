//! Pods on simulated nodes, through an in-process API server: they start with an IP from
//! the node's pod CIDR, run-to-completion pods finish, and graceful deletes complete.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use shoal_agent::{PodTiming, SimulatedPool};
use shoal_apiserver::ApiServer;

async fn cluster(timing: PodTiming) -> kube::Client {
    let api = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
    let client = kube::Client::new(api.router(), "default");
    let pool = SimulatedPool::with_timing(client.clone(), timing);
    pool.ensure_nodes(2).await.unwrap();
    tokio::spawn(pool.run());
    client
}

fn pod(name: &str, node: &str, extra: Value) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "nginx:1.27"}]},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Waits (up to 10 s) until the pod satisfies `ok`, or is gone when `ok` is `None`.
async fn wait_for(pods: &Api<Pod>, name: &str, what: &str, ok: Option<&dyn Fn(&Value) -> bool>) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        match (pods.get_opt(name).await.unwrap(), ok) {
            (None, None) => return Value::Null,
            (Some(p), Some(ok)) => {
                last = serde_json::to_value(p).unwrap();
                if ok(&last) {
                    return last;
                }
            }
            (Some(p), None) => last = serde_json::to_value(p).unwrap(),
            (None, Some(_)) => last = Value::Null,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name}: not {what} in time; last seen: {last:#}");
}

fn phase_is(phase: &'static str) -> impl Fn(&Value) -> bool {
    move |p: &Value| p["status"]["phase"] == phase
}

fn condition(p: &Value, t: &str) -> Value {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_simulated_nodes_run_complete_and_go_away() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("shoal_agent=debug")
        .with_test_writer()
        .try_init();
    let client = cluster(PodTiming::default()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // A long-running pod starts with an address from node1's pod CIDR (10.42.1.0/24).
    pods.create(&pp, &pod("web", "node1", json!({}))).await.unwrap();
    let ready = |p: &Value| p["status"]["phase"] == "Running" && condition(p, "Ready")["status"] == "True";
    let web = wait_for(&pods, "web", "ready", Some(&ready)).await;
    let s = &web["status"];
    assert_eq!(s["hostIP"], "172.20.42.1", "{s:#}");
    assert_eq!(s["hostIPs"], json!([{"ip": "172.20.42.1"}]));
    let ip = s["podIP"].as_str().unwrap().to_string();
    assert!(
        ip.starts_with("10.42.1.") && ip != "10.42.1.0" && ip != "10.42.1.1",
        "{ip}"
    );
    assert_eq!(s["podIPs"], json!([{"ip": ip}]));
    assert!(s["startTime"].is_string());
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert_eq!(condition(&web, t)["status"], "True", "{t}: {s:#}");
    }
    let c = &s["containerStatuses"][0];
    assert_eq!(c["name"], "main");
    assert_eq!(c["ready"], true);
    assert_eq!(c["started"], true);
    assert_eq!(c["restartCount"], 0);
    assert_eq!(c["image"], "docker.io/library/nginx:1.27");
    assert!(c["state"]["running"]["startedAt"].is_string());
    assert_eq!(s["qosClass"], web["status"]["qosClass"]);

    // Addresses are unique on a node; another node has its own range; host-network pods
    // take the host's address.
    pods.create(&pp, &pod("web2", "node1", json!({}))).await.unwrap();
    pods.create(&pp, &pod("other", "node2", json!({}))).await.unwrap();
    pods.create(&pp, &pod("host", "node2", json!({"spec": {"hostNetwork": true}})))
        .await
        .unwrap();
    let web2 = wait_for(&pods, "web2", "running", Some(&phase_is("Running"))).await;
    let ip2 = web2["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip2.starts_with("10.42.1.") && ip2 != ip, "{ip2} vs {ip}");
    let other = wait_for(&pods, "other", "running", Some(&phase_is("Running"))).await;
    assert!(
        other["status"]["podIP"].as_str().unwrap().starts_with("10.42.2."),
        "{other:#}"
    );
    let host = wait_for(&pods, "host", "running", Some(&phase_is("Running"))).await;
    assert_eq!(host["status"]["podIP"], "172.20.42.2");

    // Run-to-completion pods finish: exit 0 -> Succeeded, the exit-code annotation -> Failed.
    pods.create(&pp, &pod("job", "node1", json!({"spec": {"restartPolicy": "Never"}})))
        .await
        .unwrap();
    pods.create(
        &pp,
        &pod(
            "fail",
            "node1",
            json!({"metadata": {"annotations": {"shoal.dev/exit-code": "3"}}, "spec": {"restartPolicy": "OnFailure"}}),
        ),
    )
    .await
    .unwrap();
    let job = wait_for(&pods, "job", "Succeeded", Some(&phase_is("Succeeded"))).await;
    let t = &job["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["reason"].clone(), t["exitCode"].clone()),
        (json!("Completed"), json!(0)),
        "{job:#}"
    );
    assert_eq!(condition(&job, "Ready")["reason"], "PodCompleted");
    assert_eq!(condition(&job, "Ready")["status"], "False");
    let fail = wait_for(&pods, "fail", "Failed", Some(&phase_is("Failed"))).await;
    assert_eq!(
        fail["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );

    // A graceful delete (30 s by default) completes at once, and frees the address.
    let rv_before = web["metadata"]["resourceVersion"].clone();
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for(&pods, "web", "gone", None).await;
    pods.create(&pp, &pod("web3", "node1", json!({}))).await.unwrap();
    let web3 = wait_for(&pods, "web3", "running", Some(&phase_is("Running"))).await;
    assert_eq!(web3["status"]["podIP"], ip.as_str(), "the freed address is reused");

    // Nothing is written again once a pod runs.
    let web2_again = pods.get("web2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pods.get("web2").await.unwrap().metadata.resource_version,
        web2_again.metadata.resource_version
    );
    assert_ne!(rv_before, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_honoured() {
    let timing = PodTiming {
        start_delay: Duration::from_millis(300),
        run_time: Duration::from_secs(3600),
        grace_cap: Duration::from_millis(500),
        stop_time: Duration::ZERO,
        stop_jitter: Duration::ZERO,
    };
    let client = cluster(timing).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let started = std::time::Instant::now();
    pods.create(&pp, &pod("slow", "node1", json!({}))).await.unwrap();
    wait_for(&pods, "slow", "running", Some(&phase_is("Running"))).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // The annotation overrides the run time.
    pods.create(
        &pp,
        &pod(
            "quick",
            "node1",
            json!({"metadata": {"annotations": {"shoal.dev/run-seconds": "0.2"}}, "spec": {"restartPolicy": "Never"}}),
        ),
    )
    .await
    .unwrap();
    wait_for(&pods, "quick", "Succeeded", Some(&phase_is("Succeeded"))).await;

    // The grace period is capped at 0.5 s.
    let deleting = std::time::Instant::now();
    pods.delete("slow", &DeleteParams::default()).await.unwrap();
    let marked = pods.get("slow").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    wait_for(&pods, "slow", "gone", None).await;
    let took = deleting.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// One pod on each of many nodes (run with `--ignored`; `SHOAL_SCALE_NODES` sets the count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a scale check"]
async fn many_nodes_with_one_pod_each() {
    let n: u32 = std::env::var("SHOAL_SCALE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let api = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
    let client = kube::Client::new(api.router(), "default");
    let pool = SimulatedPool::new(client.clone());
    let t0 = std::time::Instant::now();
    pool.ensure_nodes(n).await.unwrap();
    eprintln!("{n} nodes created in {:?}", t0.elapsed());
    tokio::spawn(pool.run());
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    loop {
        let list = nodes.list(&Default::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|n| n.status.as_ref().and_then(|s| s.addresses.as_ref()).is_some())
            .count();
        if ready == n as usize {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "{ready}/{n} nodes up");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{n} nodes up {:?} after the first was created", t0.elapsed());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let t1 = std::time::Instant::now();
    futures::stream::iter(1..=n)
        .for_each_concurrent(32, |i| {
            let pods = pods.clone();
            async move {
                pods.create(
                    &PostParams::default(),
                    &pod(&format!("p{i}"), &format!("node{i}"), json!({})),
                )
                .await
                .unwrap();
            }
        })
        .await;
    eprintln!("{n} pods created in {:?}", t1.elapsed());
    loop {
        let list = pods.list(&Default::default()).await.unwrap();
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if running == n as usize {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(600), "{running}/{n} running");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{n} pods running {:?} after the first was created", t1.elapsed());
}
