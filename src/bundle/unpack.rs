//! Unpacking: verify while extracting, in one pass, into a sibling temp dir renamed into place only when every
//! hash and the signature checked out. Nothing is ever written outside the target.

use crate::bundle::read::{self, BundleSource, EntrySink, Verified};
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

impl EntrySink for DirSink {
    fn meta_entry(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut f = self.create(path, 0o644)?;
        f.write_all(data)?;
        Ok(())
    }

    fn entry(&mut self, path: &str, _size: u64, mode: u32, data: &mut dyn Read) -> Result<()> {
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

/// Verify `source` while extracting it into `to` (which must not exist, or be an empty directory).
pub fn unpack(source: &BundleSource, pk: &PublicKey, to: &Path, bar: &ProgressBar) -> Result<Verified> {
    if let Ok(meta) = to.symlink_metadata() {
        let empty_dir = meta.is_dir() && fs_err::read_dir(to)?.next().is_none();
        if !empty_dir {
            return Err(anyhow!("{} already exists and is not an empty directory", to.display()))
                .hint("unpack into a new directory, or remove the old one first");
        }
    }
    let name = to.file_name().ok_or_else(|| anyhow!("{} has no directory name", to.display()))?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("the parent directory {} does not exist", parent.display());
    }
    // Cheap checks before creating anything: the signature is there and made by this key.
    let sig = source.signature()?;
    crate::sign::check_signer(&sig, pk, &source.archive)?;

    let staging = tempfile::Builder::new()
        .prefix(&format!("{}.partial-", name.to_string_lossy()))
        .tempdir_in(&parent)
        .with_context(|| format!("failed to create a temporary directory in {}", parent.display()))?;
    let mut sink = DirSink::new(staging.path());
    let verified = read::read_verified_with_progress(source, pk, &mut sink, bar)
        .with_context(|| format!("failed to unpack {}; nothing was written to {}", source.name(), to.display()))?;
    // Every hash and the signature checked out: make it visible.
    fs_err::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))?;
    let staged = staging.keep();
    if let Err(e) = crate::fsutil::rename_durable(&staged, to) {
        let _ = fs_err::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("failed to move the unpacked bundle into {}", to.display()));
    }
    Ok(verified)
}
