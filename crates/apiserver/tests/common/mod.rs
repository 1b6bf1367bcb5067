//! What the API server's integration tests share: one request through the in-process router.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use serde_json::Value;
use shoal_apiserver::ApiServer;
use tower::ServiceExt;

/// `method uri` with a JSON `body`, as the admin; the status code and the body as JSON
/// (`Null` when it is not JSON).
pub async fn call(api: &Arc<ApiServer>, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
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
