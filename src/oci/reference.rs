//! Image references: `[host[:port]/]path[:tag][@sha256:<hex>]`, normalized the way Docker does
//! (`nginx` → `docker.io/library/nginx:latest`), keeping the string as written for the `ref.name` annotation.

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
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), path),
            _ => (DOCKER_HUB.to_string(), name),
        };
        check_host(&registry)?;
        if path.is_empty() {
            bail!("missing repository name");
        }
        for comp in path.split('/') {
            check_component(comp)?;
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" { DOCKER_HUB.to_string() } else { registry };
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

    /// The oci-client reference for the tag or digest to fetch (`pin` overrides both, e.g. from a lock file).
    pub fn to_client_ref(&self, pin: Option<&Digest>) -> oci_client::Reference {
        match (pin.or(self.digest.as_ref()), &self.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), d.to_string()),
            (None, Some(t)) => oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), t.clone()),
            (None, None) => oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), "latest".into()),
        }
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
    fn rejects_bad_references() {
        for bad in ["", "Nginx", "a//b", "a:", "a:-x", "a@sha256:abc", "a@md5:00", "host:99999/a", "-a", "a b", "a/b:c:d/e"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
