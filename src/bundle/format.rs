//! The bundle's on-disk format: entry names, the root document, the checksum list. Shared by the writer
//! (`build`), the reader (`verify`, `unpack`, `inspect`) and the registry loader (`load`).

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

/// Name of the root document, the first entry of every bundle.
pub const ROOT_DOC: &str = "airgap.json";
/// Name of the checksum list, the second entry.
pub const SHA256SUMS: &str = "SHA256SUMS";
/// Prefix of the OCI image layout inside the bundle.
pub const IMAGES_DIR: &str = "images";
/// Prefix of the files inside the bundle.
pub const FILES_DIR: &str = "files";
/// Schema identifier written into the root document.
pub const SCHEMA: &str = "airgap.bundle/v1";
/// The annotation carrying an image's full reference in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Fixed zstd compression level of bundles.
pub const ZSTD_LEVEL: i32 = 3;
/// The FAT32 file size limit: 4 GiB - 1 byte.
pub const FAT32_MAX: u64 = 4 * 1024 * 1024 * 1024 - 1;

/// The root document (`airgap.json`). Serialized as pretty JSON with a trailing newline, fields in this order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RootDoc {
    pub schema: String,
    pub name: String,
    pub version: String,
    /// Platforms requested in the manifest, e.g. `linux/amd64`.
    pub platforms: Vec<String>,
    pub images: Vec<ImageEntry>,
    pub files: Vec<FileEntry>,
    /// OS packages carried in the bundle (their bytes are under `files/packages/<os>/`).
    #[serde(default)]
    pub packages: Vec<PackageEntry>,
    /// sha256 (hex) of the `SHA256SUMS` entry.
    pub sha256sums: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// The reference exactly as written in the manifest (also the `ref.name` annotation in index.json).
    pub reference: String,
    /// Digest of the top-level manifest or index (the original upstream bytes).
    pub digest: Digest,
    pub media_type: String,
    /// Total bytes of this image's manifests, configs and layers in the bundle (shared blobs counted per image).
    pub size: u64,
    /// Platforms present in the bundle for this image (`linux/amd64`...); one entry for single-arch images.
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path under `files/` in the bundle.
    pub path: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// Unix mode of the file when unpacked (0o644 or 0o755).
    pub mode: u32,
    /// The node component the installer puts in place from this file (`containerd`, `kubelet`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<crate::node::components::Component>,
    /// The platform the file is for (`linux/amd64`); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackageEntry {
    /// Target OS tag, e.g. `debian-12`, `el7`.
    pub os: String,
    /// Package name (e.g. `keepalived`), as the package's control data gives it, when known.
    pub name: String,
    /// Path under `files/` in the bundle (`packages/<os>/<file name>`).
    pub path: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
}

/// Format one `SHA256SUMS` line (`<hex>  <path>\n`, text mode, as `sha256sum` writes it).
pub fn sha256sums_line(hex: &str, path: &str) -> String {
    format!("{hex}  {path}\n")
}
