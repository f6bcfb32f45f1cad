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
//! Blob bodies: hyper cannot `sendfile`, so large blobs are memory-mapped and handed to hyper as a stream of
//! 1 MiB `Bytes` slices of the map: no user-space copy (the kernel copies from the page cache straight into
//! the socket), no anonymous memory. Behind the stream, the pages already sent are dropped from the process's
//! page tables (`MADV_DONTNEED`, harmless on a read-only file mapping: a later touch re-faults from the page
//! cache), so the resident set stays at a few MiB per download whatever the blob size. Blob files are never
//! modified once in place (a load only renames new files in), so a map cannot see a truncated file.

use crate::digest::Digest;
use crate::registry::catalog::Index;
use crate::registry::names;
use crate::registry::store::Store;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What the handler needs from a store.
pub trait BlobStore: Send + Sync + 'static {
    /// The current catalog lookup tables.
    fn index(&self) -> Arc<Index>;
    /// Size of a stored blob, or None.
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>>;
    /// The bytes of a stored blob, or None.
    fn blob(&self, digest: &Digest) -> io::Result<Option<BlobData>>;
}

/// A blob's bytes: in memory (small blobs) or memory-mapped.
pub enum BlobData {
    Bytes(Bytes),
    Map(Arc<memmap2::Mmap>),
}

impl BlobData {
    pub fn len(&self) -> usize {
        match self {
            BlobData::Bytes(b) => b.len(),
            BlobData::Map(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A response body for bytes `start..=end`.
    fn body(self, start: usize, end: usize) -> Body {
        match self {
            BlobData::Bytes(b) => Body::from(b.slice(start..=end)),
            BlobData::Map(map) => Body::from_stream(MapChunks { map, pos: start, end: end + 1, released: start }),
        }
    }
}

/// Size of the slices a mapped blob is sent in.
const CHUNK: usize = 1 << 20;

/// A read-only view of part of a map, owned (so hyper can hold it while writing).
struct MapSlice {
    map: Arc<memmap2::Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// The body stream of a mapped blob: 1 MiB slices; pages two chunks behind are dropped from the page tables.
struct MapChunks {
    map: Arc<memmap2::Mmap>,
    pos: usize,
    end: usize,
    released: usize,
}

impl futures::Stream for MapChunks {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.pos >= this.end {
            return std::task::Poll::Ready(None);
        }
        let behind = this.pos.saturating_sub(2 * CHUNK);
        if behind > this.released {
            // SAFETY: a read-only, file-backed shared mapping: MADV_DONTNEED only drops page-table entries; any
            // later access (hyper still writing an older slice) re-faults the same bytes from the page cache.
            let _ = unsafe { this.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, this.released, behind - this.released) };
            this.released = behind;
        }
        let n = CHUNK.min(this.end - this.pos);
        let slice = MapSlice { map: this.map.clone(), start: this.pos, end: this.pos + n };
        this.pos += n;
        std::task::Poll::Ready(Some(Ok(Bytes::from_owner(slice))))
    }
}

/// Blobs smaller than this are read into memory rather than mapped.
const MAP_THRESHOLD: u64 = 64 * 1024;

/// The real store: blob files on disk, the catalog reloaded when `catalog.json` changes.
pub struct FsBlobStore {
    store: Store,
    index: RwLock<Arc<Index>>,
    stamp: Mutex<Option<(u64, i64, i64, u64)>>,
}

impl FsBlobStore {
    pub fn open(store: Store) -> anyhow::Result<FsBlobStore> {
        let s = FsBlobStore { store, index: RwLock::new(Arc::new(Index::default())), stamp: Mutex::new(None) };
        s.reload_if_changed()?;
        Ok(s)
    }

    fn catalog_stamp(&self) -> Option<(u64, i64, i64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.store.catalog_path()).ok()?;
        Some((m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    }

    /// Re-read the catalog when `catalog.json` was replaced (inode, mtime or size changed). Cheap: one stat.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let stamp = self.catalog_stamp();
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == stamp && stamp.is_some() {
            return Ok(false);
        }
        let catalog = self.store.catalog()?;
        let index = Index::new(catalog);
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
        *last = stamp;
        Ok(true)
    }

    /// Re-read the catalog whether or not it changed (SIGHUP).
    pub fn reload(&self) -> anyhow::Result<()> {
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.reload_if_changed().map(|_| ())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl BlobStore for FsBlobStore {
    fn index(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.store.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn blob(&self, digest: &Digest) -> io::Result<Option<BlobData>> {
        let file = match std::fs::File::open(self.store.blob_path(digest)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < MAP_THRESHOLD {
            let mut buf = Vec::with_capacity(len as usize);
            io::Read::read_to_end(&mut &file, &mut buf)?;
            return Ok(Some(BlobData::Bytes(Bytes::from(buf))));
        }
        // SAFETY: blob files are immutable once in the store (loads only rename new files in, nothing
        // truncates or rewrites them), so the mapping cannot change under us.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Some(BlobData::Map(Arc::new(map))))
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn BlobStore>,
}

/// The axum application (routes + access log + API version header).
pub fn app(store: Arc<dyn BlobStore>) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .layer(axum::middleware::from_fn(access_log))
        .with_state(AppState { store })
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

fn internal(e: io::Error) -> Response {
    tracing::error!("failed to read the store: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "failed to read the store", serde_json::json!({}), false)
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
        "manifests" => manifest(&st, &index, &uri, name, reference, head),
        "blobs" => blob(&st, &index, name, reference, &headers, head),
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry API path", serde_json::json!({}), head),
    }
}

fn name_unknown(name: &str, head: bool) -> Response {
    error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry", serde_json::json!({"name": name}), head)
}

fn manifest(st: &AppState, index: &Index, uri: &axum::http::Uri, name: &str, reference: &str, head: bool) -> Response {
    if !index.has_name(name) {
        return name_unknown(name, head);
    }
    let ns = query_param(uri, "ns").map(|h| names::normalize_host(&h).to_string());
    let Some(hit) = index.resolve_manifest(name, ns.as_deref(), reference) else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            serde_json::json!({"name": name, "reference": reference}),
            head,
        );
    };
    if let (Some(host), None) = (&hit.host, &ns) {
        tracing::debug!("{name}:{reference} is provided by several hosts and the request names none (no ?ns=): serving {host}'s, the most recently loaded");
    }
    let bytes = if head {
        None
    } else {
        match st.store.blob(&hit.digest) {
            Ok(Some(b)) => Some(b),
            Ok(None) => return internal(io::Error::new(io::ErrorKind::NotFound, format!("manifest {} is in the catalog but its blob is missing", hit.digest))),
            Err(e) => return internal(e),
        }
    };
    let mut r = Response::new(match bytes {
        Some(b) if !b.is_empty() => {
            let n = b.len();
            b.body(0, n - 1)
        }
        _ => Body::empty(),
    });
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

fn blob(st: &AppState, index: &Index, name: &str, reference: &str, headers: &HeaderMap, head: bool) -> Response {
    if !index.has_name(name) {
        return name_unknown(name, head);
    }
    let Ok(digest) = reference.parse::<Digest>() else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "provided digest did not match uploaded content", serde_json::json!({"digest": reference}), head);
    };
    let unknown = || error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry", serde_json::json!({"digest": reference}), head);
    let size = match st.store.blob_size(&digest) {
        Ok(Some(s)) => s,
        Ok(None) => return unknown(),
        Err(e) => return internal(e),
    };
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
    } else {
        match st.store.blob(&digest) {
            Ok(Some(b)) if b.len() as u64 == size => b.body(start as usize, end as usize),
            Ok(Some(_)) => return internal(io::Error::other(format!("blob {digest} changed size while being served"))),
            Ok(None) => return unknown(),
            Err(e) => return internal(e),
        }
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

/// Serve until `shutdown` resolves; then stop accepting, let in-flight responses finish (at most `grace`).
pub async fn serve(
    store: Arc<dyn BlobStore>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    let server = axum::serve(listener, app(store).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(signal);
    let mut rx2 = rx.clone();
    tokio::select! {
        r = server => r.map_err(anyhow::Error::from),
        _ = async move {
            let _ = rx2.wait_for(|v| *v).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("some downloads were still running {grace:?} after the shutdown signal; stopped them");
            Ok(())
        }
    }
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
