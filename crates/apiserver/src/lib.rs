//! The Kubernetes-compatible API server.
//!
//! [`ApiServer`] owns the store and the watch cache and answers the Kubernetes REST API:
//! discovery, OpenAPI, the verbs on every resource in the catalogue, watch, patch and
//! Table output. [`ApiServer::router`] is the plain router (used in-process by controllers
//! through a kube `Client`); [`serve`] puts it behind HTTPS and bearer-token authentication.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use shoal_store::Store;

pub mod accounts;
mod admission;
mod aggregator;
pub mod alloc;
pub mod audit;
pub mod body;
mod bootstrap;
pub mod cache;
pub mod client;
pub mod conn;
pub mod continuation;
pub mod conversion;
pub mod crds;
pub mod delete;
pub mod discovery;
pub mod health;
pub mod keys;
pub mod managed;
pub mod metrics;
pub mod nodeauth;
pub mod nodeproxy;
pub mod output;
pub mod patch;
mod policies;
pub mod protobuf;
pub mod rbac;
pub mod request;
pub mod rest;
pub mod review;
pub mod satoken;
pub mod serve;
mod splice;
pub mod status;
pub mod strategy;
pub mod tls;
pub mod watch;
mod webhooks;

use cache::WatchCache;
use metrics::Metrics;
use request::{ApiPath, Params, Target};
use rest::WriteOptions;
use status::{ApiError, ApiResult};

pub use serve::{ServeConfig, serve};

/// Largest request body accepted (upstream's limit): 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The namespaces every cluster starts with.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The API server.
pub struct ApiServer {
    store: Arc<dyn Store>,
    cache: Arc<WatchCache>,
    metrics: Metrics,
    /// Held while a Service is created (cluster-IP and node-port allocation).
    service_allocation: tokio::sync::Mutex<()>,
    /// Serialises ResourceQuota admission (check and charge).
    quota_admission: tokio::sync::Mutex<()>,
    /// Node credentials, once nodes may join (see [`ApiServer::enable_node_join`]).
    node_auth: std::sync::OnceLock<Arc<nodeauth::NodeAuth>>,
    /// Bearer tokens of the admin (see [`ApiServer::set_admin_tokens`]).
    admin_tokens: std::sync::OnceLock<Vec<String>>,
    /// The ServiceAccount token issuer (see [`ApiServer::enable_service_account_tokens`]).
    accounts: std::sync::OnceLock<Arc<accounts::Accounts>>,
    /// Where in-process components' requests are audited (see [`ApiServer::enable_audit`]).
    audit: std::sync::OnceLock<Arc<audit::AuditLog>>,
    /// Roles, bindings and CustomResourceDefinitions as decoded at their revision, by store
    /// key (see [`ApiServer::decoded_once`]).
    decoded_memo: std::sync::Mutex<std::collections::HashMap<String, (shoal_store::Revision, Arc<Value>)>>,
    /// The rules RBAC grants, by user, groups and namespace, at an RBAC generation of the cache.
    granted_memo: std::sync::Mutex<GrantedMemo>,
    /// The admission webhooks, at an admission generation of the cache (see
    /// [`ApiServer::hooks`]).
    webhook_memo: std::sync::Mutex<Option<(u64, Arc<webhooks::Hooks>)>>,
    /// The admission policies and bindings, at an admission generation of the cache (see
    /// [`ApiServer::policies`]).
    policy_memo: std::sync::Mutex<Option<(u64, Arc<policies::Policies>)>>,
    /// Where Services' cluster IPs come from.
    service_range: alloc::ServiceRange,
    /// The supervised components of this process (readiness and `/metrics` report them).
    components: shoal_runtime::Components,
}

impl ApiServer {
    /// Starts an API server over `store`: loads the watch cache and creates the system
    /// namespaces if they are missing.
    pub async fn new(store: Arc<dyn Store>) -> Result<Arc<ApiServer>, shoal_store::Error> {
        Self::with_service_range(store, alloc::SERVICE_CIDR).await
    }

    /// [`ApiServer::new`] with Services' cluster IPs from `range` (the `kubernetes` Service
    /// takes its first address).
    pub async fn with_service_range(
        store: Arc<dyn Store>,
        range: alloc::ServiceRange,
    ) -> Result<Arc<ApiServer>, shoal_store::Error> {
        let metrics = Metrics::default();
        let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, metrics.clone()));
        let components = shoal_runtime::Components::new();
        keys::migrate(store.as_ref()).await?;
        let cache = WatchCache::start(store.clone(), keys::ROOT, &components).await?;
        let server = Arc::new(ApiServer {
            store,
            cache,
            metrics,
            service_allocation: Default::default(),
            quota_admission: Default::default(),
            node_auth: Default::default(),
            admin_tokens: Default::default(),
            accounts: Default::default(),
            audit: Default::default(),
            decoded_memo: Default::default(),
            granted_memo: Default::default(),
            webhook_memo: Default::default(),
            policy_memo: Default::default(),
            service_range: range,
            components,
        });
        server
            .bootstrap()
            .await
            .map_err(|e| shoal_store::Error::Backend(e.message))?;
        let registry = server.clone();
        server
            .components
            .spawn("crd-registry", move || registry.clone().run_crd_registry());
        let aggregator = server.clone();
        server
            .components
            .spawn("aggregator", move || aggregator.clone().run_api_service_availability());
        Ok(server)
    }

    async fn bootstrap(&self) -> ApiResult<()> {
        let nsres = shoal_api::catalogue::find("", "v1", "namespaces").expect("namespaces are served");
        for ns in SYSTEM_NAMESPACES {
            let t = Target {
                res: nsres,
                namespace: None,
                name: None,
                subresource: None,
            };
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(&t, obj, &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        // The `kubernetes` Service in `default`, at the first address of the service CIDR.
        let svcres = shoal_api::catalogue::find("", "v1", "services").expect("services are served");
        let t = Target {
            res: svcres,
            namespace: Some("default".into()),
            name: None,
            subresource: None,
        };
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": alloc::kubernetes_service_ip(self.service_range).to_string(), "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
        });
        if self
            .cache
            .get(&keys::object(svcres, Some("default"), "kubernetes"))
            .is_none()
        {
            match self.create(&t, svc, &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        self.bootstrap_policy().await
    }

    /// Creates the built-in PriorityClasses, the bootstrap RBAC policy and the local
    /// APIServices where missing
    /// (concurrently: the store commits them in a few batches).
    async fn bootstrap_policy(&self) -> ApiResult<()> {
        let objects = bootstrap::priority_classes()
            .into_iter()
            .map(|o| ("scheduling.k8s.io", "priorityclasses", o))
            .chain(
                bootstrap::rbac()
                    .into_iter()
                    .map(|(p, o)| ("rbac.authorization.k8s.io", p, o)),
            )
            .chain(
                bootstrap::local_api_services()
                    .into_iter()
                    .map(|o| ("apiregistration.k8s.io", "apiservices", o)),
            );
        let opts = WriteOptions {
            manager: Some("kube-apiserver".into()),
            ..Default::default()
        };
        let mut creates = Vec::new();
        for (group, plural, obj) in objects {
            let Some(res) = shoal_api::catalogue::find(group, "v1", plural) else {
                continue;
            };
            let namespace = obj["metadata"]["namespace"].as_str().map(str::to_string);
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            if self.cache.get(&keys::object(res, namespace.as_deref(), name)).is_some() {
                continue;
            }
            let t = Target {
                res,
                namespace,
                name: None,
                subresource: None,
            };
            let opts = &opts;
            creates.push(async move { self.create(&t, obj, opts).await });
        }
        for result in futures::future::join_all(creates).await {
            match result {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Lets node agents join with `auth`'s join secret, authenticate with node tokens, and
    /// be reached for logs and exec. Only the first call takes effect.
    pub fn enable_node_join(&self, auth: nodeauth::NodeAuth) {
        let _ = self.node_auth.set(Arc::new(auth));
    }

    /// Node credentials, if nodes may join.
    pub fn node_auth(&self) -> Option<Arc<nodeauth::NodeAuth>> {
        self.node_auth.get().cloned()
    }

    /// The admin's bearer tokens. Only the first call takes effect.
    pub fn set_admin_tokens(&self, tokens: Vec<String>) {
        let _ = self.admin_tokens.set(tokens);
    }

    /// Who a bearer token names: the admin, a node when nodes may join, or a
    /// ServiceAccount.
    pub fn authenticate(&self, token: &str) -> Option<nodeauth::Identity> {
        self.authenticate_server_credential(token)
            .or_else(|| self.authenticate_service_account(token, &[]).map(|(who, _)| who))
    }

    /// Who a credential of the server's own names: the admin's token or a node token.
    pub(crate) fn authenticate_server_credential(&self, token: &str) -> Option<nodeauth::Identity> {
        if token.is_empty() {
            return None;
        }
        if self
            .admin_tokens
            .get()
            .into_iter()
            .flatten()
            .any(|t| nodeauth::constant_time_eq(t.as_bytes(), token.as_bytes()))
        {
            return Some(nodeauth::Identity::Admin);
        }
        self.node_auth
            .get()?
            .verify_node_token(token)
            .map(nodeauth::Identity::Node)
    }

    /// The supervised components of this process: start long-lived tasks with
    /// [`shoal_runtime::Components::spawn`] on it so readiness and `/metrics` see them.
    pub fn components(&self) -> &shoal_runtime::Components {
        &self.components
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store revision the watch cache has reached.
    pub fn revision(&self) -> i64 {
        self.cache.revision()
    }

    /// Compacts the store every `interval` to the revision it had one interval earlier, as
    /// upstream's API server does every 5 minutes: history stays bounded, and a client at most
    /// one interval behind can still list or watch from where it was.
    pub async fn run_compactor(self: Arc<Self>, interval: std::time::Duration) {
        let mut previous = self.store.current_revision();
        loop {
            tokio::time::sleep(interval).await;
            let target = previous;
            previous = self.store.current_revision();
            if let Err(e) = self.compact(target).await {
                tracing::warn!(revision = target, error = %e, "compaction failed; will retry");
            }
        }
    }

    /// Compacts the store's history up to and including `revision` (no-op if already done).
    pub async fn compact(&self, revision: i64) -> Result<(), shoal_store::Error> {
        if revision <= self.store.compacted_revision() {
            return Ok(());
        }
        self.store.compact(revision).await?;
        tracing::debug!(revision, "compacted the store");
        Ok(())
    }

    /// The router with every API path, without authentication (in-process clients).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(dispatch).with_state(self.clone())
    }

    /// The router for an in-process component that acts as `who`: its requests are
    /// authorized as a remote client's with that identity would be.
    /// They are audited as remote clients' are, once [`ApiServer::enable_audit`] is called.
    pub fn router_as(self: &Arc<Self>, who: nodeauth::Identity) -> axum::Router {
        let server = self.clone();
        let audited = move |req: Request, next: axum::middleware::Next| {
            let server = server.clone();
            async move {
                let Some(log) = server.audit.get() else {
                    return next.run(req).await;
                };
                let watch = Params::parse(req.uri().query()).flag("watch");
                let pending = audit::Pending::of(&req, watch);
                let who = req.extensions().get::<nodeauth::Identity>().cloned();
                let (resp, notes) = audit::collecting(next.run(req)).await;
                let local = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
                pending.record(log, who.as_ref(), local, resp.status().as_u16(), &notes);
                resp
            }
        };
        self.router()
            .layer(axum::middleware::from_fn(audited))
            .layer(axum::Extension(who))
    }

    /// Audits the requests of in-process components (controllers, the scheduler, simulated
    /// nodes) in `log`, as `--audit-log` audits remote clients'.
    pub fn enable_audit(&self, log: Arc<audit::AuditLog>) {
        let _ = self.audit.set(log);
    }
}

async fn dispatch(State(server): State<Arc<ApiServer>>, req: Request) -> Response {
    let start = Instant::now();
    let verb = req.method().to_string();
    let path = req.uri().path().to_string();
    let decoded = request::decode_path(&path).unwrap_or_default();
    let resource = match request::parse_path(&decoded) {
        Ok(Some(ApiPath::Resource(t))) => match &t.subresource {
            Some(s) => format!("{}/{s}", t.res.plural),
            None => t.res.plural.to_string(),
        },
        _ => String::new(),
    };
    let resp = contain_panics(&server.metrics, &verb, &path, server.handle(req)).await;
    if !resource.is_empty() {
        server
            .metrics
            .request(&verb, &resource, resp.status().as_u16(), start.elapsed());
    }
    resp
}

/// Runs a request's handler. A panic in it answers that request with a 500 `Status` and is
/// counted and logged; it never takes the connection, the server or an in-process client
/// down with it.
async fn contain_panics(
    metrics: &Metrics,
    verb: &str,
    path: &str,
    handler: impl std::future::Future<Output = ApiResult<Response>>,
) -> Response {
    match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(handler)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(payload) => {
            metrics.request_panicked();
            tracing::error!(%verb, %path, "request handler panicked: {}", shoal_runtime::panic_message(&*payload));
            ApiError::internal("the server panicked while serving this request").into_response()
        }
    }
}

/// A write through another group's view of a resource (events.k8s.io's Events) first meets
/// that API's own validation, as upstream validates each API's requests by its rules; other
/// versions of one group share their stored version's.
fn view_rules(t: &Target, stored: &shoal_api::catalogue::Resource, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let view = t.res;
    if view.group == stored.group {
        return Ok(());
    }
    // The namespace of the path, where the body leaves it out (as the write will have it).
    let mut obj = obj.clone();
    if let (Some(ns), Some(meta)) = (&t.namespace, obj.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.entry("namespace").or_insert_with(|| json!(ns));
    }
    let errors = shoal_api::validation::validate(view.group, view.kind, &obj, old);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            view,
            obj["metadata"]["name"].as_str().unwrap_or_default(),
            &errors,
        ))
    }
}

/// The protobuf media type of the Swagger 2.0 document, as upstream names it in responses.
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The forms `/openapi/v2` is served in.
#[derive(Debug, PartialEq, Eq)]
enum OpenApiV2 {
    Json,
    Protobuf,
}

/// The form an `Accept` header asks `/openapi/v2` for: its first acceptable media range
/// (client-go sends the protobuf type alone, browsers and curl JSON or `*/*`); `None` if it
/// names none we serve.
fn openapi_v2_format(accept: Option<&str>) -> Option<OpenApiV2> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(OpenApiV2::Json);
    };
    let mut ranges: Vec<(f32, usize, OpenApiV2)> = Vec::new();
    for (i, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" => OpenApiV2::Protobuf,
            "application/json" | "application/*" | "*/*" => OpenApiV2::Json,
            _ => continue,
        };
        if q > 0.0 {
            ranges.push((q, i, format));
        }
    }
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().next().map(|(_, _, f)| f)
}

fn json_response(code: u16, body: impl Into<Bytes>, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn value_response(code: u16, v: &Value) -> Response {
    json_response(code, serde_json::to_vec(v).unwrap_or_default(), "application/json")
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

async fn read_body(body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large())
}

/// What a request asks, for authorization: a verb on a resource, or on a path outside the
/// API (discovery, `/version`, `/metrics`), as upstream's `RequestInfo` reads it.
pub(crate) fn request_attributes(method: &Method, path: &str, watch: bool) -> review::Attributes {
    match request::parse_path(path) {
        Ok(Some(ApiPath::Resource(t))) => review::Attributes::of_target(nodeauth::verb(method, &t, watch), &t, None),
        _ => other_resource_attributes(method, path, watch).unwrap_or_else(|| review::Attributes::NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
        }),
    }
}

/// The attributes of a resource request under a group this server does not serve itself
/// (an aggregated API, or one not served at all), read from the path alone as upstream's
/// `RequestInfo` reads any `/apis/<group>/<version>/...` path.
fn other_resource_attributes(method: &Method, path: &str, watch: bool) -> Option<review::Attributes> {
    let mut parts = path.strip_prefix("/apis/")?.trim_end_matches('/').split('/');
    let (group, _version) = (parts.next()?, parts.next()?);
    let mut rest: Vec<&str> = parts.collect();
    let mut namespace = "";
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        namespace = rest[1];
        rest.drain(..2);
    }
    let (resource, name, subresource) = match rest.as_slice() {
        [] => return None,
        [r] => (*r, "", ""),
        [r, n] => (*r, *n, ""),
        [r, n, s, ..] => (*r, *n, *s),
    };
    let verb = match (method.as_str(), name.is_empty()) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "list",
        ("GET" | "HEAD", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        (other, _) => {
            return Some(review::Attributes::NonResource {
                verb: other.to_ascii_lowercase(),
                path: path.to_string(),
            });
        }
    };
    Some(review::Attributes::Resource {
        verb: verb.to_string(),
        group: group.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// Decodes a request body (JSON, YAML or Kubernetes protobuf) into a JSON value.
fn parse_json(ct: Option<&str>, bytes: &[u8]) -> ApiResult<Value> {
    body::decode(ct, bytes).map(|b| b.value)
}

impl ApiServer {
    async fn handle(self: &Arc<Self>, req: Request) -> ApiResult<Response> {
        let (parts, body) = req.into_parts();
        let path = &request::decode_path(parts.uri.path())?;
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        let params = Params::parse(parts.uri.query()).with_user_agent(user_agent);
        if let Some(nodeauth::Identity::Admin) = parts.extensions.get::<nodeauth::Identity>() {
            audit::annotate(audit::DECISION, "allow");
        }
        if let Some(nodeauth::Identity::User(u)) = parts.extensions.get::<nodeauth::Identity>() {
            let attrs = request_attributes(&parts.method, path, params.flag("watch"));
            let (allowed, reason) = review::decide(&u.name, &u.groups, &attrs, self.as_ref());
            audit::annotate(audit::DECISION, if allowed { "allow" } else { "forbid" });
            if !reason.is_empty() {
                audit::annotate(audit::REASON, reason);
            }
            if !allowed {
                return Err(rbac::forbidden(&u.name, &attrs));
            }
        }
        match (parts.method.clone(), path.as_str()) {
            (Method::GET, "/livez") => return Ok(health::livez(&params)),
            (Method::GET, "/healthz" | "/readyz") => {
                let name = path.trim_start_matches('/');
                return Ok(health::report(name, &self.checks().await, &params));
            }
            (Method::GET, "/version" | "/version/") => return Ok(value_response(200, &discovery::version())),
            (Method::GET, "/.well-known/openid-configuration") => {
                let accounts = self.accounts().ok_or_else(ApiError::no_route)?;
                return Ok(value_response(200, &accounts.discovery()));
            }
            (Method::GET, "/openid/v1/jwks") => {
                let accounts = self.accounts().ok_or_else(ApiError::no_route)?;
                return Ok(json_response(
                    200,
                    serde_json::to_vec(&accounts.jwks()).unwrap_or_default(),
                    "application/jwk-set+json",
                ));
            }
            (Method::GET, "/metrics") => {
                let mut text = self.metrics.render();
                health::render_metrics(&mut text, &self.components.status());
                return Ok(json_response(200, text, "text/plain; version=0.0.4"));
            }
            (Method::GET, "/api") => {
                return Ok(if discovery::wants_aggregated(accept.as_deref()) {
                    json_response(
                        200,
                        serde_json::to_vec(&discovery::aggregated(true)).unwrap_or_default(),
                        discovery::AGGREGATED_CONTENT_TYPE,
                    )
                } else {
                    value_response(200, &discovery::core_versions())
                });
            }
            (Method::GET, "/apis") => {
                return Ok(if discovery::wants_aggregated(accept.as_deref()) {
                    json_response(
                        200,
                        serde_json::to_vec(&discovery::aggregated(false)).unwrap_or_default(),
                        discovery::AGGREGATED_CONTENT_TYPE,
                    )
                } else {
                    value_response(200, &discovery::group_list())
                });
            }
            (Method::GET, "/openapi/v3") => return Ok(value_response(200, &shoal_api::openapi::v3_index())),
            (Method::GET, "/openapi/v2") => {
                return match openapi_v2_format(accept.as_deref()) {
                    Some(OpenApiV2::Protobuf) => Ok(json_response(
                        200,
                        Bytes::from_owner(shoal_api::openapi::v2_protobuf()),
                        OPENAPI_V2_PROTOBUF,
                    )),
                    Some(OpenApiV2::Json) => Ok(json_response(
                        200,
                        Bytes::from_owner(shoal_api::openapi::v2_document()),
                        "application/json",
                    )),
                    None => Err(ApiError::new_not_acceptable()),
                };
            }
            (Method::GET, p) if p.starts_with("/openapi/v3/") => {
                let gv = p.trim_start_matches("/openapi/v3/");
                return match shoal_api::openapi::v3_document(gv) {
                    Some(doc) => Ok(json_response(200, Bytes::from_owner(doc), "application/json")),
                    None => Err(ApiError::no_route()),
                };
            }
            _ => {}
        }
        // A group-version another server serves (an aggregated APIService).
        if let Some(backend) = self.backend_for(path) {
            return self.proxy_aggregated(&backend, parts, body).await;
        }
        let target = match request::parse_path(path)? {
            None => return Err(ApiError::no_route()),
            Some(ApiPath::Group(g)) => {
                return discovery::group(&g)
                    .map(|v| value_response(200, &v))
                    .ok_or_else(ApiError::no_route);
            }
            Some(ApiPath::GroupVersion { group, version }) => {
                return discovery::resource_list(&group, &version)
                    .map(|v| value_response(200, &v))
                    .ok_or_else(ApiError::no_route);
            }
            Some(ApiPath::Resource(t)) => t,
        };
        if let Some(sub @ ("exec" | "attach" | "portforward")) = target.subresource.as_deref()
            && target.res.plural == "pods"
        {
            if let Some(nodeauth::Identity::Node(node)) = parts.extensions.get::<nodeauth::Identity>() {
                nodeauth::authorize(node, "create", &target, None, self.as_ref())?;
            }
            if !matches!(parts.method, Method::GET | Method::POST) {
                return Err(ApiError::method_not_allowed(parts.method.as_str(), target.res));
            }
            let sub = sub.to_string();
            return self.pod_stream(&target, &params, &sub, parts).await;
        }
        let table = output::wants_table(accept.as_deref());
        let method = parts.method;
        let body = if matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
            read_body(body).await?
        } else {
            Bytes::new()
        };
        let node = match parts.extensions.get::<nodeauth::Identity>() {
            Some(nodeauth::Identity::Node(node)) => Some(node.as_str()),
            _ => None,
        };
        if let Some(node) = node {
            let verb = nodeauth::verb(&method, &target, params.flag("watch"));
            let body_name = if verb == "create" && target.subresource.is_none() {
                parse_json(ct.as_deref(), &body)
                    .ok()
                    .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string))
            } else {
                None
            };
            if let Err(refused) = nodeauth::authorize(node, verb, &target, body_name.as_deref(), self.as_ref()) {
                // As upstream's Node,RBAC chain: what the node authorizer refuses, a binding
                // to the node (or to system:nodes) may still grant.
                let (user, groups) = review::name_and_groups(&nodeauth::Identity::Node(node.to_string()));
                let attrs = review::Attributes::of_target(verb, &target, body_name.as_deref());
                if !rbac::allows(self.as_ref(), &user, &groups, &attrs) {
                    audit::annotate(audit::DECISION, "forbid");
                    audit::annotate(audit::REASON, refused.message.clone());
                    return Err(refused);
                }
            }
            audit::annotate(audit::DECISION, "allow");
        }
        if target.res.verbs == shoal_api::catalogue::CREATE_ONLY {
            if method != Method::POST || target.name.is_some() || target.subresource.is_some() {
                return Err(ApiError::method_not_allowed(method.as_str(), target.res));
            }
            let obj = parse_json(ct.as_deref(), &body)?;
            let obj = strategy::normalize(target.res, obj)?;
            let who = parts.extensions.get::<nodeauth::Identity>();
            let answered = self.review(&target, obj, who)?;
            return Ok(value_response(201, &answered));
        }
        self.handle_resource(
            &target,
            method,
            &params,
            ct.as_deref(),
            body,
            table,
            parts.extensions.get::<nodeauth::Identity>(),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn handle_resource(
        self: &Arc<Self>,
        t: &Target,
        method: Method,
        p: &Params,
        ct: Option<&str>,
        body: Bytes,
        table: bool,
        who: Option<&nodeauth::Identity>,
    ) -> ApiResult<Response> {
        if let Some(stored) = conversion::storage_of(t.res)
            && !p.flag("watch")
        {
            return self
                .handle_other_version(t, stored, method, p, ct, body, table, who)
                .await;
        }
        let res = t.res;
        let sub = t.subresource.as_deref();
        if (res.group, res.kind) == ("", "ComponentStatus") && method == Method::GET {
            return self.component_statuses(t, table).await;
        }
        match (&method, t.name.is_some(), sub) {
            (&Method::GET, false, None) if p.flag("watch") => {
                // A watch from a revision the cache has not reached waits a little for it,
                // then is refused (504), rather than hanging silently.
                if let Some(rv) = p.get("resourceVersion").filter(|rv| *rv != "0") {
                    self.wait_for_revision(rest::parse_rv(rv)?).await?;
                }
                let rx = self.watch(t, p, table)?;
                let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, std::convert::Infallible>);
                let mut resp = Response::new(Body::from_stream(stream));
                let ctype = if table {
                    output::TABLE_CONTENT_TYPE
                } else {
                    "application/json"
                };
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
                Ok(resp)
            }
            (&Method::GET, false, None) => {
                let (items, list) = self.list_objects(t, p).await?;
                if table {
                    let full = p.get("includeObject") == Some("Object");
                    let stream =
                        output::table_stream(res, items, &list, full).map(Ok::<Bytes, std::convert::Infallible>);
                    let mut resp = Response::new(Body::from_stream(stream));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(output::TABLE_CONTENT_TYPE),
                    );
                    Ok(resp)
                } else {
                    let stream = output::list_stream(res, items, &list).map(Ok::<Bytes, std::convert::Infallible>);
                    let mut resp = Response::new(Body::from_stream(stream));
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok(resp)
                }
            }
            (&Method::GET, true, None | Some("status")) => {
                let e = self.get_object(t)?;
                if table {
                    let obj = e.obj();
                    let list = output::ListMeta {
                        revision: e.mod_revision,
                        ..Default::default()
                    };
                    let v = output::table(res, std::slice::from_ref(&obj), &list, false);
                    return Ok(json_response(
                        200,
                        serde_json::to_vec(&v).unwrap_or_default(),
                        output::TABLE_CONTENT_TYPE,
                    ));
                }
                Ok(json_response(200, e.json(), "application/json"))
            }
            (&Method::GET, true, Some("scale")) => Ok(value_response(
                200,
                &rest::scale_of(&self.get_object(t)?.obj(), &self.scale_paths(t.res)),
            )),
            (&Method::GET, true, Some("log")) => self.pod_log(t, p).await,
            (&Method::POST, false, None) => {
                let decoded = body::decode(ct, &body)?;
                let mut opts = WriteOptions::from_params(p, "CreateOptions")?.by(who);
                opts.duplicates = decoded.duplicates;
                let w = self.create(t, decoded.value, &opts).await?;
                Ok(with_warnings(
                    json_response(201, w.json, "application/json"),
                    &w.warnings,
                ))
            }
            (&Method::POST, true, Some("binding")) => {
                let b = parse_json(ct, &body)?;
                self.bind(t, &b).await?;
                Ok(value_response(
                    201,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ))
            }
            (&Method::POST, true, Some("token")) => {
                let request = parse_json(ct, &body)?;
                Ok(value_response(201, &self.token_request(t, &request, who)?))
            }
            (&Method::POST, true, Some("eviction")) => {
                let ev = parse_json(ct, &body)?;
                let mut opts = match ev.get("deleteOptions").filter(|o| !o.is_null()) {
                    Some(o) => delete::DeleteOptions::from_value(o)?,
                    None => delete::DeleteOptions::default(),
                };
                opts.dry_run |= p.dry_run()?;
                let plain = Target {
                    subresource: None,
                    ..t.clone()
                };
                self.spend_disruption(&plain, opts.dry_run).await?;
                if !opts.dry_run {
                    self.mark_disruption_target(&plain).await?;
                }
                self.delete(&plain, &opts).await?;
                Ok(value_response(
                    201,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ))
            }
            (&Method::PUT, true, None | Some("status") | Some("finalize")) => {
                let decoded = body::decode(ct, &body)?;
                let obj = decoded.value;
                let mut opts = WriteOptions::from_params(p, "UpdateOptions")?.by(who);
                opts.duplicates = decoded.duplicates;
                if sub == Some("finalize") {
                    opts.validation = Some(request::FieldValidation::Ignore);
                }
                let w = self.update(t, obj, &opts).await?;
                Ok(with_warnings(
                    json_response(200, w.json, "application/json"),
                    &w.warnings,
                ))
            }
            (&Method::PUT, true, Some("scale")) => {
                let scale = parse_json(ct, &body)?;
                let paths = self.scale_paths(t.res);
                let w = self
                    .patch(
                        t,
                        paths.replicas_patch(&scale["spec"]["replicas"]),
                        patch::PatchType::Merge,
                        &WriteOptions::from_params(p, "UpdateOptions")?.by(who),
                        false,
                    )
                    .await?;
                Ok(value_response(200, &rest::scale_of(&w.obj, &paths)))
            }
            (&Method::PATCH, true, None | Some("status") | Some("scale")) => {
                let kind = patch::PatchType::from_content_type(ct.unwrap_or(""))?;
                // Only an apply patch may be YAML (`application/apply-patch+yaml`).
                let patch_body = if kind == patch::PatchType::Apply {
                    parse_json(ct, &body)?
                } else {
                    parse_json(None, &body)?
                };
                let w = self
                    .patch(
                        t,
                        patch_body,
                        kind,
                        &WriteOptions::from_params(p, "PatchOptions")?.by(who),
                        p.flag("force"),
                    )
                    .await?;
                if sub == Some("scale") {
                    return Ok(value_response(200, &rest::scale_of(&w.obj, &self.scale_paths(t.res))));
                }
                Ok(with_warnings(
                    json_response(200, w.json, "application/json"),
                    &w.warnings,
                ))
            }
            (&Method::DELETE, true, None) => {
                let opts = delete::DeleteOptions::from_request(p, &body)?.by(who);
                let (code, w) = self.delete(t, &opts).await?;
                Ok(json_response(code, w.json, "application/json"))
            }
            (&Method::DELETE, false, None) => {
                let opts = delete::DeleteOptions::from_request(p, &body)?.by(who);
                let (items, _) = self.list_objects(t, p).await?;
                let mut deleted = Vec::new();
                for e in items {
                    let obj = e.obj();
                    let one = Target {
                        name: obj["metadata"]["name"].as_str().map(str::to_string),
                        namespace: obj["metadata"]["namespace"].as_str().map(str::to_string),
                        ..t.clone()
                    };
                    match self.delete(&one, &opts).await {
                        Ok((_, w)) => deleted.push(w.obj),
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
                let list = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {}, "items": deleted});
                Ok(value_response(200, &list))
            }
            _ => Err(ApiError::method_not_allowed(method.as_str(), res)),
        }
    }

    /// A request to another version of a resource stored in one form (autoscaling/v1
    /// HorizontalPodAutoscalers): bodies are converted to the stored form on the way in,
    /// objects to the requested version on the way out.
    #[allow(clippy::too_many_arguments)]
    async fn handle_other_version(
        self: &Arc<Self>,
        t: &Target,
        stored: &'static shoal_api::catalogue::Resource,
        method: Method,
        p: &Params,
        ct: Option<&str>,
        body: Bytes,
        table: bool,
        who: Option<&nodeauth::Identity>,
    ) -> ApiResult<Response> {
        let t2 = Target {
            res: stored,
            ..t.clone()
        };
        let one = |code: u16, v: Value| -> ApiResult<Response> {
            if table {
                let list = output::ListMeta::default();
                let tv = output::table(t.res, std::slice::from_ref(&v), &list, false);
                return Ok(json_response(
                    code,
                    serde_json::to_vec(&tv).unwrap_or_default(),
                    output::TABLE_CONTENT_TYPE,
                ));
            }
            Ok(value_response(code, &v))
        };
        match (&method, t.name.is_some(), t.subresource.as_deref()) {
            (&Method::GET, false, None) => {
                let (items, list) = self.list_objects(t, p).await?;
                let objs = self.present(t.res, items.iter().map(|e| e.obj()).collect()).await?;
                if table {
                    let full = p.get("includeObject") == Some("Object");
                    let v = output::table(t.res, &objs, &list, full);
                    return Ok(json_response(
                        200,
                        serde_json::to_vec(&v).unwrap_or_default(),
                        output::TABLE_CONTENT_TYPE,
                    ));
                }
                let v = json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(),
                    "metadata": list.to_json(), "items": objs});
                Ok(value_response(200, &v))
            }
            (&Method::GET, true, None | Some("status")) => {
                one(200, self.present_one(t.res, self.get_object(&t2)?.obj()).await?)
            }
            (&Method::POST, false, None) => {
                let view = parse_json(ct, &body)?;
                view_rules(t, stored, &view, None)?;
                let obj = self.stored_form(t.res, stored, view).await?;
                let w = self
                    .create(&t2, obj, &WriteOptions::from_params(p, "CreateOptions")?.by(who))
                    .await?;
                one(201, self.present_one(t.res, w.obj).await?)
            }
            (&Method::PUT, true, None | Some("status")) => {
                let view = parse_json(ct, &body)?;
                let old = self.present_one(t.res, self.get_object(&t2)?.obj()).await?;
                view_rules(t, stored, &view, Some(&old))?;
                let obj = self.stored_form(t.res, stored, view).await?;
                let w = self
                    .update(&t2, obj, &WriteOptions::from_params(p, "UpdateOptions")?.by(who))
                    .await?;
                one(200, self.present_one(t.res, w.obj).await?)
            }
            (&Method::PATCH, true, None | Some("status")) => {
                // The patch applies to this version's view of the object, then goes back.
                let kind = patch::PatchType::from_content_type(ct.unwrap_or(""))?;
                let patch_body = parse_json(if kind == patch::PatchType::Apply { ct } else { None }, &body)?;
                let current = self.get_object(&t2)?;
                let view = self.present_one(t.res, current.obj()).await?;
                let kind = if kind == patch::PatchType::Apply {
                    patch::PatchType::Merge
                } else {
                    kind
                };
                let patched = patch::apply(t.res, &view, &patch_body, kind)?;
                view_rules(t, stored, &patched, Some(&view))?;
                let mut obj = self.stored_form(t.res, stored, patched).await?;
                obj["metadata"]["resourceVersion"] = json!(current.mod_revision.to_string());
                let w = self
                    .update(&t2, obj, &WriteOptions::from_params(p, "PatchOptions")?.by(who))
                    .await?;
                one(200, self.present_one(t.res, w.obj).await?)
            }
            (&Method::DELETE, true, None) => {
                let opts = delete::DeleteOptions::from_request(p, &body)?.by(who);
                let (code, w) = self.delete(&t2, &opts).await?;
                Ok(value_response(code, &self.present_one(t.res, w.obj).await?))
            }
            _ => Box::pin(self.handle_resource(&t2, method, p, ct, body, table, who)).await,
        }
    }

    /// GET of the deprecated ComponentStatus resource: synthesised from this process's
    /// health checks, never stored; with upstream's deprecation warning.
    async fn component_statuses(&self, t: &Target, table: bool) -> ApiResult<Response> {
        let all = health::component_statuses(&self.checks().await);
        let body = match &t.name {
            Some(name) => all
                .into_iter()
                .find(|c| c["metadata"]["name"] == name.as_str())
                .ok_or_else(|| ApiError::internal(format!("Component not found: {name}")))?,
            None if table => output::table(t.res, &all, &output::ListMeta::default(), false),
            None => json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": all}),
        };
        let body = if table && t.name.is_some() {
            output::table(t.res, std::slice::from_ref(&body), &output::ListMeta::default(), false)
        } else {
            body
        };
        let content_type = if table {
            output::TABLE_CONTENT_TYPE
        } else {
            "application/json"
        };
        Ok(with_warnings(
            json_response(200, serde_json::to_vec(&body).unwrap_or_default(), content_type),
            &[health::COMPONENT_STATUS_WARNING.to_string()],
        ))
    }

    /// The pod of `t`, its container named by `container` (default: the only one, or the
    /// one kubectl's default-container annotation names), and its node's agent endpoint
    /// (`None` for simulated nodes).
    fn pod_container(
        &self,
        t: &Target,
        container: Option<&str>,
    ) -> ApiResult<(Value, String, Option<nodeproxy::Endpoint>)> {
        let pod = self.get_object(t)?.obj();
        let name = t.name.as_deref().unwrap_or_default();
        let names: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let container = match container.filter(|c| !c.is_empty()) {
            Some(c) if names.contains(&c) => c.to_string(),
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            None if names.len() == 1 => names[0].to_string(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )));
            }
        };
        let endpoint = self.pod_endpoint(&pod, name)?;
        Ok((pod, container, endpoint))
    }

    /// The agent endpoint of the node `pod` (named `name`) is bound to (`None` when it is
    /// unbound or the node is simulated).
    fn pod_endpoint(&self, pod: &Value, name: &str) -> ApiResult<Option<nodeproxy::Endpoint>> {
        let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let nodes = shoal_api::catalogue::find("", "v1", "nodes").expect("nodes are served");
        let node = self
            .cache
            .get(&keys::object(nodes, None, node))
            .map(|e| e.obj())
            .ok_or_else(|| ApiError::bad_request(format!("node {node:?} of pod {name} does not exist")))?;
        if node["metadata"]["annotations"]["shoal.dev/simulated"] == "true" {
            return Ok(None);
        }
        nodeproxy::endpoint(&node).map(Some)
    }

    async fn pod_log(&self, t: &Target, p: &Params) -> ApiResult<Response> {
        let name = t.name.as_deref().unwrap_or_default();
        check_log_options(name, p)?;
        let (pod, container, endpoint) = self.pod_container(t, p.get("container"))?;
        if pod["status"]["phase"] == "Pending" && endpoint.is_none() {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            )));
        }
        let (Some(ep), Some(auth)) = (endpoint, self.node_auth()) else {
            // Simulated containers print nothing.
            return Ok(json_response(200, Bytes::new(), "text/plain"));
        };
        let ns = t.namespace.as_deref().unwrap_or("default");
        let mut query = format!("uid={}", pod["metadata"]["uid"].as_str().unwrap_or_default());
        for key in [
            "follow",
            "previous",
            "timestamps",
            "tailLines",
            "limitBytes",
            "sinceSeconds",
            "sinceTime",
        ] {
            if let Some(v) = p.get(key) {
                query.push_str(&format!("&{key}={}", request::encode(v)));
            }
        }
        let req = http::Request::get(format!(
            "/containerLogs/{}/{}/{}?{query}",
            request::encode(ns),
            request::encode(name),
            request::encode(&container)
        ))
        .body(Body::empty())
        .map_err(ApiError::internal_from)?;
        let resp = nodeproxy::send(&auth, &ep, req).await?;
        if !resp.status().is_success() {
            return Err(nodeproxy::error_of(resp).await);
        }
        Ok(nodeproxy::stream(resp))
    }

    /// `pods/exec`, `pods/attach` and `pods/portforward`: the upgrade (WebSocket, or SPDY for
    /// port forwarding) is passed to the pod's agent, and the two connections are joined
    /// once both switched protocols.
    async fn pod_stream(
        &self,
        t: &Target,
        p: &Params,
        sub: &str,
        mut parts: http::request::Parts,
    ) -> ApiResult<Response> {
        let name = t.name.as_deref().unwrap_or_default();
        let ns = t.namespace.as_deref().unwrap_or("default");
        let (pod, container, endpoint) = if sub == "portforward" {
            let pod = self.get_object(t)?.obj();
            let ep = self.pod_endpoint(&pod, name)?;
            (pod, String::new(), ep)
        } else {
            self.pod_container(t, p.get("container"))?
        };
        let (Some(ep), Some(auth)) = (endpoint, self.node_auth()) else {
            let what = match sub {
                "exec" => "there is no process to exec in",
                "attach" => "there is no process to attach to",
                _ => "there is no process to forward to",
            };
            return Err(ApiError::bad_request(format!(
                "pod {name} runs on a simulated node: {what}"
            )));
        };
        if pod["status"]["phase"] != "Running" {
            let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
            return Err(ApiError::bad_request(if sub == "portforward" {
                format!("unable to upgrade connection: pod {name} is not running ({phase})")
            } else {
                format!("unable to upgrade connection: container not found (\"{container}\") in pod {name} ({phase})")
            }));
        }
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.starts_with("container="))
            .collect::<Vec<_>>()
            .join("&");
        let path = match sub {
            "portforward" => format!("/portForward/{}/{}?{query}", request::encode(ns), request::encode(name)),
            _ => format!(
                "/{sub}/{}/{}/{}?{query}",
                request::encode(ns),
                request::encode(name),
                request::encode(&container)
            ),
        };
        let mut req = http::Request::builder().method(parts.method.clone()).uri(path);
        for h in STREAM_REQUEST_HEADERS {
            for v in parts.headers.get_all(*h) {
                req = req.header(*h, v);
            }
        }
        let req = req.body(Body::empty()).map_err(ApiError::internal_from)?;
        let mut resp = nodeproxy::send(&auth, &ep, req).await?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(nodeproxy::error_of(resp).await);
        }
        let Some(client_side) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(ApiError::bad_request(format!(
                "{sub} needs an upgradable connection (HTTP/1.1 with Upgrade)"
            )));
        };
        let agent_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(a), Ok(b)) = (client_side.await, agent_side.await) else {
                return;
            };
            let (mut a, mut b) = (hyper_util::rt::TokioIo::new(a), hyper_util::rt::TokioIo::new(b));
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
        let mut out = Response::new(Body::empty());
        *out.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        for h in [
            "connection",
            "upgrade",
            "sec-websocket-accept",
            "sec-websocket-protocol",
            "x-stream-protocol-version",
        ] {
            if let Some(v) = resp.headers().get(h) {
                out.headers_mut().insert(h, v.clone());
            }
        }
        Ok(out)
    }
}

use futures::StreamExt as _;

/// The request headers a streaming subresource passes to the agent.
const STREAM_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

impl ApiServer {
    /// An object read on many requests and rarely changed (a role or binding, which every
    /// authorization reads; a CustomResourceDefinition, which every write of its custom
    /// objects reads) decoded once per revision.
    fn decoded_once(&self, e: &cache::Entry) -> Arc<Value> {
        let mut memo = self
            .decoded_memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((rev, obj)) = memo.get(&e.key)
            && *rev == e.mod_revision
        {
            return obj.clone();
        }
        // Deleted objects' entries are let go now and then.
        if memo.len() > DECODED_MEMO_LIMIT {
            memo.clear();
        }
        let obj = Arc::new(e.obj_in(&shoal_api::shape::WITHOUT_MANAGED_FIELDS));
        memo.insert(e.key.clone(), (e.mod_revision, obj.clone()));
        obj
    }
}

/// How many decoded objects [`ApiServer::decoded_once`] keeps at most.
const DECODED_MEMO_LIMIT: usize = 8192;

/// The rules granted to (user, groups, namespace), all derived at one RBAC generation.
#[derive(Default)]
struct GrantedMemo {
    generation: u64,
    rules: std::collections::HashMap<(String, Vec<String>, String), Arc<Vec<Value>>>,
}

/// How many (user, groups, namespace) the memo keeps at most before it starts over.
const GRANTED_MEMO_LIMIT: usize = 4096;

impl rbac::Policy for ApiServer {
    fn rbac_objects(&self, plural: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(res) = shoal_api::catalogue::find(rbac::GROUP, "v1", plural) else {
            return Vec::new();
        };
        let (found, _, _) = self.cache.list(&keys::collection(res, namespace), None, 0, |_| true);
        found.iter().map(|e| self.decoded_once(e)).collect()
    }

    fn granted_rules(&self, user: &str, groups: &[String], namespace: &str) -> Arc<Vec<Value>> {
        let generation = self.cache.rbac_generation();
        let key = (user.to_string(), groups.to_vec(), namespace.to_string());
        {
            let memo = self
                .granted_memo
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if memo.generation == generation
                && let Some(rules) = memo.rules.get(&key)
            {
                return rules.clone();
            }
        }
        // Derived outside the lock; kept only under the generation read before deriving (a
        // change meanwhile bumps it, and the next request derives again).
        let rules = Arc::new(rbac::rules_for(self, user, groups, namespace));
        let mut memo = self
            .granted_memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if memo.generation > generation {
            return rules;
        }
        if memo.generation != generation || memo.rules.len() >= GRANTED_MEMO_LIMIT {
            memo.rules.clear();
            memo.generation = generation;
        }
        memo.rules.insert(key, rules.clone());
        rules
    }

    fn rbac_object(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let res = shoal_api::catalogue::find(rbac::GROUP, "v1", plural)?;
        self.cache
            .get(&keys::object(res, namespace, name))
            .map(|e| self.decoded_once(&e))
    }
}

/// A pod's `spec.nodeName`, decoded without the rest of the pod.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct PodNode {
    spec: PodNodeSpec,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodNodeSpec {
    node_name: String,
}

impl nodeauth::Lookup for ApiServer {
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        let pods = shoal_api::catalogue::find("", "v1", "pods")?;
        let entry = self.cache.get(&keys::object(pods, Some(namespace), name))?;
        Some(entry.fields::<PodNode>().map(|p| p.spec.node_name).unwrap_or_default())
    }

    fn node_pod_uses(&self, node: &str, namespace: &str, kind: nodeauth::RefKind, name: &str) -> bool {
        let Some(pods) = shoal_api::catalogue::find("", "v1", "pods") else {
            return false;
        };
        // The node's name is read first (no tree built): only its own pods are decoded.
        let (found, _, _) = self.cache.list(&keys::collection(pods, Some(namespace)), None, 1, |e| {
            e.fields::<PodNode>().is_some_and(|p| p.spec.node_name == node)
                && nodeauth::pod_refers_to(&e.obj(), kind, name)
        });
        !found.is_empty()
    }

    fn volume_claim(&self, pv: &str) -> Option<(String, String)> {
        let volumes = shoal_api::catalogue::find("", "v1", "persistentvolumes")?;
        let volume = self.cache.get(&keys::object(volumes, None, pv))?.obj();
        let claim = &volume["spec"]["claimRef"];
        Some((
            claim["namespace"].as_str()?.to_string(),
            claim["name"].as_str()?.to_string(),
        ))
    }
}

/// Upstream's `PodLogOptions` validation: the numbers are integers in range, and only one
/// of `sinceTime` and `sinceSeconds`.
fn check_log_options(name: &str, p: &Params) -> ApiResult<()> {
    use shoal_api::field::FieldError;
    let mut errors = Vec::new();
    for (key, min) in [("tailLines", 0), ("limitBytes", 1), ("sinceSeconds", 1)] {
        match p.int(key)? {
            Some(v) if v < min => {
                let detail = if min == 0 {
                    "must be greater than or equal to 0"
                } else {
                    "must be greater than 0"
                };
                errors.push(FieldError::invalid(key, json!(v), detail));
            }
            _ => {}
        }
    }
    if let Some(t) = p.get("sinceTime")
        && t.parse::<jiff::Timestamp>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "invalid value for sinceTime: {t:?} (want an RFC 3339 time)"
        )));
    }
    if p.get("sinceTime").is_some() && p.get("sinceSeconds").is_some() {
        errors.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_core_options("PodLogOptions", name, &errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roles_and_bindings_are_decoded_once_per_revision() {
        use rbac::Policy;
        let server = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
        let first = server
            .rbac_object("clusterroles", None, "view")
            .expect("bootstrap view role");
        let again = server.rbac_object("clusterroles", None, "view").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same revision is not decoded again");
        let res = shoal_api::catalogue::find(rbac::GROUP, "v1", "clusterroles").unwrap();
        let t = request::Target {
            res,
            namespace: None,
            name: Some("view".into()),
            subresource: None,
        };
        let mut changed = (*first).clone();
        changed["metadata"]["labels"]["changed"] = json!("yes");
        changed["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        server
            .update(&t, changed, &rest::WriteOptions::default())
            .await
            .unwrap();
        let after = server.rbac_object("clusterroles", None, "view").unwrap();
        assert!(!Arc::ptr_eq(&first, &after), "a new revision is read anew");
        assert_eq!(after["metadata"]["labels"]["changed"], "yes");
    }

    #[tokio::test]
    async fn granted_rules_are_kept_until_a_role_or_binding_changes() {
        use rbac::Policy;
        let server = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
        let jane = ("jane", vec!["system:authenticated".to_string()]);
        let list_pods = review::Attributes::Resource {
            verb: "list".into(),
            group: String::new(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "default".into(),
            name: String::new(),
        };
        assert!(!rbac::allows(server.as_ref(), jane.0, &jane.1, &list_pods));
        let first = server.granted_rules(jane.0, &jane.1, "default");
        let again = server.granted_rules(jane.0, &jane.1, "default");
        assert!(Arc::ptr_eq(&first, &again), "derived once while nothing changes");
        let in_default = |plural| request::Target {
            res: shoal_api::catalogue::find(rbac::GROUP, "v1", plural).unwrap(),
            namespace: Some("default".into()),
            name: None,
            subresource: None,
        };
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        });
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "jane-reads", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}],
        });
        let opts = rest::WriteOptions::default();
        server.create(&in_default("roles"), role, &opts).await.unwrap();
        assert!(
            !rbac::allows(server.as_ref(), jane.0, &jane.1, &list_pods),
            "no binding yet"
        );
        server
            .create(&in_default("rolebindings"), binding, &opts)
            .await
            .unwrap();
        assert!(
            rbac::allows(server.as_ref(), jane.0, &jane.1, &list_pods),
            "a new binding counts at once"
        );
        let other = server.granted_rules(jane.0, &jane.1, "kube-system");
        assert!(other.len() < server.granted_rules(jane.0, &jane.1, "default").len());
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_is_counted() {
        let metrics = Metrics::default();
        let resp = contain_panics(&metrics, "GET", "/api/v1/pods", async {
            if metrics.render().contains("apiserver") {
                panic!("a bug");
            }
            Ok(json_response(200, "", "text/plain"))
        })
        .await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let status: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some("InternalError"))
        );
        assert!(metrics.render().contains("shoal_request_panics_total 1\n"));
        let ok = contain_panics(&metrics, "GET", "/", async { Err(ApiError::no_route()) }).await;
        assert_eq!(ok.status(), StatusCode::NOT_FOUND, "errors pass through");
    }

    #[test]
    fn requests_for_other_groups_are_authorized_as_resources() {
        let attrs = request_attributes(
            &Method::GET,
            "/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods/p1",
            false,
        );
        assert_eq!(
            attrs,
            review::Attributes::Resource {
                verb: "get".into(),
                group: "metrics.k8s.io".into(),
                resource: "pods".into(),
                subresource: "".into(),
                namespace: "ns1".into(),
                name: "p1".into(),
            }
        );
        let list = request_attributes(&Method::GET, "/apis/metrics.k8s.io/v1beta1/nodes", true);
        assert!(
            matches!(list, review::Attributes::Resource { ref verb, ref resource, .. } if verb == "watch" && resource == "nodes")
        );
        let discovery = request_attributes(&Method::GET, "/apis/metrics.k8s.io/v1beta1", false);
        assert!(matches!(discovery, review::Attributes::NonResource { .. }));
    }

    #[test]
    fn openapi_v2_is_served_in_the_form_asked_for() {
        use OpenApiV2::*;
        let pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
        assert_eq!(openapi_v2_format(Some(pb)), Some(Protobuf));
        assert_eq!(
            openapi_v2_format(Some("application/com.github.proto-openapi.spec.v2.v1.0+protobuf")),
            Some(Protobuf)
        );
        assert_eq!(openapi_v2_format(None), Some(Json));
        assert_eq!(openapi_v2_format(Some("*/*")), Some(Json));
        assert_eq!(
            openapi_v2_format(Some(&format!("application/json;q=0.5, {pb}"))),
            Some(Protobuf)
        );
        assert_eq!(
            openapi_v2_format(Some(&format!("{pb};q=0, application/json"))),
            Some(Json)
        );
        assert_eq!(openapi_v2_format(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(openapi_v2_format(Some(";;;,q=,")), None);
    }
}
