//! The OCI distribution pull API over a [`BlobStore`] (in the style of go-containerregistry: a small handler
//! over a store trait).
//!
//! Routes (names contain slashes, so one catch-all handler parses the path itself):
//! `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<tag|digest>`, `GET|HEAD /v2/<name>/blobs/<digest>` (single
//! `Range`), `GET /v2/<name>/tags/list` and `GET /v2/_catalog` (both with `n`/`last` and a `Link` header).
//!
//! Names: a request's `<name>` is the image path without its upstream host (see `names`); `?ns=<host>` (sent by
//! containerd mirrors) picks that host's image when several hosts provide the same path, otherwise the most
//! recently loaded one wins (logged at debug level). Content by digest (manifests and blobs) is served under
//! any repository name the store knows: distribution scopes blobs per repository, but everything in this
//! store is equally public to its clients, so the check would cost a lookup and protect nothing.
//! `Accept` headers are not used for content negotiation: the exact stored bytes are always served with their
//! own media type (what distribution does for OCI indexes; containerd, skopeo and docker >= 20 accept every
//! type a bundle can hold).
//!
//! Files: every file-system access (open, stat, read) runs on tokio's blocking pool, never on the async
//! workers; blobs are streamed from a file handle in bounded chunks, never memory-mapped, and a blob file that
//! is missing, truncated or damaged fails the requests for it, and only those (see `blobs`).
//!
//! Connections (see `conn`): a cap on open connections (idle ones make room for new ones), a deadline for a
//! request's headers (which also bounds keep-alive idling), a deadline for a response that makes no progress,
//! bounded header sizes; junk is answered by hyper with 400/431 and the connection closed.

mod blobs;
mod conn;

pub use blobs::FsBlobStore;
pub use conn::{bind, Limits};

use crate::digest::Digest;
use crate::registry::catalog::Index;
use crate::registry::names;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the handler needs from a store. `open` touches the file system: the handler calls it on the
/// blocking pool.
pub trait BlobStore: Send + Sync + 'static {
    /// The current catalog lookup tables.
    fn index(&self) -> Arc<Index>;
    /// Open a stored blob (None: not in the store); a blob of at most `read_upto` bytes is also read whole
    /// and checked against its digest.
    fn open(&self, digest: &Digest, read_upto: u64) -> io::Result<Option<Opened>>;
    /// Remember what serving a blob found out about this file (logged when bad).
    fn record(&self, digest: &Digest, stamp: FileStamp, verdict: Verdict);
    /// Claim the hashing of an unchecked blob for one download (false: another download is hashing it, so
    /// concurrent first downloads do not all hash the same bytes); released with `release_check`.
    fn claim_check(&self, digest: &Digest) -> bool;
    fn release_check(&self, digest: &Digest);
}

/// Identity of one version of a file: a rewritten or truncated file gets another stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// What is known about a blob file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchecked,
    /// It was read whole and matched its digest.
    Verified,
    /// It cannot be served: why.
    Bad(String),
}

/// An open blob.
pub struct Opened {
    pub file: Arc<std::fs::File>,
    /// Its size on disk.
    pub len: u64,
    pub stamp: FileStamp,
    pub verdict: Verdict,
    /// Its bytes, when it was small enough to be read whole (and checked) when opened.
    pub data: Option<Bytes>,
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn BlobStore>,
    /// How long a file-system operation may take before the request fails.
    disk_timeout: Duration,
}

/// The axum application (routes + access log + API version header).
pub fn app(store: Arc<dyn BlobStore>, disk_timeout: Duration) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .layer(axum::middleware::from_fn(access_log))
        .with_state(AppState { store, disk_timeout })
}

async fn access_log(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let mut resp = next.run(req).await;
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    let bytes = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    tracing::debug!(
        target: "airgap::registry::access",
        %method, path, status = resp.status().as_u16(), bytes, ms = start.elapsed().as_secs_f64() * 1000.0, %peer,
        "request"
    );
    resp
}

/// Parsed query string (percent-decoded).
fn query_param(uri: &axum::http::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error(status: StatusCode, code: &str, message: &str, detail: serde_json::Value, head: bool) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({"errors": [{"code": code, "message": message, "detail": detail}]}))
        .unwrap_or_default();
    let len = body.len();
    let mut r = Response::new(if head { Body::empty() } else { Body::from(body) });
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn json_response(value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Body::from(body.clone()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    r
}

fn internal(e: io::Error, head: bool) -> Response {
    tracing::error!("failed to read the store: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "failed to read the store", serde_json::json!({}), head)
}

/// A blob that cannot be served (its failure was logged when it was found).
fn damaged(d: &Digest, why: &str, head: bool) -> Response {
    tracing::warn!("refused blob {d}: {why}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "the registry's copy of this blob is damaged",
        serde_json::json!({"digest": d.to_string()}),
        head,
    )
}

/// Open a blob on the blocking pool (reading it whole when it is at most `read_upto` bytes).
async fn open(st: &AppState, d: &Digest, read_upto: u64, head: bool) -> Result<Option<Opened>, Response> {
    let (store, digest) = (st.store.clone(), d.clone());
    let task = tokio::task::spawn_blocking(move || store.open(&digest, read_upto));
    match tokio::time::timeout(st.disk_timeout, task).await {
        Ok(Ok(Ok(o))) => Ok(o),
        Ok(Ok(Err(e))) => Err(internal(io::Error::new(e.kind(), format!("blob {d}: {e}")), head)),
        Ok(Err(e)) => Err(internal(io::Error::other(format!("blob {d}: the file task failed: {e}")), head)),
        Err(_) => Err(internal(io::Error::new(io::ErrorKind::TimedOut, format!("blob {d}: opening it took longer than {:?}", st.disk_timeout)), head)),
    }
}

async fn handle(State(st): State<AppState>, method: Method, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "this registry is read-only (pull only)", serde_json::json!({}), false);
    }
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v2") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry API path", serde_json::json!({}), head);
    };
    if rest.is_empty() || rest == "/" {
        let mut r = json_response(&serde_json::json!({}));
        if head {
            *r.body_mut() = Body::empty();
        }
        return r;
    }
    let rest = &rest[1..];
    let index = st.store.index();
    if rest == "_catalog" {
        let repos = index.repositories();
        return paginate(&uri, "/v2/_catalog", "repositories", repos, None);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let ns = query_param(&uri, "ns").map(|h| names::normalize_host(&h).to_string());
        return match index.tags(name, ns.as_deref()) {
            Some(tags) => paginate(&uri, &format!("/v2/{name}/tags/list"), "tags", tags, Some(name)),
            None => name_unknown(name, head),
        };
    }
    let Some((left, reference)) = rest.rsplit_once('/') else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry API path", serde_json::json!({}), head);
    };
    let Some((name, kind)) = left.rsplit_once('/') else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry API path", serde_json::json!({}), head);
    };
    match kind {
        "manifests" => manifest(&st, &index, &uri, name, reference, head).await,
        "blobs" => blob(&st, &index, name, reference, &headers, head).await,
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry API path", serde_json::json!({}), head),
    }
}

fn name_unknown(name: &str, head: bool) -> Response {
    error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry", serde_json::json!({"name": name}), head)
}

async fn manifest(st: &AppState, index: &Index, uri: &axum::http::Uri, name: &str, reference: &str, head: bool) -> Response {
    if !index.has_name(name) {
        return name_unknown(name, head);
    }
    let ns = query_param(uri, "ns").map(|h| names::normalize_host(&h).to_string());
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            serde_json::json!({"name": name, "reference": reference}),
            head,
        )
    };
    let Some(hit) = index.resolve_manifest(name, ns.as_deref(), reference) else {
        return unknown();
    };
    if let (Some(host), None) = (&hit.host, &ns) {
        tracing::debug!("{name}:{reference} is provided by several hosts and the request names none (no ?ns=): serving {host}'s, the most recently loaded");
    }
    // Manifests are small: read whole and checked against their digest on every request, HEAD included.
    let body = match open(st, &hit.digest, crate::registry::store::MAX_MANIFEST, head).await {
        Err(r) => return r,
        Ok(None) => {
            tracing::warn!("manifest {} is in the catalog but its blob file is gone (removed by gc?)", hit.digest);
            return unknown();
        }
        Ok(Some(o)) => match (o.verdict, o.data) {
            (Verdict::Bad(why), _) => return damaged(&hit.digest, &why, head),
            (_, Some(data)) if data.len() as u64 == hit.size => data,
            (_, _) => return damaged(&hit.digest, "its size differs from the catalog's", head),
        },
    };
    let mut r = Response::new(if head { Body::empty() } else { Body::from(body) });
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&hit.media_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(hit.size));
    digest_headers(h, &hit.digest);
    r
}

fn digest_headers(h: &mut HeaderMap, d: &Digest) {
    if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
        h.insert("docker-content-digest", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{d}\"")) {
        h.insert(header::ETAG, v);
    }
}

/// A single byte range `bytes=a-b`, `bytes=a-` or `bytes=-n`: Some(Ok((start, end_inclusive))), Some(Err(()))
/// when unsatisfiable, None when absent or not a single range (the whole blob is sent).
fn parse_range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let v = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size.saturating_sub(n), size - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() { u64::MAX } else { b.parse().ok()? };
    if end < start {
        return None;
    }
    if start >= size {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(size - 1))))
}

async fn blob(st: &AppState, index: &Index, name: &str, reference: &str, headers: &HeaderMap, head: bool) -> Response {
    if !index.has_name(name) {
        return name_unknown(name, head);
    }
    let Ok(digest) = reference.parse::<Digest>() else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "provided digest did not match uploaded content", serde_json::json!({"digest": reference}), head);
    };
    let unknown = || error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry", serde_json::json!({"digest": reference}), head);
    let whole_get = !head && headers.get(header::RANGE).is_none();
    let blob = match open(st, &digest, if whole_get { blobs::SMALL } else { 0 }, head).await {
        Err(r) => return r,
        Ok(None) => return unknown(),
        Ok(Some(b)) => b,
    };
    if let Verdict::Bad(why) = &blob.verdict {
        return damaged(&digest, why, head);
    }
    let size = blob.len;
    let range = parse_range(headers, size);
    if let Some(Err(())) = range {
        let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", "requested range not satisfiable", serde_json::json!({"size": size}), head);
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return r;
    }
    let (status, start, end) = match range {
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        _ => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let body = if head || len == 0 {
        Body::empty()
    } else if let Some(data) = &blob.data {
        Body::from(data.slice(start as usize..=end as usize))
    } else {
        Body::from_stream(blobs::stream(st.store.clone(), digest.clone(), &blob, start, end + 1, st.disk_timeout))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=31536000"));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    digest_headers(h, &digest);
    r
}

/// `n`/`last` pagination over a lexically sorted list, with a `Link: <...>; rel="next"` header when more remain.
fn paginate(uri: &axum::http::Uri, base: &str, key: &str, items: Vec<String>, name: Option<&str>) -> Response {
    let last = query_param(uri, "last");
    let n: Option<usize> = query_param(uri, "n").and_then(|v| v.parse().ok());
    let mut items: Vec<String> = match &last {
        Some(l) => items.into_iter().filter(|t| t.as_str() > l.as_str()).collect(),
        None => items,
    };
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(l) = items.last() {
                link = Some(format!("<{base}?n={n}&last={l}>; rel=\"next\""));
            }
        }
    }
    let mut v = serde_json::json!({ key: items });
    if let Some(name) = name {
        v = serde_json::json!({"name": name, key: v[key].clone()});
    }
    let mut r = json_response(&v);
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LINK, link);
    }
    r
}

/// Serve on `listeners` until `shutdown` resolves; then stop accepting, close idle connections and let
/// running responses finish (at most `grace`).
pub async fn serve(
    store: Arc<dyn BlobStore>,
    listeners: Vec<tokio::net::TcpListener>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let app = app(store, limits.send_timeout);
    conn::run(app, listeners, limits, shutdown, grace).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let mut h = HeaderMap::new();
        let mut r = |v: &str, size| {
            h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            parse_range(&h, size)
        };
        assert_eq!(r("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(r("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(r("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(r("bytes=-1000", 100), Some(Ok((0, 99))));
        assert_eq!(r("bytes=50-1000", 100), Some(Ok((50, 99))));
        assert_eq!(r("bytes=100-", 100), Some(Err(())));
        assert_eq!(r("bytes=0-1,5-6", 100), None);
        assert_eq!(r("items=0-1", 100), None);
    }

    #[test]
    fn decodes_query() {
        assert_eq!(percent_decode("127.0.0.1%3A5000"), "127.0.0.1:5000");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("docker.io"), "docker.io");
    }
}
