//! A small blocking HTTP/1.1 client and server, over plain TCP or TLS (rustls, ring provider). One request
//! per connection (`Connection: close`). Errors read like Go's net/http ones, because the real tools print
//! those (`Get "https://…": dial tcp 10.0.0.1:6443: connect: connection refused`).

use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Request {
        Request { method: method.into(), target: target.into(), ..Default::default() }
    }

    pub fn json(mut self, v: &serde_json::Value) -> Request {
        self.body = serde_json::to_vec(v).expect("json");
        self.headers.push(("Content-Type".into(), "application/json".into()));
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Request {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn get_header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| percent_decode(v))
        })
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec_pretty(v).expect("json"),
        }
    }

    pub fn text(status: u16, s: &str) -> Response {
        Response { status, headers: vec![("Content-Type".into(), "text/plain".into())], body: s.as_bytes().to_vec() }
    }

    pub fn value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn read_head<R: BufRead>(r: &mut R) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF"));
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "unexpected EOF"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

fn read_body<R: Read>(r: &mut R, headers: &[(String, String)], until_eof: bool) -> std::io::Result<Vec<u8>> {
    let len = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        None if until_eof => {
            // a TLS peer that closes without close_notify still sent the whole body
            match r.read_to_end(&mut body) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(e),
            }
        }
        None => {}
    }
    Ok(body)
}

/// Trait object for "a byte stream" (TCP or TLS).
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// How a client connection is secured.
pub enum Tls {
    Plain,
    Config(Arc<rustls::ClientConfig>),
}

/// One request to `url` (`http://` or `https://`); `timeout` bounds connect, read and write.
pub fn request(url: &str, tls: &Tls, req: Request, timeout: Duration) -> Result<Response, String> {
    let method = req.method.clone();
    let go_method = format!("{}{}", &method[..1], method[1..].to_ascii_lowercase());
    let err = |e: String| format!("{go_method} \"{url}\": {e}");
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(err("unsupported protocol scheme".into()));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = if req.target.is_empty() { path.to_string() } else { format!("{}{}", path.trim_end_matches('/'), req.target) };
    let (host, port) = split_host_port(hostport, if https { 443 } else { 80 });
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| err(format!("dial tcp: lookup {host}: {e}")))?
        .next()
        .ok_or_else(|| err(format!("dial tcp: lookup {host}: no such host")))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| err(format!("dial tcp {addr}: {}", go_io_error(&e))))?;
    tcp.set_read_timeout(Some(timeout)).ok();
    tcp.set_write_timeout(Some(timeout)).ok();
    let mut stream: Box<dyn Stream> = match (https, tls) {
        (false, _) => Box::new(tcp),
        (true, Tls::Plain) => return Err(err("https needs a TLS configuration".into())),
        (true, Tls::Config(cfg)) => {
            let name = ServerName::try_from(host.clone()).map_err(|e| err(format!("bad server name {host}: {e}")))?;
            let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| err(e.to_string()))?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            // handshake now, so that certificate errors are reported as such
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock).map_err(|e| err(tls_error(&e)))?;
            }
            Box::new(s)
        }
    };
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n", method, target, hostport, req.body.len());
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&req.body)).and_then(|_| stream.flush()).map_err(|e| err(tls_error(&e)))?;
    let mut r = BufReader::new(stream);
    let (status_line, headers) = read_head(&mut r).map_err(|e| err(tls_error(&e)))?;
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| err(format!("malformed HTTP response {status_line:?}")))?;
    let body = if method == "HEAD" { Vec::new() } else { read_body(&mut r, &headers, true).map_err(|e| err(e.to_string()))? };
    Ok(Response { status, headers, body })
}

pub fn split_host_port(hp: &str, default: u16) -> (String, u16) {
    if let Some(rest) = hp.strip_prefix('[') {
        let (h, p) = rest.split_once(']').unwrap_or((rest, ""));
        return (h.to_string(), p.trim_start_matches(':').parse().unwrap_or(default));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().unwrap_or(default)),
        _ => (hp.to_string(), default),
    }
}

fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".into(),
        _ => match e.raw_os_error() {
            Some(113) => "connect: no route to host".into(),
            Some(101) => "connect: network is unreachable".into(),
            _ => e.to_string(),
        },
    }
}

/// A TLS failure as Go's crypto/tls words it.
fn tls_error(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => {
            let why = match c {
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => {
                    "x509: certificate signed by unknown authority".to_string()
                }
                rustls::CertificateError::Expired | rustls::CertificateError::NotValidYet => {
                    "x509: certificate has expired or is not yet valid".to_string()
                }
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "x509: certificate is not valid for the requested name".to_string()
                }
                other => format!("x509: {other:?}"),
            };
            format!("tls: failed to verify certificate: {why}")
        }
        Some(other) => format!("remote error: tls: {other}"),
        None => go_io_error(e),
    }
}

/// The peer of a server connection: its address and the (verified) certificate chain it presented.
pub struct Peer {
    pub certs: Vec<CertificateDer<'static>>,
}

pub type Handler = Arc<dyn Fn(Request, &Peer) -> Response + Send + Sync>;

/// Serve `listener` forever, one thread per connection, TLS when `tls` is given.
pub fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) {
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let (tls, handler) = (tls.clone(), handler.clone());
        std::thread::spawn(move || {
            tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
            tcp.set_write_timeout(Some(Duration::from_secs(30))).ok();
            match tls {
                None => {
                    let mut s = tcp;
                    let _ = handle(&mut s, Peer { certs: vec![] }, &handler);
                }
                Some(cfg) => {
                    let Ok(conn) = rustls::ServerConnection::new(cfg) else { return };
                    let mut s = rustls::StreamOwned::new(conn, tcp);
                    while s.conn.is_handshaking() {
                        if s.conn.complete_io(&mut s.sock).is_err() {
                            return;
                        }
                    }
                    let certs = s.conn.peer_certificates().map(|c| c.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default();
                    let _ = handle(&mut s, Peer { certs }, &handler);
                    s.conn.send_close_notify();
                    let _ = s.flush();
                }
            }
        });
    }
}

fn handle<S: Read + Write>(s: &mut S, peer: Peer, handler: &Handler) -> std::io::Result<()> {
    let mut r = BufReader::new(&mut *s);
    let (line, headers) = read_head(&mut r)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
    let body = read_body(&mut r, &headers, false)?;
    drop(r);
    let resp = handler(Request { method, target, headers, body }, &peer);
    let reason = match resp.status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\nConnection: close\r\nContent-Length: {}\r\n", resp.status, resp.body.len());
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(&resp.body)?;
    s.flush()
}
