//! A recording fake of the API for controller scenario tests, in the spirit of upstream's
//! fake clientset and `fakePodControl`: a real `kube::Client` whose requests are recorded
//! instead of sent. Creations answer with the object (named from `generateName` when asked,
//! with a fresh uid), patches and deletions with a minimal object, and a test may make any
//! request fail with a status of its choice. The controller under test reads its facts from
//! snapshots the test builds, so a lagging cache is simply a snapshot that was not updated.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The body, decoded (`Null` when empty).
    pub body: Value,
}

impl Call {
    /// The last path segment (the object's name, or a subresource).
    pub fn last(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

type Failer = dyn Fn(&Method, &str) -> Option<(u16, &'static str)> + Send + Sync;

/// The fake and its record; clones share both.
#[derive(Clone, Default)]
pub struct FakeApi {
    calls: Arc<Mutex<Vec<Call>>>,
    fail: Arc<Mutex<Option<Arc<Failer>>>>,
    serial: Arc<AtomicU64>,
    known: Arc<Mutex<HashMap<String, Value>>>,
}

impl FakeApi {
    /// A fake that records and accepts everything.
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A client whose every request goes to this fake.
    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// From now on, a request `fail` returns `Some((code, reason))` for is answered with that
    /// error (`None` lets it through).
    pub fn fail_when(&self, fail: impl Fn(&Method, &str) -> Option<(u16, &'static str)> + Send + Sync + 'static) {
        *self.fail.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(fail));
    }

    /// Lets every request through again.
    pub fn heal(&self) {
        *self.fail.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Requests with `method` whose path ends with `/suffix` (e.g. `pods`, `pods/p-1`,
    /// `daemonsets/ds/status`).
    pub fn calls_to(&self, method: &Method, suffix: &str) -> Vec<Call> {
        let end = format!("/{suffix}");
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.ends_with(&end))
            .collect()
    }

    /// Objects the fake knows by name: a patch of one answers with the object, the patch
    /// merged in (as the server would), instead of a minimal object.
    pub fn know(&self, objects: &[&Value]) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        for o in objects {
            if let Some(name) = o["metadata"]["name"].as_str() {
                known.insert(name.to_string(), (*o).clone());
            }
        }
    }

    /// Forgets the record.
    pub fn clear(&self) {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    async fn answer(&self, req: Request<kube::client::Body>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_string();
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).push(Call {
            method: parts.method.clone(),
            path: path.clone(),
            body: body.clone(),
        });
        let fail = self.fail.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some((code, reason)) = fail.and_then(|f| f(&parts.method, &path)) {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "message": format!("injected: {reason}"), "reason": reason, "code": code});
            return respond(code, &status);
        }
        let n = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        match parts.method {
            Method::POST => {
                let mut obj = body;
                if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
                    let prefix = obj["metadata"]["generateName"].as_str().unwrap_or("obj-").to_string();
                    obj["metadata"]["name"] = json!(format!("{prefix}{n:05}"));
                }
                obj["metadata"]["uid"] = json!(format!("uid-{n}"));
                obj["metadata"]["resourceVersion"] = json!(n.to_string());
                respond(201, &obj)
            }
            Method::DELETE => respond(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
            ),
            _ => {
                let known = self
                    .known
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&name)
                    .cloned();
                match known {
                    Some(mut obj) => {
                        if !body.is_null() {
                            merge(&mut obj, &body);
                        }
                        respond(200, &obj)
                    }
                    None if parts.method == Method::GET => {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "message": format!("{name:?} not found"), "reason": "NotFound", "code": 404});
                        respond(404, &status)
                    }
                    None => respond(
                        200,
                        &json!({"metadata": {"name": name, "uid": format!("uid-{n}"), "resourceVersion": n.to_string()},
                                "revision": 0}),
                    ),
                }
            }
        }
    }
}

/// A JSON merge patch (RFC 7386) of `patch` into `target`; list directives of strategic
/// patches are taken as plain values.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn respond(code: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};

    #[tokio::test]
    async fn the_fake_records_names_and_fails_on_demand() {
        let fake = FakeApi::new();
        let pods: Api<Pod> = Api::namespaced(fake.client(), "ns");
        let mut pod = Pod::default();
        pod.metadata.generate_name = Some("web-".into());
        let made = pods.create(&PostParams::default(), &pod).await.unwrap();
        assert!(made.metadata.name.unwrap().starts_with("web-"));
        fake.fail_when(|m, path| (m == Method::POST && path.ends_with("/pods")).then_some((403, "Forbidden")));
        let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
        assert!(matches!(&err, kube::Error::Api(s) if s.code == 403));
        let calls = fake.calls_to(&Method::POST, "pods");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].path, "/api/v1/namespaces/ns/pods");
        assert_eq!(calls[1].body["metadata"]["generateName"], "web-");
    }
}
