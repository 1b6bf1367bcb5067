//! The agent's HTTPS endpoint, which the API server calls for `kubectl logs` and `kubectl
//! exec` (as it calls a kubelet's port 10250). It serves with a certificate from the
//! cluster CA (issued at join) and answers only requests carrying the token the API server
//! holds for this node.
//!
//! - `GET /containerLogs/<namespace>/<pod>/<container>?uid=...&follow=&tailLines=&previous=
//!   &timestamps=&sinceSeconds=&limitBytes=`: the container's log as plain text.
//! - `GET /exec/<namespace>/<pod>/<container>?command=...&stdin=&stdout=&stderr=&tty=`:
//!   a WebSocket (`v5.channel.k8s.io` / `v4.channel.k8s.io`) running the command in the
//!   container's environment (see [`crate::exec`]).
//! - `GET /attach/<namespace>/<pod>/<container>?stdout=&stderr=&tty=`: the container's
//!   output from now on, over the exec protocol (see [`crate::attach`]).
//! - `GET|POST /portForward/<namespace>/<pod>`: SPDY/3.1 (or SPDY tunnelled in a WebSocket)
//!   speaking `portforward.k8s.io` (see [`crate::portforward`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::join::Credentials;
use crate::kubelet::{Kubelet, log_path};

type Body = BoxBody<Bytes, std::io::Error>;

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *r.status_mut() = code;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    r
}

/// Query parameters (repeated keys kept in order).
pub(crate) fn query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn flag(q: &[(String, String)], key: &str) -> bool {
    matches!(param(q, key), Some("true" | "1"))
}

/// Serves the endpoint on `listener` until the process ends.
pub async fn serve(kubelet: Arc<Kubelet>, listener: Arc<tokio::net::TcpListener>, creds: Credentials) {
    let tls = match server_config(&creds) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "agent: cannot serve its endpoint");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let token = Arc::new(creds.kubelet_token.clone());
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (acceptor, kubelet, token) = (acceptor.clone(), kubelet.clone(), token.clone());
        tokio::spawn(async move {
            // A peer that never finishes its handshake is dropped (upstream: 32 s).
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(32), acceptor.accept(tcp)).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (kubelet, token) = (kubelet.clone(), token.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(kubelet, &token, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
        });
    }
}

fn server_config(creds: &Credentials) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(creds.serving_certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(creds.serving_key.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn handle(kubelet: Arc<Kubelet>, token: &str, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| {
            t.len() == token.len() && t.bytes().zip(token.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
        });
    if !authorized {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let path: Vec<String> = req.uri().path().trim_matches('/').split('/').map(decode).collect();
    let q = query(req.uri().query());
    match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["containerLogs", _ns, pod, container] => logs(&kubelet, pod, container, &q).await,
        ["exec", ns, pod, container] => crate::exec::handle(kubelet, ns, pod, container, &q, req).await,
        ["attach", ns, pod, container] => crate::attach::handle(kubelet, ns, pod, container, &q, req).await,
        ["portForward", ns, pod] => crate::portforward::handle(kubelet, ns, pod, req).await,
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The run numbers that have logs for `container` of the pod in `pod_dir`, ascending.
fn runs_with_logs(pod_dir: &Path, container: &str) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(pod_dir.join("logs").join(container))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    runs.sort_unstable();
    runs
}

/// How to print a log.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time (RFC 3339).
    pub since: Option<String>,
    /// At most this many bytes.
    pub limit_bytes: Option<usize>,
}

/// A CRI log line as `kubectl logs` shows it, `None` for lines not in the format.
pub fn render_line(line: &str, timestamps: bool) -> Option<String> {
    let mut parts = line.splitn(4, ' ');
    let (time, _stream, _tag) = (parts.next()?, parts.next()?, parts.next()?);
    let text = parts.next().unwrap_or_default();
    Some(if timestamps {
        format!("{time} {text}\n")
    } else {
        format!("{text}\n")
    })
}

/// The text of a CRI log file's `content` under `opts`.
pub fn render(content: &str, opts: &LogOptions) -> String {
    let since: Option<jiff::Timestamp> = opts.since.as_deref().and_then(|s| s.parse().ok());
    let lines: Vec<&str> = content
        .lines()
        .filter(|l| {
            since.is_none_or(|s| {
                l.split(' ')
                    .next()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| t >= s)
            })
        })
        .collect();
    let from = opts.tail_lines.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out: String = lines[from..]
        .iter()
        .filter_map(|l| render_line(l, opts.timestamps))
        .collect();
    if let Some(limit) = opts.limit_bytes {
        let mut cut = limit.min(out.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

async fn logs(kubelet: &Kubelet, pod: &str, container: &str, q: &[(String, String)]) -> Response<Body> {
    let Some(uid) = param(q, "uid").filter(|u| !u.is_empty() && !u.contains(['/', '.'])) else {
        return text(StatusCode::BAD_REQUEST, "uid is required");
    };
    let dir = kubelet.pod_dir(uid);
    let runs = runs_with_logs(&dir, container);
    let previous = flag(q, "previous");
    let run = if previous {
        runs.iter().rev().nth(1).copied()
    } else {
        runs.last().copied()
    };
    let Some(run) = run else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let opts = LogOptions {
        timestamps: flag(q, "timestamps"),
        tail_lines: param(q, "tailLines").and_then(|v| v.parse().ok()),
        since: param(q, "sinceTime").map(str::to_string).or_else(|| {
            let secs: i64 = param(q, "sinceSeconds")?.parse().ok()?;
            let t = jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(secs))
                .ok()?;
            Some(t.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string())
        }),
        limit_bytes: param(q, "limitBytes").and_then(|v| v.parse().ok()),
    };
    let path = log_path(&dir, container, run);
    let content = tokio::fs::read(&path).await.unwrap_or_default();
    let first = render(&String::from_utf8_lossy(&content), &opts);
    if !flag(q, "follow") || previous {
        return text(StatusCode::OK, first);
    }
    let state_dir = dir.join("containers").join(container).join(run.to_string());
    let stream = follow(
        path,
        content.len() as u64,
        state_dir,
        opts.timestamps,
        kubelet.runtime().clone(),
    );
    let head =
        futures::stream::once(async move { Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(first))) });
    let body = StreamBody::new(futures::StreamExt::chain(head, stream));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    r
}

/// New lines of a log from `offset` on, until its container run ends.
fn follow(
    path: PathBuf,
    offset: u64,
    state_dir: PathBuf,
    timestamps: bool,
    runtime: Arc<dyn crate::runtime::Runtime>,
) -> impl futures::Stream<Item = Result<hyper::body::Frame<Bytes>, std::io::Error>> {
    futures::stream::unfold(
        (offset, String::new(), false),
        move |(mut offset, mut partial, ended)| {
            let (path, state_dir, runtime) = (path.clone(), state_dir.clone(), runtime.clone());
            async move {
                if ended {
                    return None;
                }
                loop {
                    let running = matches!(runtime.state(&state_dir), crate::runtime::RunState::Running(_));
                    let content = tokio::fs::read(&path).await.unwrap_or_default();
                    let len = content.len() as u64;
                    if len > offset {
                        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.len());
                        partial.push_str(&String::from_utf8_lossy(&content[start..]));
                        offset = len;
                        let complete = partial.rfind('\n').map_or(0, |i| i + 1);
                        let lines: String = partial[..complete]
                            .lines()
                            .filter_map(|l| render_line(l, timestamps))
                            .collect();
                        partial.drain(..complete);
                        if !lines.is_empty() {
                            return Some((
                                Ok(hyper::body::Frame::data(Bytes::from(lines))),
                                (offset, partial, !running),
                            ));
                        }
                    }
                    if !running {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000000Z stdout F one\n2026-01-01T00:00:02.000000000Z stderr F two\n2026-01-01T00:00:03.000000000Z stdout F three\n";

    #[test]
    fn logs_render_with_tail_timestamps_since_and_limit() {
        assert_eq!(render(LOG, &LogOptions::default()), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(render(LOG, &tail), "two\nthree\n");
        let ts = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(render(LOG, &ts), "2026-01-01T00:00:03.000000000Z three\n");
        let since = LogOptions {
            since: Some("2026-01-01T00:00:02Z".into()),
            ..Default::default()
        };
        assert_eq!(render(LOG, &since), "two\nthree\n");
        let limit = LogOptions {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(render(LOG, &limit), "one\nt");
    }

    #[test]
    fn queries_decode_repeated_keys() {
        let q = query(Some("command=sh&command=-c&command=echo%20hi%26bye&tty=true"));
        let cmds: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cmds, ["sh", "-c", "echo hi&bye"]);
        assert!(flag(&q, "tty"));
        assert_eq!(decode("a%2Fb+c%"), "a/b c%");
    }
}
