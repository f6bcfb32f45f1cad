//! THE image reference parser: `[host[:port]/]path[:tag][@sha256:<hex>]`, normalized the way Docker does
//! (`nginx` → `docker.io/library/nginx:latest`; `index.docker.io` and `registry-1.docker.io` are
//! `docker.io`), keeping the string as written for the `ref.name` annotation. Used by the manifest (what to
//! pull), the site registry (the names it serves an image under) and the installer (containerd's mirrors
//! and sandbox image).

use crate::digest::Digest;
use anyhow::{bail, Result};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Exactly as written in the manifest.
    pub as_written: String,
    /// `docker.io`, `registry.k8s.io`, `127.0.0.1:5000`...
    pub registry: String,
    /// `library/nginx`, `kube-apiserver`, `ingress-nginx/controller`...
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef> {
        if s.is_empty() {
            bail!("empty reference");
        }
        if s.len() > 4096 || s.contains(char::is_whitespace) {
            bail!("references contain no spaces");
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d: Digest = d.parse().map_err(|e| anyhow::anyhow!("bad digest: {e}"))?;
                (r, Some(d))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                bail!("bad tag {t:?}: tags are up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'");
            }
        }
        let (registry, path) = match written_host(name) {
            Some((host, path)) => (host.to_string(), path),
            None => (DOCKER_HUB.to_string(), name),
        };
        check_host(&registry)?;
        if path.is_empty() {
            bail!("missing repository name");
        }
        for comp in path.split('/') {
            check_component(comp)?;
        }
        let registry = normalize_host(&registry).to_string();
        let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef { as_written: s.to_string(), registry, repository, tag, digest })
    }

    /// `registry/repository[:tag][@digest]`, fully normalized.
    pub fn normalized(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The registry host as the reference writes it (`registry-1.docker.io` stays), `docker.io` when it names
    /// none: the name containerd looks up its `certs.d/<host>/hosts.toml` by.
    pub fn host_as_written(&self) -> &str {
        written_host(&self.as_written).map_or(DOCKER_HUB, |(host, _)| host)
    }

    /// The oci-client reference for the tag or digest to fetch (`pin` overrides both, e.g. from a lock file).
    pub fn to_client_ref(&self, pin: Option<&Digest>) -> oci_client::Reference {
        match (pin.or(self.digest.as_ref()), &self.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), d.to_string()),
            (None, Some(t)) => oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), t.clone()),
            (None, None) => oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), "latest".into()),
        }
    }
}

/// The host a reference starts with, as Docker reads it: the first `/`-separated component when it looks like
/// a host (it has a `.` or a `:`, or is `localhost`); `None`: no host, Docker Hub. Returns (host, the rest).
fn written_host(name: &str) -> Option<(&str, &str)> {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => Some((first, rest)),
        _ => None,
    }
}

/// A registry host with Docker Hub's aliases folded into `docker.io` (as containerd sends hosts in `?ns=`,
/// as auth files name them).
pub fn normalize_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    }
}

fn check_host(h: &str) -> Result<()> {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            bail!("bad registry port {p:?}");
        }
    }
    let ok = !host.is_empty()
        && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-'));
    if !ok {
        bail!("bad registry host {h:?}");
    }
    Ok(())
}

/// One path component: lower-case alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn check_component(c: &str) -> Result<()> {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let ok = !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && {
        let mut ok = true;
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                ok = false;
                break;
            }
        }
        ok
    };
    if !ok {
        if c.bytes().any(|x| x.is_ascii_uppercase()) {
            bail!("repository name component {c:?} must be lower case");
        }
        bail!("bad repository name component {c:?}: use lower-case letters and digits separated by '.', '_', '__' or '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("flannel/flannel:v0.25.1", "docker.io/flannel/flannel:v0.25.1"),
            ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
            ("registry.k8s.io/kube-apiserver:v1.31.4", "registry.k8s.io/kube-apiserver:v1.31.4"),
            ("localhost/a/b", "localhost/a/b:latest"),
            ("127.0.0.1:5000/test/multi:1", "127.0.0.1:5000/test/multi:1"),
            ("ghcr.io/flannel-io/flannel-cni-plugin:v1.6.0-flannel1", "ghcr.io/flannel-io/flannel-cni-plugin:v1.6.0-flannel1"),
        ];
        for (input, want) in cases {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(r.normalized(), want);
            assert_eq!(r.as_written, input);
        }
        let d = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let r = ImageRef::parse(&format!("registry.k8s.io/ingress-nginx/controller:v1.11.3@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1.11.3"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.registry, "127.0.0.1:5000");
    }

    #[test]
    fn names_the_registry_serves_and_hosts_containerd_looks_up() {
        // (host, repository, tag, pinned): the registry serves `repository:tag` and picks the host by `?ns=`
        let p = |s: &str| {
            let r = ImageRef::parse(s).unwrap();
            (r.registry, r.repository, r.tag, r.digest.is_some())
        };
        assert_eq!(p("nginx"), ("docker.io".into(), "library/nginx".into(), Some("latest".into()), false));
        assert_eq!(p("docker.io/nginx:1.25"), ("docker.io".into(), "library/nginx".into(), Some("1.25".into()), false));
        assert_eq!(p("index.docker.io/bitnami/redis:7"), ("docker.io".into(), "bitnami/redis".into(), Some("7".into()), false));
        assert_eq!(p("registry-1.docker.io/bitnami/redis:7").0, "docker.io");
        assert_eq!(p("registry.k8s.io/kube-apiserver:v1.30.0"), ("registry.k8s.io".into(), "kube-apiserver".into(), Some("v1.30.0".into()), false));
        assert_eq!(p("127.0.0.1:5000/a/b:c"), ("127.0.0.1:5000".into(), "a/b".into(), Some("c".into()), false));
        assert_eq!(p("localhost/x"), ("localhost".into(), "x".into(), Some("latest".into()), false));
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            p(&format!("registry.k8s.io/ingress-nginx/controller:v1.14.0@{d}")),
            ("registry.k8s.io".into(), "ingress-nginx/controller".into(), Some("v1.14.0".into()), true)
        );
        assert_eq!(p(&format!("ghcr.io/flannel-io/flannel@{d}")).2, None);
        // containerd's hosts.toml directory: the host as written
        let host = |s: &str| ImageRef::parse(s).unwrap().host_as_written().to_string();
        assert_eq!(host("registry.k8s.io/pause:3.10"), "registry.k8s.io");
        assert_eq!(host("nginx:1.25"), "docker.io");
        assert_eq!(host("library/nginx:1.25"), "docker.io");
        assert_eq!(host("127.0.0.1:5001/test/app:v1"), "127.0.0.1:5001");
        assert_eq!(host("registry-1.docker.io/library/nginx:1"), "registry-1.docker.io");
        assert_eq!(host(&format!("localhost/x@{d}")), "localhost");
        assert_eq!(normalize_host("index.docker.io"), "docker.io");
        assert_eq!(normalize_host("quay.io"), "quay.io");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "Nginx", "a//b", "a:", "a:-x", "a@sha256:abc", "a@md5:00", "host:99999/a", "-a", "a b", "a/b:c:d/e", "UPPER/case", "x:bad tag", "ghcr.io/../x", "x@sha256:zz"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
