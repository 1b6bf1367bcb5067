//! Store compaction through the API server: a list at a compacted revision is 410 Gone with
//! upstream's reason, the latest state is intact, and newer revisions still answer.

mod common;

use std::sync::Arc;

use common::call;
use serde_json::json;
use shoal_apiserver::ApiServer;

#[tokio::test]
async fn lists_at_compacted_revisions_are_gone() {
    let api = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    let mut revs = Vec::new();
    for i in 0..3 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}});
        let (code, obj) = call(&api, "POST", cms, Some(cm)).await;
        assert_eq!(code, 201, "{obj}");
        revs.push(
            obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
    }
    // Before compaction the first revision is readable exactly.
    let old = format!("{cms}?resourceVersion={}&resourceVersionMatch=Exact", revs[0]);
    let (code, list) = call(&api, "GET", &old, None).await;
    assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 1));

    api.compact(revs[1]).await.unwrap();
    let (code, status) = call(&api, "GET", &old, None).await;
    assert_eq!(code, 410, "{status}");
    assert_eq!(status["reason"], "Expired");
    let newer = format!("{cms}?resourceVersion={}&resourceVersionMatch=Exact", revs[2]);
    let (code, list) = call(&api, "GET", &newer, None).await;
    assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 3));
    let (code, list) = call(&api, "GET", cms, None).await;
    assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 3));
    // Compacting again to an older revision changes nothing.
    api.compact(revs[0]).await.unwrap();
}

/// A store whose watches can be cut off, as a server's etcd watch is while etcd is out of
/// its reach, while other servers write and compact.
struct Cuttable {
    inner: Arc<shoal_store::MemoryStore>,
    open: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl shoal_store::Store for Cuttable {
    async fn get(&self, key: &str) -> shoal_store::Result<Option<shoal_store::KeyValue>> {
        self.inner.get(key).await
    }
    async fn range(
        &self,
        start: &str,
        end: &str,
        rev: i64,
        limit: usize,
    ) -> shoal_store::Result<shoal_store::RangeResult> {
        self.inner.range(start, end, rev, limit).await
    }
    async fn create(&self, key: &str, value: bytes::Bytes) -> shoal_store::Result<i64> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: bytes::Bytes, expected: i64) -> shoal_store::Result<i64> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: i64) -> shoal_store::Result<(i64, shoal_store::KeyValue)> {
        self.inner.delete(key, expected).await
    }
    fn watch(&self, prefix: &str, after: i64) -> shoal_store::Result<shoal_store::WatchStream> {
        use futures::StreamExt;
        if !self.open.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(shoal_store::Error::Unavailable("cut off".into()));
        }
        let stream = self.inner.watch(prefix, after)?;
        let cut = self.cut.clone();
        Ok(Box::pin(stream.take_until(async move { cut.notified().await })))
    }
    async fn compact(&self, revision: i64) -> shoal_store::Result<()> {
        self.inner.compact(revision).await
    }
    fn current_revision(&self) -> i64 {
        self.inner.current_revision()
    }
    fn compacted_revision(&self) -> i64 {
        self.inner.compacted_revision()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_missed_compacted_history_reloads_the_latest_state() {
    use shoal_store::Store;
    let inner = Arc::new(shoal_store::MemoryStore::new());
    let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cut = Arc::new(tokio::sync::Notify::new());
    let store = Cuttable {
        inner: inner.clone(),
        open: open.clone(),
        cut: cut.clone(),
    };
    let api = ApiServer::new(Arc::new(store)).await.unwrap();
    let cms = "/api/v1/namespaces/default/configmaps";
    for name in ["kept", "gone"] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": "1"}});
        assert_eq!(call(&api, "POST", cms, Some(cm)).await.0, 201);
    }
    let (_, before) = call(&api, "GET", cms, None).await;
    let old_rv = before["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    // Cut the cache off; another server changes things and compacts what this one missed.
    open.store(false, std::sync::atomic::Ordering::SeqCst);
    cut.notify_waiters();
    let key = |n: &str| format!("/registry/configmaps/default/{n}");
    let gone = inner.get(&key("gone")).await.unwrap().unwrap();
    inner.delete(&key("gone"), gone.mod_revision).await.unwrap();
    let kept = inner.get(&key("kept")).await.unwrap().unwrap();
    let changed = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kept", "namespace": "default", "uid": "u-kept"}, "data": {"v": "2"}});
    inner
        .update(&key("kept"), changed.to_string().into(), kept.mod_revision)
        .await
        .unwrap();
    let new = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "new", "namespace": "default", "uid": "u-new"}, "data": {"v": "1"}});
    inner.create(&key("new"), new.to_string().into()).await.unwrap();
    inner.compact(inner.current_revision()).await.unwrap();
    open.store(true, std::sync::atomic::Ordering::SeqCst);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, list) = call(&api, "GET", cms, None).await;
        let mut names: Vec<(String, String)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["metadata"]["name"] != "kube-root-ca.crt")
            .map(|i| {
                (
                    i["metadata"]["name"].as_str().unwrap().into(),
                    i["data"]["v"].as_str().unwrap().into(),
                )
            })
            .collect();
        names.sort();
        if names == [("kept".to_string(), "2".to_string()), ("new".into(), "1".into())] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache did not reload: {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A watch from before the reload must list again: one ERROR event, 410 Expired.
    let (code, event) = call(&api, "GET", &format!("{cms}?watch=1&resourceVersion={old_rv}"), None).await;
    assert_eq!(
        (code, &event["type"], &event["object"]["code"]),
        (200, &json!("ERROR"), &json!(410)),
        "{event}"
    );
}
