//! The lock file: every image reference → the digest it resolved to, every file/package URL → its sha256.
//! `airgap build` writes `<out>/<name>-<version>.lock.json`; `airgap build --lock FILE` pins a rebuild to it
//! (tags are fetched by the locked digest; checksum URLs are not consulted).
//!
//! ```json
//! {
//!   "schema": "airgap.lock/v1",
//!   "name": "k8s-ha",
//!   "version": "1.31.4-1",
//!   "images": { "registry.k8s.io/pause:3.10": "sha256:..." },
//!   "files": { "https://dl.k8s.io/release/v1.31.4/bin/linux/amd64/kubeadm": "<64 hex>" },
//!   "bundle": { "root_sha256": "<64 hex>", "blobs": ["sha256:..."], "files": { "bin/linux/amd64/kubeadm": "<64 hex>" } }
//! }
//! ```
//!
//! `bundle` describes the bundle the build wrote (the sha256 of its root document, every blob and file of the
//! release): `airgap build --base THIS.lock.json` writes a delta bundle holding only what it lacks.

use crate::digest::Digest;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const LOCK_SCHEMA: &str = "airgap.lock/v1";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub schema: String,
    pub name: String,
    pub version: String,
    /// Image reference as written in the manifest → digest of its top-level manifest or index.
    pub images: BTreeMap<String, Digest>,
    /// File or package URL → sha256 (hex).
    pub files: BTreeMap<String, String>,
    /// What the bundle this build wrote holds, for `airgap build --base THIS.lock.json` (a delta bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<LockedBundle>,
}

/// The bundle a build wrote: its identity and everything a store that loaded it (and its bases) holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBundle {
    /// sha256 (hex) of its root document (`airgap.json`), the identity a delta's root document names.
    pub root_sha256: String,
    /// Every blob of the release (manifests, indexes, configs, layers), those of its bases included.
    pub blobs: Vec<Digest>,
    /// Every file and package of the release, by path under `files/` → sha256 (hex).
    pub files: BTreeMap<String, String>,
}

impl Lock {
    pub fn load(path: &Path) -> Result<Lock> {
        let text = fs_err::read_to_string(path).context("failed to read the lock file")?;
        let lock: Lock = serde_json::from_str(&text).with_context(|| format!("failed to parse the lock file {}", path.display()))?;
        if lock.schema != LOCK_SCHEMA {
            bail!("{} has schema {:?}, expected {LOCK_SCHEMA:?}", path.display(), lock.schema);
        }
        Ok(lock)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn file_digest(&self, url: &str) -> Option<Digest> {
        self.files.get(url).and_then(|h| Digest::from_hex(h).ok())
    }
}
