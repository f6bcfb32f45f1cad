//! Node-local health checks run by keepalived's `vrrp_script`s and by the steps' verification
//! (`airgap node check-tcp ADDR`, `airgap node check-http URL`): no curl, nc or shell needed on the node.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("bad address {addr:?}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

/// Something accepts TCP connections on `addr` within `timeout`.
pub fn check_tcp(addr: &str, timeout: Duration) -> Result<()> {
    let sa = resolve(addr)?;
    TcpStream::connect_timeout(&sa, timeout).with_context(|| format!("nothing accepts connections on {addr}"))?;
    Ok(())
}

/// An HTTP GET of `url` (plain `http://HOST:PORT/PATH`) answers 2xx or 401 (a registry asking for
/// credentials is alive) within `timeout`. Returns the status code.
pub fn check_http(url: &str, timeout: Duration) -> Result<u16> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs are checked"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let hostport_full = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    let deadline = Instant::now() + timeout;
    let sa = resolve(&hostport_full)?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).with_context(|| format!("nothing accepts connections on {hostport_full}"))?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
    s.set_read_timeout(Some(left))?;
    s.set_write_timeout(Some(left))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: airgap-check\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .with_context(|| format!("failed to send the request to {url}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let k = s.read(&mut head[n..]).with_context(|| format!("no answer from {url}"))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{url} did not answer HTTP ({:?})", line.lines().next().unwrap_or("")))?;
    if (200..300).contains(&code) || code == 401 {
        Ok(code)
    } else {
        bail!("{url} answered HTTP {code}")
    }
}

/// The media types a manifest HEAD accepts (an index or a single manifest, OCI or Docker).
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The manifest of `image` (`HOST:PORT/PATH:TAG` or `HOST:PORT/PATH@sha256:...`) answers 200 to a HEAD over
/// plain HTTP (what a pull through the site registry asks first).
pub fn check_manifest(image: &str, timeout: Duration) -> Result<()> {
    let (host, rest) = image.split_once('/').with_context(|| format!("{image}: expected HOST:PORT/PATH:TAG"))?;
    let (path, reference) = match rest.split_once('@') {
        Some((p, d)) => (p.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(p, |(p, _)| p), d),
        None => rest
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .with_context(|| format!("{image}: no tag or digest"))?,
    };
    let (code, _) = head_manifest(host, &format!("/v2/{path}/manifests/{reference}"), timeout).with_context(|| image.to_string())?;
    match code {
        200 => Ok(()),
        404 => bail!("{image}: not in the registry (HTTP 404)"),
        c => bail!("{image}: the registry answered HTTP {c}"),
    }
}

/// The digest a registry on `host` (`HOST[:PORT]`) serves for `name:tag` (`?ns=` `upstream` when given: the
/// upstream host the name came from, as containerd asks a mirror), from its `Docker-Content-Digest` header.
pub fn served_digest(host: &str, name: &str, tag: &str, upstream: Option<&str>, timeout: Duration) -> Result<String> {
    let what = format!("{name}:{tag}");
    let ns = upstream.map(|u| format!("?ns={u}")).unwrap_or_default();
    let (code, digest) = head_manifest(host, &format!("/v2/{name}/manifests/{tag}{ns}"), timeout).with_context(|| what.clone())?;
    match (code, digest) {
        (200, Some(d)) => Ok(d),
        (200, None) => bail!("{what}: the registry answered without a Docker-Content-Digest header"),
        (404, _) => bail!("{what}: not served (HTTP 404)"),
        (c, _) => bail!("{what}: the registry answered HTTP {c}"),
    }
}

/// HEAD `path` on `host` over plain HTTP, asking for every manifest media type: the status code and the
/// `Docker-Content-Digest` header.
fn head_manifest(host: &str, path: &str, timeout: Duration) -> Result<(u16, Option<String>)> {
    let hostport = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let sa = resolve(&hostport)?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).with_context(|| format!("nothing accepts connections on {hostport}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let req = format!(
        "HEAD {path} HTTP/1.0\r\nHost: {host}\r\nAccept: {MANIFEST_TYPES}\r\nUser-Agent: airgap-check\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).with_context(|| format!("failed to ask {hostport}"))?;
    let mut head = Vec::new();
    let _ = s.take(8192).read_to_end(&mut head);
    let text = String::from_utf8_lossy(&head);
    let code: u16 = text
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{hostport} did not answer HTTP"))?;
    let digest = text.lines().take_while(|l| !l.trim().is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("docker-content-digest").then(|| v.trim().to_string())
    });
    Ok((code, digest))
}

/// Run `check` until it succeeds or `wait` passes (then its last error).
pub fn wait_for(wait: Duration, mut check: impl FnMut() -> Result<()>) -> Result<()> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() >= wait => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A registry that answers HEAD of `present` manifests 200, anything else 404, and records the requests.
    fn fake_registry(present: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 2048];
                let n = c.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let code = if req.starts_with(&format!("HEAD {present} ")) { "200 OK" } else { "404 Not Found" };
                let _ = c.write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes());
                let _ = tx.send(req);
            }
        });
        (addr, rx)
    }

    #[test]
    fn manifests_are_asked_for_by_tag_or_digest_with_every_media_type() {
        let (addr, rx) = fake_registry("/v2/coredns/coredns/manifests/v1.14.2");
        let t = Duration::from_secs(5);
        check_manifest(&format!("{addr}/coredns/coredns:v1.14.2"), t).unwrap();
        let req = rx.recv().unwrap();
        assert!(req.contains("application/vnd.oci.image.index.v1+json") && req.contains("application/vnd.docker.distribution.manifest.v2+json"), "{req}");
        let e = check_manifest(&format!("{addr}/etcd:3.6.8-0"), t).unwrap_err();
        assert_eq!(format!("{e:#}"), format!("{addr}/etcd:3.6.8-0: not in the registry (HTTP 404)"));
        let _ = check_manifest(&format!("{addr}/ingress-nginx/controller:v1.14.1@sha256:abcd"), t);
        assert!(rx.recv().unwrap().starts_with("HEAD /v2/etcd/manifests/3.6.8-0 "));
        assert!(rx.recv().unwrap().starts_with("HEAD /v2/ingress-nginx/controller/manifests/sha256:abcd "));
        assert!(check_manifest("no-tag-here", t).is_err());
    }

    #[test]
    fn the_served_digest_comes_from_the_header_and_the_upstream_host_goes_in_ns() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let answers = [
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\ndocker-content-digest: sha256:aa\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\n\r\n",
        ];
        let t = std::thread::spawn(move || {
            let mut asked = Vec::new();
            for a in answers {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 2048];
                let n = c.read(&mut buf).unwrap();
                asked.push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap().to_string());
                c.write_all(a.as_bytes()).unwrap();
            }
            asked
        });
        let t5 = Duration::from_secs(5);
        assert_eq!(served_digest(&addr, "pause", "3.10", Some("registry.k8s.io"), t5).unwrap(), "sha256:aa");
        let e = served_digest(&addr, "library/nginx", "1", None, t5).unwrap_err();
        assert!(format!("{e:#}").contains("without a Docker-Content-Digest"), "{e:#}");
        let e = served_digest(&addr, "x", "1", None, t5).unwrap_err();
        assert_eq!(format!("{e:#}"), "x:1: not served (HTTP 404)");
        let asked = t.join().unwrap();
        assert_eq!(asked[0], "HEAD /v2/pause/manifests/3.10?ns=registry.k8s.io HTTP/1.0");
        assert_eq!(asked[1], "HEAD /v2/library/nginx/manifests/1 HTTP/1.0");
    }

    #[test]
    fn tcp_and_http_checks_see_real_listeners() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        check_tcp(&addr, Duration::from_secs(1)).unwrap();
        let answers = ["HTTP/1.1 200 OK\r\n\r\n{}", "HTTP/1.1 401 Unauthorized\r\n\r\n", "HTTP/1.0 503 Busy\r\n\r\n"];
        let t = std::thread::spawn(move || {
            drop(l.accept().unwrap()); // check_tcp's connection
            for a in answers {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = c.read(&mut buf).unwrap();
                assert!(String::from_utf8_lossy(&buf).starts_with("GET /v2/ HTTP/1.0"));
                c.write_all(a.as_bytes()).unwrap();
            }
        });
        let url = format!("http://{addr}/v2/");
        assert_eq!(check_http(&url, Duration::from_secs(2)).unwrap(), 200);
        assert_eq!(check_http(&url, Duration::from_secs(2)).unwrap(), 401);
        assert!(check_http(&url, Duration::from_secs(2)).unwrap_err().to_string().contains("503"));
        t.join().unwrap();
        // nothing listens on port 1
        assert!(check_tcp("127.0.0.1:1", Duration::from_millis(300)).is_err());
        assert!(check_http("http://127.0.0.1:1/v2/", Duration::from_millis(300)).is_err());
    }
}
