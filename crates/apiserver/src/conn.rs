//! What one client may hold of the server: connections per client address, requests in
//! flight per client address, and how long a connection may sit idle, trickle its first
//! request, or leave a response unread. Upstream's API server has a 32 s header timeout and
//! a 90 s idle timeout; a client that never reads would otherwise keep whole LIST responses
//! in memory for as long as it liked.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The limits (`Default` is what `shoal server` uses).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections per client address; more are closed as they arrive.
    pub connections_per_client: usize,
    /// Requests in flight per client address, watches not counted; more get 429.
    pub requests_per_client: usize,
    /// For the TLS handshake, and for the first request of a connection to arrive.
    pub handshake_timeout: Duration,
    /// For a request's headers (HTTP/1.1), once it started.
    pub header_timeout: Duration,
    /// A connection with no request in flight and no bytes coming is closed after this.
    pub idle_timeout: Duration,
    /// A response the client does not read for this long ends its connection.
    pub stall_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_per_client: 1024,
            requests_per_client: 400,
            handshake_timeout: Duration::from_secs(32),
            header_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            stall_timeout: Duration::from_secs(60),
            max_streams: 100,
        }
    }
}

#[derive(Default)]
struct Usage {
    connections: usize,
    requests: usize,
}

/// Who holds what, by client address.
#[derive(Clone, Default)]
pub struct Clients {
    by_addr: Arc<Mutex<HashMap<IpAddr, Usage>>>,
}

/// Returns a client's connection or request to the pool when dropped.
pub struct Held {
    clients: Clients,
    addr: IpAddr,
    request: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.clients.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(u) = map.get_mut(&self.addr) {
            if self.request {
                u.requests = u.requests.saturating_sub(1);
            } else {
                u.connections = u.connections.saturating_sub(1);
            }
            if u.connections == 0 && u.requests == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

impl Clients {
    fn take(&self, addr: IpAddr, request: bool, max: usize) -> Option<Held> {
        let mut map = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        let u = map.entry(addr).or_default();
        let n = if request { &mut u.requests } else { &mut u.connections };
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Held {
            clients: self.clone(),
            addr,
            request,
        })
    }

    /// A connection slot for `addr`, if it has fewer than `max` open.
    pub fn connection(&self, addr: IpAddr, max: usize) -> Option<Held> {
        self.take(addr, false, max)
    }

    /// A request slot for `addr`, if it has fewer than `max` in flight.
    pub fn request(&self, addr: IpAddr, max: usize) -> Option<Held> {
        self.take(addr, true, max)
    }

    /// Connections open from `addr`.
    pub fn connections(&self, addr: IpAddr) -> usize {
        let map = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&addr).map_or(0, |u| u.connections)
    }
}

/// What a connection's requests tell its I/O: how many are in flight, and whether one ever
/// came (the first must come within the handshake timeout; later gaps may be idle ones).
#[derive(Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    served: AtomicBool,
}

/// Marks a request in flight on its connection while it lives (until its response body is
/// sent or dropped).
pub struct InFlight(Arc<Activity>);

impl Activity {
    /// A request started on this connection.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's I/O with its timeouts: reads that wait with nothing in flight end the
/// connection after the idle timeout (the handshake timeout before its first request), and
/// writes that make no progress end it after the stall timeout.
pub struct Guarded<T> {
    io: T,
    activity: Arc<Activity>,
    limits: Arc<Limits>,
    idle: Option<Pin<Box<Sleep>>>,
    stall: Option<Pin<Box<Sleep>>>,
}

impl<T> Guarded<T> {
    /// Wraps `io`.
    pub fn new(io: T, activity: Arc<Activity>, limits: Arc<Limits>) -> Guarded<T> {
        Guarded {
            io,
            activity,
            limits,
            idle: None,
            stall: None,
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// Polls the timer in `slot`, arming it with `after` first; true once it fired.
fn expired(slot: &mut Option<Pin<Box<Sleep>>>, after: Duration, cx: &mut Context<'_>) -> bool {
    let timer = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
    timer.as_mut().poll(cx).is_ready()
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.idle = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.activity.in_flight.load(Ordering::SeqCst) > 0 {
                    this.idle = None;
                    return Poll::Pending;
                }
                let after = if this.activity.served.load(Ordering::Relaxed) {
                    this.limits.idle_timeout
                } else {
                    this.limits.handshake_timeout
                };
                if expired(&mut this.idle, after, cx) {
                    return Poll::Ready(Err(timed_out("the connection was idle too long")));
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Guarded<T> {
    /// What a write-side poll answers: pending for longer than the stall timeout ends the
    /// connection; any progress resets the clock.
    fn stall_check<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending if expired(&mut self.stall, self.limits.stall_timeout, cx) => {
                Poll::Ready(Err(timed_out("the client stopped reading")))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                self.stall = None;
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        this.stall_check(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stall_check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.stall_check(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A response body that holds something (a request slot, the in-flight mark) until it has
/// been sent or dropped.
pub struct HoldingBody<B, H> {
    inner: B,
    _held: H,
}

impl<B, H> HoldingBody<B, H> {
    /// `inner`, holding `held` while it lives.
    pub fn new(inner: B, held: H) -> Self {
        HoldingBody { inner, _held: held }
    }
}

impl<B: http_body::Body + Unpin, H: Unpin> http_body::Body for HoldingBody<B, H> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(idle_ms: u64, stall_ms: u64) -> Arc<Limits> {
        Arc::new(Limits {
            handshake_timeout: Duration::from_millis(idle_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            stall_timeout: Duration::from_millis(stall_ms),
            ..Limits::default()
        })
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let clients = Clients::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<Held> = (0..3).map(|_| clients.connection(a, 3).unwrap()).collect();
        assert!(clients.connection(a, 3).is_none(), "a fourth is refused");
        assert!(clients.connection(b, 3).is_some(), "another client is not affected");
        assert!(clients.request(a, 1).is_some(), "requests are counted apart");
        drop(held);
        assert_eq!(clients.connections(a), 0);
        assert!(clients.connection(a, 3).is_some());
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_but_not_while_a_request_is_in_flight() {
        let (client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut guarded = Guarded::new(server, activity.clone(), limits(50, 1000));
        let busy = activity.start();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_millis(200), guarded.read(&mut buf)).await;
        assert!(r.is_err(), "no timeout while a request is in flight");
        drop(busy);
        let e = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_ends_its_connection() {
        let (_client, server) = tokio::io::duplex(16);
        let mut guarded = Guarded::new(server, Arc::new(Activity::default()), limits(1000, 50));
        let e = guarded.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_reading_client_is_never_cut_off() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut guarded = Guarded::new(server, Arc::new(Activity::default()), limits(1000, 50));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while got.len() < 256 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let n = client.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got.len()
        });
        guarded
            .write_all(&[1u8; 256])
            .await
            .expect("slow but steady reads keep it alive");
        assert_eq!(reader.await.unwrap(), 256);
    }
}
