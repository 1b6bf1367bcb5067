//! Serving the API over HTTPS with bearer-token authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::IntoResponse;
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::ApiServer;
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
}

fn bearer(req: &Request<hyper::body::Incoming>) -> Option<&str> {
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Who sent `req`: an admin token, or a node's token when nodes may join.
fn authenticate(cfg: &ServeConfig, nodes: Option<&NodeAuth>, req: &Request<hyper::body::Incoming>) -> Option<Identity> {
    let token = bearer(req)?;
    if cfg
        .admin_tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    {
        return Some(Identity::Admin);
    }
    nodes?.verify_node_token(token).map(Identity::Node)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// Accepts connections on `listener` until the process ends, serving `server` over HTTPS.
pub async fn serve(server: Arc<ApiServer>, listener: TcpListener, cfg: ServeConfig) {
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg.tls.clone());
    let cfg = Arc::new(cfg);
    let router = server.router();
    loop {
        let (tcp, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let cfg = cfg.clone();
        let router = router.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let router = router.clone();
                let server = server.clone();
                let nodes = server.node_auth();
                let identity = authenticate(&cfg, nodes.as_deref(), &req);
                async move {
                    let path = req.uri().path();
                    if let Some(nodes) = nodes
                        .as_deref()
                        .filter(|_| path == CA_PATH || path == NODE_CREDENTIALS_PATH)
                    {
                        return Ok::<_, std::convert::Infallible>(join_endpoint(&server, nodes, req).await);
                    }
                    let mut req = req.map(axum::body::Body::new);
                    match identity {
                        Some(who) => {
                            req.extensions_mut().insert(who);
                        }
                        None if PUBLIC_PATHS.contains(&req.uri().path()) => {}
                        None => return Ok(ApiError::unauthorized().into_response()),
                    }
                    Ok(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
