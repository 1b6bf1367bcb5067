//! `kubectl exec` on the agent: a WebSocket speaking Kubernetes' channel protocol
//! (`v5.channel.k8s.io`, or `v4`), where each binary message starts with its stream: 0
//! stdin, 1 stdout, 2 stderr, 3 the final `Status`, 4 terminal resize, 255 (v5) the end of
//! a stream. The command runs in the container's environment and working directory; with
//! `tty=true` it gets a pseudo-terminal (stdout and stderr are one stream then).

use std::io::{Read, Write};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::kubelet::Kubelet;

const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A plain-text refusal.
pub(crate) fn refuse(code: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(msg))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = code;
    r
}

/// The WebSocket accept key for `key` (RFC 6455).
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{WS_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The protocol to speak: the first of ours the client offers.
pub fn choose_protocol(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.iter().copied().find(|p| offered.contains(p))
}

/// The `Status` sent on channel 3 when the command ends with `code`.
pub fn exit_status(argv: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// Answers an exec request: 101 and a session on the upgraded connection.
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
    let argv: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if argv.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "you must specify at least 1 command".into());
    }
    let on = |k: &str| q.iter().any(|(key, v)| key == k && (v == "true" || v == "1"));
    let (stdin, tty) = (on("stdin"), on("tty"));
    let header = |h: &str| req.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(cmd) = kubelet.runtime().command(&launch, &argv) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "this node's runtime cannot run commands".into(),
        );
    };
    let Some(key) = header("sec-websocket-key") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade (SPDY is not served: use kubectl 1.30 or newer)".into(),
        );
    };
    let Some(protocol) = choose_protocol(&header("sec-websocket-protocol").unwrap_or_default()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("unsupported exec protocol; this agent speaks {}", PROTOCOLS.join(", ")),
        );
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        if let Err(e) = session(ws, cmd, &argv, stdin, tty, protocol == PROTOCOLS[0]).await {
            tracing::debug!(error = %e, "agent: exec session ended with an error");
        }
    });
    websocket_accepted(&key, protocol)
}

/// The 101 answer to a WebSocket upgrade with client key `key`, speaking `protocol`.
pub(crate) fn websocket_accepted(key: &str, protocol: &'static str) -> Response<Body> {
    let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    if let Ok(v) = http::HeaderValue::from_str(&accept_key(key)) {
        h.insert("sec-websocket-accept", v);
    }
    h.insert("sec-websocket-protocol", http::HeaderValue::from_static(protocol));
    r
}

/// Where stdin goes: false once it cannot take more.
type Input = Box<dyn FnMut(&[u8]) -> bool + Send>;

enum Out {
    Data(u8, Vec<u8>),
    Exited(i32),
}

pub(crate) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn session<S>(
    mut ws: WebSocketStream<S>,
    mut cmd: tokio::process::Command,
    argv: &[String],
    stdin: bool,
    tty: bool,
    v5: bool,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Out>(64);
    // Where stdin goes, and the terminal to resize.
    let mut input: Option<Input> = None;
    let mut resize: Option<Box<dyn Fn(u16, u16) + Send>> = None;
    let spawn_err = |e: std::io::Error| format!("exec {argv:?}: {e}");
    let mut child = if tty {
        let (master, slave) = open_pty().map_err(|e| format!("opening a terminal: {e}"))?;
        cmd.stdin(slave.try_clone().map_err(spawn_err)?)
            .stdout(slave.try_clone().map_err(spawn_err)?)
            .stderr(slave)
            .process_group(0);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return fail(&mut ws, argv, &spawn_err(e)).await,
        };
        let mut reader = master.try_clone().map_err(|e| e.to_string())?;
        let out = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || out.blocking_send(Out::Data(1, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        let resizer = master.try_clone().map_err(|e| e.to_string())?;
        resize = Some(Box::new(move |w, h| {
            let size = rustix::termios::Winsize {
                ws_row: h,
                ws_col: w,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let _ = rustix::termios::tcsetwinsize(&resizer, size);
        }));
        let mut writer = master;
        if stdin {
            input = Some(Box::new(move |data| writer.write_all(data).is_ok()));
        }
        child
    } else {
        cmd.stdin(if stdin {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return fail(&mut ws, argv, &spawn_err(e)).await,
        };
        for (channel, pipe) in [
            (
                1u8,
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
            (
                2u8,
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
        ] {
            let Some(mut pipe) = pipe else { continue };
            let out = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 || out.send(Out::Data(channel, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(mut pipe) = child.stdin.take() {
            let (itx, mut irx) = tokio::sync::mpsc::unbounded_channel::<Option<Vec<u8>>>();
            tokio::spawn(async move {
                while let Some(Some(data)) = irx.recv().await {
                    if pipe.write_all(&data).await.is_err() {
                        break;
                    }
                }
            });
            input = Some(Box::new(move |data| itx.send(Some(data.to_vec())).is_ok()));
        }
        child
    };
    let waiter = tx.clone();
    let wait = tokio::spawn(async move {
        let code = match child.wait().await {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            }
            Err(_) => 255,
        };
        let _ = waiter.send(Out::Exited(code)).await;
        child
    });
    drop(tx);
    let mut exit = None;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    0 => {
                        if let Some(send) = input.as_mut()
                            && !send(&data[1..])
                        {
                            input = None;
                        }
                    }
                    4 => {
                        let size: serde_json::Value = serde_json::from_slice(&data[1..]).unwrap_or_default();
                        let dim = |k: &str| size[k].as_u64().and_then(|v| u16::try_from(v).ok()).unwrap_or(0);
                        if let Some(r) = &resize {
                            r(dim("Width"), dim("Height"));
                        }
                    }
                    255 if v5 && data.get(1) == Some(&0) => input = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(Out::Data(channel, data)) => {
                    if ws.send(frame(channel, &data)).await.is_err() {
                        break;
                    }
                }
                Some(Out::Exited(code)) => {
                    exit = Some(code);
                    // Output still in the pipes comes before the status.
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
                    while let Ok(Some(Out::Data(channel, data))) = tokio::time::timeout_at(deadline, rx.recv()).await {
                        let _ = ws.send(frame(channel, &data)).await;
                    }
                    break;
                }
                None => break,
            },
        }
    }
    if exit.is_none() {
        // The client went away: the command goes with it.
        wait.abort();
        return Ok(());
    }
    let status = exit_status(argv, exit.unwrap_or(0));
    let _ = ws.send(frame(3, status.to_string().as_bytes())).await;
    let _ = ws.close(Some(normal_close())).await;
    Ok(())
}

async fn fail<S>(ws: &mut WebSocketStream<S>, argv: &[String], why: &str) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let status = json!({"metadata": {}, "status": "Failure", "message": format!("failed to exec in container: {why}"), "reason": "InternalError"});
    let _ = ws.send(frame(3, status.to_string().as_bytes())).await;
    let _ = ws.close(Some(normal_close())).await;
    let _ = argv;
    Err(why.to_string())
}

/// The close frame kubectl reads as the end of every stream (1000).
pub(crate) fn normal_close() -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }
}

/// A pseudo-terminal: its master and its slave.
fn open_pty() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(std::path::Path::new(std::ffi::OsStr::from_bytes(name.as_bytes())))?;
    Ok((std::fs::File::from(master), slave))
}

use std::os::unix::ffi::OsStrExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn v5_is_preferred_and_unknown_protocols_refused() {
        assert_eq!(
            choose_protocol("v4.channel.k8s.io, v5.channel.k8s.io"),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose_protocol("v4.channel.k8s.io"), Some("v4.channel.k8s.io"));
        assert_eq!(choose_protocol("channel.k8s.io"), None);
    }

    #[test]
    fn a_failed_command_reports_its_exit_code() {
        let s = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }
}
