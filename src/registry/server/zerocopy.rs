//! Zero-copy blob bodies and the connection's socket.
//!
//! A verified blob's bytes go from the page cache into the socket with `sendfile(2)`, never through user
//! space (reading them into a buffer and writing that buffer out costs two copies of every byte served, the
//! bulk of the server's CPU time under a pull storm). hyper writes every response, head and body, through
//! the connection's [`Socket`] and has no way to hand it a file, so a zero-copy body is a stream of
//! *placeholder* frames: slices of one zero-filled region ([`placeholder`], never read or written), each
//! standing for a span of the blob file that the body announces on its connection's [`Spans`] queue when it
//! produces the frame. hyper queues body frames without copying them (`writev(true)` on the connection) and
//! writes them in order; the socket recognises a placeholder by its address and sends the file span it stands
//! for instead. A placeholder that is not exactly the rest of the next announced span is an internal error that
//! closes the connection: placeholder bytes are never sent.
//!
//! `sendfile` runs on tokio's blocking pool (a page-cache miss waits there, never on an async worker), on a
//! duplicate of the socket's descriptor (the socket stays open while a send is under way, whatever happens to
//! the connection). The socket is non-blocking: a send stops when the socket buffer is full, and the next
//! one waits for room the way tokio does (readiness cleared only when a probe under `try_io` finds no room, so
//! a wake-up in between is never lost). A file that ends early (truncated on disk) ends the response and the
//! connection, like a short read on the copying path. As with any in-place change to a file while it is
//! served, bytes already handed to the socket are sent as the page cache holds them; blob files are written
//! once and renamed into place, and a rewritten file is a new file stamp, checked again before it is served
//! zero-copy.
//!
//! The socket also carries the send deadline: its writes fail with `TimedOut` once they have made no progress
//! for `timeout` (a client that stopped reading, or a disk that stopped answering).

use super::blobs::Ctx;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of the file one placeholder frame stands for, at most.
pub const FRAME: usize = 8 << 20;

/// The placeholder region: zero-filled, allocated once and never touched (so it takes no resident memory).
fn placeholder() -> &'static [u8] {
    static REGION: OnceLock<&'static [u8]> = OnceLock::new();
    REGION.get_or_init(|| Box::leak(vec![0u8; FRAME].into_boxed_slice()))
}

/// Where `buf` starts in the placeholder region, if it lies in it.
fn placeholder_offset(buf: &[u8]) -> Option<usize> {
    let region = placeholder();
    let (base, at) = (region.as_ptr() as usize, buf.as_ptr() as usize);
    (at >= base && at < base + region.len()).then(|| at - base)
}

/// One frame's span of a blob file, announced when the body produced the frame.
struct Span {
    file: Arc<File>,
    /// File offset of the frame's first byte.
    at: u64,
    len: usize,
    /// Bytes of the frame sent so far.
    sent: usize,
    ctx: Arc<Ctx>,
}

/// A connection's announced spans, in the order hyper writes their frames (one per connection, in each
/// request's extensions).
#[derive(Default)]
pub struct Spans(Mutex<VecDeque<Span>>);

impl Spans {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Span>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The body of bytes `start..end` (end exclusive) of `file`, sent with `sendfile` by the connection's socket.
pub fn body(spans: Arc<Spans>, file: Arc<File>, start: u64, end: u64, ctx: Arc<Ctx>) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(start, move |at| {
        let (spans, file, ctx) = (spans.clone(), file.clone(), ctx.clone());
        async move {
            if at >= end {
                return None;
            }
            let len = FRAME.min((end - at) as usize);
            spans.lock().push_back(Span { file, at, len, sent: 0, ctx });
            Some((Ok(Bytes::from_static(&placeholder()[..len])), at + len as u64))
        }
    })
}

/// What a `sendfile` task did: bytes sent, and whether it stopped on a full socket buffer.
type Sent = io::Result<(usize, bool)>;

/// The connection's socket: plain writes for everything but placeholders, `sendfile` for those, and the send
/// deadline.
pub struct Socket {
    inner: TcpStream,
    spans: Arc<Spans>,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A duplicate of the socket's descriptor for the `sendfile` tasks (made at the first one).
    dup: Option<Arc<OwnedFd>>,
    sending: Option<tokio::task::JoinHandle<Sent>>,
    /// The last send stopped on a full socket buffer: wait for room before the next.
    full: bool,
}

impl Socket {
    pub fn new(inner: TcpStream, spans: Arc<Spans>, timeout: Duration) -> Self {
        Socket { inner, spans, timeout, deadline: None, dup: None, sending: None, full: false }
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(x) => {
                self.deadline = None;
                Poll::Ready(x)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let d = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if d.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("the client read nothing for {timeout:?}"))));
                }
                Poll::Pending
            }
        }
    }

    /// Write `bufs`: the leading plain buffers with one `writev`, or the placeholder that comes first.
    fn poll_bufs(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        };
        if let Some(offset) = placeholder_offset(&bufs[first]) {
            return self.poll_send(cx, offset, bufs[first].len());
        }
        let plain = bufs[first..].iter().position(|b| placeholder_offset(b).is_some()).map_or(bufs.len(), |p| first + p);
        if self.spans.lock().front().is_some_and(|s| s.sent > 0) {
            return Poll::Ready(Err(internal("plain bytes written in the middle of a file span")));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs[first..plain])
    }

    /// Send (part of) the placeholder at `offset` in the region, `len` bytes: the rest of the first span.
    fn poll_send(&mut self, cx: &mut Context<'_>, offset: usize, len: usize) -> Poll<io::Result<usize>> {
        let (file, at, ctx) = {
            let spans = self.spans.lock();
            match spans.front() {
                Some(s) if s.sent == offset && s.sent + len == s.len => (s.file.clone(), s.at + s.sent as u64, s.ctx.clone()),
                _ => return Poll::Ready(Err(internal("a body frame does not match its file span"))),
            }
        };
        loop {
            if let Some(task) = self.sending.as_mut() {
                let r = ready!(Pin::new(task).poll(cx));
                self.sending = None;
                let (n, full) = match r {
                    Ok(Ok(x)) => x,
                    Ok(Err(e)) => return Poll::Ready(Err(ctx.fail(e))),
                    Err(join) => return Poll::Ready(Err(ctx.fail(io::Error::other(format!("the send task failed: {join}"))))),
                };
                self.full = full;
                if n > 0 {
                    let mut spans = self.spans.lock();
                    if let Some(s) = spans.front_mut() {
                        s.sent += n;
                        if s.sent == s.len {
                            spans.pop_front();
                        }
                    }
                    return Poll::Ready(Ok(n));
                }
                if !full {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, format!("the file ended at byte {at} while it was sent with sendfile (truncated on disk?)"));
                    return Poll::Ready(Err(ctx.fail(e)));
                }
            }
            if self.full {
                // Clears the readiness only if no wake-up came since it was read (see the module docs).
                match self.inner.try_io(Interest::WRITABLE, || has_room(&self.inner)) {
                    Ok(()) => self.full = false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ready!(self.inner.poll_write_ready(cx))?;
                        continue;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            let sock = match &self.dup {
                Some(d) => d.clone(),
                None => self.dup.insert(Arc::new(self.inner.as_fd().try_clone_to_owned()?)).clone(),
            };
            let file = file.clone();
            self.sending = Some(tokio::task::spawn_blocking(move || send(&sock, &file, at, len)));
        }
    }
}

fn internal(what: &str) -> io::Error {
    tracing::error!("internal error in the zero-copy send: {what}; closing the connection");
    io::Error::other(format!("internal error: {what}"))
}

/// Whether the socket has room for more (or an error to report): a poll with no wait.
fn has_room(sock: &TcpStream) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `sendfile` bytes `at..at+len` of `file` into `sock` (non-blocking) until done, the buffer is full or the
/// file ends.
fn send(sock: &OwnedFd, file: &File, at: u64, len: usize) -> Sent {
    let mut offset = at as i64;
    let mut sent = 0;
    while sent < len {
        match nix::sys::sendfile::sendfile64(sock, file, Some(&mut offset), len - sent) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EAGAIN) => return Ok((sent, true)),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((sent, false))
}

impl AsyncRead for Socket {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = self.poll_bufs(cx, &[IoSlice::new(buf)]);
        self.track(cx, r)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = self.poll_bufs(cx, bufs);
        self.track(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, r)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
