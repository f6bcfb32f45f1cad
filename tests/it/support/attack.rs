//! Hostile clients for server tests: connections opened and left silent, slow-loris connections that
//! trickle request headers byte by byte, and junk requests (garbage bytes, huge headers, bad paths, bad
//! digests). Each runs on its own thread next to the real client under test.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the hostile thread looks at its connections (and sends each slow-loris connection one byte).
pub const TICK: Duration = Duration::from_millis(50);

/// What happened to one hostile connection.
#[derive(Debug, Clone)]
pub struct Fate {
    pub slow: bool,
    /// From opening it until the server closed it (None: still open when the thread stopped).
    pub closed_after: Option<Duration>,
    /// Header bytes a slow-loris connection got to send.
    pub sent: usize,
    /// What the server sent before closing (a 408/503 response, or nothing).
    pub got: Vec<u8>,
}

struct Conn {
    s: TcpStream,
    opened: Instant,
    fate: Fate,
}

/// Silent and slow-loris connections held open by a thread until the server closes them.
pub struct Hostile {
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Vec<Fate>>>,
    pub opened: usize,
    pub failed_to_open: usize,
}

/// The headers a slow-loris client trickles: valid, and long enough never to end during a test.
fn slow_request(i: usize) -> Vec<u8> {
    let mut r = format!("GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Slow-{i}: ").into_bytes();
    r.extend(std::iter::repeat_n(b'a', 100_000));
    r
}

/// Open `silent` connections that never send a byte and `slow` connections that send one header byte per
/// [`TICK`], and watch them from a thread until [`Hostile::stop`]. Connections are opened here, before it
/// returns (an `accept` backlog takes them even when the server does not accept).
pub fn hostile(addr: &str, silent: usize, slow: usize) -> Hostile {
    let mut conns = Vec::new();
    let mut failed = 0;
    for i in 0..silent + slow {
        match TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
            Ok(mut s) => {
                let slow = i >= silent;
                // A slow-loris connection starts its headers at once (the thread trickles the rest).
                let sent = if slow { s.write(&slow_request(i)[..1]).unwrap_or(0) } else { 0 };
                s.set_nonblocking(true).unwrap();
                conns.push(Conn { s, opened: Instant::now(), fate: Fate { slow, closed_after: None, sent, got: Vec::new() } });
            }
            Err(_) => failed += 1,
        }
    }
    let opened = conns.len();
    let stop = Arc::new(AtomicBool::new(false));
    let closed_count = Arc::new(AtomicUsize::new(0));
    let (st, cc) = (stop.clone(), closed_count.clone());
    let thread = std::thread::spawn(move || {
        let requests: Vec<Vec<u8>> = (0..conns.len()).map(slow_request).collect();
        let mut buf = [0u8; 4096];
        while !st.load(Ordering::Relaxed) {
            for (i, c) in conns.iter_mut().enumerate() {
                if c.fate.closed_after.is_some() {
                    continue;
                }
                let closed = loop {
                    match c.s.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(n) => c.fate.got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break true,
                    }
                };
                if !closed && c.fate.slow && c.fate.sent < requests[i].len() {
                    match c.s.write(&requests[i][c.fate.sent..c.fate.sent + 1]) {
                        Ok(n) => c.fate.sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => {
                            c.fate.closed_after = Some(c.opened.elapsed());
                            cc.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if closed {
                    c.fate.closed_after = Some(c.opened.elapsed());
                    cc.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Pacing of the slow-loris clients (one byte per tick), not synchronisation.
            std::thread::sleep(TICK);
        }
        conns.into_iter().map(|c| c.fate).collect()
    });
    Hostile { stop, closed: closed_count, thread: Some(thread), opened, failed_to_open: failed }
}

impl Hostile {
    /// How many of its connections the server has closed so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }

    /// Wait until the server has closed every connection, at most until `deadline`. False on timeout.
    pub fn wait_all_closed(&self, deadline: Instant) -> bool {
        self.wait_closed(self.opened, deadline)
    }

    /// Wait until the server has closed at least `n` connections, at most until `deadline`. False on timeout.
    pub fn wait_closed(&self, n: usize, deadline: Instant) -> bool {
        super::try_wait_until(deadline.saturating_duration_since(Instant::now()), || self.closed() >= n).is_some()
    }

    /// Stop watching; what happened to every connection (they are closed now).
    pub fn stop(mut self) -> Vec<Fate> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One junk request and what the server answered: the status code, or None when it closed the connection
/// without an answer.
#[derive(Debug, Clone)]
pub struct JunkResult {
    pub what: String,
    pub status: Option<u16>,
}

/// Junk sent to a registry that serves `name` (an existing repository): garbage, oversized and malformed
/// requests, paths that try to leave the store, digests that are not digests.
pub fn junk_requests(name: &str) -> Vec<(String, Vec<u8>)> {
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: registry\r\n\r\n").into_bytes();
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("garbage bytes".into(), crate::support::images::pseudo_random(7, 4096)),
        ("HTTP/2 preface on HTTP/1".into(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("request line without a version".into(), b"GET /v2/\r\n\r\n".to_vec()),
        ("NUL in the request line".into(), b"GET /v2/\0/x HTTP/1.1\r\nHost: r\r\n\r\n".to_vec()),
        ("negative Content-Length".into(), b"GET /v2/ HTTP/1.1\r\nHost: r\r\nContent-Length: -5\r\n\r\n".to_vec()),
        (
            "a 200 KB header".into(),
            format!("GET /v2/ HTTP/1.1\r\nHost: r\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000)).into_bytes(),
        ),
        (
            "500 headers".into(),
            format!("GET /v2/ HTTP/1.1\r\nHost: r\r\n{}\r\n", (0..500).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()).into_bytes(),
        ),
        ("a path out of the store".into(), get("/v2/../../../../etc/passwd")),
        ("an encoded path out of the store".into(), get(&format!("/v2/{name}/blobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd"))),
        ("not a registry path".into(), get("/etc/passwd")),
        ("an 8 KB path".into(), get(&format!("/v2/{}/manifests/x", "a/".repeat(4000)))),
        ("a digest of letters".into(), get(&format!("/v2/{name}/blobs/sha256:{}", "z".repeat(64)))),
        ("a digest with a path in it".into(), get(&format!("/v2/{name}/blobs/sha256:../../../../etc/passwd"))),
        ("an upper-case digest".into(), get(&format!("/v2/{name}/blobs/sha256:{}", "A".repeat(64)))),
        ("a sha512 digest".into(), get(&format!("/v2/{name}/blobs/sha512:{}", "0".repeat(128)))),
        ("a short digest".into(), get(&format!("/v2/{name}/blobs/sha256:abc"))),
        ("a manifest by bad digest".into(), get(&format!("/v2/{name}/manifests/sha256:{}", "q".repeat(64)))),
        ("a blob of an unknown name".into(), get(&format!("/v2/no/such/name/blobs/sha256:{}", "0".repeat(64)))),
        (
            "an upload".into(),
            format!("POST /v2/{name}/blobs/uploads/ HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\n\r\nhello").into_bytes(),
        ),
        ("a bad range".into(), format!("GET /v2/{name}/tags/list HTTP/1.1\r\nHost: r\r\nRange: bytes=9-1,,,-\r\n\r\n").into_bytes()),
    ];
    v.push(("a bad query".into(), get(&format!("/v2/{name}/tags/list?n=-1&last=%ff%fe%00"))));
    v
}

/// Send one junk request on a fresh connection and read the answer (at most `timeout`).
pub fn send_junk(addr: &str, what: &str, bytes: &[u8], timeout: Duration) -> JunkResult {
    let mut status = None;
    if let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), timeout) {
        s.set_read_timeout(Some(timeout)).unwrap();
        s.set_write_timeout(Some(timeout)).unwrap();
        // The server may answer (431) and close before it has read everything: ignore write errors.
        let _ = s.write_all(bytes);
        let mut resp = Vec::new();
        let mut buf = [0u8; 8192];
        let start = Instant::now();
        while start.elapsed() < timeout {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    resp.extend_from_slice(&buf[..n]);
                    if resp.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&resp);
        status = text.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok());
    }
    JunkResult { what: what.to_string(), status }
}

/// Junk requests, round after round, from a thread until stopped.
pub struct Junk {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<JunkResult>>>,
}

pub fn junk(addr: &str, name: &str) -> Junk {
    let stop = Arc::new(AtomicBool::new(false));
    let (st, addr, reqs) = (stop.clone(), addr.to_string(), junk_requests(name));
    let thread = std::thread::spawn(move || {
        let mut out = Vec::new();
        // At least one full round, then more until stopped.
        loop {
            for (what, bytes) in &reqs {
                out.push(send_junk(&addr, what, bytes, Duration::from_secs(10)));
            }
            if st.load(Ordering::Relaxed) {
                return out;
            }
        }
    });
    Junk { stop, thread: Some(thread) }
}

impl Junk {
    pub fn stop(mut self) -> Vec<JunkResult> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}
