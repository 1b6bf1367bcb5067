//! Two API servers on one store, as several `shoal server`s on one etcd: each with its own
//! watch cache, both allocating Service addresses and ports at the same time.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::call;
use serde_json::json;
use shoal_apiserver::ApiServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_sharing_a_store_never_hand_out_one_address_twice() {
    // A real etcd: its watch lags its writes by a few milliseconds, as between machines, so
    // servers that allocated from their caches alone would collide.
    let dir = tempfile::tempdir().unwrap();
    let etcd = shoal_store::LocalEtcd::start(dir.path(), 1).expect("starting etcd (Debian's etcd-server)");
    etcd.wait_ready(std::time::Duration::from_secs(30)).await.unwrap();
    let store = Arc::new(
        shoal_store::EtcdStore::connect(shoal_store::EtcdOptions::new(etcd.endpoints()))
            .await
            .unwrap(),
    );
    // 30 addresses: the kubernetes Service takes one, the other 29 are handed out below.
    let range = shoal_apiserver::alloc::parse_range("10.96.0.0/27").unwrap();
    let a = ApiServer::with_service_range(store.clone(), range).await.unwrap();
    let b = ApiServer::with_service_range(store.clone(), range).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..29 {
        let api = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("s{i}")},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
            call(&api, "POST", "/api/v1/namespaces/default/services", Some(svc)).await
        }));
    }
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for task in tasks {
        let (code, svc) = task.await.unwrap();
        assert_eq!(code, 201, "{svc}");
        assert!(
            ips.insert(svc["spec"]["clusterIP"].to_string()),
            "address handed out twice: {svc}"
        );
        assert!(
            ports.insert(svc["spec"]["ports"][0]["nodePort"].to_string()),
            "port handed out twice: {svc}"
        );
    }
    // The range is full now, whichever server is asked.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one-too-many"},
        "spec": {"ports": [{"port": 80}]}});
    let (code, status) = call(&b, "POST", "/api/v1/namespaces/default/services", Some(svc)).await;
    assert!(code >= 400, "{status}");
}

#[tokio::test]
async fn a_service_keeps_its_own_recent_allocation_on_update() {
    // Its node port is in the record of recent allocations, as its own, not another's.
    let api = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
    let path = "/api/v1/namespaces/default/services";
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    let (code, created) = call(&api, "POST", path, Some(svc)).await;
    assert_eq!(code, 201, "{created}");
    let mut again = created.clone();
    again["metadata"]["labels"] = json!({"updated": "yes"});
    let (code, updated) = call(&api, "PUT", &format!("{path}/web"), Some(again)).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(
        updated["spec"]["ports"][0]["nodePort"],
        created["spec"]["ports"][0]["nodePort"]
    );
    assert_eq!(updated["spec"]["clusterIP"], created["spec"]["clusterIP"]);
}
