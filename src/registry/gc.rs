//! What the catalog reaches, and `airgap gc`: free the blobs that no image of the catalog needs any more
//! (the manifests, configs and layers of tags a newer bundle moved).
//!
//! Reachability: every image record of the catalog (tags and pinned digests) is a root; a root's manifest or
//! index is read from the store; an index reaches the child manifests the store holds (a bundle may carry only
//! some platforms of an index), a manifest reaches its config and its layers. `serve` uses the same walk for
//! the size every blob must have on disk.
//!
//! Collection runs under the store's lock (the one every load holds from start to commit), so it never races a
//! load. It first replaces the catalog, dropping the records of manifests nothing reaches any more, then
//! deletes the unreachable blob files one by one (each `unlink` is atomic) and the staging directories a
//! crashed load left under `tmp/`. A crash at any point leaves a consistent store: the catalog only names
//! blobs that are there, and a blob left behind is found again by the next `gc`. Nothing is deleted while the
//! walk found a manifest it could not read: what that manifest needs cannot be told.

use crate::digest::Digest;
use crate::registry::catalog::{self, Catalog};
use crate::registry::store::{Store, MAX_MANIFEST};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// What a reachable blob is to the images that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Index,
    Manifest,
    Config,
    Layer,
}

/// A blob some image needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Needed {
    /// Its size as the descriptor that names it says (or as the catalog recorded, for a top-level manifest).
    pub size: u64,
    pub kind: Kind,
    /// The first image reference (as loaded) that needs it.
    pub by: String,
}

/// Every blob the catalog's images reach, and what could not be read on the way.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub blobs: BTreeMap<Digest, Needed>,
    /// Manifests that are missing, too large, not JSON or not matching their digest; needed blobs missing.
    pub problems: Vec<String>,
}

impl Reach {
    pub fn contains(&self, d: &Digest) -> bool {
        self.blobs.contains_key(d)
    }
}

/// Read one manifest of the store, checking its size and digest.
fn read_manifest(store: &Store, d: &Digest) -> Result<serde_json::Value> {
    let path = store.blob_path(d);
    let f = fs_err::File::open(&path)?;
    let mut bytes = Vec::new();
    f.take(MAX_MANIFEST + 1).read_to_end(&mut bytes).with_context(|| format!("failed to read {}", path.display()))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        bail!("{} is larger than the {MAX_MANIFEST} bytes a manifest may have", path.display());
    }
    let actual = Digest::of_bytes(&bytes);
    if &actual != d {
        bail!("{} does not match its name: its content is {actual}", path.display());
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
}

/// Walk every image of `catalog` through the manifests in `store` (blocking: reads every manifest once).
pub fn reach(store: &Store, catalog: &Catalog) -> Reach {
    let mut r = Reach::default();
    let mut stack: Vec<(Digest, Needed)> = Vec::new();
    for img in &catalog.images {
        let kind = if catalog::is_index(&img.media_type) { Kind::Index } else { Kind::Manifest };
        let size = catalog.manifests.get(&img.digest).map(|m| m.size).unwrap_or(0);
        stack.push((img.digest.clone(), Needed { size, kind, by: img.reference.clone() }));
    }
    while let Some((d, need)) = stack.pop() {
        if r.blobs.contains_key(&d) {
            continue;
        }
        let by = need.by.clone();
        let kind = need.kind;
        r.blobs.insert(d.clone(), need);
        if !matches!(kind, Kind::Index | Kind::Manifest) {
            if !store.has_blob(&d) {
                r.problems.push(format!("{by} needs blob {d}, which is missing from the store"));
            }
            continue;
        }
        let json = match read_manifest(store, &d) {
            Ok(j) => j,
            Err(e) => {
                r.problems.push(format!("{by}: manifest {d}: {e:#}"));
                continue;
            }
        };
        let desc = |v: &serde_json::Value| -> Option<(Digest, u64)> {
            Some((v["digest"].as_str()?.parse().ok()?, v["size"].as_u64().unwrap_or(0)))
        };
        if let Some(children) = json.get("manifests").and_then(|m| m.as_array()) {
            for c in children {
                let Some((cd, size)) = desc(c) else {
                    r.problems.push(format!("{by}: index {d} has a child without a valid digest"));
                    continue;
                };
                // A platform the bundle left out is not in the store and not needed.
                if store.has_blob(&cd) {
                    let kind = if c["mediaType"].as_str().is_some_and(catalog::is_index) { Kind::Index } else { Kind::Manifest };
                    stack.push((cd, Needed { size, kind, by: by.clone() }));
                }
            }
            continue;
        }
        let config = json.get("config").filter(|c| c.is_object()).map(|c| (c, Kind::Config));
        let layers = json["layers"].as_array().into_iter().flatten().map(|l| (l, Kind::Layer));
        for (v, kind) in config.into_iter().chain(layers) {
            match desc(v) {
                Some((bd, size)) => stack.push((bd, Needed { size, kind, by: by.clone() })),
                None => r.problems.push(format!("{by}: manifest {d} names a blob without a valid digest")),
            }
        }
    }
    r
}

/// One blob no image needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unreachable {
    pub digest: Digest,
    /// Its size on disk.
    pub size: u64,
}

/// What `gc` found (and, with `apply`, did).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    pub store: PathBuf,
    pub applied: bool,
    /// Blobs no image reaches, by digest.
    pub unreachable: Vec<Unreachable>,
    pub unreachable_bytes: u64,
    pub kept_blobs: usize,
    pub kept_bytes: u64,
    /// Catalog records of manifests no image reaches any more (dropped with `apply`).
    pub catalog_manifests_dropped: usize,
    /// Staging directories under `tmp/` left by a load that crashed (removed with `apply`).
    pub stale_staging: Vec<PathBuf>,
    /// Files under `blobs/sha256/` that are not named by a digest (reported, never deleted).
    pub stray_files: Vec<PathBuf>,
    /// What the walk could not read (nothing is deleted while there is one).
    pub problems: Vec<String>,
    /// Bytes actually deleted (with `apply`).
    pub freed_bytes: u64,
}

/// Find what no image reaches; with `apply`, delete it. Holds the store's lock throughout (a dry run holds it
/// shared when the lock file is readable, so it waits for a running load and reports a settled store).
pub fn collect(store: &Store, apply: bool) -> Result<GcReport> {
    let _lock = if apply { Some(store.lock_exclusive("gc")?) } else { store.lock_shared()? };
    let catalog = store.catalog()?;
    let reach = reach(store, &catalog);
    let mut report = GcReport { store: store.root().to_path_buf(), problems: reach.problems.clone(), ..Default::default() };

    let blobs_dir = store.root().join("blobs/sha256");
    let mut entries: Vec<_> = fs_err::read_dir(&blobs_dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata().with_context(|| format!("failed to stat {}", e.path().display()))?;
        match Digest::from_hex(&name) {
            Ok(d) if meta.is_file() => {
                if reach.contains(&d) {
                    report.kept_blobs += 1;
                    report.kept_bytes += meta.len();
                } else {
                    report.unreachable_bytes += meta.len();
                    report.unreachable.push(Unreachable { digest: d, size: meta.len() });
                }
            }
            _ => report.stray_files.push(e.path()),
        }
    }
    if !report.unreachable.is_empty() && !store.catalog_path().exists() {
        // Every blob is unreachable: more likely a lost catalog than a store to empty.
        report.problems.push(format!(
            "{} is missing: gc will not delete every blob of the store (load the bundles again to rebuild it)",
            store.catalog_path().display()
        ));
    }
    // Holding the lock, no load is running: whatever is staged is a crashed load's.
    if let Ok(rd) = fs_err::read_dir(store.root().join("tmp")) {
        report.stale_staging = rd.flatten().map(|e| e.path()).collect();
        report.stale_staging.sort();
    }
    let dropped: Vec<Digest> = catalog.manifests.keys().filter(|d| !reach.contains(d)).cloned().collect();
    report.catalog_manifests_dropped = dropped.len();
    if !apply {
        return Ok(report);
    }
    if !report.problems.is_empty() {
        return Err(anyhow::anyhow!(
            "the store has {} problem(s); gc deletes nothing while it cannot tell what every image needs:\n  {}",
            report.problems.len(),
            report.problems.join("\n  ")
        ))
        .context(format!("failed to collect garbage in {}", store.root().display()));
    }
    report.applied = true;
    // 1. The catalog first: once it is replaced, nothing names the blobs about to go.
    if !dropped.is_empty() {
        let mut new = catalog.clone();
        new.manifests.retain(|d, _| reach.contains(d));
        store.write_catalog(&new).context("failed to replace the store's catalog")?;
    }
    // 2. The blobs: each unlink is atomic; a crash leaves unreferenced blobs for the next gc.
    for u in &report.unreachable {
        match fs_err::remove_file(store.blob_path(&u.digest)) {
            Ok(()) => report.freed_bytes += u.size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("failed to delete an unreachable blob (the store stays consistent; run gc again)"),
        }
    }
    crate::fsutil::sync_dir(&blobs_dir);
    for s in &report.stale_staging {
        let _ = if s.is_dir() { fs_err::remove_dir_all(s) } else { fs_err::remove_file(s) };
    }
    Ok(report)
}
