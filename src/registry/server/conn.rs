//! Connections: accept, cap, deadlines, graceful stop.
//!
//! - **Cap.** At most `max_connections` connections are served at once (each holds a semaphore permit). When
//!   they are all taken, an idle connection (no request in flight: silent, trickling its headers, or between
//!   keep-alive requests) is closed to make room: first those that never completed a request (what idle and
//!   slow-loris clients hold), the longest idle first, then keep-alive ones. The new one waits up to
//!   [`ADMIT_WAIT`] for a slot; when every connection is busy with a response it is answered
//!   `503 Service Unavailable` (`Retry-After: 1`) and closed. At most [`MAX_WAITING`] connections wait; more
//!   are closed at once. So silent or slow clients cannot keep real clients out, and the process never runs
//!   out of file descriptors (the cap is lowered to fit the open-file limit).
//! - **Header deadline** (`header_timeout`, hyper's `header_read_timeout`): a request's headers must be
//!   complete within it, counted from when the connection was accepted or its previous response finished: it
//!   ends slow-loris clients and bounds keep-alive idling. Headers are limited to `max_header_bytes` (431).
//! - **Send deadline** (`send_timeout`): a response must start within it (the handler's file-system work),
//!   and a response whose writes make no progress for that long (a client that stopped reading) is abandoned.
//! - Junk (not HTTP/1.x, bad framing) is answered 400 by hyper and the connection closed; counts of closed
//!   connections are logged every [`REPORT_EVERY`] when something happened.

use anyhow::{Context, Result};
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// How long a connection accepted over the cap waits for a slot before it is answered 503.
pub const ADMIT_WAIT: Duration = Duration::from_secs(2);
/// How many connections may wait for a slot at once.
pub const MAX_WAITING: usize = 64;
/// How often the counts of closed and refused connections are logged (when not zero).
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// File descriptors kept for everything but connections (blob files are counted per connection).
const FD_RESERVE: u64 = 64;

/// The server's connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub send_timeout: Duration,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(20),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    /// Fit the cap to the open-file limit (raising the soft limit to the hard one first): a served connection
    /// holds its socket and at most one blob file. Returns a warning when the cap was lowered.
    pub fn fit_open_files(&mut self) -> Option<String> {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (mut soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            soft = hard;
        }
        let fit = (soft.saturating_sub(FD_RESERVE + MAX_WAITING as u64) / 2).max(1) as usize;
        if fit < self.max_connections {
            let msg = format!(
                "serving at most {fit} connections instead of {}: the open-file limit is {soft} (raise it, e.g. LimitNOFILE=)",
                self.max_connections
            );
            self.max_connections = fit;
            return Some(msg);
        }
        None
    }
}

/// Bind a listening socket. With `freebind` the address need not be on this host yet (IP_FREEBIND): a VIP
/// that keepalived moves here later is served from then on, with no restart.
pub fn bind(addr: SocketAddr, freebind: bool) -> io::Result<TcpListener> {
    let s = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    s.set_reuseaddr(true)?;
    if freebind {
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::IpFreebind, &true).map_err(io::Error::from)?;
    }
    s.bind(addr)?;
    s.listen(1024)
}

#[derive(Default)]
struct Stats {
    evicted: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    malformed: AtomicU64,
    stalled: AtomicU64,
    accept_errors: AtomicU64,
}

/// One served connection, as the cap sees it.
struct ConnState {
    /// Requests in flight (from hyper handing the request over until its response body is dropped).
    busy: AtomicUsize,
    /// Requests received so far.
    served: AtomicU64,
    /// Milliseconds since the server started when it last became idle (or was accepted).
    idle_since: AtomicU64,
    evicting: AtomicBool,
    evict: Notify,
}

struct Tracker {
    limits: Limits,
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    epoch: Instant,
    stats: Stats,
}

impl Tracker {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn register(&self) -> (u64, Arc<ConnState>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let st = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, st.clone());
        (id, st)
    }

    fn unregister(&self, id: u64) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Ask an idle connection to close: one that never sent a complete request first, the longest idle first.
    /// False when every connection is busy.
    fn evict_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let victim = conns
            .values()
            .filter(|c| c.busy.load(Ordering::Acquire) == 0 && !c.evicting.load(Ordering::Acquire))
            .min_by_key(|c| (c.served.load(Ordering::Relaxed) > 0, c.idle_since.load(Ordering::Relaxed)));
        match victim {
            Some(c) => {
                c.evicting.store(true, Ordering::Release);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a request in flight on its connection until dropped (with the response body).
struct InFlight {
    conn: Arc<ConnState>,
    tracker: Arc<Tracker>,
}

impl InFlight {
    fn new(conn: Arc<ConnState>, tracker: Arc<Tracker>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        conn.served.fetch_add(1, Ordering::Relaxed);
        InFlight { conn, tracker }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.idle_since.store(self.tracker.now_ms(), Ordering::Relaxed);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request marked in flight until hyper is done with it.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail with `TimedOut` once they have made no progress for `timeout`.
struct Stall {
    inner: TcpStream,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        Stall { inner, timeout, deadline: None }
    }

    fn track<T>(&mut self, cx: &mut TaskContext<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(x) => {
                self.deadline = None;
                Poll::Ready(x)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let d = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if std::future::Future::poll(d.as_mut(), cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("the client read nothing for {timeout:?}"))));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for Stall {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stall {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, r)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, r)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve `app` on `listeners` until `shutdown`; then stop accepting, close idle connections, let running
/// responses finish for at most `grace`.
pub async fn run(
    app: axum::Router,
    listeners: Vec<TcpListener>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<()> {
    anyhow::ensure!(limits.max_connections > 0, "the connection cap must be at least 1");
    let tracker = Arc::new(Tracker {
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        waiting: Arc::new(Semaphore::new(MAX_WAITING)),
        limits,
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        epoch: Instant::now(),
        stats: Stats::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accepts = tokio::task::JoinSet::new();
    for l in listeners {
        accepts.spawn(accept_loop(tracker.clone(), app.clone(), l, stop_rx.clone()));
    }
    let reporter = tokio::spawn(report(tracker.clone()));
    shutdown.await;
    let _ = stop_tx.send(true);
    while let Some(r) = accepts.join_next().await {
        r.context("an accept loop failed")?;
    }
    // Every connection gives its slot back when it ends.
    let all = tracker.limits.max_connections as u32;
    let drained = tokio::time::timeout(grace, tracker.slots.acquire_many(all)).await;
    reporter.abort();
    if drained.is_err() {
        tracing::warn!("some downloads were still running {grace:?} after the shutdown signal; stopped them");
    }
    Ok(())
}

async fn accept_loop(t: Arc<Tracker>, app: axum::Router, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: the backlog holds the connection meanwhile; do not spin.
                if t.stats.accept_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!("failed to accept a connection: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        match t.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(serve_conn(t.clone(), app.clone(), sock, peer, slot, stop.clone()));
            }
            Err(_) => {
                t.evict_idle();
                match t.waiting.clone().try_acquire_owned() {
                    Ok(wait) => {
                        let (t, app, stop) = (t.clone(), app.clone(), stop.clone());
                        tokio::spawn(async move {
                            let slot = tokio::time::timeout(ADMIT_WAIT, t.slots.clone().acquire_owned()).await;
                            drop(wait);
                            match slot {
                                Ok(Ok(slot)) => serve_conn(t, app, sock, peer, slot, stop).await,
                                _ => {
                                    t.stats.refused.fetch_add(1, Ordering::Relaxed);
                                    refuse(sock).await;
                                }
                            }
                        });
                    }
                    Err(_) => {
                        t.stats.refused.fetch_add(1, Ordering::Relaxed);
                        drop(sock);
                    }
                }
            }
        }
    }
}

/// 503 and close, for a connection that found no slot.
async fn refuse(mut sock: TcpStream) {
    const BODY: &str = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"the registry is serving as many connections as it can; retry","detail":{}}]}"#;
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        sock.write_all(resp.as_bytes()).await?;
        sock.shutdown().await
    })
    .await;
}

async fn serve_conn(
    t: Arc<Tracker>,
    app: axum::Router,
    sock: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    if *stop.borrow() {
        return; // admitted after the shutdown signal (it waited for a slot): not served
    }
    let (id, state) = t.register();
    let io = hyper_util::rt::TokioIo::new(Stall::new(sock, t.limits.send_timeout));
    let hyper_app = hyper_util::service::TowerToHyperService::new(app);
    let (st, tr) = (state.clone(), t.clone());
    let send_timeout = t.limits.send_timeout;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = InFlight::new(st.clone(), tr.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let fut = hyper::service::Service::call(&hyper_app, req);
        async move {
            let resp: Response = match tokio::time::timeout(send_timeout, fut).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    tracing::error!("a request from {peer} got no response within {send_timeout:?} (is the disk answering?)");
                    let mut r = Response::new(Body::empty());
                    *r.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    r
                }
            };
            Ok::<_, Infallible>(resp.map(|b| Body::new(Tracked { inner: b, _in_flight: in_flight })))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(t.limits.header_timeout)
        .max_buf_size(t.limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    classify(&t, peer, &e);
                }
                break;
            }
            _ = state.evict.notified() => {
                // Polled here, the connection cannot be handed a request meanwhile: idle now means idle.
                if state.busy.load(Ordering::Acquire) == 0 {
                    t.stats.evicted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("closed an idle connection from {peer} to make room for a new one");
                    break;
                }
                state.evicting.store(false, Ordering::Release);
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                if state.busy.load(Ordering::Acquire) == 0 {
                    break;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    t.unregister(id);
    drop(slot);
}

fn classify(t: &Tracker, peer: SocketAddr, e: &hyper::Error) {
    let io_kind = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>()).map(|e| e.kind());
    if e.is_timeout() {
        t.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("closed a connection from {peer}: no complete request headers within {:?}", t.limits.header_timeout);
    } else if e.is_parse() || e.is_parse_too_large() {
        t.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("closed a connection from {peer}: malformed request ({e})");
    } else if io_kind == Some(io::ErrorKind::TimedOut) {
        t.stats.stalled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("closed a connection from {peer}: {e}");
    } else {
        tracing::debug!("connection from {peer} ended: {e}");
    }
}

/// Log what the limits did, every [`REPORT_EVERY`] when something happened.
async fn report(t: Arc<Tracker>) {
    let mut last = [0u64; 6];
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = &t.stats;
        let now = [&s.evicted, &s.refused, &s.header_timeouts, &s.malformed, &s.stalled, &s.accept_errors].map(|c| c.load(Ordering::Relaxed));
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        if d[0] + d[1] > 0 {
            tracing::warn!(
                evicted = d[0], refused = d[1],
                "connection cap of {} reached: closed {} idle connections to admit new ones, refused {} (every connection busy)",
                t.limits.max_connections, d[0], d[1]
            );
        }
        if d[2] + d[3] + d[4] > 0 {
            tracing::info!(
                header_timeouts = d[2], malformed = d[3], stalled = d[4],
                "closed {} connections that sent no complete request headers within {:?}, {} that sent a malformed request, {} that stopped reading a response",
                d[2], t.limits.header_timeout, d[3], d[4]
            );
        }
        if d[5] > 0 {
            tracing::error!("failed to accept {} connections (open-file limit?)", d[5]);
        }
    }
}
