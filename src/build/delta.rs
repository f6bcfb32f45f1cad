//! Delta bundles: `airgap build MANIFEST --base PREVIOUS.lock.json`. The lock file a build writes records what
//! its bundle holds ([`LockedBundle`]: the sha256 of its root document, every blob and file of the release);
//! a delta built against it carries only the blobs and files that record lacks, and its signed root document
//! names the base ([`BaseRef`]) while still listing every image of the new release, so a loader can check the
//! store it loads into has everything (the base's blobs plus the delta's).

use crate::build::lock::{Lock, LockedBundle};
use crate::bundle::format::BaseRef;
use crate::bundle::write::BundleContent;
use crate::digest::Digest;
use crate::error::HintExt;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// The base a delta is built against, read from the base build's lock file.
#[derive(Debug, Clone)]
pub struct Base {
    pub name: String,
    pub version: String,
    pub bundle: LockedBundle,
    blobs: BTreeSet<Digest>,
}

impl Base {
    /// Read `--base FILE`: a lock file written by a build of this airgap version (with its `bundle` record).
    pub fn load(path: &Path) -> Result<Base> {
        let lock = Lock::load(path)?;
        let Some(bundle) = lock.bundle.clone() else {
            return Err(anyhow!("{} does not record the bundle its build wrote", path.display()))
                .hint("give the lock file written beside the base bundle by a build of this airgap version (rebuild the base with --lock to get one)");
        };
        if Digest::from_hex(&bundle.root_sha256).is_err() {
            bail!("{}: bundle.root_sha256 {:?} is not 64 lower-case hex digits", path.display(), bundle.root_sha256);
        }
        let blobs = bundle.blobs.iter().cloned().collect();
        Ok(Base { name: lock.name, version: lock.version, bundle, blobs })
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blobs.contains(d)
    }

    /// Every blob the base holds (a delta build does not download them).
    pub fn blobs(&self) -> &BTreeSet<Digest> {
        &self.blobs
    }

    /// The reference a delta's root document carries.
    pub fn reference(&self) -> BaseRef {
        BaseRef { name: self.name.clone(), version: self.version.clone(), root_sha256: self.bundle.root_sha256.clone() }
    }
}

/// What a build's lock file records about the release it wrote: every blob and file of `content` (a full
/// content, before [`make_delta`] drops what the base has), plus the base's own when `content` is a delta of
/// it (a store holding base + delta holds them all). `root_sha256` is filled once the bundle is written.
pub fn release_record(content: &BundleContent, base: Option<&Base>) -> LockedBundle {
    let mut blobs: BTreeSet<Digest> = content.blobs.iter().map(|b| b.digest.clone()).collect();
    let mut files = std::collections::BTreeMap::new();
    if let Some(b) = base {
        blobs.extend(b.bundle.blobs.iter().cloned());
        files.extend(b.bundle.files.clone());
    }
    files.extend(content.files.iter().map(|f| (f.path.clone(), f.sha256.hex().to_string())));
    LockedBundle { root_sha256: String::new(), blobs: blobs.into_iter().collect(), files }
}

/// What a delta left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dropped {
    pub blobs: usize,
    pub blob_bytes: u64,
    pub files: usize,
    pub file_bytes: u64,
}

/// Turn a full bundle content into the delta against `base`: drop every blob the base holds and every file
/// (or package) the base holds at the same path with the same sha256; the root document names the base and
/// keeps every image. `images/index.json` stays whole (it lists the release's images, not the delta's blobs).
pub fn make_delta(content: &mut BundleContent, base: &Base) -> Result<Dropped> {
    if base.name != content.root.name {
        return Err(anyhow!("the base lock file is for bundle {:?}, the manifest names {:?}", base.name, content.root.name))
            .hint("a delta extends an earlier bundle of the same name: give that bundle's lock file as --base");
    }
    if base.version == content.root.version {
        return Err(anyhow!("the base lock file is for version {} too: a delta needs a new version", base.version))
            .hint("raise `version:` in the manifest");
    }
    let mut d = Dropped::default();
    content.blobs.retain(|b| {
        let keep = !base.has_blob(&b.digest);
        if !keep {
            d.blobs += 1;
            d.blob_bytes += b.size;
        }
        keep
    });
    let in_base = |path: &str, sha: &str| base.bundle.files.get(path).is_some_and(|s| s == sha);
    content.files.retain(|f| {
        let keep = !in_base(&f.path, f.sha256.hex());
        if !keep {
            d.files += 1;
            d.file_bytes += f.size;
        }
        keep
    });
    content.root.files.retain(|f| !in_base(&f.path, &f.sha256));
    content.root.packages.retain(|p| !in_base(&p.path, &p.sha256));
    content.root.base = Some(base.reference());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::format::{FileEntry, RootDoc, SCHEMA};
    use crate::bundle::write::{BlobSource, FileSource};

    fn content() -> BundleContent {
        let file = |path: &str, data: &[u8]| FileSource {
            path: path.into(),
            sha256: Digest::of_bytes(data),
            size: data.len() as u64,
            mode: 0o644,
            source: "/nowhere".into(),
        };
        let files = vec![file("bin/a", b"a"), file("bin/b", b"b2")];
        let root = RootDoc {
            schema: SCHEMA.into(),
            name: "k8s".into(),
            version: "2".into(),
            base: None,
            kubernetes: None,
            platforms: vec![],
            images: vec![],
            files: files
                .iter()
                .map(|f| FileEntry { path: f.path.clone(), url: "u".into(), sha256: f.sha256.hex().into(), size: f.size, mode: 0o644, install: None, platform: None, manifest: None })
                .collect(),
            packages: vec![],
            sha256sums: String::new(),
            sizes: Default::default(),
        };
        let blobs = [b"x".as_slice(), b"yy"].iter().map(|b| BlobSource { digest: Digest::of_bytes(b), size: b.len() as u64, path: "/nowhere".into() }).collect();
        BundleContent { root, index_json: vec![], blobs, files }
    }

    fn base() -> Base {
        let bundle = LockedBundle {
            root_sha256: "e".repeat(64),
            blobs: vec![Digest::of_bytes(b"x"), Digest::of_bytes(b"old")],
            files: [("bin/a".to_string(), Digest::of_bytes(b"a").hex().to_string()), ("bin/b".to_string(), Digest::of_bytes(b"b1").hex().to_string())].into(),
        };
        Base { name: "k8s".into(), version: "1".into(), blobs: bundle.blobs.iter().cloned().collect(), bundle }
    }

    #[test]
    fn a_delta_keeps_only_what_the_base_lacks_and_names_it() {
        let mut c = content();
        let full = release_record(&c, Some(&base()));
        let d = make_delta(&mut c, &base()).unwrap();
        assert_eq!(d, Dropped { blobs: 1, blob_bytes: 1, files: 1, file_bytes: 1 });
        assert_eq!(c.blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>(), [Digest::of_bytes(b"yy")]);
        assert_eq!(c.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["bin/b"]);
        assert_eq!(c.root.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["bin/b"]);
        assert_eq!(c.root.base.as_ref().unwrap().root_sha256, "e".repeat(64));
        // the release record holds the base's blobs and the new files: a later delta can build on this one
        assert_eq!(full.blobs.len(), 3);
        assert_eq!(full.files["bin/b"], Digest::of_bytes(b"b2").hex());
    }

    #[test]
    fn a_delta_needs_the_same_name_and_another_version() {
        let mut c = content();
        c.root.name = "other".into();
        assert!(make_delta(&mut c, &base()).unwrap_err().to_string().contains("the manifest names \"other\""));
        let mut c = content();
        c.root.version = "1".into();
        assert!(make_delta(&mut c, &base()).unwrap_err().to_string().contains("needs a new version"));
    }
}
