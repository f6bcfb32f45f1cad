//! What a bundle holds, from its signed head: the root document is shown only once its own signature verified
//! with the trusted key (the entries themselves are not read: `verify` does that).

use crate::bundle::format::{BaseRef, FileEntry, ImageEntry, PackageEntry};
use crate::bundle::read::{self, BundleSource};
use crate::bundle::source::file_name;
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub bundle: String,
    /// Always true: the root document's own signature verified with the given key before anything was shown.
    pub root_signature_verified: bool,
    /// sha256 of the root document (identifies the bundle's content).
    pub root_digest: String,
    /// Always false: inspect reads the signed head only, not the entries. Use `airgap verify`.
    pub entries_verified: bool,
    pub name: String,
    pub version: String,
    /// Set for a delta bundle: the bundle it extends (a store must hold it before the delta is loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_of: Option<BaseRef>,
    pub platforms: Vec<String>,
    /// The Kubernetes release the bundle is for, when it says (`v1.36.3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
    pub images: Vec<ImageEntry>,
    pub files: Vec<FileEntry>,
    pub packages: Vec<PackageEntry>,
    pub totals: Totals,
    pub signature: Option<SignatureInfo>,
    pub archive: ArchiveInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub images: usize,
    pub image_bytes: u64,
    pub files: usize,
    pub file_bytes: u64,
    pub packages: usize,
    pub package_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureInfo {
    pub key_id: String,
    pub trusted_comment: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveInfo {
    pub size: u64,
    pub parts: Vec<PartSize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartSize {
    pub name: String,
    pub size: u64,
}

pub fn summarize(source: &BundleSource, pk: &minisign::PublicKey) -> Result<Summary> {
    let head = read::read_head(source, pk)?;
    let root_digest = head.digest().to_string();
    let root = head.into_root();
    let signature = source.signature().ok().map(|s| SignatureInfo {
        key_id: crate::sign::signature_key_id(&s),
        trusted_comment: s.trusted_comment().unwrap_or_default(),
    });
    let totals = Totals {
        images: root.images.len(),
        image_bytes: root.images.iter().map(|i| i.size).sum(),
        files: root.files.len(),
        file_bytes: root.files.iter().map(|f| f.size).sum(),
        packages: root.packages.len(),
        package_bytes: root.packages.iter().map(|p| p.size).sum(),
    };
    Ok(Summary {
        bundle: source.name(),
        root_signature_verified: true,
        root_digest,
        entries_verified: false,
        name: root.name,
        version: root.version,
        delta_of: root.base,
        platforms: root.platforms,
        kubernetes: root.kubernetes.map(|k| k.version),
        images: root.images,
        files: root.files,
        packages: root.packages,
        totals,
        signature,
        archive: ArchiveInfo {
            size: source.size,
            parts: source.parts.iter().map(|p| PartSize { name: file_name(&p.path), size: p.size }).collect(),
        },
    })
}

pub use crate::output::human_bytes;

/// The human table.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "bundle:    {} (signed root document verified; entries not read: `airgap verify` checks them)", s.bundle);
    let _ = writeln!(o, "name:      {}", s.name);
    let _ = writeln!(o, "version:   {}", s.version);
    if let Some(b) = &s.delta_of {
        let _ = writeln!(o, "delta of:  {}", b.describe());
        let _ = writeln!(o, "           a delta bundle: it carries only the blobs and files its base lacks; load it into a store holding the base");
    }
    let _ = writeln!(o, "platforms: {}", s.platforms.join(", "));
    if let Some(k) = &s.kubernetes {
        let _ = writeln!(o, "kubernetes: {k}");
    }
    match &s.signature {
        Some(sig) => {
            let _ = writeln!(o, "signed by: key {} ({})", sig.key_id, sig.trusted_comment.escape_debug());
        }
        None => {
            let _ = writeln!(o, "signed by: (no signature file found)");
        }
    }
    if s.archive.parts.is_empty() {
        let _ = writeln!(o, "archive:   {}", human_bytes(s.archive.size));
    } else {
        let _ = writeln!(o, "archive:   {} in {} parts", human_bytes(s.archive.size), s.archive.parts.len());
        for p in &s.archive.parts {
            let _ = writeln!(o, "  {}  {}", p.name, human_bytes(p.size));
        }
    }
    let _ = writeln!(o, "\nimages ({}, {}):", s.totals.images, human_bytes(s.totals.image_bytes));
    for i in &s.images {
        let _ = writeln!(o, "  {}\n    {}  {}  [{}]", i.reference, i.digest, human_bytes(i.size), i.platforms.join(", "));
    }
    let carried = if s.delta_of.is_some() { ", those new or changed since the base" } else { "" };
    let _ = writeln!(o, "\nfiles ({}, {}{carried}):", s.totals.files, human_bytes(s.totals.file_bytes));
    for f in &s.files {
        let role = f.manifest.map(|r| format!("  (manifest: {r})")).unwrap_or_default();
        let _ = writeln!(o, "  {:<40} {:>10}  {:o}  sha256:{}{role}", f.path, human_bytes(f.size), f.mode, f.sha256);
    }
    if !s.packages.is_empty() {
        let _ = writeln!(o, "\npackages ({}, {}):", s.totals.packages, human_bytes(s.totals.package_bytes));
        for p in &s.packages {
            let _ = writeln!(o, "  {:<10} {:<24} {:>10}  {}", p.os, p.name, human_bytes(p.size), p.path);
        }
    }
    o
}
