//! Reaching a node's agent for `pods/log` and `pods/exec`, as upstream's API server reaches
//! a kubelet: HTTPS to the node's InternalIP at its `daemonEndpoints.kubeletEndpoint` port,
//! verifying the agent's certificate against the cluster CA and presenting the token the
//! agent was given for this server ([`crate::nodeauth::NodeAuth::kubelet_token`]).

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use serde_json::Value;

use crate::nodeauth::NodeAuth;
use crate::status::{ApiError, ApiResult};

/// Where a node's agent listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The node's name.
    pub node: String,
    /// Its InternalIP.
    pub ip: std::net::IpAddr,
    /// Its endpoint port.
    pub port: u16,
}

/// The agent endpoint of `node`, if it has one (real nodes report it; simulated nodes are
/// annotated and have none to reach).
pub fn endpoint(node: &Value) -> ApiResult<Endpoint> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let ip = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str()?.parse().ok())
        .ok_or_else(|| ApiError::bad_request(format!("node {name:?} reports no InternalIP")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::bad_request(format!("node {name:?} reports no kubelet endpoint")))?;
    Ok(Endpoint { node: name, ip, port })
}

fn unavailable(ep: &Endpoint, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!(
        "error dialing backend: node {:?} at {}:{}: {e}",
        ep.node, ep.ip, ep.port
    ))
}

/// Sends `req` (path and query only) to the agent of `ep` and returns its response; the
/// connection supports upgrades.
pub async fn send(
    auth: &Arc<NodeAuth>,
    ep: &Endpoint,
    mut req: Request<Body>,
) -> ApiResult<http::Response<hyper::body::Incoming>> {
    let cfg = crate::tls::client_config(crate::tls::Trust::Bundle(auth.ca_pem().as_bytes()), None)
        .map_err(ApiError::internal_from)?;
    let server_name = ep.ip.to_string();
    let connect = crate::tls::connect_http1((ep.ip, ep.port), &server_name, cfg);
    let mut sender = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| unavailable(ep, "timed out"))?
        .map_err(|e| unavailable(ep, e))?;
    let token = format!("Bearer {}", auth.kubelet_token(&ep.node));
    let headers = req.headers_mut();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&token).map_err(ApiError::internal_from)?,
    );
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&format!("{}:{}", ep.ip, ep.port)).map_err(ApiError::internal_from)?,
    );
    sender.send_request(req).await.map_err(|e| unavailable(ep, e))
}

/// A non-success answer of an agent as the API's error (its text is the message).
pub async fn error_of(resp: http::Response<hyper::body::Incoming>) -> ApiError {
    use http_body_util::BodyExt;
    let code = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg = String::from_utf8_lossy(&body).trim().to_string();
    if code == StatusCode::BAD_REQUEST {
        ApiError::bad_request(msg)
    } else {
        ApiError::internal(format!("the node answered {code}: {msg}"))
    }
}

/// Passes an agent's streaming answer on.
pub fn stream(resp: http::Response<hyper::body::Incoming>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_come_from_the_node_status() {
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(
            endpoint(&node).unwrap(),
            Endpoint {
                node: "n1".into(),
                ip: "127.0.0.2".parse().unwrap(),
                port: 10250
            }
        );
        let no_port = json!({"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        assert!(endpoint(&no_port).unwrap_err().message.contains("no kubelet endpoint"));
    }
}
