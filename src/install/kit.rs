//! The node kit: what each node needs from the bundle besides the images — its OS's packages and its
//! platform's components (containerd, runc, CNI plugins, crictl, kubeadm, kubelet, kubectl) — extracted on
//! the deploy machine from the VERIFIED bundle (signature + every checksum), then copied to each node with
//! the sha256 of the bundle's root document checked on arrival. Only the registry workers receive the whole
//! bundle (to load its images); the other nodes get the few files they use.
//!
//! Which files a node gets depends on its OS and machine (its [`Target`], from the facts gathered when the
//! install connects); without facts (`plan`), the node's copies are shown as placeholders.

use crate::bundle::format::{FileEntry, PackageEntry, RootDoc};
use crate::bundle::read::{read_head, read_verified, EntrySink};
use crate::bundle::source::BundleSource;
use crate::bundle::unpack::{Keep, StagedDir};
use crate::digest::Digest;
use crate::error::HintExt;
use crate::install::facts::Target;
use crate::node::components::Component;
use anyhow::{Context, Result};
use minisign::PublicKey;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a node keeps the component files: `REMOTE_FILES_DIR/<path under files/>`.
pub const REMOTE_FILES_DIR: &str = "/opt/airgap/files";

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

/// The bundle's verified root document and where its files are (or will be) extracted on this machine.
pub struct Kit {
    root: RootDoc,
    /// sha256 of the verified root document, computed here.
    digest: Digest,
    /// `<state dir>/kit/<sha256 of the root document>`: holds `files/...` once [`Kit::extract`] ran.
    pub dir: PathBuf,
    archive: PathBuf,
}

/// The name of a kit directory or of its staging directory: 64 hex digits (the root document's sha256).
fn is_kit_name(name: &str) -> bool {
    let name = name.strip_prefix('.').unwrap_or(name);
    let hex = name.split_once(".partial-").map_or(name, |(h, _)| h);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The marker a complete kit holds: the root document's digest.
const MARKER: &str = ".complete";

impl Kit {
    /// Verify the bundle's signed head with `pk` (only the root document and its signature are read) and
    /// locate its kit under `state_dir`, keyed by the root document's sha256 computed here.
    pub fn open(archive: &Path, pk: &PublicKey, state_dir: &Path) -> Result<Kit> {
        let source = BundleSource::open(archive)?;
        let head = read_head(&source, pk)?;
        let digest = head.digest().clone();
        let dir = state_dir.join("kit").join(digest.hex());
        Ok(Kit { root: head.into_root(), digest, dir, archive: archive.to_path_buf() })
    }

    /// A kit for a root document whose files are (to be) under `dir`, for unit tests of the steps' plans.
    #[cfg(test)]
    pub fn from_root(root: RootDoc, dir: PathBuf) -> Kit {
        Kit { root, digest: Digest::of_bytes(b""), dir, archive: PathBuf::new() }
    }

    /// The verified root document.
    pub fn root(&self) -> &RootDoc {
        &self.root
    }

    /// Verify the whole bundle (signature + every checksum) and extract its `files/` (packages + components),
    /// unless a complete kit of this very root document is there and every file in it still has its sha256.
    /// Once the new kit is in place, older kits in the state dir are removed (only directories named like
    /// kits); a failed extraction leaves them, and everything else, as they were.
    pub fn extract(&self, pk: &PublicKey) -> Result<()> {
        if self.is_complete() {
            return Ok(());
        }
        let parent = self.dir.parent().context("the kit directory has no parent")?;
        fs_err::create_dir_all(parent)?;
        if self.dir.symlink_metadata().is_ok() {
            // an incomplete or damaged kit of this same bundle
            fs_err::remove_dir_all(&self.dir)?;
        }
        // the older kits go only once this one is in place: all of it must fit next to them
        check_space(parent, self.files_size(), crate::fsutil::free_bytes(parent)?)?;
        let sink = KitSink { staged: StagedDir::new(&self.dir, Keep::Files)?, digest: self.digest.clone() };
        let source = BundleSource::open(&self.archive)?;
        read_verified(&source, pk, sink)
            .with_context(|| format!("failed to verify the bundle {}", self.archive.display()))
            .hint("the nodes only receive files from a bundle that verified here: check the bundle and --pubkey")?;
        // the new kit is in place: the kits of earlier bundles go (only directories named like kits)
        for old in fs_err::read_dir(parent)? {
            let old = old?;
            if old.path() != self.dir && is_kit_name(&old.file_name().to_string_lossy()) && old.file_type()?.is_dir() {
                fs_err::remove_dir_all(old.path())?;
            }
        }
        Ok(())
    }

    /// A complete kit of this root document, every file still intact (re-hashed: cheap next to a copy).
    pub fn is_complete(&self) -> bool {
        let marker = fs_err::read_to_string(self.dir.join(MARKER)).unwrap_or_default();
        if marker.trim() != self.digest.hex() {
            return false;
        }
        let files = self.root.files.iter().map(|f| (&f.path, &f.sha256));
        let packages = self.root.packages.iter().map(|p| (&p.path, &p.sha256));
        files.chain(packages).all(|(path, sha)| matches!(Digest::of_file(&self.local(path)), Ok((d, _)) if d.hex() == sha))
    }

    /// The bytes of the bundle's `files/` (what [`Kit::extract`] writes), from the verified root document.
    pub fn files_size(&self) -> u64 {
        self.root.sizes.iter().filter(|(p, _)| p.starts_with("files/")).map(|(_, s)| s).sum()
    }

    /// Does the bundle carry anything for the nodes besides images (OS packages, components, Kubernetes
    /// manifests)? A delta bundle has none: it only updates the registry (the nodes keep their base's files).
    pub fn has_node_files(&self) -> bool {
        self.root.base.is_none()
            && (!self.root.packages.is_empty() || self.root.files.iter().any(|f| f.install.is_some() || f.manifest.is_some()))
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

    /// The Kubernetes release the bundle is for, when its root document says.
    pub fn kubernetes_version(&self) -> Option<&str> {
        self.root.kubernetes.as_ref().map(|k| k.version.as_str())
    }

    /// The inventory's `cluster.kubernetes_version` must be the bundle's release (a bundle that names none is
    /// not checked here: the Kubernetes steps check kubeadm's own version on the node).
    pub fn check_kubernetes_version(&self, inventory_version: &str) -> Result<()> {
        check_versions(inventory_version, self.kubernetes_version())
    }

    /// The bundled Kubernetes manifest of this role (`manifest: flannel`...).
    pub fn manifest(&self, role: crate::bundle::format::ManifestRole) -> Option<&FileEntry> {
        self.root.files.iter().find(|f| f.manifest == Some(role))
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


fn check_versions(inventory: &str, bundle: Option<&str>) -> Result<()> {
    let Some(bundle) = bundle else { return Ok(()) };
    let parse = |s: &str| s.parse::<crate::kube::Version>().ok();
    if parse(inventory).is_some() && parse(inventory) == parse(bundle) {
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "the inventory's cluster.kubernetes_version {inventory} is not the bundle's Kubernetes {bundle}: the bundle carries kubeadm, kubelet, kubectl and the images of {bundle} only"
    ))
    .hint(format!("set `kubernetes_version: {bundle}` under `cluster:` in the inventory, or pass the bundle built for {inventory}"))
}

/// The deploy machine's disk check for a kit of `need` bytes under `dir`, where `free` bytes are free.
fn check_space(dir: &Path, need: u64, free: u64) -> Result<()> {
    if free >= need {
        return Ok(());
    }
    let h = crate::install::actions::human_size;
    Err(anyhow::anyhow!(
        "not enough disk space on this machine for the bundle's files for the nodes: {} needs {need} bytes ({}), {free} bytes ({}) are free",
        dir.display(),
        h(need),
        h(free)
    ))
    .hint("free space there, or pass --state-dir DIR on a file system with room (the same --state-dir for plan, install and status)")
}

/// Extracts the entries under `files/` into a staging directory, marked complete and renamed into the kit
/// directory only once the whole bundle verified.
struct KitSink {
    staged: StagedDir,
    digest: Digest,
}

impl EntrySink for KitSink {
    type Done = ();

    fn entry(&mut self, path: &str, size: u64, mode: u32, data: &mut dyn Read) -> Result<()> {
        self.staged.entry(path, size, mode, data)
    }

    fn finish(self) -> Result<()> {
        fs_err::write(self.staged.path().join(MARKER), format!("{}\n", self.digest.hex()))?;
        self.staged.finish().map(|_| ())
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

    #[test]
    fn the_kit_must_fit_on_the_deploy_machine() {
        let dir = Path::new("/var/lib/airgap/plant-a/kit");
        check_space(dir, 100, 100).unwrap();
        let err = check_space(dir, 3 << 30, 1 << 30).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not enough disk space on this machine for the bundle's files for the nodes: /var/lib/airgap/plant-a/kit needs 3221225472 bytes (3.0 GiB), 1073741824 bytes (1.0 GiB) are free"
        );
        assert!(crate::error::hints(&err)[0].contains("--state-dir"));
    }

    #[test]
    fn the_inventory_names_the_bundles_kubernetes() {
        check_versions("1.36.3", Some("v1.36.3")).unwrap();
        check_versions("v1.36.3", Some("v1.36.3")).unwrap();
        check_versions("1.31.4", None).unwrap();
        let err = check_versions("1.35.2", Some("v1.36.3")).unwrap_err();
        assert_eq!(err.to_string(), "the inventory's cluster.kubernetes_version 1.35.2 is not the bundle's Kubernetes v1.36.3: the bundle carries kubeadm, kubelet, kubectl and the images of v1.36.3 only");
        assert!(crate::error::hints(&err)[0].contains("`kubernetes_version: v1.36.3` under `cluster:`"));
    }

    #[test]
    fn only_kit_directories_are_ever_removed() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_kit_name(&hex));
        assert!(is_kit_name(&format!("{hex}.partial-Ab12")));
        for other in ["", "/", "..", "etc", "journal.json", &hex[1..], &format!("{hex}x"), &hex.to_uppercase()] {
            assert!(!is_kit_name(other), "{other:?}");
        }
    }
}
