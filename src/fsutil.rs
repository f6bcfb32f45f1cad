//! File-system helpers: atomic writes (temp file in the same directory, fsync, rename) with the file's mode
//! kept or set on purpose, free space of the file system holding a path, and safe relative paths.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a file written by [`atomic_write`]. The temp file a write starts from is 0600 (tempfile's
/// default), so a replaced file would silently lose its mode; every write says which mode it wants instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An existing file keeps its mode; a new file gets 0644.
    Keep,
    /// Exactly this mode (permission bits, setuid/setgid/sticky), whatever the umask and the old file's mode.
    Set(u32),
}

/// The mode a new file gets with [`Mode::Keep`].
pub const NEW_FILE_MODE: u32 = 0o644;

/// Write `data` to `path` atomically: a temp file in the same directory, fsync, rename over the target.
/// A crash leaves either the old file or the new one, never a torn one. The file gets `mode` (see [`Mode`]);
/// an existing file's owner and group are kept where this process may set them (root, or its own files).
pub fn atomic_write(path: &Path, data: &[u8], mode: Mode) -> Result<()> {
    atomic_write_with(path, mode, |f| f.write_all(data).map_err(Into::into))
}

/// Like [`atomic_write`], with a closure that streams the content into the temp file.
pub fn atomic_write_with<F>(path: &Path, mode: Mode, fill: F) -> Result<()>
where
    F: FnOnce(&mut std::fs::File) -> Result<()>,
{
    let dir = parent_dir(path);
    fs_err::create_dir_all(&dir)?;
    let old = match fs_err::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let bits = match (mode, &old) {
        (Mode::Set(m), _) => m & 0o7777,
        (Mode::Keep, Some(m)) => m.permissions().mode() & 0o7777,
        (Mode::Keep, None) => NEW_FILE_MODE,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".airgap-tmp-")
        .tempfile_in(&dir)
        .with_context(|| format!("failed to create a temporary file in {}", dir.display()))?;
    if let Some(m) = &old {
        let mine = tmp.as_file().metadata()?;
        if (m.uid(), m.gid()) != (mine.uid(), mine.gid()) {
            // best effort: only root (or the owner, for a group it is in) may; otherwise the writer owns it
            let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()));
        }
    }
    // after the chown, which clears setuid/setgid bits
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(bits))
        .with_context(|| format!("failed to set the mode of {}", path.display()))?;
    fill(tmp.as_file_mut()).with_context(|| format!("failed to write {}", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("failed to sync {}", path.display()))?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("failed to rename into {}", path.display()))?;
    sync_dir(&dir);
    Ok(())
}

/// Rename `from` to `to` and fsync the target directory (both must be on the same file system).
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fs_err::rename(from, to)?;
    sync_dir(&parent_dir(to));
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Free bytes (for an unprivileged writer) on the file system that holds `path`, or would hold it: the
/// nearest existing directory above it is asked.
#[allow(clippy::unnecessary_cast)] // fsblkcnt_t is not u64 everywhere
pub fn free_bytes(path: &Path) -> Result<u64> {
    let existing = nearest_existing(path);
    let s = nix::sys::statvfs::statvfs(&existing).with_context(|| format!("failed to ask {} for its free space", existing.display()))?;
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// `path` itself when it exists, else its nearest existing ancestor (`/` at worst).
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path;
    loop {
        if p.symlink_metadata().is_ok() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => return PathBuf::from(if path.is_absolute() { "/" } else { "." }),
        }
    }
}

/// Best-effort fsync of a directory so a rename survives power loss.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Check that `p` is a clean relative path that stays inside its root: no `..`, no absolute path, no empty
/// or `.` components, no NUL, no backslash. Returns the normalized `/`-joined form.
pub fn safe_relative_path(p: &str) -> Result<String> {
    if p.is_empty() {
        bail!("empty path");
    }
    if p.contains('\0') {
        bail!("path {p:?} contains a NUL byte");
    }
    if p.contains('\\') {
        bail!("path {p:?} contains a backslash");
    }
    if p.starts_with('/') {
        bail!("path {p:?} is absolute");
    }
    let mut parts = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" => continue,
            "." => bail!("path {p:?} contains a '.' component"),
            ".." => bail!("path {p:?} contains '..'"),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        bail!("empty path");
    }
    Ok(parts.join("/"))
}

/// A file being written (a bundle, a part) whose data is flushed to disk in the background while it grows,
/// so that the closing `sync_all` has little left to write: on a disk slower than the producer, that final
/// fsync alone took seconds (the kernel holds the dirty pages of a fresh file until told). A flusher thread
/// runs `fdatasync` on a clone of the descriptor every [`WRITEBACK_STEP`] bytes written, never blocking the
/// writer; its errors are left to the closing `sync_all`, which is what makes the file durable.
pub struct WritebackFile {
    file: fs_err::File,
    since_flush: u64,
    /// Wakes the flusher (one pending wake-up at most: they coalesce).
    wake: std::sync::mpsc::SyncSender<()>,
    flusher: std::thread::JoinHandle<()>,
}

/// Bytes written between two background flushes.
pub const WRITEBACK_STEP: u64 = 32 << 20;

impl WritebackFile {
    pub fn new(file: fs_err::File) -> std::io::Result<WritebackFile> {
        let clone = file.file().try_clone()?;
        let (wake, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let flusher = std::thread::Builder::new().name("writeback".into()).spawn(move || {
            while rx.recv().is_ok() {
                let _ = clone.sync_data();
            }
        })?;
        Ok(WritebackFile { file, since_flush: 0, wake, flusher })
    }

    /// Stop the flusher (waiting for a flush under way) and hand back the file, to `sync_all`. (Dropped
    /// instead, the flusher ends on its own after its current flush.)
    pub fn into_file(self) -> fs_err::File {
        let WritebackFile { file, wake, flusher, .. } = self;
        drop(wake);
        let _ = flusher.join();
        file
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since_flush += n as u64;
        if self.since_flush >= WRITEBACK_STEP {
            self.since_flush = 0;
            let _ = self.wake.try_send(());
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_traversal() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a\\b", ".", "a\0b"] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(safe_relative_path("a/b//c/").unwrap(), "a/b/c");
        assert_eq!(safe_relative_path("files/bin/kubeadm").unwrap(), "files/bin/kubeadm");
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/x.txt");
        atomic_write(&p, b"one", Mode::Keep).unwrap();
        atomic_write(&p, b"two", Mode::Keep).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "temp file left behind");
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn modes_are_kept_or_set_on_purpose() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("daemon.json");
        // a new file: 0644 (not tempfile's 0600), or the caller's mode, whatever the umask
        atomic_write(&p, b"{}", Mode::Keep).unwrap();
        assert_eq!(mode_of(&p), 0o644);
        let q = d.path().join("script.sh");
        atomic_write(&q, b"#!/bin/sh\n", Mode::Set(0o755)).unwrap();
        assert_eq!(mode_of(&q), 0o755);
        // an existing file keeps its mode (even an unusual one) unless the caller sets one
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&p, b"{\"a\": 1}", Mode::Keep).unwrap();
        assert_eq!(mode_of(&p), 0o640);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\": 1}");
        atomic_write(&p, b"{}", Mode::Set(0o600)).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o4750)).unwrap();
        atomic_write(&q, b"#!/bin/sh\n", Mode::Keep).unwrap();
        assert_eq!(mode_of(&q), 0o4750);
    }

    #[test]
    fn free_space_is_asked_of_the_nearest_existing_directory() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(nearest_existing(&d.path().join("a/b/c")), d.path());
        assert_eq!(nearest_existing(Path::new("/no/such/dir")), Path::new("/"));
        assert!(free_bytes(&d.path().join("not/yet")).unwrap() > 0);
    }
}
