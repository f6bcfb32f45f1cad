//! `airgap push`: every image of a verified bundle (or a loaded store) into another OCI distribution registry
//! (Harbor, the distribution registry...), with its exact manifest bytes, so digests and digest-pinned
//! references stay valid.
//!
//! - Names are mapped as `serve` maps them: `registry.k8s.io/pause:3.10` → `REGISTRY/PREFIX/pause:3.10`,
//!   `nginx:1.27` → `REGISTRY/PREFIX/library/nginx:1.27` (see [`Target::repository`]).
//! - Blobs first (HEAD: present ones are skipped; a blob already pushed to another repository of this run is
//!   mounted from it when the registry offers that; otherwise one streamed PUT from the file), in parallel
//!   (`jobs`); then child manifests by digest, then the top-level manifest or index under its tag (or its
//!   digest for digest-pinned references). A manifest already there with the same digest is not sent again.
//!   So a re-run after a kill continues where the first run stopped, and a second push uploads nothing.
//! - Every request is retried on transient failures ([`crate::transfer::retry`]).
//!
//! [`source`] reads the bundle (verify first) or the store; [`early`] uploads a bundle's blobs while it is
//! read (each once its own sha256 verified; manifests only after the whole bundle did); [`client`] speaks the
//! distribution API.

pub mod client;
pub mod early;
pub mod source;

use crate::digest::Digest;
use crate::oci::reference::ImageRef;
use crate::transfer::retry::{retry, RetryPolicy};
use anyhow::{anyhow, bail, Context, Result};
use client::{BlobOutcome, RegistryClient};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use source::{Images, SourceImage};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest manifest or index pushed (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// `HOST[:PORT][/PREFIX]`: where images go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    /// Repository path prefix without slashes at either end; empty for none.
    pub prefix: String,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target> {
        let s = s.trim().trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
        let (host, prefix) = s.split_once('/').unwrap_or((s, ""));
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
            bail!("{s:?} is not HOST[:PORT][/PREFIX]");
        }
        if !prefix.is_empty() {
            // must be valid repository components
            ImageRef::parse(&format!("{host}/{prefix}/x")).with_context(|| format!("{prefix:?} is not a valid repository prefix"))?;
        }
        Ok(Target { host: host.to_string(), prefix: prefix.to_string() })
    }

    /// The repository an image goes to: PREFIX/PATH, PATH as `serve` serves it.
    pub fn repository(&self, image: &ImageRef) -> String {
        if self.prefix.is_empty() {
            image.repository.clone()
        } else {
            format!("{}/{}", self.prefix, image.repository)
        }
    }

    /// Where an image reference is found on this target (`HOST/PREFIX/PATH:TAG[@DIGEST]`).
    pub fn reference(&self, image: &ImageRef) -> String {
        let mut s = format!("{}/{}", self.host, self.repository(image));
        if let Some(t) = &image.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &image.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub jobs: usize,
    pub retry: RetryPolicy,
}

/// One image pushed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    pub original: String,
    pub pushed: String,
    pub digest: Digest,
    pub media_type: String,
    /// Whether the registry already had this reference with this digest.
    pub unchanged: bool,
}

/// What a push did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub images: Vec<Pushed>,
    pub blobs: u64,
    pub blobs_present: u64,
    pub blobs_mounted: u64,
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Of the blobs uploaded, those uploaded while the bundle was still being read.
    pub blobs_uploaded_early: u64,
    pub manifests_pushed: u64,
    pub manifests_present: u64,
}

#[derive(Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: Digest,
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize)]
struct AnyManifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Desc>>,
    #[serde(default)]
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
}

/// An image, read from the source: what has to be on the registry for it.
struct Planned {
    src: SourceImage,
    image: ImageRef,
    repo: String,
    /// Child manifests the source holds: digest, media type, bytes.
    children: Vec<(Digest, String, Vec<u8>)>,
    /// Children of the index the source does not hold (a bundle built for some platforms only).
    missing_children: usize,
    top: Vec<u8>,
    /// Configs and layers.
    blobs: BTreeMap<Digest, u64>,
}

fn plan_image(images: &Images, target: &Target, src: &SourceImage) -> Result<Planned> {
    let image = ImageRef::parse(&src.reference).with_context(|| format!("bad image reference {:?}", src.reference))?;
    let top = images.manifest(&src.digest)?;
    let mut p = Planned { src: src.clone(), repo: target.repository(&image), image, children: Vec::new(), missing_children: 0, top: Vec::new(), blobs: BTreeMap::new() };
    let m: AnyManifest = serde_json::from_slice(&top).with_context(|| format!("manifest {} is not JSON", src.digest))?;
    let add_manifest = |p: &mut Planned, m: &AnyManifest, d: &Digest| -> Result<()> {
        let config = m.config.as_ref().ok_or_else(|| anyhow!("manifest {d} has neither manifests nor a config"))?;
        for b in std::iter::once(config).chain(&m.layers) {
            if !images.has(&b.digest) {
                bail!("blob {} of manifest {d} is missing from {}", b.digest, images.label);
            }
            p.blobs.insert(b.digest.clone(), b.size);
        }
        Ok(())
    };
    if let Some(children) = &m.manifests {
        for c in children {
            if !images.has(&c.digest) {
                p.missing_children += 1;
                continue;
            }
            let bytes = images.manifest(&c.digest)?;
            let cm: AnyManifest = serde_json::from_slice(&bytes).with_context(|| format!("manifest {} is not JSON", c.digest))?;
            add_manifest(&mut p, &cm, &c.digest)?;
            let mt = if c.media_type.is_empty() { cm.media_type.clone().unwrap_or_default() } else { c.media_type.clone() };
            p.children.push((c.digest.clone(), mt, bytes));
        }
    } else {
        add_manifest(&mut p, &m, &src.digest)?;
    }
    p.top = top;
    Ok(p)
}

#[derive(Default)]
struct Counters {
    present: AtomicU64,
    mounted: AtomicU64,
    uploaded: AtomicU64,
    bytes: AtomicU64,
    manifests_pushed: AtomicU64,
    manifests_present: AtomicU64,
}

/// Push every image of `images` to `target` through `client`. `bar` advances by bytes uploaded. `early`: the
/// blobs already made present in a repository while the bundle was read (not sent again).
pub async fn push(images: &Images, target: &Target, client: &RegistryClient, opts: &PushOptions, early: &early::Early, bar: &indicatif::ProgressBar) -> Result<Report> {
    let planned = images.images.iter().map(|i| plan_image(images, target, i)).collect::<Result<Vec<_>>>()?;
    // every blob, and the repositories that need it (the first one gets it uploaded, the others mount it)
    let mut need: BTreeMap<Digest, (u64, Vec<String>)> = BTreeMap::new();
    for p in &planned {
        for (d, size) in &p.blobs {
            let e = need.entry(d.clone()).or_insert((*size, Vec::new()));
            if !e.1.contains(&p.repo) {
                e.1.push(p.repo.clone());
            }
        }
    }
    let total: u64 = need.values().map(|(s, _)| *s).sum();
    bar.set_length(total);
    let c = Arc::new(Counters::default());
    let jobs = opts.jobs.max(1);
    let blob_count = need.values().map(|(_, r)| r.len() as u64).sum();
    // what went early: that repository comes first (the others mount from it), and round 1 skips it
    let mut early_uploads = 0;
    need.retain(|d, (size, repos)| {
        let Some((repo, outcome)) = early.done.get(d) else { return true };
        let Some(i) = repos.iter().position(|r| r == repo) else { return true };
        repos.swap(0, i);
        match outcome {
            BlobOutcome::Present => c.present.fetch_add(1, Ordering::Relaxed),
            BlobOutcome::Mounted => c.mounted.fetch_add(1, Ordering::Relaxed),
            BlobOutcome::Uploaded => {
                early_uploads += 1;
                c.bytes.fetch_add(*size, Ordering::Relaxed);
                c.uploaded.fetch_add(1, Ordering::Relaxed)
            }
        };
        bar.inc(*size);
        // still needed for the mounts into the other repositories
        repos.len() > 1
    });
    let skip_round0: std::collections::BTreeSet<Digest> =
        need.keys().filter(|d| early.done.get(*d).is_some_and(|(r, _)| need[*d].1[0] == *r)).cloned().collect();

    // 1. each blob into its first repository; 2. into the others (mounted when the registry offers it)
    for round in 0..2 {
        let work: Vec<(Digest, u64, String, Option<String>)> = need
            .iter()
            .flat_map(|(d, (size, repos))| {
                let first = repos[0].clone();
                let list: Vec<(Digest, u64, String, Option<String>)> = if round == 0 {
                    if skip_round0.contains(d) {
                        return Vec::new();
                    }
                    vec![(d.clone(), *size, first, None)]
                } else {
                    repos[1..].iter().map(|r| (d.clone(), *size, r.clone(), Some(first.clone()))).collect()
                };
                list
            })
            .collect();
        futures::stream::iter(work)
            .map(|(d, size, repo, from)| {
                let c = c.clone();
                async move {
                    let path = images.blob_path(&d);
                    let what = format!("pushing blob {d} to {}/{repo}", target.host);
                    let outcome = retry(&what, opts.retry, || async {
                        if client.has_blob(&repo, &d).await? {
                            return Ok(BlobOutcome::Present);
                        }
                        client.put_blob(&repo, &d, size, &path, from.as_deref()).await
                    })
                    .await
                    .with_context(|| what.clone())?;
                    match outcome {
                        BlobOutcome::Present => c.present.fetch_add(1, Ordering::Relaxed),
                        BlobOutcome::Mounted => c.mounted.fetch_add(1, Ordering::Relaxed),
                        BlobOutcome::Uploaded => {
                            c.bytes.fetch_add(size, Ordering::Relaxed);
                            c.uploaded.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    if round == 0 {
                        bar.inc(size);
                    }
                    Ok::<(), anyhow::Error>(())
                }
            })
            .buffer_unordered(jobs)
            .try_collect::<()>()
            .await?;
    }

    // 3. manifests: every index's children by digest, each (repository, digest) once, all before any top level
    //    (two references to one index must not race: a registry that checks an index's children refuses it
    //    while a concurrent PUT of one of them is in flight)
    let mut children: Vec<(&str, &Digest, &str, &[u8])> = Vec::new();
    for p in &planned {
        for (d, mt, bytes) in &p.children {
            if !children.iter().any(|(r, cd, _, _)| *r == p.repo && *cd == d) {
                children.push((&p.repo, d, mt, bytes));
            }
        }
    }
    futures::stream::iter(children)
        .map(|(repo, d, mt, bytes)| {
            let c = c.clone();
            async move {
                let put = ManifestPut { reference: &d.to_string(), media_type: mt, bytes, digest: d };
                ensure_manifest(client, repo, put, opts, &c).await.map(drop)
            }
        })
        .buffer_unordered(jobs)
        .try_collect::<()>()
        .await?;
    // then the top levels under their tag or digest
    let pushed: Vec<Pushed> = futures::stream::iter(planned.iter())
        .map(|p| {
            let c = c.clone();
            async move { push_manifests(client, target, p, opts, &c).await.with_context(|| format!("failed to push {}", p.src.reference)) }
        })
        .buffered(jobs)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    Ok(Report {
        images: pushed,
        blobs: blob_count,
        blobs_present: c.present.load(Ordering::Relaxed),
        blobs_mounted: c.mounted.load(Ordering::Relaxed),
        blobs_uploaded: c.uploaded.load(Ordering::Relaxed),
        bytes_uploaded: c.bytes.load(Ordering::Relaxed),
        blobs_uploaded_early: early_uploads,
        manifests_pushed: c.manifests_pushed.load(Ordering::Relaxed),
        manifests_present: c.manifests_present.load(Ordering::Relaxed),
    })
}

/// PUT `bytes` as `repo:reference` unless the registry has that reference with this digest already.
/// A manifest to put under a reference.
struct ManifestPut<'a> {
    reference: &'a str,
    media_type: &'a str,
    bytes: &'a [u8],
    digest: &'a Digest,
}

async fn ensure_manifest(client: &RegistryClient, repo: &str, m: ManifestPut<'_>, opts: &PushOptions, c: &Counters) -> Result<bool> {
    let ManifestPut { reference, media_type, bytes, digest: d } = m;
    let what = format!("pushing manifest {}/{repo}:{reference}", client.host);
    let sent = retry(&what, opts.retry, || async {
        if client.manifest_digest(repo, reference).await?.as_ref() == Some(d) {
            return Ok(false);
        }
        client.put_manifest(repo, reference, media_type, bytes, d).await?;
        Ok(true)
    })
    .await?;
    let counter = if sent { &c.manifests_pushed } else { &c.manifests_present };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(!sent)
}

async fn push_manifests(client: &RegistryClient, target: &Target, p: &Planned, opts: &PushOptions, c: &Counters) -> Result<Pushed> {
    // (its children are on the registry already: pushed before any top level)
    let reference = match (&p.image.tag, &p.image.digest) {
        (Some(t), _) => t.clone(),
        (None, _) => p.src.digest.to_string(),
    };
    let top = ManifestPut { reference: &reference, media_type: &p.src.media_type, bytes: &p.top, digest: &p.src.digest };
    let unchanged = ensure_manifest(client, &p.repo, top, opts, c).await.map_err(|e| {
        if p.missing_children > 0 {
            crate::error::with_hint(
                e,
                format!(
                    "the bundle holds {} of the {} platform manifests of this index (it was built for some platforms only); a registry that checks an index's manifests refuses it",
                    p.children.len(),
                    p.children.len() + p.missing_children
                ),
            )
        } else {
            e
        }
    })?;
    Ok(Pushed { original: p.src.reference.clone(), pushed: target.reference(&p.image), digest: p.src.digest.clone(), media_type: p.src.media_type.clone(), unchanged })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_mapped_like_serve() {
        let t = Target::parse("harbor.example:8443/k8s/base").unwrap();
        assert_eq!(t.host, "harbor.example:8443");
        let r = |s: &str| t.reference(&ImageRef::parse(s).unwrap());
        assert_eq!(r("registry.k8s.io/pause:3.10"), "harbor.example:8443/k8s/base/pause:3.10");
        assert_eq!(r("nginx:1.27"), "harbor.example:8443/k8s/base/library/nginx:1.27");
        assert_eq!(r("registry.k8s.io/coredns/coredns:v1.11.3"), "harbor.example:8443/k8s/base/coredns/coredns:v1.11.3");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(r(&format!("quay.io/x/y@{d}")), format!("harbor.example:8443/k8s/base/x/y@{d}"));
        let plain = Target::parse("10.0.0.5:5000").unwrap();
        assert_eq!(plain.reference(&ImageRef::parse("registry.k8s.io/pause:3.10").unwrap()), "10.0.0.5:5000/pause:3.10");
        assert!(Target::parse("").is_err());
        assert!(Target::parse("h/Bad Prefix").is_err());
    }
}
