//! Files on the node (`airgap node check-file`, `write-file`, `receive`): compared by sha256 and mode, written
//! atomically and only when the content (or mode) differs, whole or as a managed block between markers;
//! copies streamed in, hashed on the way and renamed into place only when the sha256 matches.

use crate::digest::{Digest, HashingReader};
use crate::fsutil;
use anyhow::{Context, Result};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Result of comparing a file on this node with its desired state.
pub enum FileState {
    Same,
    Differs(String),
}

fn begin(block: &str) -> String {
    format!("# BEGIN {block} (managed by airgap: edits between these lines are replaced)")
}
fn end(block: &str) -> String {
    format!("# END {block}")
}

/// The managed block's content in `text`, if the markers are there.
pub fn extract_block(text: &str, block: &str) -> Option<String> {
    let (b, e) = (begin(block), end(block));
    let start = text.find(&b)?;
    let after = &text[start + b.len()..];
    let after = after.strip_prefix('\n').unwrap_or(after);
    let stop = after.find(&e)?;
    Some(after[..stop].to_string())
}

/// `text` with the managed block set to `content` (appended when the markers are not there yet).
pub fn merge_block(text: &str, block: &str, content: &str) -> String {
    let (b, e) = (begin(block), end(block));
    let mut content = content.to_string();
    if !content.is_empty() && !content.ends_with('\n') {
        content.push('\n');
    }
    let new_block = format!("{b}\n{content}{e}\n");
    if let (Some(s), Some(_)) = (text.find(&b), extract_block(text, block)) {
        let tail_start = s + text[s..].find(&e).unwrap_or(0) + e.len();
        let tail = text[tail_start..].strip_prefix('\n').unwrap_or(&text[tail_start..]);
        format!("{}{new_block}{tail}", &text[..s])
    } else if text.is_empty() || text.ends_with('\n') {
        format!("{text}{new_block}")
    } else {
        format!("{text}\n{new_block}")
    }
}

/// The sidecar of a received file (`.NAME.sha256`): the sha256 verified while receiving it, with the identity
/// the file had right after it was renamed into place (device, inode, size, mtime and ctime in nanoseconds),
/// so that a re-run need not hash gigabytes again.
///
/// Only [`receive`] writes it, after the whole content was hashed on the way in and matched, under the
/// directory's lock. It vouches for nothing else: any later write, truncation, rename over the path, chmod
/// or touch changes the inode or the ctime (which no program can set back), so a partial, interleaved or
/// replaced file never matches its stamp and is hashed again. Stamps of older versions (size and whole
/// seconds of mtime) never match either. (The one blind spot is the file system's timestamp tick, a few
/// milliseconds: a same-size rewrite within it, right after the receive, keeps the ctime. Nothing of airgap
/// writes there: every receive writes its own temporary file.)
pub fn stamp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.sha256"))
}

fn stamp_line(meta: &std::fs::Metadata, sha256: &Digest) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "v2 {} {} {} {} {}.{:09} {}.{:09}",
        sha256.hex(),
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

fn stamp_matches(path: &Path, meta: &std::fs::Metadata, sha256: &Digest) -> bool {
    std::fs::read_to_string(stamp_path(path)).is_ok_and(|s| s.trim() == stamp_line(meta, sha256))
}

/// Compare `path` with the desired sha256 (of the whole file, or of its managed block) and mode.
pub fn check_file(path: &Path, sha256: &Digest, mode: Option<u32>, block: Option<&str>) -> Result<FileState> {
    let meta = match fs_err::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Differs("missing".into())),
        Err(e) => return Err(e.into()),
    };
    let actual = match block {
        Some(b) => {
            let text = fs_err::read_to_string(path)?;
            match extract_block(&text, b) {
                Some(c) => Digest::of_bytes(c.as_bytes()),
                None => return Ok(FileState::Differs(format!("no '# BEGIN {b}' block"))),
            }
        }
        None if stamp_matches(path, &meta, sha256) => sha256.clone(),
        None => Digest::of_file(path)?.0,
    };
    if &actual != sha256 {
        return Ok(FileState::Differs("content differs".into()));
    }
    if let Some(m) = mode {
        let have = meta.permissions().mode() & 0o7777;
        if have != m && block.is_none() {
            return Ok(FileState::Differs(format!("mode {have:o}, want {m:o}")));
        }
    }
    Ok(FileState::Same)
}

/// Write `content` (already verified) to `path` with `mode`, atomically, only when different.
/// Returns whether the file was written.
pub fn write_file(path: &Path, mode: u32, content: &[u8], block: Option<&str>) -> Result<bool> {
    let sha = Digest::of_bytes(content);
    if let FileState::Same = check_file(path, &sha, Some(mode), block)? {
        return Ok(false);
    }
    let data: Vec<u8> = match block {
        Some(b) => {
            let old = match fs_err::read_to_string(path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e.into()),
            };
            let content = std::str::from_utf8(content).context("a managed block must be UTF-8 text")?;
            merge_block(&old, b, content).into_bytes()
        }
        None => content.to_vec(),
    };
    // keep the existing mode for a file with a managed block (we own only the block)
    let mode = match (block, fs_err::metadata(path)) {
        (Some(_), Ok(m)) => m.permissions().mode() & 0o7777,
        _ => mode,
    };
    fsutil::atomic_write_with(path, |f| {
        use std::io::Write;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(&data)?;
        Ok(())
    })?;
    Ok(true)
}

/// The lock of a directory's copies: held while a received file is renamed into place and its stamp written.
pub const LOCK_NAME: &str = ".airgap.lock";

fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let f = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_NAME))?
        .into_parts()
        .0;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("failed to lock {}: {e}", dir.join(LOCK_NAME).display()))
}

/// Temporary files of `path`'s receives: `.NAME.airgap-partial.XXXXXXXX`.
fn partial_prefix(name: &str) -> String {
    format!(".{name}.airgap-partial.")
}

/// Read a file from `input` into `path` atomically, hashing while streaming.
///
/// The bytes go to a temporary file of this receive only (a unique name next to `path`, locked while in
/// use), so two receives of the same path, or a receive and a killed one's leftover ssh, never write into the
/// same file. Only when the whole content matched `sha256` is the file renamed into place and its stamp
/// written, both under the directory's lock (see [`stamp_path`]). Leftover temporary files of receives that
/// died (unlocked, untouched for a minute) are removed.
pub fn receive(path: &Path, mode: u32, sha256: &Digest, input: impl Read) -> Result<()> {
    let dir = path.parent().context("target path has no parent directory")?;
    fs_err::create_dir_all(dir)?;
    let name = path
        .file_name()
        .context("target path has no file name")?
        .to_string_lossy()
        .into_owned();
    let tmp = tempfile::Builder::new()
        .prefix(&partial_prefix(&name))
        .rand_bytes(8)
        .tempfile_in(dir)
        .with_context(|| format!("failed to create a temporary file in {}", dir.display()))?;
    // in use: a cleaner of leftovers skips it
    let busy = nix::fcntl::Flock::lock(tmp.reopen()?, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| anyhow::anyhow!("failed to lock {}: {e}", tmp.path().display()))?;
    let mut reader = HashingReader::expecting(input, sha256.clone(), None);
    {
        let mut f = tmp.as_file();
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::io::copy(&mut reader, &mut f).with_context(|| format!("failed to receive {}", path.display()))?;
        f.sync_all()?;
    }
    let _lock = lock_dir(dir)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("failed to rename into {}", path.display()))?;
    fsutil::sync_dir(dir);
    let meta = fs_err::metadata(path)?;
    fsutil::atomic_write(&stamp_path(path), format!("{}\n", stamp_line(&meta, sha256)).as_bytes())?;
    drop(busy);
    remove_leftovers(dir, &name);
    Ok(())
}

/// Remove temporary files of `name`'s receives that died: not locked by a living receive, and untouched for
/// a minute (a receive locks its file right after creating it).
fn remove_leftovers(dir: &Path, name: &str) {
    let prefix = partial_prefix(name);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() >= 60));
        let Ok(f) = std::fs::File::open(e.path()) else { continue };
        if old {
            if let Ok(_unused) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_merge_and_replace() {
        let t = "127.0.0.1 localhost\n";
        let a = merge_block(t, "airgap", "10.0.0.11 master1\n");
        assert!(a.starts_with("127.0.0.1 localhost\n# BEGIN airgap"));
        assert_eq!(extract_block(&a, "airgap").unwrap(), "10.0.0.11 master1\n");
        let b = merge_block(&format!("{a}# other\n"), "airgap", "10.0.0.12 master2\n");
        assert_eq!(extract_block(&b, "airgap").unwrap(), "10.0.0.12 master2\n");
        assert!(b.ends_with("# END airgap\n# other\n"), "{b}");
        assert_eq!(merge_block(&b, "airgap", "10.0.0.12 master2\n"), b);
    }

    #[test]
    fn write_file_only_when_different() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        assert!(write_file(&p, 0o644, b"x\n", None).unwrap());
        assert!(!write_file(&p, 0o644, b"x\n", None).unwrap());
        assert!(write_file(&p, 0o600, b"x\n", None).unwrap());
        let bad = Digest::of_bytes(b"y");
        let err = receive(&d.path().join("r"), 0o644, &bad, &b"x"[..]).unwrap_err();
        assert!(format!("{err:#}").contains("sha256"), "{err:#}");
        assert!(!d.path().join("r").exists());
    }

    /// Gives the first half of `data`, then waits for a go before giving the rest.
    struct Gate {
        data: Vec<u8>,
        pos: usize,
        reached_half: Option<std::sync::mpsc::Sender<()>>,
        go: std::sync::mpsc::Receiver<()>,
    }

    impl Read for Gate {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let half = self.data.len() / 2;
            if self.pos == half {
                if let Some(tx) = self.reached_half.take() {
                    // io::copy wrote the first half before asking for more
                    tx.send(()).unwrap();
                    self.go.recv().unwrap();
                }
            }
            let end = if self.pos < half { half } else { self.data.len() };
            let n = buf.len().min(end - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn same(path: &Path, content: &[u8]) -> bool {
        matches!(check_file(path, &Digest::of_bytes(content), Some(0o644), None).unwrap(), FileState::Same)
    }

    #[test]
    fn concurrent_receives_of_one_path_never_interleave() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bundle.tar.zst");
        let a = vec![b'a'; 256 << 10];
        let b = vec![b'b'; 256 << 10];
        let (half_tx, half_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        let gate = Gate { data: a.clone(), pos: 0, reached_half: Some(half_tx), go: go_rx };
        let (pa, sa) = (p.clone(), Digest::of_bytes(&a));
        let slow = std::thread::spawn(move || receive(&pa, 0o644, &sa, gate));
        // the slow receive has written half of its content; the other one now runs from start to end
        half_rx.recv().unwrap();
        receive(&p, 0o644, &Digest::of_bytes(&b), &b[..]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b);
        assert!(same(&p, &b));
        go_tx.send(()).unwrap();
        slow.join().unwrap().unwrap();
        // the last complete receive is in place, whole, and the stamp vouches for exactly it
        let now = std::fs::read(&p).unwrap();
        assert!(now == a, "interleaved content: {} a, {} b", now.iter().filter(|&&c| c == b'a').count(), now.iter().filter(|&&c| c == b'b').count());
        assert!(same(&p, &a));
        assert!(!same(&p, &b));
        let names: Vec<String> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.contains("airgap-partial")), "{names:?}");
    }

    #[test]
    fn a_stamp_vouches_only_for_the_file_it_was_written_for() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let good = b"the verified content".to_vec();
        receive(&p, 0o644, &Digest::of_bytes(&good), &good[..]).unwrap();
        assert!(same(&p, &good));
        let meta = std::fs::metadata(&p).unwrap();
        let restore_times = |path: &Path| {
            let t = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                path,
                &t(meta.atime(), meta.atime_nsec()),
                &t(meta.mtime(), meta.mtime_nsec()),
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
            .unwrap();
        };
        // (file system timestamps move in ticks of a few ms: wait for the next one, as any later write would)
        let probe = d.path().join("probe");
        while {
            std::fs::write(&probe, b"").unwrap();
            std::fs::metadata(&probe).unwrap().ctime_nsec() == meta.ctime_nsec()
        } {}
        // changed in place, same size, mtime put back to the nanosecond: the ctime still tells
        std::fs::write(&p, b"THE verified content").unwrap();
        restore_times(&p);
        assert!(!same(&p, &good), "a stamp vouched for content written after it");
        // a partial file of the same size and times renamed over the path: another inode
        std::fs::write(&p, &good).unwrap();
        let partial = d.path().join("partial");
        std::fs::write(&partial, b"the verified\0\0\0\0\0\0\0\0").unwrap();
        restore_times(&partial);
        std::fs::rename(&partial, &p).unwrap();
        assert!(!same(&p, &good), "a stamp vouched for a file renamed over the received one");
        // a stamp in the old format (size + whole-second mtime) is not trusted: the file is hashed
        let m = std::fs::metadata(&p).unwrap();
        std::fs::write(stamp_path(&p), format!("{} {} {}\n", Digest::of_bytes(&good).hex(), m.len(), m.mtime())).unwrap();
        assert!(!same(&p, &good));
    }

    #[test]
    fn leftovers_of_dead_receives_go_and_living_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let hour_ago = nix::sys::time::TimeSpec::new(
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3600) as i64,
            0,
        );
        let old = |name: &str| {
            let q = d.path().join(name);
            std::fs::write(&q, b"partial").unwrap();
            nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &q, &hour_ago, &hour_ago, nix::sys::stat::UtimensatFlags::FollowSymlink).unwrap();
            q
        };
        let dead = old(".f.airgap-partial.deadbeef");
        let alive = old(".f.airgap-partial.a11ve000");
        let _held = nix::fcntl::Flock::lock(std::fs::File::open(&alive).unwrap(), nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        let other = old(".g.airgap-partial.deadbeef");
        receive(&p, 0o644, &Digest::of_bytes(b"x"), &b"x"[..]).unwrap();
        assert!(!dead.exists());
        assert!(alive.exists(), "a partial file still being written was removed");
        assert!(other.exists(), "another file's partial was removed");
    }
}
