//! Reading a bundle: signature check, then one streaming pass over every entry, checking each against
//! `SHA256SUMS` (pinned by the root document) and rejecting missing, extra and duplicate entries, unsafe paths
//! and links. `verify`, `unpack` and the registry's `load` are all consumers of this one reader.
//!
//! CONTRACT (used by `verify`, `unpack`, `inspect`, `load`):
//! - `BundleSource::open(path)` accepts `X.tar.zst`, `X.tar.zst.000` or the base name of split parts.
//! - An [`EntrySink`] receives the verified root document, then every entry after `SHA256SUMS` in archive
//!   order. The reader hashes what the sink reads; if the sink does not read an entry to its end, the reader
//!   drains and hashes the rest. Any failure (from the reader or the sink) aborts the whole read with an error;
//!   the sink must then discard what it staged (nothing it did may look complete).

//! - `read_verified(&BundleSource, &PublicKey, &mut dyn EntrySink) -> Result<Verified>`: ONE streaming pass
//!   (the signature is checked over the raw bytes while they are decompressed); `verify_signature` alone (a
//!   pass over the raw bytes); `read_root` (only the first entry, nothing verified: for `inspect`).

pub use crate::bundle::source::BundleSource;
use crate::bundle::format::{self, RootDoc, FILES_DIR, IMAGES_DIR, ROOT_DOC, SHA256SUMS};
use crate::bundle::source::file_name;
use crate::digest::{Digest, HashingReader};
use crate::error::{with_hint, HintExt};
use crate::fsutil::safe_relative_path;
use crate::sign::{self, StreamVerifier};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use minisign::PublicKey;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::rc::Rc;

/// Receives a bundle's content while it is verified.
pub trait EntrySink {
    /// The exact bytes of `airgap.json` and of `SHA256SUMS` (after their checks, before `root`), for sinks that
    /// keep them (e.g. `unpack`, so `sha256sum -c SHA256SUMS` works in the unpacked directory).
    fn meta_entry(&mut self, _path: &str, _data: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }
    /// The root document, already checked against the schema (its trust is only final when the read returns Ok).
    fn root(&mut self, _root: &RootDoc) -> anyhow::Result<()> {
        Ok(())
    }
    /// One entry (path relative to the bundle root, e.g. `images/blobs/sha256/<hex>`, `files/bin/kubeadm`).
    fn entry(&mut self, path: &str, size: u64, mode: u32, data: &mut dyn Read) -> anyhow::Result<()>;
}

/// A sink that reads nothing: for `verify`.
pub struct NullSink;

impl EntrySink for NullSink {
    fn entry(&mut self, _path: &str, _size: u64, _mode: u32, _data: &mut dyn Read) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Largest accepted root document.
const MAX_ROOT_DOC: u64 = 16 << 20;
/// Largest accepted `SHA256SUMS`.
const MAX_SUMS: u64 = 256 << 20;

/// The outcome of a successful verified read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    pub name: String,
    pub version: String,
    /// Entries in the archive (including `airgap.json` and `SHA256SUMS`).
    pub entries: u64,
    /// Uncompressed bytes of all entries.
    pub content_bytes: u64,
    /// Bytes of the archive (all parts).
    pub archive_size: u64,
    pub parts: usize,
    /// Key ID of the key that signed the bundle (16 hex digits, as minisign prints it).
    pub key_id: String,
    pub trusted_comment: String,
    #[serde(skip)]
    pub root: RootDoc,
}

/// Check the bundle's signature (and, when split, the parts list's signature and every part's sha256): one
/// pass over the raw bytes, no decompression.
pub fn verify_signature(source: &BundleSource, pk: &PublicKey) -> Result<()> {
    verify_signature_with_progress(source, pk, &ProgressBar::hidden())
}

/// [`verify_signature`] advancing `bar` by raw bytes read (its length is set here).
pub fn verify_signature_with_progress(source: &BundleSource, pk: &PublicKey, bar: &ProgressBar) -> Result<()> {
    let sig = source.signature()?;
    sign::check_signer(&sig, pk, &source.archive)?;
    source.check_parts_signature(pk)?;
    bar.set_length(source.size);
    let reader = bar.wrap_read(source.raw_reader()?);
    let r = sign::verify_reader(pk, &sig, reader, &source.archive);
    bar.finish_and_clear();
    r.map_err(|e| damaged_part_error(source).unwrap_or(e))
}

/// When a split bundle fails, name its damaged part (re-hashes the parts: only on the failure path).
fn damaged_part_error(source: &BundleSource) -> Option<anyhow::Error> {
    if !source.is_split() {
        return None;
    }
    let msg = source.find_damaged_part()?;
    Some(with_hint(
        anyhow!(msg).context(format!("the split bundle {} is damaged", source.name())),
        "copy the damaged part again from the packaging machine (`sha256sum -c` on the .parts file names it too)",
    ))
}

/// Read the root document only (the first entry; nothing is verified). For `inspect`.
pub fn read_root(source: &BundleSource) -> Result<RootDoc> {
    let raw = if source.is_split() {
        Box::new(crate::bundle::split::ConcatReader::new(source.parts.clone(), false)) as Box<dyn Read>
    } else {
        Box::new(fs_err::File::open(&source.archive)?)
    };
    let dec = zstd::stream::read::Decoder::new(raw)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("{} is not a zstd archive", source.name()))?;
    let mut ar = tar::Archive::new(dec);
    let mut entries = ar.entries().with_context(|| format!("failed to read {}", source.name()))?;
    let mut first = entries
        .next()
        .ok_or_else(|| anyhow!("the archive is empty"))?
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("{} is not an airgap bundle (no readable tar entry)", source.name()))?;
    let (root, _) = read_root_entry(&mut first).with_context(|| format!("{} is not a valid airgap bundle", source.name()))?;
    Ok(root)
}

/// Verify while reading (see the module docs): ONE pass over the raw bytes.
pub fn read_verified(source: &BundleSource, pk: &PublicKey, sink: &mut dyn EntrySink) -> Result<Verified> {
    read_verified_with_progress(source, pk, sink, &ProgressBar::hidden())
}

/// Shared between the raw-byte tee and the reader, to explain stream errors (truncation) and finish the
/// signature check at the end.
struct RawState {
    verifier: Option<StreamVerifier>,
    bytes: u64,
    eof: bool,
}

struct Tee {
    inner: Box<dyn Read + Send>,
    state: Rc<RefCell<RawState>>,
    bar: ProgressBar,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.state.borrow_mut();
        if n == 0 {
            if !buf.is_empty() {
                st.eof = true;
            }
        } else {
            st.bytes += n as u64;
            if let Some(v) = st.verifier.as_mut() {
                v.update(&buf[..n]);
            }
            self.bar.inc(n as u64);
        }
        Ok(n)
    }
}

/// [`read_verified`] advancing `bar` by raw bytes read (its length is set here).
pub fn read_verified_with_progress(
    source: &BundleSource,
    pk: &PublicKey,
    sink: &mut dyn EntrySink,
    bar: &ProgressBar,
) -> Result<Verified> {
    // Cheap checks first: a missing signature or a wrong key fails before any byte of the archive is read.
    let sig = source.signature()?;
    let verifier = StreamVerifier::new(pk, &sig, &source.archive)?;
    source.check_parts_signature(pk)?;
    bar.set_length(source.size);
    let state = Rc::new(RefCell::new(RawState { verifier: Some(verifier), bytes: 0, eof: false }));
    let tee = Tee { inner: source.raw_reader()?, state: state.clone(), bar: bar.clone() };
    let r = read_stream(source, tee, &state, sink);
    bar.finish_and_clear();
    let (root, entries, content_bytes) = r.map_err(|e| explain(source, &state, e))?;
    let verifier = state.borrow_mut().verifier.take().ok_or_else(|| anyhow!("signature verifier lost"))?;
    verifier.finish()?;
    Ok(Verified {
        name: root.name.clone(),
        version: root.version.clone(),
        entries,
        content_bytes,
        archive_size: source.size,
        parts: source.parts.len(),
        key_id: sign::signature_key_id(&sig),
        trusted_comment: sig.trusted_comment().unwrap_or_default(),
        root,
    })
}

/// A stream error (from zstd, tar or the file) in the middle of the read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StreamError(io::Error);

fn stream_err(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(StreamError(e))
}

/// Turn a low-level stream error into what the operator needs to know: a damaged part, a truncated bundle,
/// or damaged bytes.
fn explain(source: &BundleSource, state: &Rc<RefCell<RawState>>, err: anyhow::Error) -> anyhow::Error {
    if err.downcast_ref::<StreamError>().is_none() {
        return err;
    }
    let name = source.name();
    if let Some(e) = damaged_part_error(source) {
        return e;
    }
    let st = state.borrow();
    if st.eof {
        with_hint(
            err.context(format!("the bundle {name} is truncated: its data ends after {} bytes", st.bytes)),
            "the copy is incomplete (interrupted copy, full disk?): copy the bundle again",
        )
    } else {
        with_hint(
            err.context(format!("the bundle {name} is damaged: its compressed data cannot be read after {} bytes", st.bytes)),
            "copy the bundle again from the packaging machine; `airgap verify` checks its signature",
        )
    }
}

fn read_stream(
    source: &BundleSource,
    tee: Tee,
    state: &Rc<RefCell<RawState>>,
    sink: &mut dyn EntrySink,
) -> Result<(RootDoc, u64, u64)> {
    let dec = zstd::stream::read::Decoder::new(tee).map_err(stream_err)?;
    let mut ar = tar::Archive::new(dec);
    let mut entries = ar.entries().map_err(stream_err)?;
    let mut next = || -> Result<Option<tar::Entry<'_, _>>> { entries.next().transpose().map_err(stream_err) };

    // 1. The root document.
    let mut e = next()?.ok_or_else(|| anyhow!("the archive holds no entry"))
        .with_context(|| format!("{} is not an airgap bundle", source.name()))?;
    let (root, root_bytes) = read_root_entry(&mut e).with_context(|| format!("{} is not a valid airgap bundle", source.name()))?;
    drop(e);
    let mut count = 1u64;
    let mut content_bytes = root_bytes.len() as u64;

    // 2. SHA256SUMS, pinned by the root document.
    let mut e = next()?.ok_or_else(|| anyhow!("missing entry {SHA256SUMS} (the archive ends after {ROOT_DOC})"))?;
    let path = checked_path(&e)?;
    if path != SHA256SUMS {
        bail!("the second entry is {path}, expected {SHA256SUMS}");
    }
    let sums_bytes = read_small(&mut e, MAX_SUMS, SHA256SUMS)?;
    drop(e);
    let got = Digest::of_bytes(&sums_bytes);
    if got.hex() != root.sha256sums {
        bail!(
            "entry {SHA256SUMS} is damaged: sha256 {}, but {ROOT_DOC} says {}",
            got.hex(),
            root.sha256sums
        );
    }
    let mut expected = parse_sums(&sums_bytes)?;
    cross_check(&root, &expected)?;
    count += 1;
    content_bytes += sums_bytes.len() as u64;
    sink.meta_entry(ROOT_DOC, &root_bytes)?;
    sink.meta_entry(SHA256SUMS, &sums_bytes)?;
    sink.root(&root)?;

    // 3. Every other entry, each listed once in SHA256SUMS and matching it.
    while let Some(mut e) = next()? {
        let path = checked_path(&e)?;
        let size = e.size();
        let mode = e.header().mode().map_err(stream_err)? & 0o777;
        let (digest, seen) = match expected.get_mut(&path) {
            Some(x) => x,
            None if path == ROOT_DOC || path == SHA256SUMS => bail!("duplicate entry {path}"),
            None => bail!("unexpected entry {path}: it is not listed in {SHA256SUMS}"),
        };
        if *seen {
            bail!("duplicate entry {path}: it appears twice in the archive");
        }
        *seen = true;
        let mut hr = HashingReader::expecting(&mut e, digest.clone(), Some(size));
        let sunk = sink.entry(&path, size, mode, &mut hr);
        let drained = io::copy(&mut hr, &mut io::sink());
        match hr.result() {
            Some((d, n)) if d == digest && *n == size => {}
            Some((d, n)) => bail!("entry {path} is damaged: sha256 {} ({n} bytes), {SHA256SUMS} says {}", d.hex(), digest.hex()),
            None => {
                drained.map_err(stream_err)?;
                sunk.as_ref().map_err(|e| anyhow!("{e:#}"))?;
                bail!("entry {path} was not read to its end");
            }
        }
        sunk.with_context(|| format!("failed to process entry {path}"))?;
        count += 1;
        content_bytes += size;
    }

    let missing: Vec<&String> = expected.iter().filter(|(_, (_, seen))| !seen).map(|(p, _)| p).collect();
    if let Some(first) = missing.first() {
        let more = if missing.len() > 1 { format!(" (and {} more)", missing.len() - 1) } else { String::new() };
        return Err(anyhow!("missing entry {first}{more}: {SHA256SUMS} lists it but the archive does not hold it"))
            .hint("the bundle is incomplete or was tampered with: copy it again from the packaging machine");
    }

    // 4. The rest of the stream: only tar's zero padding, then the end of the zstd data and of the file.
    let mut dec = ar.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = dec.read(&mut buf).map_err(stream_err)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            bail!("the archive holds data after the end of its tar stream");
        }
    }
    let mut tee = dec.finish().into_inner();
    io::copy(&mut tee, &mut io::sink()).map_err(stream_err)?;
    debug_assert!(state.borrow().eof);
    Ok((root, count, content_bytes))
}

/// The path of an entry, checked: UTF-8, safe (no `..`, not absolute), and a regular file (links, directories
/// and special files are rejected, saying where a link points).
fn checked_path<R: Read>(e: &tar::Entry<'_, R>) -> Result<String> {
    let raw = String::from_utf8(e.path_bytes().into_owned())
        .map_err(|_| anyhow!("an entry has a path that is not UTF-8"))?;
    let path = safe_relative_path(&raw).with_context(|| format!("entry {raw:?} has an unsafe path"))?;
    let et = e.header().entry_type();
    let target = || e.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    match et {
        tar::EntryType::Regular => {}
        tar::EntryType::Symlink => {
            let t = target();
            if link_escapes(&path, &t) {
                bail!("entry {path} is a symbolic link pointing outside the bundle (to {t:?}); bundles hold regular files only");
            }
            bail!("entry {path} is a symbolic link (to {t:?}); bundles hold regular files only");
        }
        tar::EntryType::Link => {
            let t = target();
            let outside = if safe_relative_path(&t).is_err() { " pointing outside the bundle" } else { "" };
            bail!("entry {path} is a hard link{outside} (to {t:?}); bundles hold regular files only");
        }
        tar::EntryType::Directory => bail!("entry {path} is a directory; bundles hold regular files only"),
        other => bail!("entry {path} has unsupported type {other:?}; bundles hold regular files only"),
    }
    if raw != path {
        bail!("entry {raw:?} has a path that is not in normal form (expected {path:?})");
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

fn read_small<R: Read>(e: &mut tar::Entry<'_, R>, max: u64, what: &str) -> Result<Vec<u8>> {
    if e.size() > max {
        bail!("entry {what} is too large ({} bytes, at most {max})", e.size());
    }
    let mut v = Vec::with_capacity(e.size() as usize);
    e.read_to_end(&mut v).map_err(stream_err)?;
    Ok(v)
}

/// Read and check the first entry: `airgap.json`, a root document of the known schema.
fn read_root_entry<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<(RootDoc, Vec<u8>)> {
    let path = checked_path(e)?;
    if path != ROOT_DOC {
        bail!("the first entry is {path}, expected {ROOT_DOC}");
    }
    let bytes = read_small(e, MAX_ROOT_DOC, ROOT_DOC)?;
    let root: RootDoc = serde_json::from_slice(&bytes).with_context(|| format!("entry {ROOT_DOC} is malformed"))?;
    if root.schema != format::SCHEMA {
        return Err(anyhow!("unsupported bundle schema {:?} (this airgap reads {})", root.schema, format::SCHEMA))
            .hint("use the airgap version that built the bundle");
    }
    Ok((root, bytes))
}

/// Parse `SHA256SUMS` into path → (digest, seen).
fn parse_sums(bytes: &[u8]) -> Result<BTreeMap<String, (Digest, bool)>> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("entry {SHA256SUMS} is not UTF-8"))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let ctx = || format!("line {} of {SHA256SUMS} is malformed: {line:?}", i + 1);
        let (hex, path) = line.split_once("  ").ok_or_else(|| anyhow!("expected `<sha256>  <path>`")).with_context(ctx)?;
        let d = Digest::from_hex(hex).with_context(ctx)?;
        let p = safe_relative_path(path).with_context(ctx)?;
        if p != path || p == ROOT_DOC || p == SHA256SUMS {
            return Err(anyhow!("path {path:?} cannot be listed")).with_context(ctx);
        }
        if out.insert(p, (d, false)).is_some() {
            bail!("{SHA256SUMS} lists {path} twice");
        }
    }
    Ok(out)
}

/// The root document and `SHA256SUMS` must agree: every file, package and image blob the root names is listed
/// with the same sha256.
fn cross_check(root: &RootDoc, sums: &BTreeMap<String, (Digest, bool)>) -> Result<()> {
    let check = |path: String, sha: &str, what: &str| -> Result<()> {
        match sums.get(&path) {
            Some((d, _)) if d.hex() == sha => Ok(()),
            Some((d, _)) => bail!("{ROOT_DOC} gives {what} {path} sha256 {sha}, but {SHA256SUMS} says {}", d.hex()),
            None => bail!("{ROOT_DOC} lists {what} {path}, but {SHA256SUMS} does not"),
        }
    };
    for f in &root.files {
        check(format!("{FILES_DIR}/{}", f.path), &f.sha256, "file")?;
    }
    for p in &root.packages {
        check(format!("{FILES_DIR}/{}", p.path), &p.sha256, "package")?;
    }
    for i in &root.images {
        check(format!("{IMAGES_DIR}/{}", i.digest.blob_path()), i.digest.hex(), "the manifest of image")
            .with_context(|| format!("image {} is inconsistent", i.reference))?;
    }
    for p in ["oci-layout", "index.json"] {
        if !sums.contains_key(&format!("{IMAGES_DIR}/{p}")) {
            bail!("{SHA256SUMS} does not list {IMAGES_DIR}/{p}");
        }
    }
    Ok(())
}

/// For messages about a bundle file.
pub fn display_name(source: &BundleSource) -> String {
    file_name(&source.archive)
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

    #[test]
    fn sums_are_parsed_strictly() {
        let d = "a".repeat(64);
        let ok = format!("{d}  files/a\n{d}  images/index.json\n");
        assert_eq!(parse_sums(ok.as_bytes()).unwrap().len(), 2);
        for bad in [
            format!("{d} files/a\n"),
            format!("{d}  ../a\n"),
            format!("{d}  /a\n"),
            format!("{d}  files/a\n{d}  files/a\n"),
            format!("{d}  airgap.json\n"),
            format!("{}  files/a\n", "A".repeat(64)),
            format!("{d}  files//a\n"),
        ] {
            assert!(parse_sums(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
    }
}
