//! Build-time registry mirrors (`airgap build --registry-mirror HOST=URL`): the images of registry HOST are
//! fetched from URL (a pull-through cache such as a Harbor proxy-cache project, the distribution registry in
//! proxy mode, or a copy), while the bundle records each image by its ORIGINAL reference. Digests are content,
//! so what the mirror serves must have the digests the bundle records: a manifest pinned by digest (in the
//! reference or a lock file) is checked against its pin as from the registry itself.

use crate::oci::reference::{normalize_host, ImageRef};
use anyhow::{bail, Context, Result};

/// One `--registry-mirror HOST=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMirror {
    /// The registry whose images the mirror serves (`docker.io`, `registry.k8s.io`...), normalized.
    pub upstream: String,
    /// The mirror's `HOST[:PORT]`.
    pub host: String,
    /// Repository prefix the mirror serves them under (a Harbor proxy-cache project); empty for none.
    pub prefix: String,
    /// `http://`: the mirror is reached over plain HTTP.
    pub plain_http: bool,
}

impl RegistryMirror {
    /// `HOST=URL`, URL `http[s]://HOST[:PORT][/PREFIX]`.
    pub fn parse(flag: &str) -> Result<RegistryMirror> {
        let hint = "write it as HOST=URL, e.g. docker.io=https://harbor.example/dockerhub-proxy or docker.io=http://127.0.0.1:5001";
        let (upstream, url) = flag.split_once('=').with_context(|| format!("--registry-mirror {flag:?} has no '='; {hint}"))?;
        let upstream = upstream.trim();
        if upstream.is_empty() || upstream.contains(['/', ' ']) {
            bail!("--registry-mirror {flag:?}: {upstream:?} is not a registry host; {hint}");
        }
        let parsed = reqwest::Url::parse(url.trim()).with_context(|| format!("--registry-mirror {flag:?}: {url:?} is not a URL; {hint}"))?;
        let plain_http = match parsed.scheme() {
            "https" => false,
            "http" => true,
            s => bail!("--registry-mirror {flag:?}: scheme {s:?} is neither http nor https; {hint}"),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
            bail!("--registry-mirror {flag:?}: the URL takes no credentials, query or fragment (credentials come from --authfile under the mirror's host)");
        }
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => bail!("--registry-mirror {flag:?}: the URL names no host; {hint}"),
        };
        let prefix = parsed.path().trim_matches('/').to_string();
        Ok(RegistryMirror { upstream: normalize_host(upstream).to_string(), host, prefix, plain_http })
    }

    /// Where `image` (of [`Self::upstream`]) is fetched from: the same repository (under the prefix) and the
    /// same tag and digest, at the mirror.
    pub fn source_of(&self, image: &ImageRef) -> ImageRef {
        let repository = if self.prefix.is_empty() { image.repository.clone() } else { format!("{}/{}", self.prefix, image.repository) };
        let mut as_written = format!("{}/{repository}", self.host);
        if let Some(t) = &image.tag {
            as_written.push_str(&format!(":{t}"));
        }
        if let Some(d) = &image.digest {
            as_written.push_str(&format!("@{d}"));
        }
        ImageRef { as_written, registry: self.host.clone(), repository, tag: image.tag.clone(), digest: image.digest.clone() }
    }
}

/// The mirror of `image`'s registry, if any.
pub fn for_image<'a>(mirrors: &'a [RegistryMirror], image: &ImageRef) -> Option<&'a RegistryMirror> {
    mirrors.iter().find(|m| m.upstream == image.registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mirrors_and_maps_references_to_them() {
        let m = RegistryMirror::parse("docker.io=http://127.0.0.1:5001").unwrap();
        assert_eq!(m, RegistryMirror { upstream: "docker.io".into(), host: "127.0.0.1:5001".into(), prefix: String::new(), plain_http: true });
        let nginx = ImageRef::parse("nginx:1.27").unwrap();
        let src = m.source_of(&nginx);
        assert_eq!((src.registry.as_str(), src.repository.as_str(), src.tag.as_deref()), ("127.0.0.1:5001", "library/nginx", Some("1.27")));
        assert_eq!(for_image(std::slice::from_ref(&m), &nginx), Some(&m));
        assert_eq!(for_image(&[m], &ImageRef::parse("registry.k8s.io/pause:3.10").unwrap()), None);

        // a Harbor proxy-cache project; Docker Hub's aliases are docker.io
        let h = RegistryMirror::parse("index.docker.io=https://harbor.corp.example/dockerhub-proxy/").unwrap();
        assert_eq!((h.upstream.as_str(), h.host.as_str(), h.prefix.as_str(), h.plain_http), ("docker.io", "harbor.corp.example", "dockerhub-proxy", false));
        let d = format!("sha256:{}", "a".repeat(64));
        let pinned = ImageRef::parse(&format!("bitnami/redis@{d}")).unwrap();
        let src = h.source_of(&pinned);
        assert_eq!(src.as_written, format!("harbor.corp.example/dockerhub-proxy/bitnami/redis@{d}"));
        assert_eq!(src.digest, pinned.digest);

        for bad in ["docker.io", "docker.io=ftp://x", "=http://x", "docker.io=http://u:p@x", "docker.io=not a url", "docker.io/x=http://m"] {
            assert!(RegistryMirror::parse(bad).is_err(), "{bad}");
        }
    }
}
