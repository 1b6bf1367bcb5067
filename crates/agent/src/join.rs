//! Joining a cluster: the join token, the CA it vouches for, and the node credentials the
//! server issues for it.
//!
//! The token is `SHOAL10<sha256 of the CA certificate PEM, hex>::node:<secret>`. The agent
//! fetches the CA from `/cacerts` without trusting the connection, keeps it only if its hash
//! is the token's, then (now verifying the server) trades the secret for its node's
//! credentials at `/shoal/v1/node-credentials`. Credentials are kept in the agent's data dir,
//! so a restarted agent needs no new ones.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A parsed join token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// The SHA-256 of the CA certificate PEM, lowercase hex.
    pub ca_hash: String,
    /// The join secret.
    pub secret: String,
}

impl std::str::FromStr for JoinToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let rest = s
            .strip_prefix("SHOAL10")
            .ok_or("a join token starts with SHOAL10 (read it from <server data dir>/node-token)")?;
        let (hash, secret) = rest
            .split_once("::node:")
            .ok_or("a join token has the form SHOAL10<ca hash>::node:<secret>")?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the CA hash of a join token is 64 hex digits".into());
        }
        if secret.is_empty() {
            return Err("the join token has no secret".into());
        }
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }
}

/// The SHA-256 of `pem`, lowercase hex.
pub fn sha256_hex(pem: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, pem.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the server issues to a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The node's name.
    pub node_name: String,
    /// The node's bearer token.
    pub token: String,
    /// The token the API server presents to this agent.
    pub kubelet_token: String,
    /// The agent's serving certificate (PEM, signed by the cluster CA).
    pub serving_certificate: String,
    /// Its key (PEM).
    pub serving_key: String,
    /// The cluster CA (PEM).
    pub ca: String,
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server could not be reached or answered with an error.
    #[error("{0}")]
    Server(String),
    /// The server's CA is not the one the token names.
    #[error("the server's CA (sha256 {got}) is not the one in the join token (sha256 {want}): wrong server or token")]
    WrongCa {
        /// The token's hash.
        want: String,
        /// The served CA's hash.
        got: String,
    },
}

fn config(server: &str, ca: Option<&str>) -> Result<kube::Config, JoinError> {
    let url: http::Uri = server
        .parse()
        .map_err(|e| JoinError::Server(format!("invalid --server {server:?}: {e}")))?;
    let mut cfg = kube::Config::new(url);
    match ca {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject;
            let ders = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JoinError::Server(format!("the CA is not PEM: {e}")))?;
            cfg.root_cert = Some(ders);
        }
        None => cfg.accept_invalid_certs = true,
    }
    Ok(cfg)
}

/// A client for `server` that trusts `ca` and authenticates with `token`.
pub fn client(server: &str, ca: &str, token: &str) -> Result<kube::Client, JoinError> {
    let mut cfg = config(server, Some(ca))?;
    cfg.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(cfg).map_err(|e| JoinError::Server(e.to_string()))
}

/// A client for the servers of one cluster: each request goes to the server that answered
/// last; when it cannot be reached (refused, reset, timed out) the request fails and the
/// next ones go to the next server, so the agent's loops, which retry, and its watches, which
/// resume from their last resourceVersion, carry on against another server.
pub fn client_for(servers: &[String], ca: &str, token: &str) -> Result<kube::Client, JoinError> {
    let clients: Vec<kube::Client> = servers.iter().map(|s| client(s, ca, token)).collect::<Result<_, _>>()?;
    match clients.as_slice() {
        [] => Err(JoinError::Server("no --server given".into())),
        [one] => Ok(one.clone()),
        _ => {
            let clients: std::sync::Arc<[kube::Client]> = clients.into();
            let current = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let servers: std::sync::Arc<[String]> = servers.into();
            let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
                let (clients, current, servers) = (clients.clone(), current.clone(), servers.clone());
                async move {
                    use std::sync::atomic::Ordering;
                    let i = current.load(Ordering::Acquire) % clients.len();
                    let result = clients[i].send(req).await;
                    if let Err(kube::Error::HyperError(_) | kube::Error::Service(_)) = &result {
                        let next = (i + 1) % clients.len();
                        if current
                            .compare_exchange(i, next, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            tracing::warn!(from = %servers[i], to = %servers[next], "agent: server unreachable; switching");
                        }
                    }
                    result
                }
            });
            Ok(kube::Client::new(service, "default"))
        }
    }
}

/// Joins the first of `servers` that answers, as in [`join`].
pub async fn join_any(
    servers: &[String],
    token: &JoinToken,
    node: &str,
    addresses: &[String],
    dir: &Path,
) -> Result<Credentials, JoinError> {
    let mut last = JoinError::Server("no --server given".into());
    for server in servers {
        match join(server, token, node, addresses, dir).await {
            Ok(c) => return Ok(c),
            // A wrong CA is not a server being down: stop here.
            Err(e @ JoinError::WrongCa { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(%server, error = %e, "agent: joining through this server failed");
                last = e;
            }
        }
    }
    Err(last)
}

/// Joins `server` as `node` with `token`, reusing the credentials saved in `dir` when they
/// are for the same node and CA. `addresses` go into the serving certificate.
pub async fn join(
    server: &str,
    token: &JoinToken,
    node: &str,
    addresses: &[String],
    dir: &Path,
) -> Result<Credentials, JoinError> {
    let saved = dir.join("credentials.json");
    if let Some(c) = std::fs::read_to_string(&saved)
        .ok()
        .and_then(|t| serde_json::from_str::<Credentials>(&t).ok())
        .filter(|c| c.node_name == node && sha256_hex(&c.ca) == token.ca_hash)
    {
        return Ok(c);
    }
    let unverified = kube::Client::try_from(config(server, None)?).map_err(|e| JoinError::Server(e.to_string()))?;
    let ca = unverified
        .request_text(get("/cacerts")?)
        .await
        .map_err(|e| JoinError::Server(format!("fetching the CA from {server}: {e}")))?;
    let got = sha256_hex(&ca);
    if got != token.ca_hash {
        return Err(JoinError::WrongCa {
            want: token.ca_hash.clone(),
            got,
        });
    }
    let verified = kube::Client::try_from(config(server, Some(&ca))?).map_err(|e| JoinError::Server(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| JoinError::Server(format!("creating {}: {e}", dir.display())))?;
    let password = node_password(dir)?;
    let body = serde_json::json!({"nodeName": node, "addresses": addresses, "password": password}).to_string();
    let req = http::Request::post("/shoal/v1/node-credentials")
        .header(http::header::AUTHORIZATION, format!("Bearer {}", token.secret))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.into_bytes())
        .map_err(|e| JoinError::Server(e.to_string()))?;
    let creds: Credentials = verified
        .request(req)
        .await
        .map_err(|e| JoinError::Server(format!("joining {server} as {node}: {e}")))?;
    write_private(&saved, &serde_json::to_string_pretty(&creds).unwrap_or_default())
        .map_err(|e| JoinError::Server(format!("saving credentials to {}: {e}", saved.display())))?;
    Ok(creds)
}

/// This machine's node password (`<dir>/node-password`), made on first use: the server
/// lets only the machine that first joined under a node name join under it again.
fn node_password(dir: &Path) -> Result<String, JoinError> {
    let path = dir.join("node-password");
    if let Ok(p) = std::fs::read_to_string(&path) {
        let p = p.trim().to_string();
        if p.len() >= 16 {
            return Ok(p);
        }
    }
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| JoinError::Server("no randomness for a node password".into()))?;
    let p: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &format!("{p}\n"))
        .map_err(|e| JoinError::Server(format!("saving the node password to {}: {e}", path.display())))?;
    Ok(p)
}

fn get(path: &str) -> Result<http::Request<Vec<u8>>, JoinError> {
    http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| JoinError::Server(e.to_string()))
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_bad_ones_say_why() {
        let hash = "ab".repeat(32);
        let t: JoinToken = format!("SHOAL10{hash}::node:s3cret\n").parse().unwrap();
        assert_eq!(t.ca_hash, hash);
        assert_eq!(t.secret, "s3cret");
        assert!("K10abc::node:x".parse::<JoinToken>().unwrap_err().contains("SHOAL10"));
        assert!(format!("SHOAL10{hash}::node:").parse::<JoinToken>().is_err());
        assert!(
            "SHOAL10abc::node:x"
                .parse::<JoinToken>()
                .unwrap_err()
                .contains("64 hex")
        );
        assert!(format!("SHOAL10{hash}:x").parse::<JoinToken>().is_err());
    }

    #[test]
    fn the_hash_is_of_the_pem_text() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
