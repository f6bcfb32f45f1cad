//! Image references and the names the registry serves them under.
//!
//! An image `HOST/PATH:TAG` is served as `PATH:TAG`, so that kubeadm's `imageRepository: <vip>:5000` and
//! manifests rewritten to the VIP find it. Docker Hub images follow Docker's normalization: `nginx` is
//! `docker.io/library/nginx`, `bitnami/redis` is `docker.io/bitnami/redis`; `index.docker.io` and
//! `registry-1.docker.io` are `docker.io`.

use crate::digest::Digest;
use anyhow::{bail, Context, Result};

/// The default registry host of references without one.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Upstream host (with port when there is one), normalized (`docker.io` for Docker Hub).
    pub host: String,
    /// The repository path without the host (`library/nginx`, `kube-apiserver`, `ingress-nginx/controller`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parse `[HOST/]PATH[:TAG][@sha256:HEX]`.
    pub fn parse(reference: &str) -> Result<ImageRef> {
        let r = reference.trim();
        let (rest, digest) = match r.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>().with_context(|| format!("bad digest in image reference {reference:?}"))?)),
            None => (r, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if name.is_empty() {
            bail!("image reference {reference:?} has no name");
        }
        let (host, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let host = match host.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => host,
        };
        let path = if host == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        if !valid_repository(&path) {
            bail!("image reference {reference:?} has an invalid repository path {path:?}");
        }
        if let Some(t) = &tag {
            if !valid_tag(t) {
                bail!("image reference {reference:?} has an invalid tag {t:?}");
            }
        }
        if tag.is_none() && digest.is_none() {
            // A bare name means `latest`, as every client reads it.
            return Ok(ImageRef { host, path, tag: Some("latest".into()), digest });
        }
        Ok(ImageRef { host, path, tag, digest })
    }
}

/// Host names as containerd sends them in `?ns=`: Docker Hub's aliases are the same registry.
pub fn normalize_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    }
}

/// A repository path as the distribution spec allows it: lower-case components `[a-z0-9]+([._-][a-z0-9]+)*`
/// separated by `/` (we are lenient on separators: `__` and repeated `-` are allowed).
pub fn valid_repository(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 255
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-')
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (String, String, Option<String>, bool) {
        let r = ImageRef::parse(s).unwrap();
        (r.host, r.path, r.tag, r.digest.is_some())
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(p("nginx"), ("docker.io".into(), "library/nginx".into(), Some("latest".into()), false));
        assert_eq!(p("docker.io/nginx:1.25"), ("docker.io".into(), "library/nginx".into(), Some("1.25".into()), false));
        assert_eq!(p("index.docker.io/bitnami/redis:7"), ("docker.io".into(), "bitnami/redis".into(), Some("7".into()), false));
        assert_eq!(p("registry.k8s.io/kube-apiserver:v1.30.0"), ("registry.k8s.io".into(), "kube-apiserver".into(), Some("v1.30.0".into()), false));
        assert_eq!(p("127.0.0.1:5000/a/b:c"), ("127.0.0.1:5000".into(), "a/b".into(), Some("c".into()), false));
        assert_eq!(p("localhost/x"), ("localhost".into(), "x".into(), Some("latest".into()), false));
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            p(&format!("registry.k8s.io/ingress-nginx/controller:v1.14.0@{d}")),
            ("registry.k8s.io".into(), "ingress-nginx/controller".into(), Some("v1.14.0".into()), true)
        );
        assert_eq!(p(&format!("ghcr.io/flannel-io/flannel@{d}")).2, None);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "UPPER/case", "a//b", "x:bad tag", "ghcr.io/../x", "x@sha256:zz"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
