//! Pulling images with oci-client: the top-level manifest or index as raw bytes (kept exactly, so
//! digest-pinned references still resolve), the requested platforms' child manifests, and blobs streamed into
//! the cache, hashed as they arrive. Every network operation is retried on transient failures.

use crate::transfer::cache::Cache;
use crate::digest::Digest;
use crate::error::HintExt;
use crate::transfer::retry::{retry, RetryPolicy};
use crate::transfer::stream::stage_stream;
use crate::oci::auth::Credentials;
use crate::oci::mirror::RegistryMirror;
use crate::oci::platform::Platform;
use crate::oci::reference::ImageRef;
use crate::oci::{is_index, ACCEPT, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use anyhow::{anyhow, bail, Context, Result};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use serde::Deserialize;
use std::time::Duration;

/// Largest manifest or index we accept (the distribution spec suggests 4 MiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

pub struct Puller {
    client: oci_client::Client,
    creds: Credentials,
    insecure: Vec<String>,
    /// Registries whose images are fetched from a mirror (`--registry-mirror`).
    mirrors: Vec<RegistryMirror>,
    pub retry: RetryPolicy,
}

/// One image, resolved: the top-level manifest/index and the chosen child manifests are in the cache;
/// `blobs` (configs and layers) may still need downloading.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub image: ImageRef,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Platforms present (`linux/amd64`...).
    pub platforms: Vec<String>,
    /// Top-level and child manifests (all already in the cache).
    pub manifests: Vec<(Digest, u64)>,
    /// Configs and layers.
    pub blobs: Vec<(Digest, u64)>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<DescPlatform>,
}

#[derive(Deserialize)]
struct DescPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct AnyManifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Puller {
    pub fn new(mut insecure: Vec<String>, ca_pems: Vec<Vec<u8>>, creds: Credentials, retry: RetryPolicy, mirrors: Vec<RegistryMirror>) -> Puller {
        insecure.extend(mirrors.iter().filter(|m| m.plain_http).map(|m| m.host.clone()));
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.clone()),
            extra_root_certificates: ca_pems.into_iter().map(|data| Certificate { encoding: CertificateEncoding::Pem, data }).collect(),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("airgap/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        Puller { client: oci_client::Client::new(config), creds, insecure, mirrors, retry }
    }

    /// Where `image` is fetched from: its registry, or that registry's mirror (the same repository, tag and
    /// digest there); and how errors name it.
    fn source(&self, image: &ImageRef) -> (ImageRef, String) {
        match crate::oci::mirror::for_image(&self.mirrors, image) {
            Some(m) => (m.source_of(image), format!("{} (the mirror of {})", m.host, image.registry)),
            None => (image.clone(), image.registry.clone()),
        }
    }

    fn hint_for(&self, registry: &str, err: &anyhow::Error) -> String {
        use oci_client::errors::OciDistributionError as E;
        let unauthorized = err.chain().any(|c| {
            matches!(c.downcast_ref::<E>(), Some(E::UnauthorizedError { .. }) | Some(E::AuthenticationFailure(_)))
        });
        if unauthorized {
            return format!(
                "the registry {registry} refused the credentials (or wants some): put them in the auth file (--authfile, default ~/.docker/config.json) under auths.\"{registry}\".auth as base64 user:password"
            );
        }
        let not_found = err.chain().any(|c| matches!(c.downcast_ref::<E>(), Some(E::RegistryError { .. }) | Some(E::ImageManifestNotFoundError(_))));
        if not_found {
            return "check the image name and tag in the manifest (the registry does not know it)".to_string();
        }
        if self.insecure.iter().any(|h| h == registry) {
            format!("check that the registry {registry} is up and reachable over plain HTTP")
        } else {
            format!(
                "check that the registry {registry} is up and reachable over HTTPS (a private CA needs --ca-cert PEM; a plain-HTTP registry needs --insecure-registry {registry}; credentials come from --authfile)"
            )
        }
    }

    /// Fetch a manifest's raw bytes by tag or digest, verifying the digest, and store it in the cache.
    /// A digest-pinned manifest already in the cache is not fetched again.
    async fn manifest(&self, image: &ImageRef, pin: Option<&Digest>, cache: &Cache) -> Result<(Digest, Vec<u8>)> {
        if let Some(d) = pin.or(image.digest.as_ref()) {
            if cache.has(d, None).is_some() {
                let bytes = fs_err::read(cache.path(d))?;
                if &Digest::of_bytes(&bytes) == d {
                    return Ok((d.clone(), bytes));
                }
            }
        }
        let (src, from) = self.source(image);
        let r = src.to_client_ref(pin);
        let auth = self.creds.for_registry(&src.registry);
        let what = format!("fetching manifest {}", r.whole());
        let (bytes, _) = retry(&what, self.retry, || async {
            self.client.pull_manifest_raw(&r, &auth, ACCEPT).await.map_err(anyhow::Error::from)
        })
        .await
        .map_err(|e| {
            let hint = self.hint_for(&src.registry, &e);
            crate::error::with_hint(e.context(format!("failed to fetch the manifest of {} from {from}", image.as_written)), hint)
        })?;
        if bytes.len() > MAX_MANIFEST {
            bail!("the manifest of {} is {} bytes, more than the {MAX_MANIFEST} accepted", image.as_written, bytes.len());
        }
        let d = Digest::of_bytes(&bytes);
        if let Some(want) = pin.or(image.digest.as_ref()) {
            if &d != want {
                bail!("{from} served a manifest with digest {d} for {} (expected {want})", image.as_written);
            }
        }
        cache.put_bytes(&bytes)?;
        Ok((d, bytes.to_vec()))
    }

    /// Resolve an image: top-level manifest/index, requested platforms' manifests, blob list.
    pub async fn resolve(&self, image: &ImageRef, pin: Option<&Digest>, platforms: &[Platform], cache: &Cache) -> Result<Resolved> {
        let (digest, bytes) = self.manifest(image, pin, cache).await?;
        let top: AnyManifest = serde_json::from_slice(&bytes).with_context(|| format!("the manifest of {} is not valid JSON", image.as_written))?;
        if top.schema_version != 2 {
            bail!("{} has a schema {} manifest; only schema 2 (OCI or Docker v2) images are supported", image.as_written, top.schema_version);
        }
        let media_type = top.media_type.clone().unwrap_or_else(|| if top.manifests.is_some() { OCI_INDEX.into() } else { OCI_MANIFEST.into() });
        let mut out = Resolved {
            image: image.clone(),
            digest: digest.clone(),
            media_type: media_type.clone(),
            size: bytes.len() as u64,
            platforms: Vec::new(),
            manifests: vec![(digest.clone(), bytes.len() as u64)],
            blobs: Vec::new(),
        };
        if is_index(&media_type) || top.manifests.is_some() {
            let children = top.manifests.unwrap_or_default();
            for want in platforms {
                let child = children.iter().find(|c| c.platform.as_ref().is_some_and(|p| platform_matches(want, p))).ok_or_else(|| {
                    let have: Vec<String> = children.iter().filter_map(|c| c.platform.as_ref()).map(show_platform).collect();
                    anyhow!("{} has no {want} image (it has: {})", image.as_written, have.join(", "))
                }).hint("remove that platform from `platforms:` in the manifest, or use an image built for it")?;
                if is_index(&child.media_type) {
                    bail!("{} nests an index inside its index; nested indexes are not supported", image.as_written);
                }
                let cd: Digest = child.digest.parse().with_context(|| format!("bad digest in the index of {}", image.as_written))?;
                if out.manifests.iter().any(|(d, _)| d == &cd) {
                    continue; // two requested platforms resolved to the same manifest (linux/arm64 and linux/arm64/v8)
                }
                let (_, cbytes) = self.manifest(image, Some(&cd), cache).await?;
                if cbytes.len() as u64 != child.size {
                    bail!("the {want} manifest of {} has {} bytes, its index says {}", image.as_written, cbytes.len(), child.size);
                }
                let m: AnyManifest = serde_json::from_slice(&cbytes).with_context(|| format!("the {want} manifest of {} is not valid JSON", image.as_written))?;
                out.manifests.push((cd, child.size));
                push_blobs(&mut out.blobs, &m, image)?;
                out.platforms.push(want.to_string());
            }
        } else if media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST {
            push_blobs(&mut out.blobs, &top, image)?;
            let config = top.config.as_ref().ok_or_else(|| anyhow!("the manifest of {} has no config", image.as_written))?;
            let cd: Digest = config.digest.parse().with_context(|| format!("bad config digest in {}", image.as_written))?;
            self.blob(image, &cd, config.size, cache, None).await?;
            let cfg: ImageConfig = serde_json::from_slice(&fs_err::read(cache.path(&cd))?).unwrap_or(ImageConfig { os: String::new(), architecture: String::new(), variant: None });
            let p = show_platform(&DescPlatform { os: cfg.os, architecture: cfg.architecture, variant: cfg.variant });
            if !platforms.iter().any(|w| w.to_string() == p) {
                tracing::warn!("{} is a single-platform image for {p}, not one of the requested platforms; bundling it as is", image.as_written);
            }
            out.platforms.push(p);
        } else {
            bail!("{} has an unsupported media type {media_type:?} (supported: {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST})", image.as_written);
        }
        Ok(out)
    }

    /// Download a blob into the cache (unless already there), hashing as it streams; `progress` counts bytes.
    pub async fn blob(&self, image: &ImageRef, d: &Digest, size: u64, cache: &Cache, progress: Option<&indicatif::ProgressBar>) -> Result<()> {
        if cache.has(d, Some(size)).is_some() {
            return Ok(());
        }
        let (src, _) = self.source(image);
        self.client.store_auth_if_needed(&src.registry, &self.creds.for_registry(&src.registry)).await;
        let r = src.to_client_ref(None);
        let desc = oci_client::manifest::OciDescriptor { digest: d.to_string(), size: size as i64, ..Default::default() };
        let what = format!("downloading {d} from {}/{}", src.registry, src.repository);
        retry(&what, self.retry, || async {
            let stream = self.client.pull_blob_stream(&r, &desc).await?;
            let staged = stage_stream(cache, stream, progress, |len| {
                if len > size {
                    bail!("{d} is longer than the {size} bytes its manifest says");
                }
                Ok(())
            })
            .await?;
            staged.commit(Some(d), Some(size))?;
            Ok(())
        })
        .await
        .map_err(|e| {
            let hint = self.hint_for(&src.registry, &e);
            crate::error::with_hint(e.context(format!("failed to download blob {d} of {}", image.as_written)), hint)
        })
    }
}

fn push_blobs(blobs: &mut Vec<(Digest, u64)>, m: &AnyManifest, image: &ImageRef) -> Result<()> {
    let config = m.config.iter();
    let layers = m.layers.iter().flatten();
    for desc in config.chain(layers) {
        let d: Digest = desc.digest.parse().with_context(|| format!("bad blob digest in a manifest of {}", image.as_written))?;
        if !blobs.iter().any(|(x, _)| x == &d) {
            blobs.push((d, desc.size));
        }
    }
    Ok(())
}

fn show_platform(p: &DescPlatform) -> String {
    match &p.variant {
        Some(v) if !v.is_empty() => format!("{}/{}/{}", p.os, p.architecture, v),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

/// Whether an index entry's platform is the requested one. An unspecified variant matches the default
/// variant (`arm64` → `v8`, `arm` → `v7`) or none.
fn platform_matches(want: &Platform, have: &DescPlatform) -> bool {
    if want.os != have.os || want.arch != have.architecture {
        return false;
    }
    let have_v = have.variant.as_deref().filter(|v| !v.is_empty());
    match (want.variant.as_deref(), have_v) {
        (Some(w), Some(h)) => w == h,
        (Some(w), None) => matches!((want.arch.as_str(), w), ("arm64", "v8") | ("arm", "v7")),
        (None, None) => true,
        (None, Some(h)) => matches!((want.arch.as_str(), h), ("arm64", "v8") | ("arm", "v7")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(os: &str, arch: &str, v: Option<&str>) -> DescPlatform {
        DescPlatform { os: os.into(), architecture: arch.into(), variant: v.map(Into::into) }
    }

    #[test]
    fn matches_platforms_with_default_variants() {
        let p = |s: &str| Platform::parse(s).unwrap();
        assert!(platform_matches(&p("linux/amd64"), &dp("linux", "amd64", None)));
        assert!(platform_matches(&p("linux/arm64"), &dp("linux", "arm64", Some("v8"))));
        assert!(platform_matches(&p("linux/arm64/v8"), &dp("linux", "arm64", None)));
        assert!(platform_matches(&p("linux/arm/v7"), &dp("linux", "arm", Some("v7"))));
        assert!(!platform_matches(&p("linux/arm/v7"), &dp("linux", "arm", Some("v6"))));
        assert!(!platform_matches(&p("linux/amd64"), &dp("unknown", "unknown", None)));
    }
}
