//! A small OCI distribution push client over reqwest: the auth challenge (none, basic, bearer token as Harbor
//! and the distribution token server issue them), blob HEAD / cross-repository mount / streamed monolithic
//! upload, manifest HEAD / PUT of exact bytes. oci-client's push API takes whole blobs in memory, so pushing
//! is done here; every request is retried on transient failures by the caller ([`crate::transfer::retry`]).

use crate::digest::Digest;
use crate::error::with_hint;
use crate::transfer::retry::HttpStatus;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Manifest media types asked for on HEAD.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to reach the target registry.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Extra CA certificates (PEM bundles).
    pub ca_pems: Vec<Vec<u8>>,
    /// user, password (from the auth file).
    pub basic: Option<(String, String)>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions").field("insecure", &self.insecure).field("basic", &self.basic.as_ref().map(|(u, _)| (u, "<secret>"))).finish()
    }
}

#[derive(Debug, Clone)]
enum Challenge {
    None,
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// A client for one registry host.
pub struct RegistryClient {
    http: reqwest::Client,
    /// `https://host:port`
    base: String,
    /// `host:port` as given.
    pub host: String,
    basic: Option<(String, String)>,
    challenge: Challenge,
    /// bearer tokens by scope
    tokens: Mutex<HashMap<String, String>>,
}

/// A blob's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Present,
    Mounted,
    Uploaded,
}

/// The error a registry answered, with its body (the distribution spec's `errors` JSON), for hints.
#[derive(Debug, thiserror::Error)]
#[error("{what}: HTTP {code}{}", if body.is_empty() { String::new() } else { format!(" ({body})") })]
pub struct RegistryError {
    pub what: String,
    pub code: u16,
    pub body: String,
}

impl RegistryClient {
    /// Build the HTTP client and learn how the registry authenticates (`GET /v2/`); credentials are checked
    /// here, so a wrong password fails before anything is pushed.
    pub async fn connect(host: &str, opts: &ClientOptions) -> Result<RegistryClient> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("airgap/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64);
        for pem in &opts.ca_pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem).context("failed to parse a --ca-cert file")?;
            b = b.tls_certs_merge(certs);
        }
        if !opts.insecure {
            b = b.https_only(true);
        }
        let http = b.build().context("failed to set up the HTTP client")?;
        let scheme = if opts.insecure { "http" } else { "https" };
        let mut c = RegistryClient {
            http,
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
            basic: opts.basic.clone(),
            challenge: Challenge::None,
            tokens: Mutex::new(HashMap::new()),
        };
        let url = format!("{}/v2/", c.base);
        let resp = c.http.get(&url).send().await.map_err(|e| c.unreachable(e, opts))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                let header = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                c.challenge = parse_challenge(&header)?;
                if matches!(c.challenge, Challenge::Basic) {
                    let Some((u, p)) = &c.basic else {
                        return Err(c.no_credentials());
                    };
                    let resp = c.http.get(&url).basic_auth(u, Some(p)).send().await?;
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        return Err(c.refused(&format!("user {u:?}")));
                    }
                    if !resp.status().is_success() {
                        return Err(c.status_error(resp, "checking the credentials").await);
                    }
                }
            }
            _ => return Err(c.status_error(resp, "GET /v2/").await),
        }
        Ok(c)
    }

    fn unreachable(&self, e: reqwest::Error, opts: &ClientOptions) -> anyhow::Error {
        let hint = if opts.insecure {
            format!("check that the registry {} is up and serves plain HTTP", self.host)
        } else {
            format!(
                "check that the registry {} is up and serves HTTPS with a certificate for that name (a private CA needs --ca-cert PEM; plain HTTP needs --insecure-registry)",
                self.host
            )
        };
        // a certificate the CA does not vouch for will not change on a retry: not transient (no reqwest error
        // in the chain)
        let text = format!("{:#}", anyhow::Error::new(e));
        let err = if text.contains("certificate") {
            anyhow!(text)
        } else {
            anyhow::Error::new(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, text))
        };
        with_hint(err.context(format!("cannot reach the registry {}", self.base)), hint)
    }

    fn no_credentials(&self) -> anyhow::Error {
        with_hint(
            anyhow!("the registry {} wants credentials, and the auth file has none for it", self.host),
            format!("put them in the auth file (--authfile, default ~/.docker/config.json) under auths.\"{}\": {{\"auth\": base64 of user:password}}", self.host),
        )
    }

    fn refused(&self, who: &str) -> anyhow::Error {
        with_hint(
            anyhow!("the registry {} refused the credentials of {who} (HTTP 401)", self.host),
            format!("check the user and password under auths.\"{}\" in the auth file (--authfile); nothing was pushed", self.host),
        )
    }

    /// The Authorization header for operations on `repo` (push), also pulling from `from` (a mount source).
    async fn auth(&self, repo: &str, from: Option<&str>) -> Result<Option<HeaderValue>> {
        match &self.challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.basic.as_ref().map(|(u, p)| basic_header(u, p))),
            Challenge::Bearer { realm, service } => {
                let mut scopes = vec![format!("repository:{repo}:pull,push")];
                if let Some(f) = from.filter(|f| *f != repo) {
                    scopes.push(format!("repository:{f}:pull"));
                }
                let key = scopes.join(" ");
                if let Some(t) = self.tokens.lock().unwrap().get(&key) {
                    return Ok(Some(bearer_header(t)?));
                }
                let mut q: Vec<(&str, &str)> = Vec::new();
                if let Some(s) = service {
                    q.push(("service", s));
                }
                for s in &scopes {
                    q.push(("scope", s));
                }
                let mut req = self.http.get(realm).query(&q);
                if let Some((u, p)) = &self.basic {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req.send().await.with_context(|| format!("failed to get a token from {realm}"))?;
                if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                    return Err(match &self.basic {
                        Some((u, _)) => self.refused(&format!("user {u:?} at the token service {realm}")),
                        None => self.no_credentials(),
                    });
                }
                if !resp.status().is_success() {
                    return Err(self.status_error(resp, &format!("getting a token from {realm}")).await);
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: Option<String>,
                    #[serde(default)]
                    access_token: Option<String>,
                }
                let t: Token = resp.json().await.with_context(|| format!("the token service {realm} answered no token"))?;
                let t = t.token.or(t.access_token).filter(|t| !t.is_empty()).ok_or_else(|| anyhow!("the token service {realm} answered no token"))?;
                let h = bearer_header(&t)?;
                self.tokens.lock().unwrap().insert(key, t);
                Ok(Some(h))
            }
        }
    }

    fn forget_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }

    async fn request(&self, method: Method, url: &str, repo: &str, from: Option<&str>) -> Result<reqwest::RequestBuilder> {
        let mut req = self.http.request(method, url);
        if let Some(h) = self.auth(repo, from).await? {
            req = req.header(AUTHORIZATION, h);
        }
        Ok(req)
    }

    /// Turn an unexpected answer into an error: 429/5xx are transient ([`HttpStatus`] in the chain), 401/403
    /// and unknown names get hints.
    async fn status_error(&self, resp: Response, what: &str) -> anyhow::Error {
        let code = resp.status().as_u16();
        let url = resp.url().to_string();
        if code == 401 {
            self.forget_tokens();
        }
        let body: String = resp.text().await.unwrap_or_default().chars().take(400).collect();
        let body = body.trim().to_string();
        let err = anyhow::Error::new(HttpStatus { code, url }).context(RegistryError { what: what.to_string(), code, body: body.clone() });
        match code {
            401 => with_hint(err, format!("the registry {} refused the credentials for this operation: check auths.\"{}\" in the auth file (--authfile)", self.host, self.host)),
            403 => with_hint(err, "the user may read but not push here (Harbor: make the user a developer or maintainer of the project; a robot account needs the push permission)"),
            404 if body.contains("project") || body.contains("NAME_UNKNOWN") => with_hint(
                err,
                "the repository's project does not exist on the registry: create it (Harbor: Projects → New project, named as the first component of the --to prefix), or push under an existing project",
            ),
            _ => err,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.base)
    }

    /// Whether `repo` has the blob.
    pub async fn has_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        let resp = self.request(Method::HEAD, &self.url(&format!("{repo}/blobs/{d}")), repo, None).await?.send().await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(resp, &format!("HEAD blob {d} in {repo}")).await),
        }
    }

    /// Start an upload, or mount `d` from `from` in one request (the registry may decline: then an upload).
    /// `None`: mounted.
    async fn start_upload(&self, repo: &str, mount: Option<(&Digest, &str)>) -> Result<Option<String>> {
        let mut url = self.url(&format!("{repo}/blobs/uploads/"));
        if let Some((d, from)) = mount {
            url.push_str(&format!("?mount={d}&from={from}"));
        }
        let resp = self.request(Method::POST, &url, repo, mount.map(|m| m.1)).await?.header(CONTENT_LENGTH, 0).send().await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => {
                let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| anyhow!("the registry started an upload without a Location"))?;
                Ok(Some(self.absolute(loc)))
            }
            _ => Err(self.status_error(resp, &format!("starting an upload to {repo}")).await),
        }
    }

    fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{loc}", self.base)
        }
    }

    /// Make the blob `d` (`size` bytes, in `path`) present in `repo`: mount it from `from` when given, else
    /// upload it streamed from the file in one PUT (never the whole blob in memory).
    pub async fn put_blob(&self, repo: &str, d: &Digest, size: u64, path: &Path, from: Option<&str>) -> Result<BlobOutcome> {
        let loc = match self.start_upload(repo, from.map(|f| (d, f))).await? {
            None => return Ok(BlobOutcome::Mounted),
            Some(l) => l,
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={d}");
        let file = tokio::fs::File::open(path).await.with_context(|| format!("failed to open {}", path.display()))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        let resp = self
            .request(Method::PUT, &url, repo, None)
            .await?
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(resp, &format!("uploading blob {d} to {repo}")).await);
        }
        Ok(BlobOutcome::Uploaded)
    }

    /// The digest `repo:reference` has on the registry, if it has it.
    pub async fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let resp = self.request(Method::HEAD, &self.url(&format!("{repo}/manifests/{reference}")), repo, None).await?.header(ACCEPT, MANIFEST_ACCEPT).send().await?;
        match resp.status() {
            s if s.is_success() => {
                let d = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<Digest>().ok());
                Ok(d)
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(resp, &format!("HEAD manifest {repo}:{reference}")).await),
        }
    }

    /// PUT the exact manifest bytes under `reference` (a tag or the digest); the registry's digest must be `d`.
    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8], d: &Digest) -> Result<()> {
        let resp = self
            .request(Method::PUT, &self.url(&format!("{repo}/manifests/{reference}")), repo, None)
            .await?
            .header(CONTENT_TYPE, media_type)
            .body(bytes.to_vec())
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(resp, &format!("pushing manifest {repo}:{reference}")).await);
        }
        if let Some(got) = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            if got != d.to_string() {
                bail!("the registry stored manifest {repo}:{reference} as {got}, not {d}: it changed the bytes");
            }
        }
        Ok(())
    }
}

fn basic_header(u: &str, p: &str) -> HeaderValue {
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    let mut h = HeaderValue::from_str(&format!("Basic {v}")).unwrap_or_else(|_| HeaderValue::from_static(""));
    h.set_sensitive(true);
    h
}

fn bearer_header(t: &str) -> Result<HeaderValue> {
    let mut h = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| anyhow!("the token service issued a token that is not a header value"))?;
    h.set_sensitive(true);
    Ok(h)
}

/// `Basic realm="x"` or `Bearer realm="https://h/service/token",service="harbor-registry"`.
fn parse_challenge(header: &str) -> Result<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut realm = None;
    let mut service = None;
    for part in split_params(params) {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "service" => service = Some(v),
                _ => {}
            }
        }
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => Ok(Challenge::Bearer { realm: realm.ok_or_else(|| anyhow!("the registry's bearer challenge names no realm: {header:?}"))?, service }),
        _ => bail!("the registry asks for an authentication scheme airgap does not speak: {header:?}"),
    }
}

/// Split `a="x,y",b=z` at the commas outside quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert!(matches!(parse_challenge(r#"Basic realm="airgap-test""#).unwrap(), Challenge::Basic));
        match parse_challenge(r#"Bearer realm="https://h/service/token",service="harbor-registry",scope="repository:a/b:pull,push""#).unwrap() {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "https://h/service/token");
                assert_eq!(service.as_deref(), Some("harbor-registry"));
            }
            c => panic!("{c:?}"),
        }
        assert!(parse_challenge("Bearer service=x").is_err());
        assert!(parse_challenge("Negotiate").is_err());
    }
}
