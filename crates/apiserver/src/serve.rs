//! Serving the API over HTTPS with bearer-token authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::IntoResponse;
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::ApiServer;
use crate::status::ApiError;

/// Paths anyone may read without credentials.
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

/// How to serve.
pub struct ServeConfig {
    /// TLS configuration (see [`crate::tls`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Bearer tokens with full access.
    pub admin_tokens: Vec<String>,
}

fn authorized(cfg: &ServeConfig, req: &Request<hyper::body::Incoming>) -> bool {
    if PUBLIC_PATHS.contains(&req.uri().path()) {
        return true;
    }
    let Some(auth) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) else {
        return false;
    };
    cfg.admin_tokens
        .iter()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
                let ok = authorized(&cfg, &req);
                async move {
                    if !ok {
                        return Ok::<_, std::convert::Infallible>(ApiError::unauthorized().into_response());
                    }
                    let req = req.map(axum::body::Body::new);
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
