//! Where `push` takes images from: a bundle, verified while its blobs are staged into a temporary directory
//! through the verifying reader (each blob whose own sha256 verified can be uploaded at once, see
//! [`super::early`]; no manifest is pushed before the whole bundle, signature included, verified), or a loaded
//! registry store.

use crate::bundle::format::IMAGES_DIR;
use super::early::Planner;
use crate::bundle::read::{self, BundleSource, EntrySink, Head};
use crate::digest::Digest;
use crate::registry::store::Store;
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use minisign::PublicKey;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One image to push: the reference as the bundle wrote it and its top-level manifest or index.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
}

/// Blobs by digest in `<root>/blobs/sha256/<hex>` (a staged bundle or a store).
pub struct Images {
    root: PathBuf,
    pub images: Vec<SourceImage>,
    /// What the images came from (`bundle demo 1.0` / `store /srv/x`).
    pub label: String,
    _staging: Option<tempfile::TempDir>,
}

impl Images {
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Read a manifest (bounded), checking its digest: a store's file could have been changed on disk.
    pub fn manifest(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let f = fs_err::File::open(&p).with_context(|| format!("manifest {d} is missing from {}", self.label))?;
        let mut bytes = Vec::new();
        f.take(super::MAX_MANIFEST + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > super::MAX_MANIFEST {
            anyhow::bail!("manifest {d} in {} is larger than {} bytes", self.label, super::MAX_MANIFEST);
        }
        if &Digest::of_bytes(&bytes) != d {
            anyhow::bail!("manifest {d} in {} does not match its digest (damaged disk?)", self.label);
        }
        Ok(bytes)
    }
}

/// Stages the image blobs of a bundle under a temporary directory while the reader verifies them, telling
/// the planner (if any) about each one whose bytes verified.
struct StagingSink {
    dir: tempfile::TempDir,
    planner: Option<Planner>,
    buf: Vec<u8>,
}

/// Copy buffer of the staging sink (fewer, larger reads through the decoder and writes to the file).
const STAGE_BUFFER: usize = 1 << 20;

impl EntrySink for StagingSink {
    type Done = tempfile::TempDir;

    fn start(&mut self, head: &Head, _meta: &[(&str, &[u8])]) -> Result<()> {
        if let Some(p) = self.planner.as_mut() {
            p.start(head.root().images.iter().map(|i| (i.reference.as_str(), &i.digest)));
        }
        Ok(())
    }

    fn entry(&mut self, path: &str, size: u64, _mode: u32, data: &mut dyn Read) -> Result<()> {
        let Some(hex) = path.strip_prefix(IMAGES_DIR).and_then(|p| p.strip_prefix("/blobs/sha256/")) else {
            return Ok(()); // files/..., index.json: not pushed (the reader still verifies them)
        };
        // the reader refuses a blob whose name is not its digest, and fails this read at the entry's end when
        // the bytes do not match: a staged file that survives to `finish` is verified
        let d = Digest::from_hex(hex).with_context(|| format!("bad blob name {path} in the bundle"))?;
        let file = self.dir.path().join("blobs/sha256").join(d.hex());
        let mut f = fs_err::File::create(&file)?;
        copy(data, &mut f, &mut self.buf).with_context(|| format!("failed to stage {path}"))?;
        // read to its end without an error: its bytes matched the digest SHA256SUMS gives it
        if let Some(p) = self.planner.as_mut() {
            p.verified(d, size, file);
        }
        Ok(())
    }

    fn finish(self) -> Result<tempfile::TempDir> {
        Ok(self.dir)
    }
}

/// `io::copy` with the sink's (large) buffer.
fn copy(from: &mut dyn Read, to: &mut impl std::io::Write, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if buf.is_empty() {
        buf.resize(STAGE_BUFFER, 0);
    }
    loop {
        match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Verify `source` with `pk`, staging its image blobs under `work_dir` (removed when the result is dropped);
/// `planner` hears of every blob that verified, to upload it while the rest is read.
pub fn from_bundle(source: &BundleSource, pk: &PublicKey, work_dir: &Path, bar: &ProgressBar, planner: Option<Planner>) -> Result<Images> {
    // the signed head first: a wrong key fails before anything is staged
    read::read_head(source, pk)?;
    fs_err::create_dir_all(work_dir)?;
    let dir = tempfile::Builder::new().prefix("airgap-push-").tempdir_in(work_dir).with_context(|| format!("failed to make a staging directory in {}", work_dir.display()))?;
    fs_err::create_dir_all(dir.path().join("blobs/sha256"))?;
    let (verified, dir) = read::read_verified_with_progress(source, pk, StagingSink { dir, planner, buf: Vec::new() }, bar)?;
    let images = verified
        .root
        .images
        .iter()
        .map(|i| SourceImage { reference: i.reference.clone(), digest: i.digest.clone(), media_type: i.media_type.clone() })
        .collect();
    Ok(Images {
        root: dir.path().to_path_buf(),
        images,
        label: format!("bundle {} {}", verified.name, verified.version),
        _staging: Some(dir),
    })
}

/// The images a loaded store serves (every tag and pinned digest of its catalog).
pub fn from_store(root: &Path) -> Result<Images> {
    let store = Store::open(root)?;
    let catalog = store.catalog()?;
    let images = catalog
        .images
        .iter()
        .map(|i| SourceImage { reference: i.reference.clone(), digest: i.digest.clone(), media_type: i.media_type.clone() })
        .collect();
    Ok(Images { root: store.root().to_path_buf(), images, label: format!("store {}", root.display()), _staging: None })
}
