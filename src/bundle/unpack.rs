//! Unpacking: verify while extracting, in one pass, into a sibling temp dir renamed into place only when every
//! hash and the signature checked out. Nothing is ever written outside the target.

use crate::bundle::read::{self, BundleSource, EntrySink, Head, Verified};
use crate::error::HintExt;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use minisign::PublicKey;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes entries under a root directory (created fresh by the caller; only regular files and directories
/// are ever created in it, so no link can redirect a write).
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    pub fn new(root: &Path) -> Self {
        DirSink { root: root.to_path_buf() }
    }

    fn create(&self, path: &str, mode: u32) -> Result<fs_err::File> {
        // `path` was checked by the reader (safe_relative_path); check again, it is cheap.
        let rel = crate::fsutil::safe_relative_path(path)?;
        let dest = self.root.join(&rel);
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)?;
        }
        use fs_err::os::unix::fs::OpenOptionsExt;
        let f = fs_err::OpenOptions::new().write(true).create_new(true).mode(mode).open(&dest)?;
        Ok(f)
    }
}

fn file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

impl DirSink {
    /// Write one entry's bytes (exactly what the reader hands out: it fails at the end on a mismatch).
    pub fn write(&self, path: &str, mode: u32, data: &mut dyn Read) -> Result<()> {
        let mode = file_mode(mode);
        let f = self.create(path, mode)?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        io::copy(data, &mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        // The umask may have cleared bits: set the mode exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }
}

/// Which entries a [`StagedDir`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every entry, the signed meta entries included (`sha256sum -c SHA256SUMS` and `minisign -Vm airgap.json`
    /// work in the result).
    All,
    /// Only the entries under `files/` (the installer's kit).
    Files,
}

/// A bundle extracted into a fresh temporary directory beside `to`, renamed to `to` in [`EntrySink::finish`]
/// (only when everything verified); dropped unfinished, the temporary directory is removed.
pub struct StagedDir {
    staging: tempfile::TempDir,
    sink: DirSink,
    to: PathBuf,
    keep: Keep,
}

impl StagedDir {
    /// A staging directory in `to`'s parent (which must exist); `to` must not exist when `finish` runs.
    pub fn new(to: &Path, keep: Keep) -> Result<Self> {
        let name = to.file_name().ok_or_else(|| anyhow!("{} has no directory name", to.display()))?;
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let staging = tempfile::Builder::new()
            .prefix(&format!("{}.partial-", name.to_string_lossy()))
            .tempdir_in(&parent)
            .with_context(|| format!("failed to create a temporary directory in {}", parent.display()))?;
        let sink = DirSink::new(staging.path());
        Ok(StagedDir { staging, sink, to: to.to_path_buf(), keep })
    }

    /// The staging directory (for a marker written just before `finish`).
    pub fn path(&self) -> &Path {
        self.staging.path()
    }
}

impl EntrySink for StagedDir {
    type Done = PathBuf;

    fn start(&mut self, _head: &Head, meta: &[(&str, &[u8])]) -> Result<()> {
        if self.keep == Keep::All {
            for (path, data) in meta {
                self.sink.create(path, 0o644)?.write_all(data)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &str, _size: u64, mode: u32, data: &mut dyn Read) -> Result<()> {
        match self.keep {
            Keep::Files if !path.starts_with("files/") => Ok(()),
            _ => self.sink.write(path, mode, data),
        }
    }

    fn finish(self) -> Result<PathBuf> {
        fs_err::set_permissions(self.staging.path(), std::fs::Permissions::from_mode(0o755))?;
        let staged = self.staging.keep();
        if let Err(e) = crate::fsutil::rename_durable(&staged, &self.to) {
            let _ = fs_err::remove_dir_all(&staged);
            return Err(e).with_context(|| format!("failed to move the extracted bundle into {}", self.to.display()));
        }
        Ok(self.to)
    }
}

/// Verify `source` while extracting it into `to` (which must not exist, or be an empty directory).
pub fn unpack(source: &BundleSource, pk: &PublicKey, to: &Path, bar: &ProgressBar) -> Result<Verified> {
    if let Ok(meta) = to.symlink_metadata() {
        let empty_dir = meta.is_dir() && fs_err::read_dir(to)?.next().is_none();
        if !empty_dir {
            return Err(anyhow!("{} already exists and is not an empty directory", to.display()))
                .hint("unpack into a new directory, or remove the old one first");
        }
    }
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("the parent directory {} does not exist", parent.display());
    }
    // Cheap checks before creating anything: the signature is there and made by this key, and the signed
    // head verifies (nothing else of the bundle is parsed before it did).
    let sig = source.signature()?;
    crate::sign::check_signer(&sig, pk, &source.archive)?;
    read::read_head(source, pk)?;

    let sink = StagedDir::new(to, Keep::All)?;
    let (verified, _) = read::read_verified_with_progress(source, pk, sink, bar)
        .with_context(|| format!("failed to unpack {}; nothing was written to {}", source.name(), to.display()))?;
    Ok(verified)
}
