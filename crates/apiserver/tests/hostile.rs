//! Hostile and unlucky requests against the API server in-process: forged continue tokens,
//! huge grace periods, DeleteOptions in the body, watches from the future, bodies with
//! duplicate fields or in YAML, bad escapes in paths. Each was a hole once; each test fails
//! without its fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine;
use http::Request;
use proptest::prelude::*;
use serde_json::{Value, json};
use shoal_apiserver::ApiServer;
use tower::ServiceExt;

struct Reply {
    code: u16,
    body: Value,
    headers: http::HeaderMap,
}

async fn send(api: &Arc<ApiServer>, method: &str, uri: &str, ct: &str, body: Vec<u8>) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let resp = api.router().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply {
        code,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    }
}

async fn call(api: &Arc<ApiServer>, method: &str, uri: &str, body: Option<Value>) -> Reply {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    send(api, method, uri, "application/json", bytes).await
}

async fn server() -> Arc<ApiServer> {
    ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap()
}

fn forge(start: &str, rv: i64) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{}/{}",
                i["kind"].as_str().unwrap_or("?"),
                i["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[tokio::test]
async fn a_forged_continue_token_never_lists_another_collection() {
    let api = server().await;
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "top-secret"}, "data": {"k": "c2VjcmV0"}});
    assert_eq!(
        call(&api, "POST", "/api/v1/namespaces/default/secrets", Some(secret))
            .await
            .code,
        201
    );
    for i in 0..3 {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa{i}")}});
        assert_eq!(
            call(&api, "POST", "/api/v1/namespaces/default/serviceaccounts", Some(sa))
                .await
                .code,
            201
        );
    }
    let rv = api.revision();
    for start in [
        "/registry/secrets/",
        "/registry/secrets/default/",
        "/registry/",
        "../secrets/default/",
        "../../core/secrets/default/top-secret",
        "default/../../secrets/default/",
        "\u{0}",
    ] {
        for ns in ["", "namespaces/default/"] {
            let uri = format!("/api/v1/{ns}serviceaccounts?limit=500&continue={}", forge(start, rv));
            let r = call(&api, "GET", &uri, None).await;
            assert!(r.code == 200 || r.code == 400, "{start:?}: {}", r.code);
            let got = names(&r.body);
            assert!(
                got.iter()
                    .all(|n| n.starts_with("ServiceAccount/") || n.starts_with("?/sa")),
                "{start:?} listed {got:?}"
            );
            assert!(!r.body.to_string().contains("c2VjcmV0"), "{start:?} leaked a Secret");
        }
    }
    // An honest token still pages.
    let first = call(&api, "GET", "/api/v1/namespaces/default/serviceaccounts?limit=1", None).await;
    let token = first.body["metadata"]["continue"].as_str().unwrap().to_string();
    let next = call(
        &api,
        "GET",
        &format!("/api/v1/namespaces/default/serviceaccounts?limit=1&continue={token}"),
        None,
    )
    .await;
    assert_eq!(next.code, 200);
    assert_eq!(next.body["items"].as_array().unwrap().len(), 1);
    assert_ne!(
        next.body["items"][0]["metadata"]["name"],
        first.body["items"][0]["metadata"]["name"]
    );
}

fn pod(name: &str, grace: i64) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "generation": 1},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": grace,
                 "containers": [{"name": "c", "image": "busybox"}]}})
}

#[tokio::test]
async fn huge_grace_periods_delete_without_a_panic() {
    let api = server().await;
    let pods = "/api/v1/namespaces/default/pods";
    for (i, (spec_grace, request)) in [
        (i64::MAX, None),
        (9_223_372_036_854_775, None),
        (30, Some(i64::MAX)),
        (30, Some(400_000_000_000)),
        (30, Some(-5)),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("p{i}");
        assert_eq!(call(&api, "POST", pods, Some(pod(&name, spec_grace))).await.code, 201);
        let uri = match request {
            Some(g) => format!("{pods}/{name}?gracePeriodSeconds={g}"),
            None => format!("{pods}/{name}"),
        };
        let r = call(&api, "DELETE", &uri, None).await;
        assert_eq!(r.code, 202, "{name}: {}", r.body);
        let deadline = r.body["metadata"]["deletionTimestamp"].as_str().unwrap();
        assert!(deadline.parse::<jiff::Timestamp>().is_ok(), "{deadline}");
        let grace = r.body["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap();
        assert!(grace >= 1, "negative grace periods are 1 s, as upstream: {grace}");
        // A second delete may shorten it.
        let r = call(&api, "DELETE", &format!("{pods}/{name}?gracePeriodSeconds=0"), None).await;
        assert!(r.code == 200 || r.code == 202, "{}", r.body);
    }
    assert_eq!(call(&api, "GET", "/readyz", None).await.code, 200);
}

#[tokio::test]
async fn delete_options_in_the_body_are_honoured() {
    let api = server().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}});
    assert_eq!(call(&api, "POST", cms, Some(cm)).await.code, 201);
    // As kubectl --dry-run=server and client-go send it.
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]});
    let r = call(&api, "DELETE", &format!("{cms}/keep"), Some(opts)).await;
    assert_eq!(r.code, 200);
    assert_eq!(
        call(&api, "GET", &format!("{cms}/keep"), None).await.code,
        200,
        "a dry run deleted"
    );
    // Preconditions in the body.
    let opts = json!({"preconditions": {"uid": "not-the-uid"}});
    let r = call(&api, "DELETE", &format!("{cms}/keep"), Some(opts)).await;
    assert_eq!(r.code, 409, "{}", r.body);
    // Invalid options change nothing.
    let opts = json!({"dryRun": ["Everything"]});
    let r = call(&api, "DELETE", &format!("{cms}/keep"), Some(opts)).await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(r.body["details"]["causes"][0]["field"], "dryRun");
    let opts = json!({"propagationPolicy": "Orphan", "orphanDependents": true});
    assert_eq!(call(&api, "DELETE", &format!("{cms}/keep"), Some(opts)).await.code, 422);
    // Foreground in the body: the finalizer shows the policy was read.
    let before = call(&api, "GET", &format!("{cms}/keep"), None).await;
    let opts = json!({"propagationPolicy": "Foreground"});
    let r = call(&api, "DELETE", &format!("{cms}/keep"), Some(opts)).await;
    assert_eq!(r.code, 202);
    assert_eq!(r.body["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert_ne!(
        r.body["metadata"]["resourceVersion"],
        before.body["metadata"]["resourceVersion"]
    );
    // A collection delete with a dry run in the body deletes nothing.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}});
    assert_eq!(call(&api, "POST", cms, Some(cm)).await.code, 201);
    let r = call(&api, "DELETE", cms, Some(json!({"dryRun": ["All"]}))).await;
    assert_eq!(r.code, 200);
    assert_eq!(call(&api, "GET", &format!("{cms}/other"), None).await.code, 200);
}

#[tokio::test]
async fn delete_answers_with_the_deletions_resource_version() {
    let api = server().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}});
    let created = call(&api, "POST", cms, Some(cm)).await;
    let r = call(&api, "DELETE", &format!("{cms}/gone"), None).await;
    assert_eq!(r.code, 200);
    let rv: i64 = r.body["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let before: i64 = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > before, "{rv} after {before}");
    assert_eq!(rv, api.revision());
}

#[tokio::test]
async fn a_watch_from_far_in_the_future_is_refused_with_504() {
    let api = server().await;
    let future = api.revision() + 1_000_000;
    let started = Instant::now();
    let r = call(
        &api,
        "GET",
        &format!("/api/v1/pods?watch=true&resourceVersion={future}"),
        None,
    )
    .await;
    assert_eq!(r.code, 504, "{}", r.body);
    assert_eq!(r.body["reason"], "Timeout");
    assert_eq!(r.body["details"]["causes"][0]["reason"], "ResourceVersionTooLarge");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Timeout: Too large resource version")
    );
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited for the cache first"
    );
}

#[tokio::test]
async fn duplicate_fields_are_refused_under_strict_and_warned_of_otherwise() {
    let api = server().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"},"data":{"k":"1","k":"2"},"bogus":1}"#;
    let r = send(
        &api,
        "POST",
        &format!("{cms}?fieldValidation=Strict"),
        "application/json",
        body.to_vec(),
    )
    .await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"metadata.name\", duplicate field \"data.k\", unknown field \"bogus\""
    );
    assert_eq!(
        call(&api, "GET", &format!("{cms}/b"), None).await.code,
        404,
        "nothing was created"
    );
    let r = send(&api, "POST", cms, "application/json", body.to_vec()).await;
    assert_eq!(r.code, 201);
    assert_eq!(r.body["metadata"]["name"], "b", "the last value wins, as in Go");
    let warnings: Vec<_> = r
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("duplicate field \\\"metadata.name\\\"")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn yaml_bodies_are_accepted() {
    let api = server().await;
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n  labels:\n    tier: web\ndata:\n  answer: \"42\"\n";
    let r = send(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        yaml.to_vec(),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["data"]["answer"], "42");
    let r = send(
        &api,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "text/csv",
        b"a,b".to_vec(),
    )
    .await;
    assert_eq!(r.code, 415);
    assert!(r.body["message"].as_str().unwrap().contains("application/yaml"));
}

#[tokio::test]
async fn bad_escapes_in_paths_are_a_400() {
    let api = server().await;
    for path in [
        "/api/v1/namespaces/%zz/pods",
        "/api/v1/namespaces/default/pods/%",
        "/api/v1/namespaces/%ff/pods",
    ] {
        let r = call(&api, "GET", path, None).await;
        assert_eq!(r.code, 400, "{path}: {}", r.body);
        assert_eq!(r.body["kind"], "Status");
    }
    let r = call(&api, "GET", "/api/v1/namespaces/kube%2Dsystem/pods", None).await;
    assert_eq!(r.code, 200, "a valid escape is decoded");
}

proptest! {
    /// Whatever the token says, a list stays in its collection.
    #[test]
    fn continue_tokens_of_any_content_stay_in_their_collection(start in any::<String>(), rv in any::<i64>(), junk in "[A-Za-z0-9_=+/-]{0,60}") {
        let prefix = "/registry/pods/default/";
        match shoal_apiserver::continuation::decode(&forge(&start, rv), prefix) {
            Ok((r, key)) => {
                prop_assert!(r > 0);
                prop_assert!(key.starts_with(prefix) && key.as_str() < shoal_store::prefix_end(prefix).as_str(), "{key:?}");
                prop_assert!(!key[prefix.len() - 1..].contains("/../") && !key[prefix.len() - 1..].contains("/./"), "{key:?}");
            }
            Err(e) => prop_assert_eq!(e.code, 400),
        }
        if let Err(e) = shoal_apiserver::continuation::decode(&junk, prefix) {
            prop_assert_eq!(e.code, 400);
        }
    }

}

proptest! {
    // Each case starts a server: a quarter of the cases the pure properties run.
    #![proptest_config(ProptestConfig::with_cases(ProptestConfig::default().cases / 4))]

    /// Any grace period, in the query or the body, on any pod: an answer, never a panic.
    #[test]
    fn deletes_with_any_grace_period_answer(spec_grace in any::<i64>(), request in any::<i64>(), in_body in any::<bool>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let api = server().await;
            let pods = "/api/v1/namespaces/default/pods";
            let created = call(&api, "POST", pods, Some(pod("p", spec_grace))).await;
            assert!(created.code == 201 || created.code == 422, "{}", created.body);
            if created.code != 201 {
                return;
            }
            let r = if in_body {
                call(&api, "DELETE", &format!("{pods}/p"), Some(json!({"gracePeriodSeconds": request}))).await
            } else {
                call(&api, "DELETE", &format!("{pods}/p?gracePeriodSeconds={request}"), None).await
            };
            assert!(r.code == 200 || r.code == 202, "{}", r.body);
        });
    }
}

/// A pod deleted while the scheduler binds it: the binding is a 404 (or a 409 when the
/// deletion was seen first), never a 500. The bind read the pod, then its write found the
/// key gone, and that answered "Internal error: key not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_pod_deleted_meanwhile_is_not_found_not_an_internal_error() {
    let api = server().await;
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..300 {
        let name = format!("p{i}");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let created = call(&api, "POST", "/api/v1/namespaces/default/pods", Some(pod)).await;
        assert_eq!(created.code, 201, "{}", created.body);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                             "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
        let (a, b) = (api.clone(), api.clone());
        let uri = format!("/api/v1/namespaces/default/pods/{name}");
        let del_uri = format!("{uri}?gracePeriodSeconds=0");
        let bind = tokio::spawn(async move { call(&a, "POST", &format!("{uri}/binding"), Some(binding)).await });
        let delete = tokio::spawn(async move { call(&b, "DELETE", &del_uri, None).await });
        let (bound, deleted) = (bind.await.unwrap(), delete.await.unwrap());
        assert!(deleted.code == 200, "{}", deleted.body);
        assert!(matches!(bound.code, 201 | 404 | 409), "{} {}", bound.code, bound.body);
        *codes.entry(bound.code).or_insert(0) += 1;
    }
    eprintln!("binding answers while deleting: {codes:?}");
}
