//! Where a bundle's bytes are: one `X.tar.zst`, or parts `X.tar.zst.000`... listed in `X.tar.zst.parts`.

use crate::bundle::split::{self, ConcatReader, PartInfo};
use crate::digest::Digest;
use crate::error::HintExt;
use crate::sign;
use anyhow::{anyhow, Context, Result};
use minisign::{PublicKey, SignatureBox};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// A bundle on disk, whole or split.
#[derive(Debug, Clone)]
pub struct BundleSource {
    /// `X.tar.zst` (does not exist when the bundle is split).
    pub archive: PathBuf,
    /// `X.tar.zst.minisig`, over the whole archive (the concatenation of the parts when split).
    pub signature: PathBuf,
    /// The parts in order, with their sha256 from the parts list; empty for a whole archive.
    pub parts: Vec<PartInfo>,
    /// `X.tar.zst.parts` when split.
    pub parts_list: Option<PathBuf>,
    /// Total bytes of the archive.
    pub size: u64,
}

impl BundleSource {
    /// Open `X.tar.zst`, `X.tar.zst.000` (any part), `X.tar.zst.parts`, or the base name `X.tar.zst` of split
    /// parts. For parts: reads the list and checks that every part is present (sizes and hashes are checked
    /// while reading, and the list's signature by [`BundleSource::check_parts_signature`]).
    pub fn open(path: &Path) -> Result<Self> {
        let base = base_name(path);
        if base.is_file() {
            let size = fs_err::metadata(&base)?.len();
            return Ok(BundleSource {
                signature: sign::signature_path(&base),
                archive: base,
                parts: Vec::new(),
                parts_list: None,
                size,
            });
        }
        let list_path = append(&base, split::PARTS_SUFFIX);
        let text = match fs_err::read_to_string(&list_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if base.exists() {
                    return Err(anyhow!("{} is not a regular file", base.display()));
                }
                return Err(anyhow!("bundle {} not found (neither the archive nor a parts list {})",
                    path.display(),
                    file_name(&list_path)))
                .hint("pass the path of the .tar.zst file, or of its first part .tar.zst.000");
            }
            Err(e) => return Err(e).context("failed to read the parts list"),
        };
        let archive_name = file_name(&base);
        let listed = split::parse_parts_list(&text, &archive_name)
            .with_context(|| format!("the parts list {} is malformed", list_path.display()))?;
        let dir = base.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut parts = Vec::new();
        let mut size = 0;
        for (name, sha256) in listed {
            let p = dir.join(&name);
            let meta = match fs_err::metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(anyhow!("part {name} is missing"))
                        .with_context(|| format!("the split bundle {archive_name} is incomplete"))
                        .with_hint(|| format!("copy every part listed in {} into {}", file_name(&list_path), dir.display()));
                }
                Err(e) => return Err(e.into()),
            };
            size += meta.len();
            parts.push(PartInfo { path: p, sha256, size: meta.len() });
        }
        Ok(BundleSource { signature: sign::signature_path(&base), archive: base, parts, parts_list: Some(list_path), size })
    }

    pub fn is_split(&self) -> bool {
        !self.parts.is_empty()
    }

    /// `X.tar.zst`, for messages.
    pub fn name(&self) -> String {
        file_name(&self.archive)
    }

    /// The archive's signature (clear error when the `.minisig` is missing).
    pub fn signature(&self) -> Result<SignatureBox> {
        sign::read_signature(&self.archive)
    }

    /// Check the parts list's own signature (cheap; before reading the parts). No-op for a whole archive.
    pub fn check_parts_signature(&self, pk: &PublicKey) -> Result<()> {
        let Some(list) = &self.parts_list else { return Ok(()) };
        let sig = sign::read_signature(list)?;
        let f = fs_err::File::open(list)?;
        sign::verify_reader(pk, &sig, f, list)
    }

    /// The raw (compressed) bytes, parts concatenated; each part's sha256 is checked when its end is read.
    pub fn raw_reader(&self) -> Result<Box<dyn Read + Send>> {
        if self.is_split() {
            Ok(Box::new(ConcatReader::new(self.parts.clone(), true)))
        } else {
            Ok(Box::new(fs_err::File::open(&self.archive)?))
        }
    }

    /// Hash every part and name the first damaged one (used to explain a failure in the middle of a part).
    pub fn find_damaged_part(&self) -> Option<String> {
        for p in &self.parts {
            match Digest::of_file(&p.path) {
                Ok((d, _)) if d != p.sha256 => return Some(split::part_damaged(p, &d)),
                Ok(_) => {}
                Err(e) => return Some(format!("part {} cannot be read: {e}", file_name(&p.path))),
            }
        }
        None
    }
}

/// `X.tar.zst` from `X.tar.zst.000` / `X.tar.zst.parts` / `X.tar.zst`.
fn base_name(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    if let Some(b) = s.strip_suffix(split::PARTS_SUFFIX) {
        return PathBuf::from(b);
    }
    if let Some((b, ext)) = s.rsplit_once('.') {
        if ext.len() == 3 && ext.bytes().all(|c| c.is_ascii_digit()) {
            let b = PathBuf::from(b);
            if ext == "000" || append(&b, split::PARTS_SUFFIX).exists() {
                return b;
            }
        }
    }
    path.to_path_buf()
}

fn append(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub(crate) fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}
