//! The content-addressed download cache: `<cache>/blobs/sha256/<hex>` for image blobs AND files (files are
//! sha256-addressed too). Insertion is atomic: bytes go to a temp file in `<cache>/tmp/`, are hashed while they
//! arrive, and are renamed into place only when digest and size match. A failed download leaves nothing.
//! Entries are not fsynced (see [`Staged::commit`]): the bundle writer re-hashes everything it reads.

use crate::digest::{Digest, Hasher};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Open (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        fs_err::create_dir_all(root.join("blobs/sha256")).context("failed to create the download cache")?;
        fs_err::create_dir_all(root.join("tmp")).context("failed to create the download cache")?;
        Ok(Cache { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// The size of the cached content for `d`, if present (and of `size` bytes, when given). A present entry
    /// of the wrong size is removed (a torn or foreign file); the writer re-hashes everything it reads anyway.
    pub fn has(&self, d: &Digest, size: Option<u64>) -> Option<u64> {
        let p = self.path(d);
        let meta = std::fs::metadata(&p).ok()?;
        if !meta.is_file() {
            return None;
        }
        match size {
            Some(s) if s != meta.len() => {
                tracing::warn!("cache entry {} has {} bytes, expected {s}: removing it", p.display(), meta.len());
                let _ = std::fs::remove_file(&p);
                None
            }
            _ => Some(meta.len()),
        }
    }

    /// Start writing a new entry whose digest is checked at commit.
    pub fn stage(&self) -> Result<Staged> {
        let tmp = tempfile::Builder::new()
            .prefix("dl-")
            .tempfile_in(self.root.join("tmp"))
            .with_context(|| format!("failed to create a temporary file in {}", self.root.join("tmp").display()))?;
        Ok(Staged { tmp, hasher: Hasher::new(), root: self.root.clone(), buf: Vec::with_capacity(STAGE_BUFFER) })
    }

    /// Insert small content held in memory (manifests, indexes, checksum files).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let mut s = self.stage()?;
        s.write(bytes)?;
        let (d, _) = s.commit(None, None)?;
        Ok(d)
    }
}

/// Bytes buffered before a write to the temp file (network chunks are small).
const STAGE_BUFFER: usize = 1 << 20;

/// Run blocking file-system work without stalling the async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A cache entry being written.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    hasher: Hasher,
    root: PathBuf,
    buf: Vec<u8>,
}

impl Staged {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        if self.buf.len() + chunk.len() > STAGE_BUFFER {
            self.flush()?;
        }
        if chunk.len() >= STAGE_BUFFER {
            let path = self.tmp.path().to_path_buf();
            let file = self.tmp.as_file_mut();
            return blocking(|| file.write_all(chunk)).with_context(|| format!("failed to write {}", path.display()));
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.tmp.path().to_path_buf();
        let (file, buf) = (self.tmp.as_file_mut(), &mut self.buf);
        blocking(|| file.write_all(buf)).with_context(|| format!("failed to write {}", path.display()))?;
        buf.clear();
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Digest and size of what was written so far.
    pub fn peek(&self) -> (Digest, u64) {
        self.hasher.clone().finish()
    }

    /// Check digest and size (when expected) and move into the cache. On mismatch the temp file is deleted.
    pub fn commit(mut self, expect: Option<&Digest>, size: Option<u64>) -> Result<(Digest, u64)> {
        self.flush()?;
        let (d, n) = self.hasher.clone().finish();
        if let Some(want) = expect {
            if &d != want {
                bail!("content mismatch: expected {want}, got {d} ({n} bytes)");
            }
        }
        if let Some(s) = size {
            if s != n {
                bail!("size mismatch for {d}: expected {s} bytes, got {n}");
            }
        }
        let target = self.root.join("blobs/sha256").join(d.hex());
        let tmp = self.tmp;
        // No fsync: the cache is only a cache. After a crash an entry may be torn; `has` drops entries of the
        // wrong size and the bundle writer re-hashes every byte it reads, so a damaged entry can never reach a
        // bundle. (An fsync per blob halved the download speed on a virtual disk.)
        blocking(|| -> Result<()> {
            tmp.persist(&target).map_err(|e| e.error).with_context(|| format!("failed to move a download into {}", target.display()))?;
            Ok(())
        })?;
        Ok((d, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_matching_content() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let d = Digest::of_bytes(b"hello");
        let mut s = c.stage().unwrap();
        s.write(b"hellO").unwrap();
        assert!(s.commit(Some(&d), Some(5)).is_err());
        assert!(c.has(&d, None).is_none());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "temp file left");
        assert_eq!(c.put_bytes(b"hello").unwrap(), d);
        assert_eq!(c.has(&d, Some(5)), Some(5));
        assert_eq!(c.has(&d, Some(6)), None, "wrong size must not be trusted");
        assert!(!c.path(&d).exists(), "wrong-size entry must be removed");
    }
}
