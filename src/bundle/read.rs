//! Reading a bundle, verify first. Every reader of a bundle (`verify`, `unpack`, `inspect`, `load`, the
//! installer's kit, `airgap node registry-loaded`) goes through this module, and nothing it hands out comes from
//! bytes that were not verified first:
//!
//! 1. **The signed head** ([`read_head`]). The first entry is the root document `airgap.json`, the second its
//!    own minisign signature `airgap.json.minisig` (by the bundle key, like the archive's). Both are read with
//!    hard bounds (tar headers parsed raw by [`super::tar_stream`]: no PAX, long names of at most 4 KiB; at
//!    most [`MAX_ROOT_DOC`] and [`sign::MAX_SIGNATURE_BYTES`] bytes; zstd windows of at most
//!    [`MAX_WINDOW_LOG`]), and the signature is checked with the trusted key BEFORE the document is parsed. The
//!    parsed document must then validate ([`format::validate`]: hex digests, safe relative paths, names fit for
//!    files and command lines). The result, a [`Head`], is the only way to a [`RootDoc`] read from a bundle.
//! 2. **`SHA256SUMS`**, pinned by the head (its sha256 and size). Its paths must be exactly those the head gives
//!    sizes for, agree with the root document, and every blob's name must be its digest.
//! 3. **Every other entry**: its path must be listed, its header must declare the signed size (checked before
//!    any of its bytes is read), and its bytes are hashed while the sink reads them: the read fails at the end
//!    of the entry on a mismatch. Missing, extra and duplicate entries fail.
//! 4. **The whole archive's signature** (the `.minisig` beside it, the one stock `minisign -Vm` checks) over
//!    the raw bytes read along the way; when split, the signed parts list and every part's sha256.
//!
//! Only then does the reader call [`EntrySink::finish`]: a sink stages what it receives and makes it visible
//! (rename, commit) in `finish` alone, so a failure at any point leaves nothing that looks complete, and no
//! consumer has to remember to discard anything.

pub use crate::bundle::source::BundleSource;
use crate::bundle::format::{self, shown, RootDoc, FILES_DIR, IMAGES_DIR, ROOT_DOC, ROOT_SIG, SHA256SUMS};
use crate::bundle::source::file_name;
use crate::bundle::tar_stream::TarStream;
use crate::digest::{Digest, HashingReader};
use crate::error::{with_hint, HintExt};
use crate::sign::{self, StreamVerifier};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use minisign::PublicKey;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;

/// Largest accepted root document.
pub const MAX_ROOT_DOC: u64 = 16 << 20;
/// Largest accepted `SHA256SUMS`.
const MAX_SUMS: u64 = 256 << 20;
/// Largest zstd window accepted (the writer uses 2^21; a hostile frame cannot make the decoder allocate more).
pub const MAX_WINDOW_LOG: u32 = crate::bundle::write::ZSTD_WINDOW_LOG + 2;
/// How much zero padding may follow the tar stream's end marker.
const MAX_TRAILER: u64 = 64 << 10;

/// The bundle's signed head: the root document, whose own signature verified with the trusted key, validated.
#[derive(Debug, Clone)]
pub struct Head {
    root: RootDoc,
    digest: Digest,
    key_id: String,
    root_bytes: Vec<u8>,
    sig_bytes: Vec<u8>,
}

impl Head {
    /// The verified, validated root document.
    pub fn root(&self) -> &RootDoc {
        &self.root
    }
    /// sha256 of the root document's bytes, computed here: identifies the bundle's content.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// Key ID (16 hex digits) of the key that signed the root document.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    pub fn into_root(self) -> RootDoc {
        self.root
    }
}

/// Receives a bundle's content while it is verified (see the module docs for the order of calls).
pub trait EntrySink {
    /// What the sink gives back once everything verified.
    type Done;
    /// The verified head and the exact bytes of the signed meta entries (`airgap.json`,
    /// `airgap.json.minisig`, `SHA256SUMS`), before any other entry.
    fn start(&mut self, _head: &Head, _meta: &[(&str, &[u8])]) -> Result<()> {
        Ok(())
    }
    /// One entry (path relative to the bundle root, e.g. `images/blobs/sha256/<hex>`, `files/bin/kubeadm`),
    /// listed in `SHA256SUMS` with exactly `size` bytes. `data` fails at its end when the bytes do not match
    /// their sha256; if the sink stops early, the reader drains and checks the rest.
    fn entry(&mut self, path: &str, size: u64, mode: u32, data: &mut dyn Read) -> Result<()>;
    /// Called only when the whole bundle verified, its signature included: make the result visible.
    fn finish(self) -> Result<Self::Done>;
}

/// A sink that keeps nothing: for `verify`.
pub struct NullSink;

impl EntrySink for NullSink {
    type Done = ();
    fn entry(&mut self, _path: &str, _size: u64, _mode: u32, _data: &mut dyn Read) -> Result<()> {
        Ok(())
    }
    fn finish(self) -> Result<()> {
        Ok(())
    }
}

/// The outcome of a successful verified read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    pub name: String,
    pub version: String,
    /// sha256 of the root document (the bundle's identity).
    pub root_digest: Digest,
    /// Entries in the archive (including `airgap.json`, its signature and `SHA256SUMS`).
    pub entries: u64,
    /// Uncompressed bytes of all entries.
    pub content_bytes: u64,
    /// Bytes of the archive (all parts).
    pub archive_size: u64,
    pub parts: usize,
    /// Key ID of the key that signed the bundle (16 hex digits, as minisign prints it).
    pub key_id: String,
    pub trusted_comment: String,
    /// A delta bundle's base (see `build::delta`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_of: Option<format::BaseRef>,
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

/// Read and verify the signed head only (the first two entries; nothing else is decompressed). For `inspect`,
/// `plan`, and the installer's kit.
pub fn read_head(source: &BundleSource, pk: &PublicKey) -> Result<Head> {
    // the archive's own signature must be there and by this key (cheap: key IDs) before anything is read
    let sig = source.signature()?;
    sign::check_signer(&sig, pk, &source.archive)?;
    source.check_parts_signature(pk)?;
    let raw: Box<dyn Read> = if source.is_split() {
        Box::new(crate::bundle::split::ConcatReader::new(source.parts.clone(), false))
    } else {
        Box::new(fs_err::File::open(&source.archive)?)
    };
    let mut ar = tar::Archive::new(decoder(raw).map_err(stream_err)?);
    let mut tar = TarStream::new(&mut ar)?;
    read_signed_head(&mut tar, pk).map_err(|e| not_trusted(source, e))
}

/// Verify while reading (see the module docs): ONE pass over the raw bytes. `sink.finish()` runs only when
/// everything verified.
pub fn read_verified<S: EntrySink>(source: &BundleSource, pk: &PublicKey, sink: S) -> Result<(Verified, S::Done)> {
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
pub fn read_verified_with_progress<S: EntrySink>(
    source: &BundleSource,
    pk: &PublicKey,
    mut sink: S,
    bar: &ProgressBar,
) -> Result<(Verified, S::Done)> {
    // Cheap checks first: a missing signature or a wrong key fails before any byte of the archive is read.
    let sig = source.signature()?;
    let verifier = StreamVerifier::new(pk, &sig, &source.archive)?;
    source.check_parts_signature(pk)?;
    bar.set_length(source.size);
    let state = Rc::new(RefCell::new(RawState { verifier: Some(verifier), bytes: 0, eof: false }));
    let tee = Tee { inner: source.raw_reader()?, state: state.clone(), bar: bar.clone() };
    let r = read_stream(source, tee, pk, &mut sink);
    bar.finish_and_clear();
    let (head, entries, content_bytes) = r.map_err(|e| explain(source, &state, e))?;
    let verifier = state.borrow_mut().verifier.take().ok_or_else(|| anyhow!("signature verifier lost"))?;
    verifier.finish()?;
    let done = sink.finish()?;
    let root_digest = head.digest.clone();
    let root = head.into_root();
    let v = Verified {
        name: root.name.clone(),
        version: root.version.clone(),
        root_digest,
        entries,
        content_bytes,
        archive_size: source.size,
        parts: source.parts.len(),
        key_id: sign::signature_key_id(&sig),
        trusted_comment: sig.trusted_comment().unwrap_or_default(),
        delta_of: root.base.clone(),
        root,
    };
    Ok((v, done))
}

/// A stream error (from zstd, tar or the file) in the middle of the read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct StreamError(io::Error);

pub(crate) fn stream_err(e: io::Error) -> anyhow::Error {
    anyhow::Error::new(StreamError(e))
}

/// The zstd decoder over a bundle's raw bytes, its window bounded.
fn decoder<R: Read>(raw: R) -> io::Result<zstd::stream::read::Decoder<'static, io::BufReader<R>>> {
    let mut d = zstd::stream::read::Decoder::new(raw)?;
    d.window_log_max(MAX_WINDOW_LOG)?;
    Ok(d)
}

/// A failure before or at the signed head: the bundle is not trusted, and nothing of it was used.
fn not_trusted(source: &BundleSource, e: anyhow::Error) -> anyhow::Error {
    if e.downcast_ref::<StreamError>().is_some() {
        return with_hint(
            e.context(format!("{} is not a readable airgap bundle", source.name())),
            "copy the bundle again from the packaging machine; `airgap verify` checks it",
        );
    }
    e.context(format!("{} is not a bundle signed by the given key; nothing of it was used", source.name()))
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

/// The first two entries: the root document and its signature, verified, then parsed and validated.
fn read_signed_head<R: Read>(tar: &mut TarStream<'_, R>, pk: &PublicKey) -> Result<Head> {
    let mut e = tar.next_entry()?.ok_or_else(|| anyhow!("the archive holds no entry"))?;
    if e.path != ROOT_DOC {
        bail!("its first entry is {}, not {ROOT_DOC}: it is not an airgap bundle", shown(&e.path));
    }
    let root_bytes = e.read_small(MAX_ROOT_DOC)?;
    let mut e = tar
        .next_entry()?
        .ok_or_else(|| anyhow!("the archive ends after {ROOT_DOC}: its root document is not signed"))?;
    if e.path != ROOT_SIG {
        return Err(anyhow!(
            "its second entry is {}, not {ROOT_SIG}: its root document is not signed (bundles made before schema {} have no such signature)",
            shown(&e.path),
            format::SCHEMA
        ))
        .hint("rebuild the bundle with this airgap version; nothing in an unsigned root document is trusted");
    }
    let sig_bytes = e.read_small(sign::MAX_SIGNATURE_BYTES as u64)?;
    drop(e);
    let sig = sign::verify_bytes(pk, &sig_bytes, &root_bytes, Path::new(ROOT_DOC))
        .context("its root document's signature does not verify")?;
    // Signed by the trusted key: now (and only now) the document is parsed.
    #[derive(serde::Deserialize)]
    struct SchemaOnly {
        schema: String,
    }
    let schema = serde_json::from_slice::<SchemaOnly>(&root_bytes).map(|s| s.schema).unwrap_or_default();
    if schema != format::SCHEMA {
        return Err(anyhow!("unsupported bundle schema {} (this airgap reads {})", shown(&schema), format::SCHEMA))
            .hint("use the airgap version that built the bundle, or rebuild it with this one");
    }
    let root: RootDoc = serde_json::from_slice(&root_bytes).with_context(|| format!("its {ROOT_DOC} is malformed"))?;
    let problems = format::validate(&root);
    if !problems.is_empty() {
        let more = if problems.len() > 5 { format!("\n(and {} more)", problems.len() - 5) } else { String::new() };
        return Err(anyhow!("{}{more}", problems.iter().take(5).cloned().collect::<Vec<_>>().join("\n")))
            .context(format!("its signed {ROOT_DOC} holds values airgap refuses to act on"))
            .hint("the bundle was made by a faulty or hostile packaging run although it carries the trusted key's signature: do not use it, and check who holds that key");
    }
    Ok(Head { digest: Digest::of_bytes(&root_bytes), key_id: sign::signature_key_id(&sig), root, root_bytes, sig_bytes })
}

fn read_stream<S: EntrySink>(source: &BundleSource, tee: Tee, pk: &PublicKey, sink: &mut S) -> Result<(Head, u64, u64)> {
    let mut ar = tar::Archive::new(decoder(tee).map_err(stream_err)?);
    let mut tar = TarStream::new(&mut ar)?;

    // 1. The signed head.
    let head = read_signed_head(&mut tar, pk).map_err(|e| not_trusted(source, e))?;
    let root = head.root();

    // 2. SHA256SUMS, pinned by the head.
    let mut e = tar
        .next_entry()?
        .ok_or_else(|| anyhow!("missing entry {SHA256SUMS} (the archive ends after {ROOT_SIG})"))?;
    if e.path != SHA256SUMS {
        bail!("the third entry is {}, expected {SHA256SUMS}", shown(&e.path));
    }
    let want = root.sizes.get(SHA256SUMS).copied().unwrap_or_default();
    if e.size != want {
        bail!("entry {SHA256SUMS} declares {} bytes, but the signed {ROOT_DOC} says {want}", e.size);
    }
    let sums_bytes = e.read_small(MAX_SUMS)?;
    drop(e);
    let got = Digest::of_bytes(&sums_bytes);
    if got.hex() != root.sha256sums {
        bail!("entry {SHA256SUMS} is damaged: sha256 {}, but {ROOT_DOC} says {}", got.hex(), root.sha256sums);
    }
    let mut expected = parse_sums(&sums_bytes)?;
    cross_check(root, &expected)?;
    let mut count = 3u64;
    let mut content_bytes = (head.root_bytes.len() + head.sig_bytes.len() + sums_bytes.len()) as u64;
    sink.start(&head, &[(ROOT_DOC, &head.root_bytes), (ROOT_SIG, &head.sig_bytes), (SHA256SUMS, &sums_bytes)])?;

    // 3. Every other entry, each listed once in SHA256SUMS, with its signed size, matching its digest.
    while let Some(mut e) = tar.next_entry()? {
        let path = e.path.clone();
        let (digest, seen) = match expected.get_mut(&path) {
            Some(x) => x,
            None if [ROOT_DOC, ROOT_SIG, SHA256SUMS].contains(&path.as_str()) => bail!("duplicate entry {path}"),
            None => bail!("unexpected entry {}: it is not listed in {SHA256SUMS}", shown(&path)),
        };
        if *seen {
            bail!("duplicate entry {path}: it appears twice in the archive");
        }
        *seen = true;
        let size = root.sizes[&path];
        if e.size != size {
            bail!("entry {path} declares {} bytes, but the signed {ROOT_DOC} says {size}", e.size);
        }
        let mode = e.mode;
        let mut hr = HashingReader::expecting(e.reader(), digest.clone(), Some(size));
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

    // 4. The rest of the stream: a little of tar's zero padding, then the end of the zstd data and of the file.
    let mut dec = ar.into_inner();
    let mut rest = (&mut dec).take(MAX_TRAILER + 1);
    let mut buf = vec![0u8; 16 * 1024];
    let mut trailer = 0u64;
    loop {
        let n = rest.read(&mut buf).map_err(stream_err)?;
        if n == 0 {
            break;
        }
        trailer += n as u64;
        if buf[..n].iter().any(|b| *b != 0) || trailer > MAX_TRAILER {
            bail!("the archive holds data after the end of its tar stream");
        }
    }
    let mut tee = dec.finish().into_inner();
    io::copy(&mut tee, &mut io::sink()).map_err(stream_err)?;
    Ok((head, count, content_bytes))
}

/// Parse `SHA256SUMS` into path → (digest, seen). A blob's name must be its digest.
fn parse_sums(bytes: &[u8]) -> Result<BTreeMap<String, (Digest, bool)>> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("entry {SHA256SUMS} is not UTF-8"))?;
    let blobs = format!("{IMAGES_DIR}/blobs/sha256/");
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let ctx = || format!("line {} of {SHA256SUMS} is malformed: {}", i + 1, shown(line));
        let (hex, path) = line.split_once("  ").ok_or_else(|| anyhow!("expected `<sha256>  <path>`")).with_context(ctx)?;
        let d = Digest::from_hex(hex).with_context(ctx)?;
        let p = crate::fsutil::safe_relative_path(path).with_context(ctx)?;
        if p != path || [ROOT_DOC, ROOT_SIG, SHA256SUMS].contains(&p.as_str()) {
            return Err(anyhow!("path {} cannot be listed", shown(path))).with_context(ctx);
        }
        if let Some(name) = p.strip_prefix(&blobs) {
            if name != d.hex() {
                return Err(anyhow!("the blob named {} has digest {d}: a blob's name must be its digest", shown(name)))
                    .with_context(ctx);
            }
        }
        if out.insert(p, (d, false)).is_some() {
            bail!("{SHA256SUMS} lists {} twice", shown(path));
        }
    }
    Ok(out)
}

/// The root document and `SHA256SUMS` must agree: every file, package and image blob the root names is listed
/// with the same sha256 and size, and the root gives the size of exactly the entries listed.
fn cross_check(root: &RootDoc, sums: &BTreeMap<String, (Digest, bool)>) -> Result<()> {
    let check = |path: String, sha: &str, size: Option<u64>, what: &str| -> Result<()> {
        match sums.get(&path) {
            Some((d, _)) if d.hex() != sha => {
                bail!("{ROOT_DOC} gives {what} {path} sha256 {sha}, but {SHA256SUMS} says {}", d.hex())
            }
            Some(_) if size.is_some_and(|s| root.sizes.get(&path) != Some(&s)) => {
                bail!("{ROOT_DOC} gives {what} {path} a size that disagrees with its own sizes list")
            }
            Some(_) => Ok(()),
            None => bail!("{ROOT_DOC} lists {what} {path}, but {SHA256SUMS} does not"),
        }
    };
    for f in &root.files {
        check(format!("{FILES_DIR}/{}", f.path), &f.sha256, Some(f.size), "file")?;
    }
    for p in &root.packages {
        check(format!("{FILES_DIR}/{}", p.path), &p.sha256, Some(p.size), "package")?;
    }
    // a delta carries only the image manifests its base lacks
    for i in root.images.iter().filter(|i| root.base.is_none() || sums.contains_key(&format!("{IMAGES_DIR}/{}", i.digest.blob_path()))) {
        check(format!("{IMAGES_DIR}/{}", i.digest.blob_path()), i.digest.hex(), None, "the manifest of image")
            .with_context(|| format!("image {} is inconsistent", i.reference))?;
    }
    for p in ["oci-layout", "index.json"] {
        if !sums.contains_key(&format!("{IMAGES_DIR}/{p}")) {
            bail!("{SHA256SUMS} does not list {IMAGES_DIR}/{p}");
        }
    }
    let sized = root.sizes.keys().filter(|k| *k != SHA256SUMS);
    if !sized.clone().eq(sums.keys()) || !root.sizes.contains_key(SHA256SUMS) {
        let unsized_ = sums.keys().find(|k| !root.sizes.contains_key(*k));
        let unlisted = sized.clone().find(|k| !sums.contains_key(*k));
        bail!(
            "{ROOT_DOC}'s sizes and {SHA256SUMS} list different entries ({})",
            match (unsized_, unlisted) {
                (Some(p), _) => format!("{p} has no size"),
                (_, Some(p)) => format!("{} is not in {SHA256SUMS}", shown(p)),
                _ => format!("no size for {SHA256SUMS}"),
            }
        );
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
    fn sums_are_parsed_strictly() {
        let d = "a".repeat(64);
        let ok = format!("{d}  files/a\n{d}  images/index.json\n{d}  images/blobs/sha256/{d}\n");
        assert_eq!(parse_sums(ok.as_bytes()).unwrap().len(), 3);
        for bad in [
            format!("{d} files/a\n"),
            format!("{d}  ../a\n"),
            format!("{d}  /a\n"),
            format!("{d}  files/a\n{d}  files/a\n"),
            format!("{d}  airgap.json\n"),
            format!("{d}  airgap.json.minisig\n"),
            format!("{}  files/a\n", "A".repeat(64)),
            format!("{d}  files//a\n"),
            format!("{d}  images/blobs/sha256/{}\n", "b".repeat(64)),
        ] {
            assert!(parse_sums(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
    }
}
