//! `kubectl attach` on the agent: the container's output from the moment of attaching, over
//! the same WebSocket channel protocol as exec (1 stdout, 2 stderr, 3 the final `Status`),
//! read from the run's CRI log as it grows, until the run ends or the client leaves.
//!
//! The process runtime starts containers without a standard input: as upstream's runtimes
//! do for a container without `stdin: true`, what the client types is dropped, and the
//! client is told so once (on stderr).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::exec::{choose_protocol, frame, normal_close, refuse, websocket_accepted};
use crate::kubelet::Kubelet;
use crate::runtime::{Launch, RunState, Runtime};

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// What a piece of a CRI log holds: `(channel, bytes)` for every whole line of `text`
/// (channel 1 stdout, 2 stderr; 1 for both under a terminal), and how many bytes of `text`
/// were used (a trailing line without its newline waits for more).
pub fn split_log(text: &[u8], tty: bool) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut used = 0;
    while let Some(end) = text[used..].iter().position(|b| *b == b'\n') {
        let line = &text[used..used + end];
        used += end + 1;
        // `<time> <stream> <P|F> <text>`
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (_, stream, tag) = (parts.next(), parts.next(), parts.next());
        let body = parts.next().unwrap_or_default();
        let channel = if !tty && stream == Some(b"stderr".as_slice()) {
            2
        } else {
            1
        };
        let mut bytes = body.to_vec();
        if tag != Some(b"P".as_slice()) {
            bytes.push(b'\n');
        }
        match out.last_mut() {
            Some((c, b)) if *c == channel => b.extend_from_slice(&bytes),
            _ => out.push((channel, bytes)),
        }
    }
    (out, used)
}

/// Answers an attach request: 101 and a session on the upgraded connection.
pub async fn handle(
    kubelet: Arc<Kubelet>,
    ns: &str,
    pod: &str,
    container: &str,
    q: &[(String, String)],
    mut req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let Some(launch) = kubelet.current_run(ns, pod, container) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {pod}"),
        );
    };
    let on = |k: &str| q.iter().any(|(key, v)| key == k && (v == "true" || v == "1"));
    let (tty, stdin) = (on("tty"), on("stdin"));
    let header = |h: &str| req.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(key) = header("sec-websocket-key") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "attach needs a WebSocket upgrade (SPDY is not served: use kubectl 1.30 or newer)".into(),
        );
    };
    let Some(protocol) = choose_protocol(&header("sec-websocket-protocol").unwrap_or_default()) else {
        return refuse(StatusCode::BAD_REQUEST, "unsupported attach protocol".into());
    };
    let runtime = kubelet.runtime().clone();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        session(ws, launch, runtime, tty, stdin).await;
    });
    websocket_accepted(&key, protocol)
}

/// What a client attaching stdin is told.
pub const NO_STDIN: &str = "this node's runtime starts containers without a standard input: input is dropped\n";

async fn session<S>(ws: WebSocketStream<S>, launch: Launch, runtime: Arc<dyn Runtime>, tty: bool, stdin: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    if stdin
        && sink
            .send(frame(if tty { 1 } else { 2 }, NO_STDIN.as_bytes()))
            .await
            .is_err()
    {
        return;
    }
    // Output from now on: what the log already holds was before the attach.
    let mut offset = tokio::fs::metadata(&launch.log).await.map(|m| m.len()).unwrap_or(0);
    let mut partial: Vec<u8> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                let running = matches!(runtime.state(&launch.state_dir), RunState::Running(_));
                let content = tokio::fs::read(&launch.log).await.unwrap_or_default();
                let len = content.len() as u64;
                if len > offset {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.len());
                    partial.extend_from_slice(&content[start..]);
                    offset = len;
                    let (pieces, used) = split_log(&partial, tty);
                    partial.drain(..used);
                    for (channel, bytes) in pieces {
                        if sink.send(frame(channel, &bytes)).await.is_err() {
                            return;
                        }
                    }
                }
                if !running {
                    break;
                }
            }
        }
    }
    let status = json!({"metadata": {}, "status": "Success"});
    let _ = sink.send(frame(3, status.to_string().as_bytes())).await;
    let _ = sink.send(Message::Close(Some(normal_close()))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_go_to_their_channels() {
        let log = b"2026-01-01T00:00:01Z stdout F one\n2026-01-01T00:00:02Z stdout F two\n\
                    2026-01-01T00:00:03Z stderr F oops\n2026-01-01T00:00:04Z stdout P par\n\
                    2026-01-01T00:00:05Z stdout F tial\n2026-01-01T00:00:06Z stdout F wait";
        let (pieces, used) = split_log(log, false);
        assert_eq!(
            pieces,
            [
                (1, b"one\ntwo\n".to_vec()),
                (2, b"oops\n".to_vec()),
                (1, b"partial\n".to_vec())
            ]
        );
        // The unfinished last line waits.
        assert_eq!(&log[used..], b"2026-01-01T00:00:06Z stdout F wait");
        let (pieces, _) = split_log(log, true);
        assert_eq!(pieces, [(1, b"one\ntwo\noops\npartial\n".to_vec())]);
        assert_eq!(split_log(b"garbage\n", false).0, [(1, b"\n".to_vec())]);
    }
}
