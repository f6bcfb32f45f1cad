//! The content-addressed store that `airgap load` fills and `airgap serve` serves.
//!
//! ```text
//! STORE/
//!   blobs/sha256/<hex>   every blob (manifests, indexes, configs, layers) once, never modified once in place
//!   catalog.json         images → names, tags, digests (see `catalog`), replaced atomically (temp + rename)
//!   lock                 flock(2) held by a load for its whole duration: two loads never race
//!   tmp/<id>/            a load's staging directory: new blobs land here while the bundle is verified
//! ```
//!
//! A load stages new blobs under `tmp/<id>/` while the bundle reader verifies them; only when the whole
//! bundle verified (signature included) are the staged blobs renamed into `blobs/sha256/` and the catalog
//! replaced. Any error drops the staging directory: the store is as it was. A crash between the renames and the
//! catalog replacement leaves only unreferenced blobs, never a catalog pointing at missing ones.
//! `serve` never takes the lock: it reads the catalog, which is only ever replaced whole by a rename. `gc
//! --apply` (see `gc`) holds the lock too, so it never races a load. The store's directories, blobs and
//! catalog are readable by everyone whatever the loader's umask: `serve` runs as an unprivileged user.

use crate::digest::{Digest, HashingReader};
use crate::error::HintExt;
use crate::registry::catalog::{self, BundleRecord, Catalog, ImageRecord, ManifestRecord, CATALOG_VERSION};
use crate::registry::names::ImageRef;
use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const CATALOG_FILE: &str = "catalog.json";
/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

/// A store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open an existing store (for `serve` and `images`).
    pub fn open(root: &Path) -> Result<Store> {
        if !root.join("blobs").is_dir() {
            return Err(anyhow::anyhow!("{} is not an airgap registry store", root.display()))
                .hint("fill a store first with `airgap load BUNDLE --store DIR --pubkey PUB`");
        }
        Ok(Store { root: root.to_path_buf() })
    }

    /// Open a store, creating its directories when missing (for `load`).
    /// The store's directories, and the parents this creates, are made readable by everyone (mode 0755)
    /// whatever the umask: `serve` runs as an unprivileged user. An existing parent that others cannot enter
    /// is left alone, with a warning.
    pub fn create(root: &Path) -> Result<Store> {
        use std::os::unix::fs::PermissionsExt;
        let mut created: Vec<PathBuf> = root.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).map(Path::to_path_buf).collect();
        fs_err::create_dir_all(root.join("blobs/sha256")).context("failed to create the registry store")?;
        fs_err::create_dir_all(root.join("tmp")).context("failed to create the registry store")?;
        created.extend([root.to_path_buf(), root.join("blobs"), root.join("blobs/sha256")]);
        for d in &created {
            fs_err::set_permissions(d, std::fs::Permissions::from_mode(0o755)).context("failed to set the registry store's modes")?;
        }
        for p in root.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(m) = std::fs::metadata(p) {
                if m.permissions().mode() & 0o001 == 0 {
                    tracing::warn!(
                        "{} (mode {:o}) cannot be entered by other users: an unprivileged `airgap serve` cannot read the store under it",
                        p.display(),
                        m.permissions().mode() & 0o7777
                    );
                }
            }
        }
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.root.join(CATALOG_FILE)
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Does the stored blob have `size` bytes whose sha256 is its name? (Reads it whole: used by loads, which
    /// replace a damaged blob with the bundle's verified copy instead of trusting a file by its name.)
    pub fn blob_is_intact(&self, d: &Digest, size: u64) -> bool {
        let path = self.blob_path(d);
        match fs_err::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == size => matches!(Digest::of_file(&path), Ok((got, _)) if &got == d),
            _ => false,
        }
    }

    /// The catalog (empty when nothing was loaded yet).
    pub fn catalog(&self) -> Result<Catalog> {
        let path = self.catalog_path();
        let bytes = match fs_err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Catalog { version: CATALOG_VERSION, ..Default::default() })
            }
            Err(e) => return Err(e).context("failed to read the store's catalog"),
        };
        let c: Catalog = serde_json::from_slice(&bytes)
            .with_context(|| format!("failed to parse {}", path.display()))
            .hint("the catalog is damaged: remove the store directory and load the bundles again")?;
        if c.version != CATALOG_VERSION {
            bail!("{} has catalog version {}, this airgap reads version {CATALOG_VERSION}", path.display(), c.version);
        }
        Ok(c)
    }

    /// Take the store's lock exclusively (what a load and `gc --apply` hold), waiting for its holder to finish.
    pub fn lock_exclusive(&self, what: &str) -> Result<StoreLock> {
        let lock_path = self.root.join("lock");
        let file = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?.into_parts().0;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                tracing::warn!("another `airgap load` or `airgap gc` holds {}; the {what} waits for it to finish", lock_path.display());
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, e)| e)
                    .with_context(|| format!("failed to lock {}", lock_path.display()))?
            }
            Err((_, e)) => return Err(e).with_context(|| format!("failed to lock {}", lock_path.display())),
        };
        Ok(StoreLock { _lock: lock })
    }

    /// Take the store's lock shared (a reader that wants a settled store: it waits for a running load). None
    /// when the store has no lock file (no load ever ran in it).
    pub fn lock_shared(&self) -> Result<Option<StoreLock>> {
        let lock_path = self.root.join("lock");
        let file = match std::fs::File::open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("failed to open {}", lock_path.display())),
        };
        let lock = match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(l) => l,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                tracing::warn!("an `airgap load` or `airgap gc --apply` holds {}; waiting for it to finish", lock_path.display());
                Flock::lock(file, FlockArg::LockShared)
                    .map_err(|(_, e)| e)
                    .with_context(|| format!("failed to lock {}", lock_path.display()))?
            }
            Err((_, e)) => return Err(e).with_context(|| format!("failed to lock {}", lock_path.display())),
        };
        Ok(Some(StoreLock { _lock: lock }))
    }

    /// Replace the catalog atomically (temp file, fsync, rename), readable by everyone: `serve` runs as an
    /// unprivileged user.
    pub fn write_catalog(&self, catalog: &Catalog) -> Result<()> {
        use std::io::Write;
        let json = serde_json::to_vec_pretty(catalog)?;
        // readable by the registry service whatever user it runs as (0644, like the blobs)
        crate::fsutil::atomic_write_with(&self.catalog_path(), crate::fsutil::Mode::Set(0o644), |f| {
            f.write_all(&json)?;
            Ok(())
        })
    }

    /// Start a load: takes the store's lock (waiting for another load to finish) and makes a staging directory.
    pub fn begin_load(&self) -> Result<LoadTx> {
        let lock = self.lock_exclusive("load")?;
        // Holding the lock, anything left under tmp/ is from a load that crashed: remove it.
        let tmp = self.root.join("tmp");
        fs_err::create_dir_all(&tmp)?;
        for e in fs_err::read_dir(&tmp)?.flatten() {
            let _ = fs_err::remove_dir_all(e.path());
        }
        let staging = tempfile::Builder::new()
            .prefix("load-")
            .tempdir_in(&tmp)
            .with_context(|| format!("failed to create a staging directory in {}", tmp.display()))?;
        Ok(LoadTx {
            store: self.clone(),
            _lock: lock,
            staging,
            staged: HashSet::new(),
            index_json: None,
            bundle: None,
            stats: LoadStats::default(),
        })
    }
}

/// Identity of the bundle a load comes from.
#[derive(Debug, Clone)]
pub struct BundleInfo {
    pub name: String,
    pub version: String,
    pub sha256sums: String,
    /// sha256 (hex) of the bundle's root document.
    pub root_sha256: String,
    /// A delta's images (the whole release): each must be in its `images/index.json` with this digest and
    /// every platform of it in the bundle or the store (see `registry::delta`).
    pub release: Option<Vec<crate::bundle::format::ImageEntry>>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadStats {
    pub blobs_new: u64,
    pub bytes_new: u64,
    pub blobs_present: u64,
    pub bytes_present: u64,
    /// Blobs the store held damaged (bytes not matching their name), replaced with the bundle's copy.
    pub blobs_repaired: u64,
}

/// What a committed load changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// Nothing changed (the same bundle was loaded before).
    pub noop: bool,
    pub images: usize,
    pub added: Vec<String>,
    /// (reference, old digest, new digest)
    pub moved: Vec<(String, Digest, Digest)>,
    pub unchanged: usize,
    pub stats: LoadStats,
}

/// The store's lock, released when dropped.
pub struct StoreLock {
    _lock: Flock<std::fs::File>,
}

/// One load in progress. Dropping it without `commit` removes everything it staged.
pub struct LoadTx {
    store: Store,
    _lock: StoreLock,
    staging: tempfile::TempDir,
    staged: HashSet<Digest>,
    index_json: Option<Vec<u8>>,
    bundle: Option<BundleInfo>,
    stats: LoadStats,
}

impl LoadTx {
    pub fn set_bundle(&mut self, info: BundleInfo) {
        self.bundle = Some(info);
    }

    /// The store this load goes into (its lock held).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The OCI layout's `index.json` (one descriptor per image, `org.opencontainers.image.ref.name` = reference).
    pub fn set_index_json(&mut self, bytes: Vec<u8>) {
        self.index_json = Some(bytes);
    }

    /// Add one blob. When the store already holds it, nothing is written (the caller's reader still hashes it).
    /// With `verify`, the content is hashed here too (for sources that are not already verified, like a layout
    /// directory); the bundle reader verifies every entry itself, and a mismatch aborts the whole load.
    pub fn add_blob(&mut self, digest: &Digest, size: u64, data: &mut dyn Read, verify: bool) -> Result<()> {
        if self.staged.contains(digest) || (self.store.has_blob(digest) && self.store.blob_is_intact(digest, size)) {
            self.stats.blobs_present += 1;
            self.stats.bytes_present += size;
            return Ok(());
        }
        if self.store.has_blob(digest) {
            tracing::warn!("blob {digest} in the store does not match its name: replaced with the bundle's verified copy");
            self.stats.blobs_repaired += 1;
        }
        let path = self.staging.path().join(digest.hex());
        let mut f = fs_err::File::create(&path)?;
        // readable by the registry service whatever user it runs as and whatever the loader's umask
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        let n = if verify {
            let mut r = HashingReader::expecting(data, digest.clone(), Some(size));
            std::io::copy(&mut r, &mut f)
        } else {
            std::io::copy(data, &mut f)
        }
        .with_context(|| format!("failed to stage blob {digest}"))?;
        if n != size {
            bail!("blob {digest} has {n} bytes, expected {size}");
        }
        self.staged.insert(digest.clone());
        self.stats.blobs_new += 1;
        self.stats.bytes_new += size;
        Ok(())
    }

    fn blob_file(&self, d: &Digest) -> PathBuf {
        if self.staged.contains(d) {
            self.staging.path().join(d.hex())
        } else {
            self.store.blob_path(d)
        }
    }

    fn has(&self, d: &Digest) -> bool {
        self.staged.contains(d) || self.store.has_blob(d)
    }

    fn read_manifest(&self, d: &Digest) -> Result<(Vec<u8>, serde_json::Value)> {
        let path = self.blob_file(d);
        let len = fs_err::metadata(&path)?.len();
        if len > MAX_MANIFEST {
            bail!("manifest {d} is {len} bytes, more than the {MAX_MANIFEST} bytes a manifest may have");
        }
        let bytes = fs_err::read(&path)?;
        if &Digest::of_bytes(&bytes) != d {
            bail!("stored blob {d} does not match its digest");
        }
        let json = serde_json::from_slice(&bytes).with_context(|| format!("manifest {d} is not valid JSON"))?;
        Ok((bytes, json))
    }

    /// Walk one image from its top-level descriptor: record every manifest's media type, check every blob of
    /// every present platform is there. Returns (media type, size of all blobs, platforms).
    fn walk_image(&self, top: &Digest, manifests: &mut BTreeMap<Digest, ManifestRecord>) -> Result<(String, u64, Vec<String>)> {
        let mut seen = BTreeSet::new();
        let mut size = 0u64;
        let mut platforms = Vec::new();
        let (bytes, json) = self.read_manifest(top)?;
        let mt = catalog::manifest_media_type(&json).with_context(|| format!("cannot tell the media type of manifest {top}"))?;
        manifests.insert(top.clone(), ManifestRecord { media_type: mt.clone(), size: bytes.len() as u64 });
        seen.insert(top.clone());
        size += bytes.len() as u64;
        let mut children = Vec::new();
        if catalog::is_index(&mt) || json.get("manifests").is_some() {
            for c in json["manifests"].as_array().into_iter().flatten() {
                let d: Digest = c["digest"].as_str().unwrap_or_default().parse().with_context(|| format!("bad child digest in index {top}"))?;
                if !self.has(&d) {
                    // A platform the bundle left out (e.g. only linux/amd64 was requested).
                    tracing::debug!("index {top}: platform manifest {d} not in the bundle, skipped");
                    continue;
                }
                let p = &c["platform"];
                let mut plat = format!("{}/{}", p["os"].as_str().unwrap_or("?"), p["architecture"].as_str().unwrap_or("?"));
                if let Some(v) = p["variant"].as_str() {
                    plat = format!("{plat}/{v}");
                }
                platforms.push(plat);
                children.push(d);
            }
        } else {
            children.push(top.clone());
        }
        for m in children {
            let json = if &m == top {
                json.clone()
            } else {
                let (b, j) = self.read_manifest(&m)?;
                let cmt = catalog::manifest_media_type(&j).with_context(|| format!("cannot tell the media type of manifest {m}"))?;
                manifests.insert(m.clone(), ManifestRecord { media_type: cmt, size: b.len() as u64 });
                if seen.insert(m.clone()) {
                    size += b.len() as u64;
                }
                j
            };
            let mut blobs: Vec<&serde_json::Value> = Vec::new();
            blobs.extend(json.get("config"));
            blobs.extend(json["layers"].as_array().into_iter().flatten());
            for b in blobs {
                let d: Digest = b["digest"].as_str().unwrap_or_default().parse().with_context(|| format!("bad blob digest in manifest {m}"))?;
                if !self.has(&d) {
                    bail!("manifest {m} needs blob {d}, which is neither in the bundle nor in the store");
                }
                if seen.insert(d.clone()) {
                    size += fs_err::metadata(self.blob_file(&d))?.len();
                }
            }
        }
        if platforms.is_empty() {
            // A single-platform manifest: the platform is in its config.
            if let Some(cfg) = json.get("config").and_then(|c| c["digest"].as_str()).and_then(|d| d.parse::<Digest>().ok()) {
                if let Ok(b) = fs_err::read(self.blob_file(&cfg)) {
                    if let Ok(c) = serde_json::from_slice::<serde_json::Value>(&b) {
                        if let (Some(os), Some(arch)) = (c["os"].as_str(), c["architecture"].as_str()) {
                            let mut p = format!("{os}/{arch}");
                            if let Some(v) = c["variant"].as_str() {
                                p = format!("{p}/{v}");
                            }
                            platforms.push(p);
                        }
                    }
                }
            }
        }
        Ok((mt, size, platforms))
    }

    /// Make the load visible: rename the staged blobs into place and replace the catalog. Call only once the
    /// source verified completely.
    pub fn commit(self) -> Result<LoadReport> {
        let old = self.store.catalog()?;
        let mut report = LoadReport { stats: self.stats.clone(), ..Default::default() };
        if let Some(b) = &self.bundle {
            if let Some(i) = old.bundles.iter().position(|x| x.sha256sums == b.sha256sums) {
                report.noop = self.staged.is_empty();
                if old.bundles[i].root_sha256.is_none() {
                    // loaded by an older airgap: record its root document (a delta may name it as its base)
                    let mut new = old.clone();
                    new.bundles[i].root_sha256 = Some(b.root_sha256.clone());
                    self.store.write_catalog(&new).context("failed to replace the store's catalog")?;
                }
                report.images = old.images.iter().filter(|i| i.bundles.contains(&format!("{}-{}", b.name, b.version))).count();
                // damaged blobs of an already loaded bundle were staged again: put the good copies in place
                self.install_staged_blobs()?;
                return Ok(report);
            }
        }
        let index_bytes = self.index_json.as_deref().context("the bundle has no images/index.json")?;
        let index: serde_json::Value = serde_json::from_slice(index_bytes).context("images/index.json is not valid JSON")?;
        let generation = old.generation + 1;
        let label = self.bundle.as_ref().map(|b| format!("{}-{}", b.name, b.version));
        let mut new = old.clone();
        new.generation = generation;
        let mut changed = false;
        let mut walked = BTreeMap::new();
        for desc in index["manifests"].as_array().into_iter().flatten() {
            let Some(reference) = desc["annotations"][crate::bundle::format::REF_NAME_ANNOTATION].as_str() else {
                tracing::warn!("images/index.json: a descriptor without a reference name was skipped");
                continue;
            };
            let r = ImageRef::parse(reference).with_context(|| format!("bad image reference in images/index.json: {reference:?}"))?;
            let top: Digest = desc["digest"].as_str().unwrap_or_default().parse().with_context(|| format!("bad digest for {reference}"))?;
            if let Some(pinned) = &r.digest {
                if pinned != &top {
                    bail!("{reference} is pinned to {pinned} but the bundle holds {top}");
                }
            }
            if !self.has(&top) {
                bail!("image {reference}: its manifest {top} is neither in the bundle nor in the store");
            }
            let (media_type, size, platforms) = self.walk_image(&top, &mut new.manifests).with_context(|| format!("failed to load image {reference}"))?;
            walked.insert(reference.to_string(), (top.clone(), platforms.clone()));
            report.images += 1;
            let same_key = |i: &ImageRecord| {
                i.name == r.repository && i.host == r.registry && i.tag == r.tag && (r.tag.is_some() || i.digest == top)
            };
            // the record of a new or moved image (an unchanged one keeps its own)
            let record = ImageRecord {
                name: r.repository.clone(),
                host: r.registry.clone(),
                tag: r.tag.clone(),
                reference: reference.to_string(),
                digest: top.clone(),
                media_type,
                size,
                platforms,
                bundles: label.iter().cloned().collect(),
                generation,
            };
            match new.images.iter_mut().find(|i| same_key(i)) {
                Some(existing) if existing.digest == top => {
                    report.unchanged += 1;
                    if let Some(l) = &label {
                        if !existing.bundles.contains(l) {
                            existing.bundles.push(l.clone());
                            changed = true;
                        }
                    }
                }
                Some(existing) => {
                    report.moved.push((reference.to_string(), existing.digest.clone(), top));
                    *existing = record;
                    changed = true;
                }
                None => {
                    report.added.push(reference.to_string());
                    new.images.push(record);
                    changed = true;
                }
            }
        }
        if let Some(release) = self.bundle.as_ref().and_then(|b| b.release.as_ref()) {
            crate::registry::delta::check_complete(release, &walked)?;
        }
        if let Some(b) = &self.bundle {
            new.bundles.push(BundleRecord {
                name: b.name.clone(),
                version: b.version.clone(),
                sha256sums: b.sha256sums.clone(),
                root_sha256: Some(b.root_sha256.clone()),
                generation,
                images: report.images,
            });
            changed = true;
        }
        if !changed && self.staged.is_empty() {
            report.noop = true;
            return Ok(report);
        }
        new.images.sort_by(|a, b| (&a.name, &a.host, &a.tag, &a.digest).cmp(&(&b.name, &b.host, &b.tag, &b.digest)));
        // Blobs first (content-addressed, harmless if the catalog never follows), then the catalog.
        self.install_staged_blobs()?;
        self.store.write_catalog(&new).context("failed to replace the store's catalog")?;
        Ok(report)
    }
}

impl LoadTx {
    /// Move the staged blobs into the store (each synced, then renamed over any damaged copy).
    fn install_staged_blobs(&self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let blobs_dir = self.store.root.join("blobs/sha256");
        fs_err::create_dir_all(&blobs_dir)?;
        for d in &self.staged {
            let from = self.staging.path().join(d.hex());
            let f = fs_err::File::open(&from)?;
            // readable by the unprivileged `serve`, whatever the umask of this load
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            f.sync_all().with_context(|| format!("failed to sync {}", from.display()))?;
            fs_err::rename(&from, blobs_dir.join(d.hex()))?;
        }
        crate::fsutil::sync_dir(&blobs_dir);
        Ok(())
    }
}

/// Load the images of an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`) into the
/// store, hashing every blob. Used to build stores without a bundle (tests, benchmarks).
pub fn load_layout(store: &Store, layout: &Path) -> Result<LoadReport> {
    let mut tx = store.begin_load()?;
    let dir = layout.join("blobs/sha256");
    for e in fs_err::read_dir(&dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let d = Digest::from_hex(&name).with_context(|| format!("unexpected file {} in the layout", e.path().display()))?;
        let size = e.metadata()?.len();
        let mut f = fs_err::File::open(e.path())?;
        tx.add_blob(&d, size, &mut f, true)?;
    }
    tx.set_index_json(fs_err::read(layout.join("index.json"))?);
    tx.commit()
}
