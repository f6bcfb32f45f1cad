//! The bundle's tar stream read with hard bounds. Bundles hold regular files only, so the reader walks the
//! RAW entries of the tar crate (no PAX or GNU extension processing, which would read an extension's declared
//! size whole into memory before any check) and handles the one extension the writer emits itself: a GNU
//! long name (`././@LongLink`, for paths over 100 bytes), accepted up to [`MAX_LONG_NAME`] bytes. Paths must be
//! UTF-8, relative, without `..`, in normal form; links, directories, devices, PAX headers and sparse files
//! are refused, each with its own message. Header checksums are checked by the tar crate.

use super::format::shown;
use super::read::stream_err;
use anyhow::{anyhow, bail, Result};
use std::io::Read;

/// Longest accepted GNU long name (PATH_MAX).
pub const MAX_LONG_NAME: u64 = 4096;

/// Entries of a bundle's tar stream, one at a time (the caller owns the `tar::Archive` and takes its inner
/// reader back with `into_inner` once this is dropped).
pub struct TarStream<'a, R: Read> {
    entries: tar::Entries<'a, R>,
    done: bool,
}

/// One entry: its checked path, its declared size and mode, and its bytes (read them before the next call).
pub struct RawEntry<'a, R: Read> {
    pub path: String,
    pub size: u64,
    pub mode: u32,
    entry: tar::Entry<'a, R>,
}

impl<'a, R: Read> TarStream<'a, R> {
    pub fn new(archive: &'a mut tar::Archive<R>) -> Result<Self> {
        Ok(TarStream { entries: archive.entries().map_err(stream_err)?.raw(true), done: false })
    }

    /// The next regular file, or `None` at the end-of-archive marker. Read (or drop) the entry before asking
    /// for the next one: its unread bytes are then skipped.
    pub fn next_entry(&mut self) -> Result<Option<RawEntry<'a, R>>> {
        if self.done {
            return Ok(None);
        }
        let mut long_name: Option<String> = None;
        loop {
            let Some(e) = self.entries.next() else {
                self.done = true;
                if long_name.is_some() {
                    bail!("the archive ends after a long name, with no entry for it");
                }
                return Ok(None);
            };
            let mut e = e.map_err(stream_err)?;
            let et = e.header().entry_type();
            let size = e.header().entry_size().map_err(stream_err)?;
            if et.is_gnu_longname() {
                if long_name.is_some() {
                    bail!("the archive holds two long names in a row");
                }
                if size > MAX_LONG_NAME {
                    bail!("an entry declares a {size}-byte long name (at most {MAX_LONG_NAME})");
                }
                let mut buf = Vec::with_capacity(size as usize);
                (&mut e).take(size).read_to_end(&mut buf).map_err(stream_err)?;
                while buf.last() == Some(&0) {
                    buf.pop();
                }
                long_name = Some(String::from_utf8(buf).map_err(|_| anyhow!("an entry has a path that is not UTF-8"))?);
                continue;
            }
            let raw = match long_name.take() {
                Some(n) => n,
                None => String::from_utf8(e.header().path_bytes().into_owned())
                    .map_err(|_| anyhow!("an entry has a path that is not UTF-8"))?,
            };
            let path = checked_path(&raw, &e)?;
            let mode = e.header().mode().map_err(stream_err)? & 0o777;
            return Ok(Some(RawEntry { path, size, mode, entry: e }));
        }
    }

}

impl<'a, R: Read> RawEntry<'a, R> {
    /// The whole entry, refused before reading when it declares more than `max` bytes.
    pub fn read_small(&mut self, max: u64) -> Result<Vec<u8>> {
        if self.size > max {
            bail!("entry {} is too large ({} bytes, at most {max})", self.path, self.size);
        }
        let mut v = Vec::with_capacity(self.size as usize);
        (&mut self.entry).take(self.size).read_to_end(&mut v).map_err(stream_err)?;
        if v.len() as u64 != self.size {
            return Err(stream_err(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(v)
    }

    /// The entry's bytes (exactly its declared size).
    pub fn reader(&mut self) -> &mut tar::Entry<'a, R> {
        &mut self.entry
    }
}

/// The path of an entry, checked: safe (no `..`, not absolute), in normal form, and a regular file (links,
/// directories and special files are rejected, saying where a link points).
fn checked_path<R: Read>(raw: &str, e: &tar::Entry<'_, R>) -> Result<String> {
    let path = crate::fsutil::safe_relative_path(raw).map_err(|err| anyhow!("entry {} has an unsafe path: {err}", shown(raw)))?;
    let et = e.header().entry_type();
    let target = || shown(&String::from_utf8_lossy(&e.header().link_name_bytes().unwrap_or_default()));
    match et {
        tar::EntryType::Regular => {}
        tar::EntryType::Symlink => {
            let t = e.header().link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let outside = if link_escapes(&path, &t) { " pointing outside the bundle" } else { "" };
            bail!("entry {} is a symbolic link{outside} (to {}); bundles hold regular files only", shown(&path), target());
        }
        tar::EntryType::Link => {
            let t = e.header().link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let outside = if crate::fsutil::safe_relative_path(&t).is_err() { " pointing outside the bundle" } else { "" };
            bail!("entry {} is a hard link{outside} (to {}); bundles hold regular files only", shown(&path), target());
        }
        tar::EntryType::Directory => bail!("entry {} is a directory; bundles hold regular files only", shown(&path)),
        t if t.is_pax_local_extensions() || t.is_pax_global_extensions() => {
            bail!("entry {} is a PAX extended header; bundles hold regular files only", shown(&path))
        }
        other => bail!("entry {} has unsupported type {other:?}; bundles hold regular files only", shown(&path)),
    }
    if raw != path {
        bail!("entry {} has a path that is not in normal form (expected {})", shown(raw), shown(&path));
    }
    Ok(path)
}

/// Whether a symlink at `path` with `target` resolves outside the bundle root.
fn link_escapes(path: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth: i64 = path.split('/').count() as i64 - 1;
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_escaping_the_root_are_detected() {
        assert!(link_escapes("files/evil", "/etc/passwd"));
        assert!(link_escapes("files/evil", "../../x"));
        assert!(link_escapes("a", "../x"));
        assert!(!link_escapes("files/a/b", "../c"));
        assert!(!link_escapes("files/a", "./b"));
        assert!(link_escapes("files/a", "b/../../../c"));
    }

    fn header(path: &[u8], size: u64, et: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(et);
        h.set_cksum();
        h
    }

    #[test]
    fn a_huge_long_name_is_refused_before_it_is_read() {
        // a GNU long-name header declaring 2 GiB, followed by nothing: refused from the header alone
        let mut data = header(b"././@LongLink", 2 << 30, tar::EntryType::GNULongName).as_bytes().to_vec();
        data.extend_from_slice(&[b'a'; 512]);
        let mut ar = tar::Archive::new(&data[..]);
        let mut t = TarStream::new(&mut ar).unwrap();
        let err = t.next_entry().err().expect("accepted");
        assert!(err.to_string().contains("long name"), "{err}");
    }

    #[test]
    fn long_names_and_pax_headers() {
        let long = "files/".to_string() + &"d/".repeat(80) + "x";
        let mut data = header(b"././@LongLink", long.len() as u64 + 1, tar::EntryType::GNULongName).as_bytes().to_vec();
        let mut name = long.as_bytes().to_vec();
        name.push(0);
        name.resize(512, 0);
        data.extend_from_slice(&name);
        data.extend_from_slice(header(b"ignored", 3, tar::EntryType::Regular).as_bytes());
        let mut body = b"abc".to_vec();
        body.resize(512, 0);
        data.extend_from_slice(&body);
        data.extend_from_slice(header(b"x", 10, tar::EntryType::XHeader).as_bytes());
        data.extend_from_slice(&[0u8; 1024]);
        let mut ar = tar::Archive::new(&data[..]);
        let mut t = TarStream::new(&mut ar).unwrap();
        let mut e = t.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long);
        assert_eq!(e.read_small(10).unwrap(), b"abc");
        drop(e);
        let err = t.next_entry().err().expect("PAX accepted");
        assert!(err.to_string().contains("PAX"), "{err}");
    }

    #[test]
    fn unsafe_paths_and_links_are_refused() {
        for (path, et, want) in [
            (&b"../etc/passwd"[..], tar::EntryType::Regular, "unsafe path"),
            (b"/etc/passwd", tar::EntryType::Regular, "unsafe path"),
            (b"files//a", tar::EntryType::Regular, "normal form"),
            (b"files/a", tar::EntryType::Symlink, "symbolic link"),
            (b"files/a", tar::EntryType::Directory, "directory"),
            (b"files/a", tar::EntryType::Char, "unsupported type"),
        ] {
            let mut data = header(path, 0, et).as_bytes().to_vec();
            data.extend_from_slice(&[0u8; 1024]);
            let mut ar = tar::Archive::new(&data[..]);
        let mut t = TarStream::new(&mut ar).unwrap();
            let err = t.next_entry().err().expect("accepted");
            assert!(err.to_string().contains(want), "{}: {err}", String::from_utf8_lossy(path));
        }
    }
}
