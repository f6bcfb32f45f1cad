//! Writing a bundle: tar entries in the fixed order of the format, zstd (multithreaded, fixed parameters),
//! a minisign signature over the archive, optional split into parts. Streams every blob from disk, hashing
//! while it goes; nothing is held whole in memory.
//!
//! CONTRACT (used by `build`; do not change the signatures without updating every caller):
//! `write_bundle(&BundleContent, &SecretKey, &WriteOptions) -> Result<Written>`; with a progress bar:
//! `write_bundle_with_progress(.., &ProgressBar)` (length set here, advanced by content bytes written); with
//! blobs still arriving: `write_bundle_gated(.., &ProgressBar, ready)` (`ready(digest)` returns once the blob
//! is at its path, or fails the write).

use crate::bundle::format::{self, RootDoc, FILES_DIR, IMAGES_DIR, ROOT_DOC, ROOT_SIG, SHA256SUMS, ZSTD_LEVEL};
use crate::bundle::split::{self, PartInfo, PartsWriter};
use crate::digest::{Digest, Hasher, HashingReader};
use crate::fsutil::WritebackFile;
use crate::sign::{self, Prehasher};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use minisign::SecretKey;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The mode of everything a build writes (archive or parts, lists, signatures): files to copy to a USB stick
/// and read by whoever installs, whatever the umask of the packaging machine.
pub const PUBLISHED_MODE: u32 = 0o644;

/// Everything a bundle holds, with the bytes still on disk (in the download cache).
#[derive(Debug, Clone)]
pub struct BundleContent {
    /// The root document; `sha256sums` is filled in by the writer.
    pub root: RootDoc,
    /// The bytes of `images/index.json` (one descriptor per image, `org.opencontainers.image.ref.name`
    /// annotation = the reference as written in the manifest).
    pub index_json: Vec<u8>,
    /// Every blob of the image layout (manifests, indexes, configs, layers), each digest once, in any order.
    pub blobs: Vec<BlobSource>,
    /// Every file (packages included), in any order.
    pub files: Vec<FileSource>,
}

#[derive(Debug, Clone)]
pub struct BlobSource {
    pub digest: Digest,
    pub size: u64,
    /// Where the blob's bytes are (re-hashed while written: a corrupted cache entry fails the build).
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct FileSource {
    /// Path under `files/` in the bundle (already checked with `fsutil::safe_relative_path`).
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
    /// 0o644 or 0o755.
    pub mode: u32,
    pub source: PathBuf,
}

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Output directory; the archive is `<name>-<version>.tar.zst` inside it.
    pub out_dir: PathBuf,
    /// Split into parts of at most this many bytes.
    pub split_size: Option<u64>,
    /// zstd worker threads (>= 1; the output does not depend on the count).
    pub zstd_workers: u32,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// The whole archive, or (when split) the name the parts share (`X.tar.zst`, which then does not exist).
    pub archive: PathBuf,
    pub signature: PathBuf,
    /// `X.tar.zst.000`... when split; empty otherwise.
    pub parts: Vec<PathBuf>,
    /// Size and sha256 of the whole archive.
    pub size: u64,
    pub sha256: Digest,
    /// sha256 of the root document (`airgap.json`): the bundle's identity, the base a delta names.
    pub root_sha256: Digest,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            out_dir: PathBuf::from("."),
            split_size: None,
            zstd_workers: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
        }
    }
}

/// Content of `images/oci-layout`.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// zstd window log (the level's own default, pinned so the output never depends on the input size hint).
pub const ZSTD_WINDOW_LOG: u32 = 21;

/// The archive's file name for a root document: `<name>-<version>.tar.zst`.
pub fn archive_name(root: &RootDoc) -> Result<String> {
    for (what, v) in [("name", &root.name), ("version", &root.version)] {
        if v.is_empty() || v.contains(['/', '\\', '\0']) || v.starts_with('.') || v.chars().any(char::is_whitespace) {
            bail!("the bundle {what} {v:?} cannot be used in a file name (no slashes, spaces, or leading dot)");
        }
    }
    Ok(format!("{}-{}.tar.zst", root.name, root.version))
}

/// The trusted comment of a bundle signature (deterministic: no timestamp).
pub fn trusted_comment(root: &RootDoc, file_name: &str) -> String {
    format!("airgap bundle {} {} {}", root.name, root.version, file_name)
}

/// The trusted comment of the root document's own signature (deterministic).
pub fn root_trusted_comment(root: &RootDoc) -> String {
    format!("airgap root document {} {}", root.name, root.version)
}

/// Write a bundle (see the module docs); no progress shown.
pub fn write_bundle(content: &BundleContent, sk: &SecretKey, opts: &WriteOptions) -> Result<Written> {
    write_bundle_with_progress(content, sk, opts, &ProgressBar::hidden())
}

/// One archive entry, in order.
enum Item<'a> {
    Bytes { path: String, data: Vec<u8> },
    Blob(&'a BlobSource),
    File(&'a FileSource),
}

/// What will be written, in archive order, with `SHA256SUMS` and the root document computed up front.
struct Plan<'a> {
    items: Vec<Item<'a>>,
    total_bytes: u64,
    root_sha256: Digest,
}

impl<'a> Plan<'a> {
    fn new(content: &'a BundleContent, sk: &SecretKey) -> Result<Self> {
        let mut sums: BTreeMap<String, Digest> = BTreeMap::new();
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        let layout_path = format!("{IMAGES_DIR}/oci-layout");
        let index_path = format!("{IMAGES_DIR}/index.json");
        sums.insert(layout_path.clone(), Digest::of_bytes(OCI_LAYOUT));
        sums.insert(index_path.clone(), Digest::of_bytes(&content.index_json));
        sizes.insert(layout_path.clone(), OCI_LAYOUT.len() as u64);
        sizes.insert(index_path.clone(), content.index_json.len() as u64);

        let mut blobs: BTreeMap<String, &BlobSource> = BTreeMap::new();
        for b in &content.blobs {
            let path = format!("{IMAGES_DIR}/{}", b.digest.blob_path());
            match blobs.get(&path) {
                Some(prev) if prev.size != b.size => {
                    bail!("blob {} is listed twice with different sizes ({} and {})", b.digest, prev.size, b.size)
                }
                Some(_) => continue,
                None => {
                    sums.insert(path.clone(), b.digest.clone());
                    sizes.insert(path.clone(), b.size);
                    blobs.insert(path, b);
                }
            }
        }
        let mut files: BTreeMap<String, &FileSource> = BTreeMap::new();
        for f in &content.files {
            let rel = crate::fsutil::safe_relative_path(&f.path).with_context(|| format!("bad file path {:?}", f.path))?;
            if rel != f.path {
                bail!("file path {:?} is not in normal form (expected {rel:?})", f.path);
            }
            if f.mode != 0o644 && f.mode != 0o755 {
                bail!("file {} has mode {:o}; only 644 and 755 are allowed", f.path, f.mode);
            }
            let path = format!("{FILES_DIR}/{rel}");
            if files.insert(path.clone(), f).is_some() {
                bail!("file {} is listed twice", f.path);
            }
            sums.insert(path.clone(), f.sha256.clone());
            sizes.insert(path, f.size);
        }
        // The root document must agree with the content (the reader cross-checks the same).
        let root = &content.root;
        for fe in &root.files {
            let f = files
                .get(&format!("{FILES_DIR}/{}", fe.path))
                .ok_or_else(|| anyhow!("the root document lists file {} but no content was given for it", fe.path))?;
            if f.sha256.hex() != fe.sha256 || f.size != fe.size || f.mode != fe.mode {
                bail!("the root document's entry for file {} disagrees with its content (sha256/size/mode)", fe.path);
            }
        }
        for pe in &root.packages {
            let f = files
                .get(&format!("{FILES_DIR}/{}", pe.path))
                .ok_or_else(|| anyhow!("the root document lists package {} but no content was given for it", pe.path))?;
            if f.sha256.hex() != pe.sha256 || f.size != pe.size {
                bail!("the root document's entry for package {} disagrees with its content", pe.path);
            }
        }
        // a delta lists every image of its release, but the manifests its base holds are not in it
        for ie in root.images.iter().filter(|_| root.base.is_none()) {
            if !blobs.contains_key(&format!("{IMAGES_DIR}/{}", ie.digest.blob_path())) {
                bail!("image {} ({}) has no blob in the bundle content", ie.reference, ie.digest);
            }
        }

        let sums_text: String = sums.iter().map(|(p, d)| format::sha256sums_line(d.hex(), p)).collect();
        sizes.insert(SHA256SUMS.to_string(), sums_text.len() as u64);
        let mut root = root.clone();
        root.schema = format::SCHEMA.to_string();
        root.sha256sums = Digest::of_bytes(sums_text.as_bytes()).hex().to_string();
        root.sizes = sizes;
        // A bundle that readers would refuse is not written.
        let problems = format::validate(&root);
        if !problems.is_empty() {
            bail!("the bundle's root document would be invalid:\n{}", problems.join("\n"));
        }
        let mut root_json = serde_json::to_vec_pretty(&root).context("failed to serialize the root document")?;
        root_json.push(b'\n');
        let root_sig = sign::sign_prehashed(sk, &prehash_of(&root_json), &root_trusted_comment(&root))
            .context("failed to sign the root document")?;

        let root_sha256 = Digest::of_bytes(&root_json);
        let mut items = vec![
            Item::Bytes { path: ROOT_DOC.to_string(), data: root_json },
            Item::Bytes { path: ROOT_SIG.to_string(), data: root_sig.into_bytes() },
            Item::Bytes { path: SHA256SUMS.to_string(), data: sums_text.into_bytes() },
            Item::Bytes { path: layout_path, data: OCI_LAYOUT.to_vec() },
            Item::Bytes { path: index_path, data: content.index_json.clone() },
        ];
        items.extend(blobs.into_values().map(Item::Blob));
        items.extend(files.into_values().map(Item::File));
        let total_bytes = items
            .iter()
            .map(|i| match i {
                Item::Bytes { data, .. } => data.len() as u64,
                Item::Blob(b) => b.size,
                Item::File(f) => f.size,
            })
            .sum();
        Ok(Plan { items, total_bytes, root_sha256 })
    }
}

/// Write a bundle, advancing `bar` by the bytes of content written (its length is set here).
pub fn write_bundle_with_progress(
    content: &BundleContent,
    sk: &SecretKey,
    opts: &WriteOptions,
    bar: &ProgressBar,
) -> Result<Written> {
    write_bundle_gated(content, sk, opts, bar, &|_| Ok(()))
}

/// [`write_bundle_with_progress`] while the blobs are still being downloaded: before each blob, `ready`
/// waits until it is at its path (or fails, failing the write). Only sizes and digests are needed up front.
pub fn write_bundle_gated(
    content: &BundleContent,
    sk: &SecretKey,
    opts: &WriteOptions,
    bar: &ProgressBar,
    ready: &dyn Fn(&Digest) -> Result<()>,
) -> Result<Written> {
    let plan = Plan::new(content, sk)?;
    let name = archive_name(&content.root)?;
    if opts.split_size == Some(0) {
        bail!("the split size must be at least 1 byte");
    }
    fs_err::create_dir_all(&opts.out_dir).context("failed to create the output directory")?;
    // Everything is written into a staging directory beside the output and moved in at the end, the whole
    // archive's signature last: a failed build never leaves a bundle that looks complete.
    let staging = tempfile::Builder::new()
        .prefix(".airgap-build-")
        .tempdir_in(&opts.out_dir)
        .with_context(|| format!("failed to create a staging directory in {}", opts.out_dir.display()))?;
    bar.set_length(plan.total_bytes);

    let sink = match opts.split_size {
        None => {
            let f = fs_err::File::create(staging.path().join(&name))?;
            f.set_permissions(std::fs::Permissions::from_mode(PUBLISHED_MODE))?;
            Sink::File(io::BufWriter::with_capacity(1 << 20, WritebackFile::new(f)?))
        }
        Some(limit) => Sink::Parts(PartsWriter::new(staging.path(), &name, limit)?),
    };
    let tee = HashTee { inner: sink, sha: Hasher::new(), pre: Prehasher::new() };
    let mut enc = zstd::stream::write::Encoder::new(tee, ZSTD_LEVEL).context("failed to start zstd")?;
    configure_encoder(&mut enc, opts.zstd_workers)?;
    let mut tar = tar::Builder::new(enc);
    // phase timings, for `-v` (where a build's time goes)
    let t = std::time::Instant::now();
    let mut waited = std::time::Duration::ZERO;
    for item in &plan.items {
        if let Item::Blob(b) = item {
            let w = std::time::Instant::now();
            ready(&b.digest)?;
            waited += w.elapsed();
        }
        write_item(&mut tar, item, bar)?;
    }
    let entries = t.elapsed();
    let enc = tar.into_inner().context("failed to finish the tar stream")?;
    let tee = enc.finish().context("failed to finish the zstd stream")?;
    let compressed = t.elapsed();
    let HashTee { inner, sha, pre } = tee;
    let (sha256, size) = sha.finish();
    let parts = inner.finish()?;
    tracing::debug!(
        "bundle written: entries {:.2}s (waiting for downloads {:.2}s), end of zstd {:.2}s, fsync {:.2}s",
        entries.as_secs_f64(),
        waited.as_secs_f64(),
        (compressed - entries).as_secs_f64(),
        (t.elapsed() - compressed).as_secs_f64()
    );

    let comment = trusted_comment(&content.root, &name);
    let sig_text = sign::sign_prehashed(sk, &pre.finish(), &comment).context("failed to sign the bundle")?;
    let staged_sig = staging.path().join(format!("{name}{}", sign::SIG_SUFFIX));
    {
        let mut f = fs_err::File::create(&staged_sig)?;
        f.set_permissions(std::fs::Permissions::from_mode(PUBLISHED_MODE))?;
        f.write_all(sig_text.as_bytes())?;
        f.sync_all()?;
    }

    let out = &opts.out_dir;
    let archive = out.join(&name);
    let signature = sign::signature_path(&archive);
    let parts_list_path = out.join(format!("{name}{}", split::PARTS_SUFFIX));
    // Remove this bundle's previous outputs first (signature first), so no stale piece survives next to new ones.
    remove_if_exists(&signature)?;
    remove_if_exists(&sign::signature_path(&parts_list_path))?;
    remove_if_exists(&parts_list_path)?;
    remove_if_exists(&archive)?;
    for i in 0..split::MAX_PARTS {
        let p = out.join(split::part_name(&name, i));
        if !p.exists() {
            break;
        }
        remove_if_exists(&p)?;
    }

    let mut final_parts = Vec::new();
    match parts {
        None => {
            crate::fsutil::rename_durable(&staging.path().join(&name), &archive)?;
        }
        Some(parts) => {
            for p in &parts {
                let file_name = p.path.file_name().ok_or_else(|| anyhow!("part without a name"))?;
                let dest = out.join(file_name);
                crate::fsutil::rename_durable(&p.path, &dest)?;
                final_parts.push(dest);
            }
            let list = split::parts_list(&parts);
            let list_name = format!("{name}{}", split::PARTS_SUFFIX);
            let list_sig = sign::sign_prehashed(sk, &prehash_of(list.as_bytes()), &trusted_comment(&content.root, &list_name))
                .context("failed to sign the parts list")?;
            let published = crate::fsutil::Mode::Set(PUBLISHED_MODE);
            crate::fsutil::atomic_write(&parts_list_path, list.as_bytes(), published)?;
            crate::fsutil::atomic_write(&sign::signature_path(&parts_list_path), list_sig.as_bytes(), published)?;
        }
    }
    crate::fsutil::rename_durable(&staged_sig, &signature)?;
    bar.finish_and_clear();
    Ok(Written { archive, signature, parts: final_parts, size, sha256, root_sha256: plan.root_sha256 })
}

fn prehash_of(data: &[u8]) -> [u8; sign::PREHASH_BYTES] {
    let mut p = Prehasher::new();
    p.update(data);
    p.finish()
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match fs_err::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("failed to remove the previous bundle output"),
    }
}

/// Fixed zstd parameters: level, window, content checksum, no content size, and >= 1 worker (multithreaded
/// zstd gives the same bytes for any worker count >= 1, but different bytes from single-threaded mode).
pub fn configure_encoder<W: Write>(enc: &mut zstd::stream::write::Encoder<'_, W>, workers: u32) -> Result<()> {
    enc.include_checksum(true).context("failed to set zstd checksum")?;
    enc.include_contentsize(false).context("failed to set zstd content size")?;
    enc.window_log(ZSTD_WINDOW_LOG).context("failed to set zstd window")?;
    enc.long_distance_matching(false).context("failed to set zstd long distance matching")?;
    enc.multithread(workers.max(1)).context("failed to enable zstd worker threads")?;
    Ok(())
}

/// A fixed tar header for a regular file.
pub fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn write_item<W: Write>(tar: &mut tar::Builder<W>, item: &Item<'_>, bar: &ProgressBar) -> Result<()> {
    match item {
        Item::Bytes { path, data } => {
            let mut h = file_header(data.len() as u64, 0o644);
            tar.append_data(&mut h, path, &data[..]).with_context(|| format!("failed to write entry {path}"))?;
            bar.inc(data.len() as u64);
        }
        Item::Blob(b) => {
            let path = format!("{IMAGES_DIR}/{}", b.digest.blob_path());
            append_source(tar, &path, &b.path, &b.digest, b.size, 0o644, bar)
                .with_context(|| format!("failed to add blob {} from {}", b.digest, b.path.display()))?;
        }
        Item::File(f) => {
            let path = format!("{FILES_DIR}/{}", f.path);
            append_source(tar, &path, &f.source, &f.sha256, f.size, f.mode, bar)
                .with_context(|| format!("failed to add file {} from {}", f.path, f.source.display()))?;
        }
    }
    Ok(())
}

fn append_source<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    source: &Path,
    digest: &Digest,
    size: u64,
    mode: u32,
    bar: &ProgressBar,
) -> Result<()> {
    let f = fs_err::File::open(source)?;
    let buffered = bar.wrap_read(io::BufReader::with_capacity(1 << 20, f));
    let mut reader = HashingReader::expecting(buffered, digest.clone(), Some(size));
    let mut h = file_header(size, mode);
    tar.append_data(&mut h, path, &mut reader).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            anyhow!("{e}").context(format!("{} is corrupted (it no longer matches its digest)", source.display()))
        } else {
            anyhow::Error::from(e)
        }
    })?;
    // A short source is caught by the HashingReader at EOF (size mismatch); make sure EOF was reached.
    if reader.result().is_none() {
        bail!("{} was not read to its end", source.display());
    }
    Ok(())
}

/// Where compressed bytes go: one file (flushed to disk while it grows), or parts.
enum Sink {
    File(io::BufWriter<WritebackFile>),
    Parts(PartsWriter),
}

impl Sink {
    /// Flush and sync; the parts when split.
    fn finish(self) -> Result<Option<Vec<PartInfo>>> {
        match self {
            Sink::File(w) => {
                let f = w.into_inner().map_err(|e| e.into_error()).context("failed to write the archive")?.into_file();
                f.sync_all().context("failed to sync the archive")?;
                Ok(None)
            }
            Sink::Parts(p) => Ok(Some(p.finish()?)),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(w) => w.write(buf),
            Sink::Parts(p) => p.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(w) => w.flush(),
            Sink::Parts(p) => p.flush(),
        }
    }
}

/// Hashes the compressed stream (sha256 and the minisign prehash) while passing it on.
struct HashTee<W> {
    inner: W,
    sha: Hasher,
    pre: Prehasher,
}

impl<W: Write> Write for HashTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.pre.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
