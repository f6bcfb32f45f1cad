//! Plain URL downloads (files, packages, checksum files) with reqwest: streamed into the cache, hashed as
//! they arrive, checked against the expected sha256; retried on transient failures.

use crate::transfer::cache::Cache;
use crate::digest::Digest;
use crate::error::HintExt;
use crate::transfer::retry::{retry, HttpStatus, RetryPolicy};
use crate::transfer::stream::stage_stream;
use anyhow::{anyhow, bail, Context, Result};
use std::time::Duration;

/// Largest checksum file we read.
const MAX_CHECKSUM_FILE: usize = 64 * 1024;

#[derive(Clone)]
pub struct Downloader {
    client: reqwest::Client,
    pub retry: RetryPolicy,
}

/// A file whose content did not match its sha256: never retried, nothing kept.
#[derive(Debug, thiserror::Error)]
#[error("sha256 mismatch for {url}: expected {expected}, got {actual} ({size} bytes)")]
pub struct FileMismatch {
    pub url: String,
    pub expected: String,
    pub actual: String,
    pub size: u64,
}

impl Downloader {
    pub fn new(ca_pems: &[Vec<u8>], retry: RetryPolicy) -> Result<Downloader> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("airgap/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60));
        for pem in ca_pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem).context("failed to parse a --ca-cert file")?;
            b = b.tls_certs_merge(certs);
        }
        Ok(Downloader { client: b.build().context("failed to set up the HTTP client")?, retry })
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response> {
        let resp = self.client.get(url).send().await?;
        let code = resp.status().as_u16();
        if !resp.status().is_success() {
            return Err(anyhow::Error::new(HttpStatus { code, url: url.to_string() }));
        }
        Ok(resp)
    }

    /// Fetch a checksum file and return the sha256 in its first token (`<hex>` or `<hex>  name`).
    pub async fn checksum(&self, url: &str) -> Result<Digest> {
        let body = retry(&format!("fetching {url}"), self.retry, || async {
            let resp = self.get(url).await?;
            if resp.content_length().is_some_and(|n| n as usize > MAX_CHECKSUM_FILE) {
                bail!("{url} is too large for a checksum file");
            }
            Ok(resp.bytes().await?)
        })
        .await
        .with_context(|| format!("failed to fetch the checksum file {url}"))
        .hint("check the `sha256_url` in the manifest, or give the file's `sha256` directly")?;
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_CHECKSUM_FILE)]).into_owned();
        let token = text.split_whitespace().next().unwrap_or("");
        Digest::from_hex(&token.to_ascii_lowercase()).map_err(|_| anyhow!("{url} does not start with a sha256 (found {:?})", token.chars().take(80).collect::<String>()))
    }

    /// Download `url` into the cache, checking its sha256. `progress` counts bytes (its length grows by the
    /// Content-Length when known).
    pub async fn file(&self, url: &str, sha256: &Digest, cache: &Cache, progress: Option<&indicatif::ProgressBar>) -> Result<u64> {
        if let Some(n) = cache.has(sha256, None) {
            return Ok(n);
        }
        retry(&format!("downloading {url}"), self.retry, || async {
            let resp = self.get(url).await?;
            let staged = stage_stream(cache, resp.bytes_stream(), progress, |_| Ok(())).await?;
            let (actual, n) = staged.peek();
            if &actual != sha256 {
                // Dropping `staged` deletes the temp file: nothing is kept.
                return Err(anyhow::Error::new(FileMismatch { url: url.to_string(), expected: sha256.hex().to_string(), actual: actual.hex().to_string(), size: n }))
                    .hint("if the file changed upstream on purpose, update its sha256 in the manifest; otherwise the download was tampered with");
            }
            staged.commit(Some(sha256), None)?;
            Ok(n)
        })
        .await
        .with_context(|| format!("failed to download {url}"))
    }
}
