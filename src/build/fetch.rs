//! The online side of `airgap build`: resolve every image and file of a manifest, download the files the
//! cache lacks (bounded parallelism, retries, streaming hashes), and assemble the [`BundleContent`] for the
//! writer plus the [`Lock`] that pins a later rebuild. The image blobs the cache lacks are left to
//! [`PendingBlobs`], downloaded while the bundle is written (see [`super::pipeline`]).

use crate::bundle::format::{FileEntry, ImageEntry, KubernetesEntry, PackageEntry, RootDoc, REF_NAME_ANNOTATION, SCHEMA};
use crate::bundle::write::{BlobSource, BundleContent, FileSource};
use crate::transfer::cache::Cache;
use crate::digest::Digest;
use crate::error::HintExt;
use crate::build::manifest::{Checksum, Manifest};
use crate::oci::auth::Credentials;
use crate::oci::pull::{Puller, Resolved};
use crate::output::Output;
use anyhow::{anyhow, Context, Result};
use futures::{StreamExt, TryStreamExt};
use super::lock::{Lock, LOCK_SCHEMA};
use super::pipeline::PendingBlobs;
use crate::transfer::retry::RetryPolicy;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct FetchOptions {
    pub cache_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    /// PEM contents of extra CA certificates.
    pub ca_pems: Vec<Vec<u8>>,
    pub credentials: Credentials,
    pub jobs: usize,
    pub retry: RetryPolicy,
    pub lock: Option<Lock>,
    /// Blobs not to download: a delta's base holds them (they are left out of the bundle).
    pub skip_blobs: std::collections::BTreeSet<Digest>,
    /// Registries whose images are fetched from a mirror (`--registry-mirror`); the bundle names them as written.
    pub registry_mirrors: Vec<crate::oci::mirror::RegistryMirror>,
}

pub struct Fetched {
    pub content: BundleContent,
    pub lock: Lock,
    /// Bytes of files downloaded in this run, and bytes found in the cache.
    pub downloaded: u64,
    pub cached: u64,
    /// The image blobs still to download (the writer waits for each).
    pub pending: PendingBlobs,
}

/// Resolve and download everything the manifest names.
pub async fn fetch(m: &Manifest, opts: &FetchOptions, out: &Output) -> Result<Fetched> {
    let cache = Cache::open(&opts.cache_dir)?;
    let jobs = opts.jobs.max(1);
    let puller = Puller::new(opts.insecure_registries.clone(), opts.ca_pems.clone(), opts.credentials.clone(), opts.retry, opts.registry_mirrors.clone());
    let http = super::files::Downloader::new(&opts.ca_pems, opts.retry)?;
    let locked = opts.lock.as_ref();

    // 0. The closure check first: the Kubernetes manifests are downloaded (they are small) and every image
    // they or kubeadm need must be listed, before anything else is fetched or resolved.
    let file_digest = |f: &'_ crate::build::manifest::FileSpec| {
        let locked_digest = locked.and_then(|l| l.file_digest(&f.url));
        let (http, checksum, url) = (&http, f.checksum.clone(), f.url.clone());
        async move {
            match (checksum, locked_digest) {
                (Checksum::Fixed(d), _) => Ok(d),
                (Checksum::Url(_), Some(d)) => Ok(d),
                (Checksum::Url(_), None) if locked.is_some() => Err(anyhow!("the lock file has no sha256 for {url}"))
                    .hint("rebuild without --lock to resolve it (and write a new lock file)"),
                (Checksum::Url(u), None) => http.checksum(&u).await.with_context(|| format!("failed to resolve the sha256 of {url}")),
            }
        }
    };
    let mut digests: Vec<Option<Digest>> = vec![None; m.files.len()];
    let mut manifests = Vec::new();
    for (i, f) in m.files.iter().enumerate().filter(|(_, f)| f.manifest.is_some()) {
        let d = file_digest(f).await?;
        http.file(&f.url, &d, &cache, None).await?;
        let text = fs_err::read_to_string(cache.path(&d)).with_context(|| format!("the Kubernetes manifest {} is not text", f.url))?;
        manifests.push((f, text));
        digests[i] = Some(d);
    }
    super::closure::check(m, &m.file, &manifests)?;

    // 1. Resolve images (top-level and per-platform manifests).
    let spinner = out.bar(m.images.len() as u64, "{spinner} resolving images {pos}/{len} {wide_msg}");
    let resolved: Vec<Resolved> = futures::stream::iter(m.images.iter())
        .map(|img| {
            let pin = match (&img.digest, locked) {
                (Some(_), _) | (None, None) => Ok(None),
                (None, Some(l)) => l.images.get(&img.as_written).cloned().map(Some).ok_or_else(|| {
                    anyhow!("the lock file has no digest for {}", img.as_written)
                }),
            };
            let (puller, cache, spinner) = (&puller, &cache, &spinner);
            async move {
                let pin = pin.hint("rebuild without --lock to resolve it (and write a new lock file)")?;
                let r = puller.resolve(img, pin.as_ref(), &m.platforms, cache).await?;
                spinner.inc(1);
                spinner.set_message(img.as_written.clone());
                Ok::<_, anyhow::Error>(r)
            }
        })
        .buffered(jobs)
        .try_collect()
        .await?;
    spinner.finish_and_clear();

    // the other files' sha256 (checksum URLs resolved)
    let mut file_digests: Vec<Digest> = Vec::new();
    for (f, d) in m.files.iter().zip(digests) {
        file_digests.push(match d {
            Some(d) => d,
            None => file_digest(f).await?,
        });
    }

    // 2. Plan downloads: each blob and file once, skipping what the cache has.
    let mut blob_jobs: BTreeMap<Digest, (u64, usize)> = BTreeMap::new();
    for (i, r) in resolved.iter().enumerate() {
        for (d, size) in &r.blobs {
            blob_jobs.entry(d.clone()).or_insert((*size, i));
        }
    }
    let mut file_jobs: BTreeMap<Digest, String> = BTreeMap::new();
    for (f, d) in m.files.iter().zip(&file_digests) {
        file_jobs.entry(d.clone()).or_insert_with(|| f.url.clone());
    }
    for p in &m.packages {
        file_jobs.entry(p.sha256.clone()).or_insert_with(|| p.url.clone());
    }
    blob_jobs.retain(|d, _| !opts.skip_blobs.contains(d));
    let mut cached = 0u64;
    let mut to_fetch = 0u64;
    blob_jobs.retain(|d, (size, _)| match cache.has(d, Some(*size)) {
        Some(n) => {
            cached += n;
            false
        }
        None => {
            to_fetch += *size;
            true
        }
    });
    file_jobs.retain(|d, _| match cache.has(d, None) {
        Some(n) => {
            cached += n;
            false
        }
        None => true,
    });
    out.info(format!(
        "resolved {} images for {}; downloading {} blobs ({}) and {} files; {} already cached",
        resolved.len(),
        m.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
        blob_jobs.len(),
        human(to_fetch),
        file_jobs.len(),
        human(cached)
    ));

    // 3. Download the files, bounded (the root document gives their sizes: they come before any writing);
    //    the blobs are downloaded while the bundle is written, in its order (by digest).
    let bar = out.bar(file_jobs.len() as u64, "{spinner} downloading files {pos}/{len} {wide_msg}");
    let file_futs = file_jobs.iter().map(|(d, url)| {
        let (http, cache, bar) = (&http, &cache, &bar);
        async move {
            let n = http.file(url, d, cache, None).await?;
            bar.inc(1);
            Ok::<u64, anyhow::Error>(n)
        }
    });
    let downloaded: u64 = futures::stream::iter(file_futs).buffer_unordered(jobs).try_fold(0u64, |a, n| async move { Ok(a + n) }).await?;
    bar.finish_and_clear();
    let pending_blobs: Vec<(Digest, u64, crate::oci::reference::ImageRef)> =
        blob_jobs.iter().map(|(d, (size, i))| (d.clone(), *size, resolved[*i].image.clone())).collect();

    // 4. Assemble the bundle content.
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut images = Vec::new();
    let mut index_entries = Vec::new();
    for r in &resolved {
        let mut total = 0;
        for (d, size) in r.manifests.iter().chain(&r.blobs) {
            blobs.insert(d.clone(), *size);
            total += size;
        }
        images.push(ImageEntry { reference: r.image.as_written.clone(), digest: r.digest.clone(), media_type: r.media_type.clone(), size: total, platforms: r.platforms.clone() });
        index_entries.push(serde_json::json!({
            "mediaType": layout_media_type(&r.media_type),
            "digest": r.digest.to_string(),
            "size": r.size,
            "annotations": { REF_NAME_ANNOTATION: r.image.as_written },
        }));
    }
    index_entries.sort_by(|a, b| a["annotations"][REF_NAME_ANNOTATION].as_str().cmp(&b["annotations"][REF_NAME_ANNOTATION].as_str()));
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": crate::oci::OCI_INDEX, "manifests": index_entries });
    let mut index_json = serde_json::to_vec_pretty(&index)?;
    index_json.push(b'\n');

    let size_of = |d: &Digest| cache.has(d, None).ok_or_else(|| anyhow!("{d} vanished from the cache {}", cache.root().display()));
    let mut file_entries = Vec::new();
    let mut file_sources = Vec::new();
    for (f, d) in m.files.iter().zip(&file_digests) {
        let size = size_of(d)?;
        file_entries.push(FileEntry {
            path: f.path.clone(),
            url: f.url.clone(),
            sha256: d.hex().to_string(),
            size,
            mode: f.mode,
            install: f.install,
            platform: f.platform.clone(),
            manifest: f.manifest,
        });
        file_sources.push(FileSource { path: f.path.clone(), sha256: d.clone(), size, mode: f.mode, source: cache.path(d) });
    }
    let mut packages = Vec::new();
    for p in &m.packages {
        let size = size_of(&p.sha256)?;
        packages.push(PackageEntry { os: p.os.clone(), name: p.name.clone(), path: p.path.clone(), url: p.url.clone(), sha256: p.sha256.hex().to_string(), size });
        file_sources.push(FileSource { path: p.path.clone(), sha256: p.sha256.clone(), size, mode: 0o644, source: cache.path(&p.sha256) });
    }

    let root = RootDoc {
        schema: SCHEMA.to_string(),
        name: m.name.clone(),
        version: m.version.clone(),
        base: None,
        platforms: m.platforms.iter().map(|p| p.to_string()).collect(),
        kubernetes: m.kubernetes.as_ref().map(|k| KubernetesEntry { version: k.version.to_string() }),
        images,
        files: file_entries,
        packages,
        sha256sums: String::new(),
        sizes: Default::default(),
    };
    let blob_sources = blobs.into_iter().map(|(digest, size)| BlobSource { path: cache.path(&digest), digest, size }).collect();
    let lock = Lock {
        schema: LOCK_SCHEMA.to_string(),
        name: m.name.clone(),
        version: m.version.clone(),
        images: resolved.iter().map(|r| (r.image.as_written.clone(), r.digest.clone())).collect(),
        files: m
            .files
            .iter()
            .zip(&file_digests)
            .map(|(f, d)| (f.url.clone(), d.hex().to_string()))
            .chain(m.packages.iter().map(|p| (p.url.clone(), p.sha256.hex().to_string())))
            .collect(),
        bundle: None,
    };
    let pending = PendingBlobs { puller, cache, jobs, blobs: pending_blobs };
    Ok(Fetched { content: BundleContent { root, index_json, blobs: blob_sources, files: file_sources }, lock, downloaded, cached, pending })
}

/// The media type of an image's descriptor in `images/index.json`. skopeo (containers/image) looks images up
/// in an OCI layout only among descriptors typed as OCI manifest or index, so Docker schema 2 lists/manifests
/// (structurally the same documents) are described with their OCI equivalents there. The blob keeps its
/// original bytes and digest (and its own `mediaType` field); the true type is in `airgap.json`
/// (`images[].media_type`): a registry serving the bundle must send that as the Content-Type.
pub fn layout_media_type(media_type: &str) -> &str {
    match media_type {
        crate::oci::DOCKER_LIST => crate::oci::OCI_INDEX,
        crate::oci::DOCKER_MANIFEST => crate::oci::OCI_MANIFEST,
        other => other,
    }
}

pub use crate::output::human_bytes as human;
