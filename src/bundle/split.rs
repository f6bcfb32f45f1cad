//! Split archives: parts `X.000`, `X.001`... whose concatenation is the archive, and the `X.parts` list
//! (`sha256sum` format, so `sha256sum -c X.parts` checks the parts in their directory).

use crate::bundle::format::FAT32_MAX;
use crate::digest::{Digest, Hasher};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Suffix of the parts list.
pub const PARTS_SUFFIX: &str = ".parts";
/// The most parts a bundle may have (three-digit suffixes).
pub const MAX_PARTS: usize = 1000;
/// The smallest part size accepted on the command line.
pub const MIN_SPLIT_SIZE: u64 = 1024 * 1024;

/// Parse a part size: plain bytes (`1048576`), a binary multiple (`1M`, `700M`, `4G`, `1.5G`, `512K`, also with
/// `B`/`iB`: `700MiB`), or `fat32` (4 GiB - 1 byte, the largest file FAT32 holds).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let ctx = || format!("invalid split size {s:?}: expected bytes, a size like 700M, 4G, 1.5G, or fat32");
    if t.eq_ignore_ascii_case("fat32") {
        return Ok(FAT32_MAX);
    }
    let lower = t.to_ascii_lowercase();
    let num_end = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let unit = unit.trim();
    let mult: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(anyhow!("unknown unit {unit:?}")).with_context(ctx),
    };
    if num.is_empty() || num.matches('.').count() > 1 {
        return Err(anyhow!("no number")).with_context(ctx);
    }
    let bytes = if let Some((int, frac)) = num.split_once('.') {
        if mult == 1 {
            return Err(anyhow!("a fraction of a byte")).with_context(ctx);
        }
        let int: u64 = if int.is_empty() { 0 } else { int.parse().with_context(ctx)? };
        let frac_v: f64 = format!("0.{frac}").parse().with_context(ctx)?;
        int.checked_mul(mult)
            .and_then(|v| v.checked_add((frac_v * mult as f64).floor() as u64))
            .ok_or_else(|| anyhow!("too large"))
            .with_context(ctx)?
    } else {
        num.parse::<u64>().ok().and_then(|v| v.checked_mul(mult)).ok_or_else(|| anyhow!("too large")).with_context(ctx)?
    };
    if bytes < MIN_SPLIT_SIZE {
        return Err(anyhow!("{bytes} bytes is smaller than the minimum part size of 1M")).with_context(ctx);
    }
    Ok(bytes)
}

/// `X.tar.zst.000` for index 0.
pub fn part_name(archive_name: &str, index: usize) -> String {
    format!("{archive_name}.{index:03}")
}

/// One part as the `.parts` list records it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartInfo {
    pub path: PathBuf,
    pub sha256: Digest,
    pub size: u64,
}

/// The `.parts` list text: `<hex>  <part file name>` per line, in order.
pub fn parts_list(parts: &[PartInfo]) -> String {
    parts
        .iter()
        .map(|p| {
            let name = p.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            crate::bundle::format::sha256sums_line(p.sha256.hex(), &name)
        })
        .collect()
}

/// Parse a `.parts` list into (file name, sha256) pairs, checking each name is `<archive>.<NNN>` in order.
pub fn parse_parts_list(text: &str, archive_name: &str) -> Result<Vec<(String, Digest)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (hex, name) = line
            .split_once("  ")
            .ok_or_else(|| anyhow!("line {} is not `<sha256>  <file>`: {line:?}", i + 1))?;
        let d = Digest::from_hex(hex).with_context(|| format!("line {}", i + 1))?;
        let want = part_name(archive_name, i);
        if name != want {
            bail!("line {} names {name:?}, expected {want:?}", i + 1);
        }
        out.push((name.to_string(), d));
    }
    if out.is_empty() {
        bail!("the parts list is empty");
    }
    Ok(out)
}

/// A writer that cuts its stream into parts of at most `limit` bytes in `dir`, hashing each.
pub struct PartsWriter {
    dir: PathBuf,
    archive_name: String,
    limit: u64,
    cur: Option<(io::BufWriter<crate::fsutil::WritebackFile>, Hasher)>,
    done: Vec<PartInfo>,
}

impl PartsWriter {
    pub fn new(dir: &Path, archive_name: &str, limit: u64) -> Result<Self> {
        if limit == 0 {
            bail!("the split size must be at least 1 byte");
        }
        Ok(PartsWriter { dir: dir.to_path_buf(), archive_name: archive_name.to_string(), limit, cur: None, done: Vec::new() })
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some((w, h)) = self.cur.take() {
            let f = w.into_inner().map_err(|e| e.into_error())?.into_file();
            f.sync_all()?;
            let (sha256, size) = h.finish();
            let path = self.dir.join(part_name(&self.archive_name, self.done.len()));
            self.done.push(PartInfo { path, sha256, size });
        }
        Ok(())
    }

    /// Close the last part; returns every part in order (at least one, possibly empty).
    pub fn finish(mut self) -> Result<Vec<PartInfo>> {
        if self.cur.is_none() && self.done.is_empty() {
            self.open_next()?;
        }
        self.close_current()?;
        Ok(self.done)
    }

    fn open_next(&mut self) -> io::Result<()> {
        let idx = self.done.len();
        if idx >= MAX_PARTS {
            return Err(io::Error::other(format!(
                "the bundle needs more than {MAX_PARTS} parts of {} bytes; use a larger split size",
                self.limit
            )));
        }
        let path = self.dir.join(part_name(&self.archive_name, idx));
        let f = fs_err::OpenOptions::new().write(true).create_new(true).open(&path)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(super::write::PUBLISHED_MODE))?;
        self.cur = Some((io::BufWriter::with_capacity(1 << 20, crate::fsutil::WritebackFile::new(f)?), Hasher::new()));
        Ok(())
    }
}

impl Write for PartsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some((_, h)) = &self.cur {
            if h.len() >= self.limit {
                self.close_current()?;
            }
        }
        if self.cur.is_none() {
            self.open_next()?;
        }
        let (w, h) = self.cur.as_mut().ok_or_else(|| io::Error::other("no open part"))?;
        let room = (self.limit - h.len()).min(buf.len() as u64) as usize;
        let n = w.write(&buf[..room])?;
        h.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.cur {
            Some((w, _)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Reads parts one after the other as one stream, checking each part's sha256 when its end is reached, so a
/// damaged part is named ("part X.002 is damaged").
pub struct ConcatReader {
    parts: Vec<PartInfo>,
    idx: usize,
    cur: Option<(fs_err::File, Hasher)>,
    check: bool,
}

impl ConcatReader {
    /// `check`: compare each part's sha256 with the list at its end (parts from a `.parts` list).
    pub fn new(parts: Vec<PartInfo>, check: bool) -> Self {
        ConcatReader { parts, idx: 0, cur: None, check }
    }
}

impl Read for ConcatReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.idx >= self.parts.len() || buf.is_empty() {
                return Ok(0);
            }
            if self.cur.is_none() {
                let f = fs_err::File::open(&self.parts[self.idx].path)?;
                self.cur = Some((f, Hasher::new()));
            }
            let (f, h) = self.cur.as_mut().ok_or_else(|| io::Error::other("no open part"))?;
            let n = f.read(buf)?;
            if n > 0 {
                h.update(&buf[..n]);
                return Ok(n);
            }
            let (_, h) = self.cur.take().ok_or_else(|| io::Error::other("no open part"))?;
            let part = &self.parts[self.idx];
            if self.check {
                let (got, _) = h.finish();
                if got != part.sha256 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, part_damaged(part, &got)));
                }
            }
            self.idx += 1;
        }
    }
}

/// The message for a damaged part.
pub fn part_damaged(part: &PartInfo, got: &Digest) -> String {
    let name = part.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("part {name} is damaged: sha256 {}, expected {} (from the parts list)", got.hex(), part.sha256.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("700M").unwrap(), 700 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("700MiB").unwrap(), 700 << 20);
        assert_eq!(parse_size("2048k").unwrap(), 2 << 20);
        assert_eq!(parse_size("fat32").unwrap(), FAT32_MAX);
        assert_eq!(parse_size("FAT32").unwrap(), FAT32_MAX);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        for bad in ["", "M", "1X", "1.2.3G", "-1M", "10", "0.5M", "1.5", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn splits_and_concatenates() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = PartsWriter::new(d.path(), "x.tar.zst", 3000).unwrap();
        for c in data.chunks(777) {
            w.write_all(c).unwrap();
        }
        let parts = w.finish().unwrap();
        assert_eq!(parts.iter().map(|p| p.size).collect::<Vec<_>>(), vec![3000, 3000, 3000, 1000]);
        let list = parts_list(&parts);
        assert_eq!(parse_parts_list(&list, "x.tar.zst").unwrap().len(), 4);
        let mut back = Vec::new();
        ConcatReader::new(parts.clone(), true).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        std::fs::write(&parts[2].path, vec![0u8; 3000]).unwrap();
        let err = ConcatReader::new(parts, true).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("part x.tar.zst.002 is damaged"), "{err}");
    }
}
