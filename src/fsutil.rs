//! File-system helpers: atomic writes (temp file in the same directory, fsync, rename) and safe relative paths.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `data` to `path` atomically: a temp file in the same directory, fsync, rename over the target.
/// A crash leaves either the old file or the new one, never a torn one.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(data).map_err(Into::into))
}

/// Like [`atomic_write`], with a closure that streams the content into the temp file.
pub fn atomic_write_with<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut std::fs::File) -> Result<()>,
{
    let dir = parent_dir(path);
    fs_err::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".airgap-tmp-")
        .tempfile_in(&dir)
        .with_context(|| format!("failed to create a temporary file in {}", dir.display()))?;
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
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "temp file left behind");
    }
}
