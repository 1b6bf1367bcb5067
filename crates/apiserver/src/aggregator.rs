//! The aggregation layer: an APIService (apiregistration.k8s.io/v1) with a `service`
//! reference hands its group-version to another API server, as kube-apiserver's aggregator
//! does.
//!
//! - Requests under `/apis/<group>/<version>` are authorized here, then proxied over HTTPS to
//!   a ready endpoint of the Service. The backend is trusted by the APIService's `caBundle`,
//!   or not checked with `insecureSkipTLSVerify`. The user goes along in upstream's
//!   front-proxy headers (`X-Remote-User`, `X-Remote-Group`, `X-Remote-Extra-*`), and the
//!   client's credential does not.
//! - The supervised `aggregator` component checks each such APIService when it
//!   changes and every few seconds. It writes the `Available` condition with upstream's
//!   reasons (`Passed`, `ServiceNotFound`, `MissingEndpoints`, `FailedDiscoveryCheck`), and it
//!   merges the backend's resources into discovery, so `kubectl api-resources` and
//!   `kubectl get` find them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use shoal_api::catalogue;

use crate::status::{ApiError, ApiResult};
use crate::tls::Trust;
use crate::{ApiServer, keys, nodeauth};

/// How often available APIServices are checked again.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long a discovery check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of a backend's discovery document read.
const MAX_DISCOVERY_BYTES: usize = 4 << 20;

/// Where an APIService's group-version is served.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    group: String,
    version: String,
    namespace: String,
    service: String,
    port: u16,
    ca_bundle: Vec<u8>,
    insecure: bool,
}

impl Backend {
    /// The backend of an APIService object (`None` for a local one, served here).
    fn of(api_service: &Value) -> Option<Backend> {
        let spec = &api_service["spec"];
        let service = spec.get("service").filter(|s| s.is_object())?;
        use base64::Engine as _;
        Some(Backend {
            group: spec["group"].as_str().unwrap_or_default().to_string(),
            version: spec["version"].as_str().unwrap_or_default().to_string(),
            namespace: service["namespace"].as_str().unwrap_or_default().to_string(),
            service: service["name"].as_str().unwrap_or_default().to_string(),
            port: service["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(443),
            ca_bundle: spec["caBundle"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default(),
            insecure: spec["insecureSkipTLSVerify"] == true,
        })
    }

    fn server_name(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }
}

/// True for a path read the same by any server: no percent-encoding, and no empty, `.` or
/// `..` segment.
fn plain_path(path: &str) -> bool {
    !path.contains('%')
        && path
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .all(|seg| !matches!(seg, "" | "." | ".."))
}

impl ApiServer {
    /// The backend serving `path`, when it is under a group-version an APIService hands to
    /// another server.
    pub(crate) fn backend_for(&self, path: &str) -> Option<Backend> {
        let mut parts = path.strip_prefix("/apis/")?.split('/');
        let (group, version) = (parts.next()?, parts.next()?);
        if group.is_empty() || version.is_empty() {
            return None;
        }
        // What this server serves stays here, whatever an APIService says.
        if catalogue::all()
            .iter()
            .any(|r| r.group == group && r.version == version)
        {
            return None;
        }
        let res = catalogue::find("apiregistration.k8s.io", "v1", "apiservices")?;
        let entry = self
            .cache
            .get(&keys::object(res, None, &format!("{version}.{group}")))?;
        Backend::of(&entry.obj())
    }

    /// Opens an HTTP/1.1 connection to a ready endpoint of `b`'s Service.
    async fn connect(&self, b: &Backend) -> Result<hyper::client::conn::http1::SendRequest<Body>, String> {
        let addr = self
            .service_endpoint(&b.namespace, &b.service, b.port)
            .map_err(|e| e.to_string())?;
        let client = self.node_auth().and_then(|a| a.front_proxy_client());
        let trust = match b.insecure {
            true => Trust::Anyone,
            false => Trust::Bundle(&b.ca_bundle),
        };
        let cfg = crate::tls::client_config(trust, client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))?;
        crate::tls::connect_http1(addr, &b.server_name(), cfg).await
    }

    /// Proxies a request for an aggregated group-version to its backend, as the user who
    /// sent it (already authorized here).
    pub(crate) async fn proxy_aggregated(
        &self,
        b: &Backend,
        parts: http::request::Parts,
        body: Body,
    ) -> ApiResult<Response> {
        let unavailable = |e: &str| {
            ApiError::unavailable(format!(
                "the server is currently unable to handle the request ({}/{}: {e})",
                b.group, b.version
            ))
        };
        // The backend must see the path RBAC saw here: no encoding or dot segment that it
        // could read as another resource.
        if !plain_path(parts.uri.path()) {
            return Err(ApiError::bad_request(format!(
                "{}: a path to an aggregated API may not hold percent-encoded characters, or empty, \".\" or \"..\" segments",
                parts.uri.path()
            )));
        }
        let mut sender = self.connect(b).await.map_err(|e| unavailable(&e))?;
        let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = Request::builder()
            .method(parts.method.clone())
            .uri(path_and_query)
            .body(body)
            .map_err(|e| unavailable(&e.to_string()))?;
        let headers = req.headers_mut();
        for name in [
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::USER_AGENT,
            header::ACCEPT_ENCODING,
        ] {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        if let Ok(host) = HeaderValue::from_str(&format!("{}:{}", b.server_name(), b.port)) {
            headers.insert(header::HOST, host);
        }
        let who = parts
            .extensions
            .get::<nodeauth::Identity>()
            .cloned()
            .unwrap_or(nodeauth::Identity::Admin);
        let (user, groups) = crate::review::name_and_groups(&who);
        if let Ok(v) = HeaderValue::from_str(&user) {
            headers.insert("X-Remote-User", v);
        }
        for g in groups {
            if let Ok(v) = HeaderValue::from_str(&g) {
                headers.append("X-Remote-Group", v);
            }
        }
        if let nodeauth::Identity::User(u) = &who {
            for (k, values) in &u.extra {
                for v in values {
                    if let (Ok(name), Ok(v)) = (
                        http::HeaderName::from_bytes(format!("X-Remote-Extra-{k}").as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        headers.append(name, v);
                    }
                }
            }
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(Body::new(body));
        *out.status_mut() = parts.status;
        for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
            if let Some(v) = parts.headers.get(&name) {
                out.headers_mut().insert(name, v.clone());
            }
        }
        Ok(out)
    }

    /// Checks an aggregated APIService: its Service, an endpoint, and its discovery document.
    /// Returns the condition's (status, reason, message) and, when available, the resources.
    async fn check_backend(&self, b: &Backend) -> (bool, &'static str, String, Option<Value>) {
        let services = self.all_of("", "services", Some(&b.namespace));
        let (ns, name) = (&b.namespace, &b.service);
        let Some(service) = services.iter().find(|s| s["metadata"]["name"] == name.as_str()) else {
            return (
                false,
                "ServiceNotFound",
                format!("service/{name} in {ns:?} is not present"),
                None,
            );
        };
        let Some(service_port) = service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_u64() == Some(u64::from(b.port)))
        else {
            return (
                false,
                "ServicePortError",
                format!("service/{name} in {ns:?} is not listening on port {}", b.port),
                None,
            );
        };
        if self.service_endpoint(ns, name, b.port).is_err() {
            let port_name = service_port["name"].as_str().unwrap_or_default();
            return (
                false,
                "MissingEndpoints",
                format!("endpoints for service/{name} in {ns:?} have no addresses with port name {port_name:?}"),
                None,
            );
        }
        let url = format!("https://{}:{}/apis/{}/{}", b.server_name(), b.port, b.group, b.version);
        let fetched = tokio::time::timeout(CHECK_TIMEOUT, async {
            let mut sender = self.connect(b).await?;
            let req = Request::get(format!("/apis/{}/{}", b.group, b.version))
                .header(header::ACCEPT, "application/json")
                .header(header::HOST, format!("{}:{}", b.server_name(), b.port))
                .header("X-Remote-User", "system:kube-aggregator")
                .header("X-Remote-Group", "system:masters")
                .body(Body::empty())
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_DISCOVERY_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("bad status from {url}: {}", status.as_u16()));
            }
            serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("context deadline exceeded".into()));
        match fetched {
            Ok(list) if list["resources"].is_array() => (true, "Passed", "all checks passed".into(), Some(list)),
            Ok(_) => (
                false,
                "FailedDiscoveryCheck",
                format!("failing or missing response from {url}: not an APIResourceList"),
                None,
            ),
            Err(e) => (
                false,
                "FailedDiscoveryCheck",
                format!("failing or missing response from {url}: {e}"),
                None,
            ),
        }
    }

    /// Checks every aggregated APIService, writes its Available condition and publishes the
    /// resources of the available ones to discovery.
    async fn check_api_services(&self) {
        self.publish_authentication().await;
        let Some(res) = catalogue::find("apiregistration.k8s.io", "v1", "apiservices") else {
            return;
        };
        let mut remote = Vec::new();
        for svc in self.all_of("apiregistration.k8s.io", "apiservices", None) {
            let Some(b) = Backend::of(&svc) else { continue };
            let (ok, reason, message, list) = self.check_backend(&b).await;
            if let Some(list) = list {
                remote.push(crate::discovery::RemoteVersion {
                    group: b.group.clone(),
                    version: b.version.clone(),
                    resources: list["resources"].clone(),
                });
            }
            let before = svc["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Available")
                .cloned()
                .unwrap_or_default();
            let status = if ok { "True" } else { "False" };
            if before["status"] == status && before["reason"] == reason && before["message"] == message.as_str() {
                continue;
            }
            let mut updated = svc.clone();
            updated["status"] = json!({"conditions": [{
                "type": "Available", "status": status, "reason": reason, "message": message,
                "lastTransitionTime": if before["status"] == status { before["lastTransitionTime"].clone() } else { json!(shoal_api::time::now_rfc3339()) },
            }]});
            let t = crate::request::Target {
                res,
                namespace: None,
                name: svc["metadata"]["name"].as_str().map(str::to_string),
                subresource: Some("status".into()),
            };
            if let Err(e) = self.update(&t, updated, &crate::rest::WriteOptions::default()).await {
                tracing::debug!(apiservice = ?t.name, error = %e.message, "apiservice status not written");
            }
        }
        crate::discovery::set_remote(remote);
    }

    /// Publishes how extension API servers authenticate the front proxy, as upstream's
    /// `extension-apiserver-authentication` ConfigMap in kube-system.
    async fn publish_authentication(&self) {
        let Some(auth) = self.node_auth() else { return };
        let Some(res) = catalogue::find("", "v1", "configmaps") else {
            return;
        };
        let ca = auth.ca_pem().to_string();
        let data = json!({
            "client-ca-file": ca,
            "requestheader-client-ca-file": ca,
            "requestheader-allowed-names": json!([nodeauth::FRONT_PROXY_CLIENT]).to_string(),
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        });
        let name = "extension-apiserver-authentication";
        let current = self.cache.get(&keys::object(res, Some("kube-system"), name));
        if current.as_ref().is_some_and(|e| e.obj()["data"] == data) {
            return;
        }
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "kube-system"}, "data": data});
        let t = crate::request::Target {
            res,
            namespace: Some("kube-system".into()),
            name: Some(name.into()),
            subresource: None,
        };
        let opts = crate::rest::WriteOptions {
            manager: Some("kube-apiserver".into()),
            ..Default::default()
        };
        let written = match current {
            Some(e) => {
                obj["metadata"]["resourceVersion"] = json!(e.mod_revision.to_string());
                self.update(&t, obj, &opts).await.map(|_| ())
            }
            None => self.create(&t, obj, &opts).await.map(|_| ()),
        };
        if let Err(e) = written {
            tracing::debug!(error = %e.message, "extension-apiserver-authentication not written");
        }
    }

    /// Follows the APIServices until the process ends (a supervised component).
    pub(crate) async fn run_api_service_availability(self: Arc<Self>) {
        let Some(res) = catalogue::find("apiregistration.k8s.io", "v1", "apiservices") else {
            return;
        };
        let prefix = keys::collection(res, None);
        let (_, mut sub) = self.cache.subscribe_with_snapshot(&prefix);
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.check_api_services().await,
                ev = sub.live.recv() => match ev {
                    // Its own status writes come back as events: only spec changes count.
                    Ok(ev) if ev.entry.key.starts_with(&prefix) => {
                        let spec_changed = ev.prev.as_ref().is_none_or(|p| p.obj()["spec"] != ev.entry.obj()["spec"]);
                        if spec_changed {
                            self.check_api_services().await;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.check_api_services().await,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_are_proxied() {
        assert!(plain_path("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods"));
        assert!(plain_path("/apis/metrics.k8s.io/v1beta1/nodes/"));
        for tricky in [
            "/apis/m.k8s.io/v1/namespaces/mine/pods%2F..%2F..%2Fsecrets",
            "/apis/m.k8s.io/v1/namespaces/mine/../victim/pods",
            "/apis/m.k8s.io/v1//pods",
            "/apis/m.k8s.io/v1/./pods",
        ] {
            assert!(!plain_path(tricky), "{tricky}");
        }
    }
}
