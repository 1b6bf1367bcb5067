//! The web console at `/ui/`: a page, its script and its style sheet, embedded in the binary
//! and served by the API server itself, and `shoal why` as JSON for it.
//!
//! The page holds no data of its own: it signs in with a bearer token and reads the API as
//! that user (LIST, then WATCH), so RBAC decides what it shows. The assets are public (they
//! carry nothing of the cluster); the "why" report is made from three reads done as the
//! caller, so it answers only what the caller could have read.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use shoal_apiserver::ApiServer;
use shoal_apiserver::nodeauth::Identity;
use shoal_apiserver::status::ApiError;
use tower::ServiceExt;

const INDEX: &str = include_str!("../ui/index.html");
const APP: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// Where the page is served.
pub const PATH: &str = "/ui/";
/// `shoal why` as JSON.
const WHY_ROUTE: &str = "/shoal/v1/why/namespaces/{namespace}/daemonsets/{name}";

/// The console's routes; everything else falls through to the API.
pub fn routes(api: Arc<ApiServer>) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent(PATH) }))
        .route(PATH, get(|| async { asset(INDEX, "text/html; charset=utf-8") }))
        .route(
            "/ui/app.js",
            get(|| async { asset(APP, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            WHY_ROUTE,
            get(why).fallback(|req: Request| async move {
                ApiError::method_not_allowed_path(req.method().as_str(), req.uri().path()).into_response()
            }),
        )
        .with_state(api)
}

/// An embedded asset, with headers that keep the page to its own origin: no inline script,
/// no framing, no referrer, no guessing of types.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[derive(serde::Deserialize)]
struct WhyQuery {
    node: Option<String>,
}

/// `GET /shoal/v1/why/namespaces/NS/daemonsets/NAME[?node=N]`: `shoal why` as JSON rows
/// (`node`, `shouldRun`, `pod`, `why`).
async fn why(
    State(api): State<Arc<ApiServer>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<WhyQuery>, QueryRejection>,
    req: Request,
) -> Response {
    // A path or query that does not decode is a 400 Status, as anywhere in the API.
    let (Path((namespace, name)), Query(q)) = match (path, query) {
        (Ok(p), Ok(q)) => (p, q),
        (Err(e), _) => return ApiError::bad_request(e.body_text()).into_response(),
        (_, Err(e)) => return ApiError::bad_request(e.body_text()).into_response(),
    };
    let check = |what: &str, value: &str, problems: Vec<String>| {
        (!problems.is_empty())
            .then(|| ApiError::bad_request(format!("invalid {what} {value:?}: {}", problems.join("; "))))
    };
    use shoal_api::validation::names::{is_dns1123_label, is_dns1123_subdomain};
    let bad = check("namespace", &namespace, is_dns1123_label(&namespace))
        .or_else(|| check("name", &name, is_dns1123_subdomain(&name)))
        .or_else(|| {
            q.node
                .as_deref()
                .and_then(|n| check("node", n, is_dns1123_subdomain(n)))
        });
    if let Some(e) = bad {
        return e.into_response();
    }
    let who = req.extensions().get::<Identity>().cloned();
    let read = |path: String| {
        let (api, who) = (api.clone(), who.clone());
        async move {
            let mut inner = Request::get(&path)
                .body(Body::empty())
                .expect("a GET with a checked path");
            if let Some(who) = who {
                inner.extensions_mut().insert(who);
            }
            let resp = api.router().oneshot(inner).await.unwrap_or_else(|e| match e {});
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status.is_success() {
                Ok(value)
            } else {
                // The API's own Status (403 names what the caller may not read).
                Err((status, value))
            }
        }
    };
    let [ds_path, nodes_path, pods_path] = crate::why::paths(&namespace, &name);
    let fetched = async {
        let ds = read(ds_path).await?;
        let nodes = read(nodes_path).await?;
        let pods = read(pods_path).await?;
        Ok::<_, (StatusCode, Value)>((ds, nodes, pods))
    };
    let (ds, nodes, pods) = match fetched.await {
        Ok(v) => v,
        Err((status, body)) => {
            return (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        }
    };
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    let rows = match crate::why::rows(&ds, &items(&nodes), &items(&pods), q.node.as_deref()) {
        Ok(rows) => rows,
        // The one refusal: a named node that does not exist.
        Err(_) => {
            let nodes = shoal_api::catalogue::find("", "v1", "nodes").expect("nodes are served");
            return ApiError::not_found(nodes, q.node.as_deref().unwrap_or_default()).into_response();
        }
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|[node, should, pod, why]| {
            json!({"node": node, "shouldRun": should == "yes", "pod": (pod != "-").then_some(pod), "why": why})
        })
        .collect();
    let body = json!({"daemonSet": {"namespace": namespace, "name": name}, "rows": rows});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
