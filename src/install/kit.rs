//! The node kit: what each node needs from the bundle besides the images — its OS's packages and its
//! platform's components (containerd, runc, CNI plugins, crictl, kubeadm, kubelet, kubectl) — extracted on
//! the deploy machine from the VERIFIED bundle (signature + every checksum), then copied to each node with
//! the sha256 of the bundle's root document checked on arrival. Only the registry workers receive the whole
//! bundle (to load its images); the other nodes get the few files they use.
//!
//! Which files a node gets depends on its OS and machine ([`Target`], from the facts gathered when the
//! install connects); without facts (`plan`), the node's copies are shown as placeholders.

use crate::bundle::format::{FileEntry, PackageEntry, RootDoc};
use crate::bundle::read::{read_root, read_verified, EntrySink};
use crate::bundle::unpack::DirSink;
use crate::bundle::source::BundleSource;
use crate::error::HintExt;
use crate::node::components::Component;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a node keeps the component files: `REMOTE_FILES_DIR/<path under files/>`.
pub const REMOTE_FILES_DIR: &str = "/opt/airgap/files";

/// What a node is, for choosing its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub family: crate::node::OsFamily,
    /// Its OS tags, most specific first (`debian-12.5`, `debian-12`...).
    pub os_tags: Vec<String>,
    /// `linux/amd64`...
    pub platform: String,
}

impl Target {
    pub fn from_facts(f: &crate::node::facts::Facts) -> Target {
        let (family, os_tags) = crate::node::packages::os_tags_for(&f.os_id, &f.os_like, &f.os_version);
        Target { family, os_tags, platform: platform_of_machine(&f.arch) }
    }
}

/// `uname -m` → the OCI platform name (`x86_64` → `linux/amd64`).
pub fn platform_of_machine(machine: &str) -> String {
    let arch = match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv7" => "arm/v7",
        "i686" | "i386" => "386",
        other => other,
    };
    format!("linux/{arch}")
}

/// The bundle's root document and where its files are (or will be) extracted on this machine.
pub struct Kit {
    pub root: RootDoc,
    /// `<state dir>/kit/<sha256 of SHA256SUMS>`: holds `files/...` once [`Kit::extract`] ran.
    pub dir: PathBuf,
    archive: PathBuf,
}

impl Kit {
    /// Read the root document (the first entry; nothing else is decompressed). Its content is trusted for
    /// copies only after [`Kit::extract`] verified the whole bundle.
    pub fn open(archive: &Path, state_dir: &Path) -> Result<Kit> {
        let source = BundleSource::open(archive)?;
        let root = read_root(&source)?;
        let dir = state_dir.join("kit").join(&root.sha256sums);
        Ok(Kit { root, dir, archive: archive.to_path_buf() })
    }

    /// A kit for a root document whose files are (to be) under `dir` (tests, plans).
    pub fn from_root(root: RootDoc, dir: PathBuf) -> Kit {
        Kit { root, dir, archive: PathBuf::new() }
    }

    /// Verify the bundle (signature + every checksum) and extract its `files/` (packages + components),
    /// unless already done for this very bundle. Older kits in the state dir are removed.
    pub fn extract(&self, pubkey: &Path) -> Result<()> {
        let marker = self.dir.join(".complete");
        if marker.is_file() {
            return Ok(());
        }
        let parent = self.dir.parent().context("the kit directory has no parent")?;
        fs_err::create_dir_all(parent)?;
        for old in fs_err::read_dir(parent)? {
            let p = old?.path();
            if p != self.dir {
                let _ = fs_err::remove_dir_all(&p);
            }
        }
        let tmp = parent.join(format!(".{}.tmp", self.root.sha256sums));
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        let pk = crate::sign::load_public_key(pubkey)?;
        fs_err::create_dir_all(&tmp)?;
        let mut sink = FilesOnly(DirSink::new(&tmp));
        let source = BundleSource::open(&self.archive)?;
        read_verified(&source, &pk, &mut sink)
            .with_context(|| format!("failed to verify the bundle {}", self.archive.display()))
            .hint("the nodes only receive files from a bundle that verified here: check the bundle and --pubkey")?;
        fs_err::write(tmp.join(".complete"), b"")?;
        if self.dir.exists() {
            fs_err::remove_dir_all(&self.dir)?;
        }
        crate::fsutil::rename_durable(&tmp, &self.dir)
    }

    /// Does the bundle carry anything for the nodes besides images (OS packages, components)?
    pub fn has_node_files(&self) -> bool {
        !self.root.packages.is_empty() || self.root.files.iter().any(|f| f.install.is_some())
    }

    /// The local path of a bundle file (`path` under `files/`).
    pub fn local(&self, path: &str) -> PathBuf {
        self.dir.join("files").join(path)
    }

    /// The OS tag the bundle carries packages for that this node takes (its most specific), and those packages.
    pub fn packages_for<'a>(&'a self, t: &'a Target) -> Option<(&'a str, Vec<&'a PackageEntry>)> {
        let tag = t.os_tags.iter().find(|tag| self.root.packages.iter().any(|p| &p.os == *tag))?;
        Some((tag.as_str(), self.root.packages.iter().filter(|p| &p.os == tag).collect()))
    }

    /// The OS tags the bundle has packages for.
    pub fn package_tags(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.root.packages.iter().map(|p| p.os.as_str()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Does the bundle carry this component (for any platform)?
    pub fn has_component(&self, c: Component) -> bool {
        self.root.files.iter().any(|f| f.install == Some(c))
    }

    /// The file of component `c` for this platform (a per-platform file, or one for every platform).
    pub fn component_for(&self, c: Component, platform: &str) -> Option<&FileEntry> {
        let of = |f: &&FileEntry| f.install == Some(c);
        self.root
            .files
            .iter()
            .filter(of)
            .find(|f| f.platform.as_deref() == Some(platform))
            .or_else(|| self.root.files.iter().filter(of).find(|f| f.platform.is_none()))
    }

    /// Every component file this platform takes.
    pub fn components_for(&self, platform: &str) -> Vec<(Component, &FileEntry)> {
        Component::ALL.into_iter().filter_map(|c| self.component_for(c, platform).map(|f| (c, f))).collect()
    }
}

/// Unpacks only the entries under `files/` (the reader verifies each against `SHA256SUMS`, which it has
/// cross-checked with the root document); the images stay in the bundle.
struct FilesOnly(DirSink);

impl EntrySink for FilesOnly {
    fn entry(&mut self, path: &str, size: u64, mode: u32, data: &mut dyn Read) -> Result<()> {
        if path.starts_with("files/") {
            self.0.entry(path, size, mode, data)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_map_to_platforms() {
        assert_eq!(platform_of_machine("x86_64"), "linux/amd64");
        assert_eq!(platform_of_machine("aarch64"), "linux/arm64");
        assert_eq!(platform_of_machine("armv7l"), "linux/arm/v7");
        assert_eq!(platform_of_machine("s390x"), "linux/s390x");
    }
}
