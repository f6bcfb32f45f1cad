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

/// The sidecar of a received file: its verified sha256 with the size and mtime it had then, so that a re-run
/// need not hash gigabytes again (`HEX SIZE MTIME`, the same line `stat -c '%s %Y'` helps a shell write).
pub fn stamp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.sha256"))
}

fn stamp_line(meta: &std::fs::Metadata, sha256: &Digest) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{} {} {}", sha256.hex(), meta.len(), meta.mtime())
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
    // a file with a managed block keeps its mode (we own only the block); a whole file gets the action's mode
    let mode = match (block, path.exists()) {
        (Some(_), true) => fsutil::Mode::Keep,
        _ => fsutil::Mode::Set(mode),
    };
    fsutil::atomic_write(path, &data, mode)?;
    Ok(true)
}

/// Read a file from `input` into `path` atomically, hashing while streaming; the rename happens only when the
/// sha256 matches. A partial file under a fixed name (`.NAME.airgap-partial`) is replaced by the next attempt.
pub fn receive(path: &Path, mode: u32, sha256: &Digest, input: impl Read) -> Result<()> {
    let dir = path.parent().context("target path has no parent directory")?;
    fs_err::create_dir_all(dir)?;
    let name = path
        .file_name()
        .context("target path has no file name")?
        .to_string_lossy();
    let partial = dir.join(format!(".{name}.airgap-partial"));
    let mut reader = HashingReader::expecting(input, sha256.clone(), None);
    {
        let mut f = fs_err::File::create(&partial)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::io::copy(&mut reader, &mut f).with_context(|| format!("failed to receive {}", path.display()))?;
        f.sync_all()?;
    }
    fsutil::rename_durable(&partial, path)?;
    let meta = fs_err::metadata(path)?;
    fsutil::atomic_write(&stamp_path(path), format!("{}\n", stamp_line(&meta, sha256)).as_bytes(), fsutil::Mode::Set(0o644))?;
    Ok(())
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

    fn mode_of(p: &Path) -> u32 {
        fs_err::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn modes_are_the_actions_or_kept_for_blocks() {
        let d = tempfile::tempdir().unwrap();
        // a whole file gets the action's mode, whatever it had
        let conf = d.path().join("keepalived.conf");
        fs_err::write(&conf, b"old\n").unwrap();
        fs_err::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(write_file(&conf, 0o644, b"new\n", None).unwrap());
        assert_eq!(mode_of(&conf), 0o644);
        let script = d.path().join("notify.sh");
        assert!(write_file(&script, 0o755, b"#!/bin/sh\n", None).unwrap());
        assert_eq!(mode_of(&script), 0o755);
        // a file where airgap manages a block keeps the mode it has; a new one gets the action's
        let hosts = d.path().join("hosts");
        fs_err::write(&hosts, b"127.0.0.1 localhost\n").unwrap();
        fs_err::set_permissions(&hosts, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(write_file(&hosts, 0o644, b"10.0.0.11 master1\n", Some("airgap")).unwrap());
        assert_eq!(mode_of(&hosts), 0o640);
        let new = d.path().join("new-with-block");
        assert!(write_file(&new, 0o600, b"x\n", Some("airgap")).unwrap());
        assert_eq!(mode_of(&new), 0o600);
        // a received file has its mode, its stamp 0644
        let data = b"payload";
        receive(&d.path().join("bin"), 0o755, &Digest::of_bytes(data), &data[..]).unwrap();
        assert_eq!(mode_of(&d.path().join("bin")), 0o755);
        assert_eq!(mode_of(&stamp_path(&d.path().join("bin"))), 0o644);
    }

    #[test]
    fn write_file_only_when_different() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        assert!(write_file(&p, 0o644, b"x\n", None).unwrap());
        assert!(!write_file(&p, 0o644, b"x\n", None).unwrap());
        assert!(write_file(&p, 0o600, b"x\n", None).unwrap());
        assert_eq!(mode_of(&p), 0o600);
        let bad = Digest::of_bytes(b"y");
        let err = receive(&d.path().join("r"), 0o644, &bad, &b"x"[..]).unwrap_err();
        assert!(format!("{err:#}").contains("sha256"), "{err:#}");
        assert!(!d.path().join("r").exists());
    }
}
