//! The storage layout: objects sit under upstream's etcd keys, and a store written with the
//! earlier layout (`/registry/<group or core>/<plural>/...`) is moved to it at start-up.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::call;
use serde_json::{Value, json};
use shoal_apiserver::ApiServer;
use shoal_store::{MemoryStore, Store};

fn bytes(v: Value) -> Bytes {
    Bytes::from(v.to_string())
}

#[tokio::test]
async fn a_store_of_the_earlier_layout_is_moved_to_upstream_keys() {
    let store = Arc::new(MemoryStore::new());
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": "u1"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u2"}});
    store
        .create("/registry/apps/daemonsets/default/agent", bytes(ds))
        .await
        .unwrap();
    store.create("/registry/core/nodes/n1", bytes(node)).await.unwrap();
    // A move cut short by a crash: the new key exists, the old one too.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
    store
        .create("/registry/core/configmaps/default/c", bytes(cm.clone()))
        .await
        .unwrap();
    store.create("/registry/configmaps/default/c", bytes(cm)).await.unwrap();

    let api = ApiServer::new(store.clone()).await.unwrap();
    for old in [
        "/registry/apps/daemonsets/default/agent",
        "/registry/core/nodes/n1",
        "/registry/core/configmaps/default/c",
    ] {
        assert_eq!(store.get(old).await.unwrap(), None, "{old} moved");
    }
    for new in [
        "/registry/daemonsets/default/agent",
        "/registry/minions/n1",
        "/registry/configmaps/default/c",
    ] {
        assert!(store.get(new).await.unwrap().is_some(), "{new} present");
    }
    let (code, obj) = call(&api, "GET", "/apis/apps/v1/namespaces/default/daemonsets/agent", None).await;
    assert_eq!((code, obj["metadata"]["uid"].as_str()), (200, Some("u1")), "{obj}");
    let (code, obj) = call(&api, "GET", "/api/v1/nodes/n1", None).await;
    assert_eq!((code, obj["metadata"]["uid"].as_str()), (200, Some("u2")), "{obj}");
    let (code, list) = call(&api, "GET", "/api/v1/namespaces/default/configmaps", None).await;
    assert_eq!((code, list["items"].as_array().map(Vec::len)), (200, Some(1)), "{list}");

    // New objects go to upstream's keys.
    let (_, ns) = call(&api, "GET", "/api/v1/namespaces/kube-system", None).await;
    assert_eq!(ns["metadata"]["name"], "kube-system");
    assert!(store.get("/registry/namespaces/kube-system").await.unwrap().is_some());
}
