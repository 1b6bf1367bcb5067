//! Serving the API over HTTPS with bearer-token authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::IntoResponse;
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::ApiServer;
use crate::conn::{Activity, Clients, Guarded, HoldingBody, Limits};
use crate::nodeauth::{Identity, NodeAuth};
use crate::status::ApiError;

/// Paths anyone may read without credentials.
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// Where an agent fetches the cluster CA (public: the agent checks it against the hash in
/// its join token) and where it trades the join secret for its node's credentials.
pub const CA_PATH: &str = "/cacerts";
/// See [`CA_PATH`].
pub const NODE_CREDENTIALS_PATH: &str = "/shoal/v1/node-credentials";

/// How to serve.
pub struct ServeConfig {
    /// TLS configuration (see [`crate::tls`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Bearer tokens with full access.
    pub admin_tokens: Vec<String>,
    /// What one client may hold (connections, requests, timeouts).
    pub limits: Limits,
    /// Where requests are audited, if anywhere (`--audit-log`).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// Routes served beside the API (the web console), tried first, after authentication:
    /// their handlers find the caller's [`Identity`] in the request's extensions.
    pub routes: Option<axum::Router>,
}

/// The token of an `Authorization: Bearer <token>` header, as upstream reads it: the scheme
/// in any case, one space, then the token (text after a further space is ignored).
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let header = req.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = header.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the request carries an impersonation header (`kubectl --as`, `--as-group`,
/// `--as-uid`).
fn impersonates<B>(req: &Request<B>) -> bool {
    req.headers().keys().map(http::HeaderName::as_str).any(|h| {
        matches!(h, "impersonate-user" | "impersonate-group" | "impersonate-uid") || h.starts_with("impersonate-extra-")
    })
}

/// The identity a request impersonates (`kubectl --as`, `--as-group`, `--as-uid`), checked as
/// upstream does: the caller needs the `impersonate` verb on the user (or ServiceAccount),
/// on each group, on the uid and on each extra value it asks for. The impersonated user is
/// in `system:authenticated` (a ServiceAccount named without groups also in its
/// ServiceAccount groups).
fn impersonate<B>(server: &ApiServer, caller: &Identity, req: &Request<B>) -> Result<Identity, ApiError> {
    use crate::review::Attributes;
    let headers = req.headers();
    let text = |v: &http::HeaderValue| v.to_str().ok().map(str::to_string);
    let user = headers.get("impersonate-user").and_then(text).unwrap_or_default();
    let groups: Vec<String> = headers.get_all("impersonate-group").iter().filter_map(text).collect();
    let uid = headers.get("impersonate-uid").and_then(text);
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().strip_prefix("impersonate-extra-")?.to_string(), text(v)?)))
        .collect();
    if user.is_empty() {
        return Err(ApiError::bad_request(
            "requested impersonation of groups, a uid or extra fields without impersonating a user",
        ));
    }
    let (my_name, my_groups) = crate::review::name_and_groups(caller);
    let my_name = my_name.as_str();
    let may = |group: &str, resource: &str, subresource: &str, namespace: &str, name: &str| {
        let attrs = Attributes::Resource {
            verb: "impersonate".into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        if crate::review::decide(my_name, &my_groups, &attrs, server).0 {
            Ok(())
        } else {
            Err(crate::rbac::forbidden(my_name, &attrs))
        }
    };
    let service_account = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((ns, sa)) => may("", "serviceaccounts", "", ns, sa)?,
        None => may("", "users", "", "", &user)?,
    }
    for g in &groups {
        may("", "groups", "", "", g)?;
    }
    if let Some(uid) = &uid {
        may("authentication.k8s.io", "uids", "", "", uid)?;
    }
    for (key, value) in &extras {
        may("authentication.k8s.io", "userextras", key, "", value)?;
    }
    let mut all = groups;
    if let Some((ns, _)) = service_account.filter(|_| all.is_empty()) {
        all.push("system:serviceaccounts".into());
        all.push(format!("system:serviceaccounts:{ns}"));
    }
    let anonymous = user == "system:anonymous";
    let implied = if anonymous {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !all.iter().any(|g| g == implied) {
        all.push(implied.to_string());
    }
    Ok(Identity::User(crate::nodeauth::User {
        name: user,
        uid: uid.unwrap_or_default(),
        groups: all,
        extra: extras.into_iter().fold(
            Default::default(),
            |mut m: std::collections::BTreeMap<String, Vec<String>>, (k, v)| {
                m.entry(k).or_default().push(v);
                m
            },
        ),
    }))
}

/// The user of a request without credentials.
fn anonymous() -> Identity {
    Identity::User(crate::nodeauth::User::new(
        "system:anonymous",
        vec!["system:unauthenticated".to_string()],
    ))
}

/// The identity of a client certificate's user and groups: a node for
/// `system:node:<name>` in `system:nodes` (the node authorizer decides for it, as for a node
/// token), else a user (RBAC decides), in `system:authenticated` either way.
fn certified_identity((name, mut groups): (String, Vec<String>)) -> Identity {
    if let Some(node) = name.strip_prefix("system:node:")
        && groups.iter().any(|g| g == "system:nodes")
        && !node.is_empty()
    {
        return Identity::Node(node.to_string());
    }
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".to_string());
    }
    Identity::User(crate::nodeauth::User::new(name, groups))
}

/// The answers outside the API: the CA for agents, and node credentials for the join secret.
async fn join_endpoint(
    server: &ApiServer,
    nodes: &NodeAuth,
    req: Request<hyper::body::Incoming>,
) -> axum::response::Response {
    use http_body_util::BodyExt;
    if req.uri().path() == CA_PATH {
        return (
            [(http::header::CONTENT_TYPE, "application/x-pem-file")],
            nodes.ca_pem().to_string(),
        )
            .into_response();
    }
    if req.method() != http::Method::POST {
        return ApiError::method_not_allowed_path(req.method().as_str(), NODE_CREDENTIALS_PATH).into_response();
    }
    if !bearer(&req).is_some_and(|s| nodes.is_join_secret(s)) {
        return ApiError::unauthorized().into_response();
    }
    let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return ApiError::too_large().into_response(),
    };
    let request = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("invalid join request: {e}")).into_response(),
    };
    if let Err(e) = check_node_password(server, &request).await {
        return e.into_response();
    }
    let answer = nodes.credentials(&request);
    match answer {
        Ok(v) => {
            tracing::info!(node = %v["nodeName"].as_str().unwrap_or_default(), "issued node credentials");
            ([(http::header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The Secret that holds the hash of a node's password: `kube-system/<node>.node-password.shoal`.
pub fn node_password_secret(node: &str) -> String {
    format!("{node}.node-password.shoal")
}

/// The first machine to join under a node name sets its password (the agent keeps it in
/// its data dir); a machine with another password cannot take the name over. Deleting the
/// Secret frees the name.
async fn check_node_password(server: &ApiServer, request: &serde_json::Value) -> Result<(), ApiError> {
    let node = request["nodeName"].as_str().unwrap_or_default();
    let problems = shoal_api::validation::names::is_dns1123_subdomain(node);
    if !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid nodeName {node:?}: {}",
            problems.join("; ")
        )));
    }
    let password = request["password"].as_str().unwrap_or_default();
    if password.len() < 16 {
        return Err(ApiError::bad_request(
            "a join request needs a node password of at least 16 characters",
        ));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, password.as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let secrets = shoal_api::catalogue::find("", "v1", "secrets").expect("secrets are served");
    let name = node_password_secret(node);
    let t = crate::request::Target {
        res: secrets,
        namespace: Some("kube-system".into()),
        name: Some(name.clone()),
        subresource: None,
    };
    use base64::Engine;
    match server.get_object(&t) {
        Ok(e) => {
            let stored = e.obj()["data"]["hash"]
                .as_str()
                .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok());
            if stored.as_deref() == Some(hash.as_bytes()) {
                return Ok(());
            }
            Err(ApiError::forbidden(format!(
                "node {node:?} has already joined from another machine (its node password differs); delete the Secret kube-system/{name} to let another machine take the name"
            )))
        }
        Err(e) if e.code == 404 => {
            // A Node that exists without a password never joined through an agent (the
            // control-plane node, a simulated node, one created with kubectl): the join
            // secret must not mint a credential that speaks for it.
            let nodes = shoal_api::catalogue::find("", "v1", "nodes").expect("nodes are served");
            let existing = crate::request::Target {
                res: nodes,
                namespace: None,
                name: Some(node.to_string()),
                subresource: None,
            };
            if server.get_object(&existing).is_ok() {
                return Err(ApiError::forbidden(format!(
                    "node {node:?} already exists and did not join through an agent (it has no node password): no machine may join under its name; delete the Node first to let one"
                )));
            }
            let secret = serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": "kube-system", "labels": {"shoal.dev/node": node}},
                "type": "shoal.dev/node-password",
                "data": {"hash": base64::engine::general_purpose::STANDARD.encode(hash.as_bytes())},
            });
            let collection = crate::request::Target { name: None, ..t };
            match server
                .create(&collection, secret, &crate::rest::WriteOptions::default())
                .await
            {
                Ok(_) => Ok(()),
                // Two machines joined at once under one name: the other one won.
                Err(e) if e.code == 409 => Err(ApiError::forbidden(format!(
                    "node {node:?} is joining from another machine"
                ))),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Accepts connections on `listener` until the process ends, serving `server` over HTTPS
/// within `cfg.limits`.
pub async fn serve(server: Arc<ApiServer>, listener: Arc<TcpListener>, cfg: Arc<ServeConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg.tls.clone());
    server.set_admin_tokens(cfg.admin_tokens.clone());
    let clients = Clients::default();
    let router = match &cfg.routes {
        Some(routes) => routes.clone().fallback_service(server.router()),
        None => server.router(),
    };
    let mut refused_logged = std::time::Instant::now() - std::time::Duration::from_secs(60);
    loop {
        let (tcp, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(held) = clients.connection(peer.ip(), cfg.limits.connections_per_client) else {
            if refused_logged.elapsed() >= std::time::Duration::from_secs(10) {
                refused_logged = std::time::Instant::now();
                tracing::warn!(client = %peer.ip(), limit = cfg.limits.connections_per_client, "connection refused: the client has too many open");
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, cfg, router, server, clients) = (
            acceptor.clone(),
            cfg.clone(),
            router.clone(),
            server.clone(),
            clients.clone(),
        );
        tokio::spawn(async move {
            let _held = held;
            let limits = Arc::new(cfg.limits.clone());
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // A client certificate (verified against the cluster CA in the handshake) names
            // the user of every request on the connection, before any bearer token, as
            // upstream's authenticators are ordered.
            let certified: Option<Identity> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| crate::tls::client_identity(leaf))
                .map(certified_identity);
            let activity = Arc::new(Activity::default());
            let io = Guarded::new(tls, activity.clone(), limits.clone());
            let (header_timeout, max_streams) = (limits.header_timeout, limits.max_streams);
            let audit = cfg.audit.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (router, server, clients, limits, audit) = (
                    router.clone(),
                    server.clone(),
                    clients.clone(),
                    limits.clone(),
                    audit.clone(),
                );
                let in_flight = activity.start();
                let nodes = server.node_auth();
                // No credential at all is `system:anonymous` (RBAC gives it what upstream's
                // bootstrap policy gives: health and version); a credential that names no
                // one is a 401.
                let token = bearer(&req);
                let identity = match certified.clone().or_else(|| token.and_then(|t| server.authenticate(t))) {
                    None if token.is_none() && !PUBLIC_PATHS.contains(&req.uri().path()) => Some(anonymous()),
                    found => found,
                };
                let impersonated = match &identity {
                    Some(who) if impersonates(&req) => Some(impersonate(&server, who, &req)),
                    _ => None,
                };
                async move {
                    let path = req.uri().path();
                    if let Some(nodes) = nodes
                        .as_deref()
                        .filter(|_| path == CA_PATH || path == NODE_CREDENTIALS_PATH)
                    {
                        let resp = join_endpoint(&server, nodes, req).await;
                        return Ok::<_, std::convert::Infallible>(hold(resp, in_flight));
                    }
                    let watch = is_watch(&req);
                    let pending = audit.as_ref().map(|_| crate::audit::Pending::of(&req, watch));
                    let record = |who: Option<&Identity>, code: u16, annotations: &_| {
                        if let (Some(log), Some(pending)) = (&audit, &pending) {
                            pending.record(log, who, peer.ip(), code, annotations);
                        }
                    };
                    let refuse = |e: ApiError, who: Option<&Identity>| {
                        record(who, e.code, &Default::default());
                        e.into_response()
                    };
                    let slot = if watch {
                        None
                    } else {
                        match clients.request(peer.ip(), limits.requests_per_client) {
                            Some(slot) => Some(slot),
                            None => {
                                let mut resp = refuse(
                                    ApiError::too_many_requests(
                                        "Too many requests from this client, please try again later.",
                                    ),
                                    identity.as_ref(),
                                );
                                resp.headers_mut()
                                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                                return Ok(hold(resp, in_flight));
                            }
                        }
                    };
                    let mut req = req.map(axum::body::Body::new);
                    match identity {
                        Some(who) => match impersonated {
                            None => {
                                req.extensions_mut().insert(who);
                            }
                            Some(Ok(as_user)) => {
                                req.extensions_mut().insert(as_user);
                            }
                            Some(Err(e)) => return Ok(hold(refuse(e, Some(&who)), (in_flight, slot))),
                        },
                        None if PUBLIC_PATHS.contains(&req.uri().path()) => {}
                        None => return Ok(hold(refuse(ApiError::unauthorized(), None), (in_flight, slot))),
                    }
                    let who = req.extensions().get::<Identity>().cloned();
                    let (resp, annotations) = match audit {
                        Some(_) => crate::audit::collecting(router.oneshot(req)).await,
                        None => (router.oneshot(req).await, Default::default()),
                    };
                    let resp = resp.unwrap_or_else(|e| match e {});
                    record(who.as_ref(), resp.status().as_u16(), &annotations);
                    Ok(hold(resp, (in_flight, slot)))
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .max_concurrent_streams(max_streams);
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(io), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Whether `req` is a watch (long-running: not counted against the client's requests).
fn is_watch<B>(req: &Request<B>) -> bool {
    req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| matches!(kv, "watch=true" | "watch=1" | "watch")))
}

/// `resp`, whose body holds `held` until it has been sent (or the client went away).
fn hold<H: Send + Unpin + 'static>(resp: axum::response::Response, held: H) -> axum::response::Response {
    resp.map(|body| axum::body::Body::new(HoldingBody::new(body, held)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().uri("/api/v1/pods?watch=true");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        for h in [
            "Bearer tok",
            "bearer tok",
            "BEARER tok",
            "  Bearer tok  ",
            "Bearer tok extra",
        ] {
            assert_eq!(bearer(&request(&[("authorization", h)])), Some("tok"), "{h:?}");
        }
        for h in ["Basic tok", "Bearer", "Bearer  tok", "Bearertok", "tok"] {
            assert_eq!(bearer(&request(&[("authorization", h)])), None, "{h:?}");
        }
    }

    #[test]
    fn impersonation_headers_are_noticed() {
        assert!(!impersonates(&request(&[])));
        for h in [
            "Impersonate-User",
            "impersonate-group",
            "Impersonate-Uid",
            "Impersonate-Extra-Scopes",
        ] {
            assert!(impersonates(&request(&[(h, "x")])), "{h}");
        }
        assert!(is_watch(&request(&[])));
    }
}
