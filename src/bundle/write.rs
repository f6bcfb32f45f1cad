//! Writing a bundle: tar entries in the fixed order of the format, zstd (multithreaded, fixed parameters),
//! a minisign signature over the archive, optional split into parts. Streams every blob from disk, hashing
//! while it goes; nothing is held whole in memory.
//!
//! CONTRACT (used by `build`; do not change the signatures without updating every caller):

use crate::bundle::format::RootDoc;
use crate::digest::Digest;
use std::path::PathBuf;

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
}
