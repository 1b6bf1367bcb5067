//! `kubectl port-forward` on the agent: the `portforward.k8s.io` protocol over SPDY/3.1
//! ([`crate::spdy`]), reached either by the legacy `Upgrade: SPDY/3.1` or by a WebSocket
//! whose binary messages carry the SPDY bytes (`SPDY/3.1+portforward.k8s.io`, what kubectl
//! tries first since 1.31).
//!
//! For each local connection the client opens two streams with the same `requestID` and
//! `port` headers: `streamType: error` then `streamType: data`. The agent connects to the
//! port on the node's loopback (its pods are processes of the host, so the pod's
//! localhost is the node's), copies bytes both ways, and on failure writes the reason to
//! the error stream, as the kubelet does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::exec::{refuse, websocket_accepted};
use crate::kubelet::Kubelet;
use crate::spdy::{self, Frame};

/// The stream protocol of port forwarding.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that tunnels SPDY.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long a connection to the pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest data frame we send.
const CHUNK: usize = 32 << 10;
/// Most forwarded connections (and half-opened ones) one session holds.
pub const MAX_STREAMS: usize = 1024;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn header(req: &Request<hyper::body::Incoming>, name: &str) -> String {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

fn offers(list: &str, want: &str) -> bool {
    list.split(',').any(|p| p.trim().eq_ignore_ascii_case(want))
}

/// Answers a port-forward request for pod `namespace/pod`: 101 and a session.
pub async fn handle(
    kubelet: Arc<Kubelet>,
    namespace: &str,
    pod: &str,
    mut req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let Some((uid, launch)) = kubelet.running_pod(namespace, pod) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("pod {pod} in namespace {namespace} is not running on this node"),
        );
    };
    // The simulated runtime runs nothing: the node's loopback is not the pod's.
    if kubelet.runtime().command(&launch, &["true".to_string()]).is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("pod {pod} runs on a node whose runtime runs no processes: there is no port to forward to"),
        );
    }
    let target = Target {
        pod: pod.to_string(),
        netns: kubelet.sandbox_pid(&uid),
        uid,
    };
    let upgrade = header(&req, "upgrade");
    if offers(&upgrade, "websocket") {
        let key = header(&req, "sec-websocket-key");
        if key.is_empty() || !offers(&header(&req, "sec-websocket-protocol"), TUNNEL_PROTOCOL) {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("port forwarding over WebSocket needs the {TUNNEL_PROTOCOL} protocol"),
            );
        }
        let r = websocket_accepted(&key, TUNNEL_PROTOCOL);
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = on.await else { return };
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            let (mut sink, mut stream) = ws.split();
            let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
            let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
            let writer = tokio::spawn(async move {
                while let Some(b) = out_rx.recv().await {
                    if sink.send(Message::Binary(b.into())).await.is_err() {
                        break;
                    }
                }
                let _ = sink.close().await;
            });
            let reader = tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let bytes = match m {
                        Message::Binary(b) => b,
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if in_tx.send(bytes).await.is_err() {
                        break;
                    }
                }
            });
            session(target, in_rx, out_tx).await;
            reader.abort();
            let _ = writer.await;
        });
        return r;
    }
    if !offers(&upgrade, "SPDY/3.1") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "port forwarding needs an upgrade to SPDY/3.1 or a WebSocket".into(),
        );
    }
    if !offers(&header(&req, "x-stream-protocol-version"), PROTOCOL) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: no common stream protocol; this node speaks {PROTOCOL}"),
        );
    }
    let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("SPDY/3.1"));
    h.insert("x-stream-protocol-version", http::HeaderValue::from_static(PROTOCOL));
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = on.await else { return };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(io));
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(64);
        let writer = tokio::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 32 << 10];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 || in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
        });
        session(target, in_rx, out_tx).await;
        reader.abort();
        let _ = writer.await;
    });
    r
}

/// Which pod the session forwards to (for messages).
#[derive(Clone)]
struct Target {
    pod: String,
    uid: String,
    /// The pod's sandbox process, whose network the port is in (none: the node's).
    netns: Option<u32>,
}

/// One forwarded connection's two streams.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
}

/// The protocol: frames from `input`, frames to `out`, until the peer goes.
async fn session(target: Target, mut input: mpsc::Receiver<Bytes>, out: mpsc::Sender<Vec<u8>>) {
    let mut decoder = spdy::Decoder::default();
    let mut encoder = spdy::Encoder::default();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Client bytes for each data stream (None: the client closed its side).
    let mut to_pod: HashMap<u32, mpsc::Sender<Option<Bytes>>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    'read: while let Some(chunk) = input.recv().await {
        decoder.push(&chunk);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "agent: port-forward peer sent bad SPDY");
                    break 'read;
                }
            };
            if !matches!(frame, Frame::Data { .. }) {
                tracing::debug!(?frame, "agent: port-forward control frame");
            }
            match frame {
                Frame::SynStream { id, headers, .. } => {
                    if pairs.len() + to_pod.len() >= MAX_STREAMS {
                        if out.send(spdy::rst_stream(id, spdy::REFUSED_STREAM)).await.is_err() {
                            break 'read;
                        }
                        continue;
                    }
                    if out.send(encoder.syn_reply(id)).await.is_err() {
                        break 'read;
                    }
                    let kind = spdy::header(&headers, "streamtype").unwrap_or_default().to_string();
                    let request = spdy::header(&headers, "requestid").unwrap_or_default().to_string();
                    let port = spdy::header(&headers, "port").unwrap_or_default().to_string();
                    let pair = pairs.entry(request.clone()).or_default();
                    match kind.as_str() {
                        "error" => pair.error = Some(id),
                        "data" => pair.data = Some(id),
                        _ => {
                            let _ = out.send(spdy::rst_stream(id, spdy::CANCEL)).await;
                            continue;
                        }
                    }
                    let (Some(error), Some(data)) = (pair.error, pair.data) else {
                        continue;
                    };
                    pairs.remove(&request);
                    let (tx, rx) = mpsc::channel(16);
                    to_pod.insert(data, tx);
                    tasks.spawn(forward(target.clone(), port, error, data, rx, out.clone()));
                }
                Frame::Data { id, fin, data } => {
                    let len = u32::try_from(data.len()).unwrap_or(0);
                    if let Some(tx) = to_pod.get(&id) {
                        if !data.is_empty() && tx.send(Some(data)).await.is_err() {
                            to_pod.remove(&id);
                        }
                        if fin && let Some(tx) = to_pod.remove(&id) {
                            let _ = tx.send(None).await;
                        }
                    }
                    if len > 0 && out.send(spdy::window_update(id, len)).await.is_err() {
                        break 'read;
                    }
                }
                Frame::RstStream { id, .. } => {
                    to_pod.remove(&id);
                }
                Frame::Ping(id) => {
                    if out.send(spdy::ping(id)).await.is_err() {
                        break 'read;
                    }
                }
                Frame::GoAway => break 'read,
                Frame::SynReply { .. } | Frame::Settings | Frame::Headers { .. } | Frame::WindowUpdate { .. } => {}
            }
        }
    }
    tracing::debug!("agent: port-forward session ends");
    drop(to_pod);
    tasks.abort_all();
}

/// The error text of a failed forward, as the kubelet words it.
pub fn failure(port: &str, pod: &str, uid: &str, why: &str) -> String {
    format!("error forwarding port {port} to pod {pod}, uid {uid}: {why}")
}

/// A connection to `port` on the loopback of the network namespace of process `netns` (a
/// pod's sandbox), or of the node. The socket is made by a thread that has entered the
/// namespace (a socket belongs to the namespace it was made in) and ends with it.
async fn connect(netns: Option<u32>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let Some(pid) = netns else {
        return tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let made = (|| {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            let s =
                std::net::TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), CONNECT_TIMEOUT)?;
            s.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(s)
        })();
        let _ = tx.send(made);
    });
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread ended"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// Forwards one connection: the pod's port on the pod's loopback <-> stream `data`.
async fn forward(
    target: Target,
    port: String,
    error: u32,
    data: u32,
    mut from_client: mpsc::Receiver<Option<Bytes>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let fail = |why: String| {
        let out = out.clone();
        let msg = failure(&port, &target.pod, &target.uid, &why);
        async move {
            let _ = out.send(spdy::data(error, true, msg.as_bytes())).await;
            let _ = out.send(spdy::data(data, true, b"")).await;
        }
    };
    let Some(number) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
        return fail(format!("invalid port {port:?}")).await;
    };
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, connect(target.netns, number)).await;
    let tcp = match conn {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return fail(format!("failed to connect to localhost:{number} inside the pod: {e}")).await,
        Err(_) => return fail(format!("timed out connecting to localhost:{number} inside the pod")).await,
    };
    let (mut rd, mut wr) = tcp.into_split();
    let up = async move {
        while let Some(Some(b)) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = {
        let out = out.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.send(spdy::data(data, false, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = out.send(spdy::data(data, true, b"")).await;
        }
    };
    tokio::join!(up, down);
    let _ = out.send(spdy::data(error, true, b"")).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a session over channels; returns (to the session, from the session).
    fn start() -> (mpsc::Sender<Bytes>, mpsc::Receiver<Vec<u8>>) {
        let (in_tx, in_rx) = mpsc::channel(4096);
        let (out_tx, out_rx) = mpsc::channel(4096);
        let target = Target {
            pod: "p".into(),
            uid: "u".into(),
            netns: None,
        };
        tokio::spawn(session(target, in_rx, out_tx));
        (in_tx, out_rx)
    }

    /// The next frame the session sends.
    async fn next(rx: &mut mpsc::Receiver<Vec<u8>>, d: &mut spdy::Decoder) -> Frame {
        loop {
            if let Some(f) = d.next_frame().expect("our own frames decode") {
                return f;
            }
            let b = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a frame in time")
                .expect("the session is up");
            d.push(&b);
        }
    }

    fn stream(z: &mut flate2::Compress, id: u32, kind: &str, port: &str, req: &str) -> Bytes {
        Bytes::from(spdy::test_syn_stream(
            z,
            id,
            &[("streamtype", kind), ("port", port), ("requestid", req)],
        ))
    }

    #[tokio::test]
    async fn a_pair_of_streams_forwards_and_failures_are_worded_as_the_kubelets() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = echo.local_addr().unwrap().port().to_string();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
        });
        let (tx, mut rx) = start();
        let mut z = spdy::test_compressor();
        let mut d = spdy::Decoder::default();
        tx.send(stream(&mut z, 1, "error", &port, "0")).await.unwrap();
        tx.send(stream(&mut z, 3, "data", &port, "0")).await.unwrap();
        assert!(matches!(next(&mut rx, &mut d).await, Frame::SynReply { id: 1, .. }));
        assert!(matches!(next(&mut rx, &mut d).await, Frame::SynReply { id: 3, .. }));
        tx.send(Bytes::from(spdy::data(3, false, b"hi"))).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(next(&mut rx, &mut d).await);
        }
        assert!(got.contains(&Frame::WindowUpdate { id: 3, delta: 2 }), "{got:?}");
        assert!(
            got.contains(&Frame::Data {
                id: 3,
                fin: false,
                data: Bytes::from_static(b"hi")
            }),
            "{got:?}"
        );

        // Nobody listens on port 1: the error stream says why.
        tx.send(stream(&mut z, 5, "error", "1", "1")).await.unwrap();
        tx.send(stream(&mut z, 7, "data", "1", "1")).await.unwrap();
        let message = loop {
            if let Frame::Data { id: 5, data, .. } = next(&mut rx, &mut d).await
                && !data.is_empty()
            {
                break String::from_utf8_lossy(&data).into_owned();
            }
        };
        assert!(
            message.starts_with("error forwarding port 1 to pod p, uid u: failed to connect to localhost:1"),
            "{message}"
        );

        // An unknown stream type is cancelled; half-opened pairs are bounded.
        tx.send(stream(&mut z, 9, "other", "1", "2")).await.unwrap();
        loop {
            if let Frame::RstStream { id: 9, status } = next(&mut rx, &mut d).await {
                assert_eq!(status, spdy::CANCEL);
                break;
            }
        }
        let mut id = 11;
        for r in 0..MAX_STREAMS + 5 {
            tx.send(stream(&mut z, id, "error", "1", &format!("x{r}")))
                .await
                .unwrap();
            id += 2;
        }
        let mut refused = 0;
        while refused < 5 {
            if let Frame::RstStream { status, .. } = next(&mut rx, &mut d).await {
                assert_eq!(status, spdy::REFUSED_STREAM);
                refused += 1;
            }
        }
    }
}
