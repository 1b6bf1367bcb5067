//! Store compaction through the API server: a list at a compacted revision is 410 Gone with
//! upstream's reason, the latest state is intact, and newer revisions still answer.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use serde_json::{Value, json};
use shoal_apiserver::ApiServer;
use tower::ServiceExt;

async fn call(api: &Arc<ApiServer>, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
    let resp = api.router().oneshot(req.body(body).unwrap()).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

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
