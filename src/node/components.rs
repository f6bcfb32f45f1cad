//! Static binaries the bundle carries as `files:` marked `install: COMPONENT` (containerd, runc, CNI plugins,
//! crictl, kubeadm, kubelet, kubectl), and their installation on a node (`airgap node component ...`).
//!
//! Each component has the layout of its upstream release, so the manifest only says WHICH file is which
//! component; the installer knows where its binaries go:
//!
//! | component     | upstream file                               | installed as                          |
//! |---------------|---------------------------------------------|---------------------------------------|
//! | `containerd`  | `containerd-static-V-linux-ARCH.tar.gz`     | its `bin/*` → `/usr/local/bin/`       |
//! | `runc`        | `runc.ARCH`                                 | `/usr/local/sbin/runc`                |
//! | `cni-plugins` | `cni-plugins-linux-ARCH-V.tgz`              | every plugin → `/opt/cni/bin/`        |
//! | `crictl`      | `crictl-V-linux-ARCH.tar.gz`                | `/usr/local/bin/crictl`               |
//! | `kubeadm`, `kubelet`, `kubectl` | the bare binary           | `/usr/local/bin/NAME`                 |
//!
//! Installation verifies the file against the sha256 of the (verified) bundle while reading it, stages every
//! binary next to its target and renames them into place only when the whole file checked out; a stamp under
//! [`STAMP_DIR`] records what was installed (with each binary's sha256), so that `check` sees a binary that
//! was removed or replaced by hand.

use crate::digest::{Digest, HashingReader};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a node records the components it installed (`NAME.json`).
pub const STAMP_DIR: &str = "var/lib/airgap/components";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Containerd,
    Runc,
    CniPlugins,
    Crictl,
    Kubeadm,
    Kubelet,
    Kubectl,
}

/// How a component's file is laid out.
enum Layout {
    /// The file is the binary.
    Binary(&'static str),
    /// A (gzipped) tar: its regular files directly under `prefix` go into `dir`.
    Tar { prefix: &'static str, dir: &'static str },
}

impl Component {
    pub const ALL: [Component; 7] = [
        Component::Containerd,
        Component::Runc,
        Component::CniPlugins,
        Component::Crictl,
        Component::Kubeadm,
        Component::Kubelet,
        Component::Kubectl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Containerd => "containerd",
            Component::Runc => "runc",
            Component::CniPlugins => "cni-plugins",
            Component::Crictl => "crictl",
            Component::Kubeadm => "kubeadm",
            Component::Kubelet => "kubelet",
            Component::Kubectl => "kubectl",
        }
    }

    pub fn parse(s: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The known names, for error messages.
    pub fn names() -> String {
        Component::ALL.map(Component::name).join(", ")
    }

    fn layout(self) -> Layout {
        match self {
            Component::Containerd => Layout::Tar { prefix: "bin/", dir: "/usr/local/bin" },
            Component::Runc => Layout::Binary("/usr/local/sbin/runc"),
            Component::CniPlugins => Layout::Tar { prefix: "", dir: "/opt/cni/bin" },
            Component::Crictl => Layout::Tar { prefix: "", dir: "/usr/local/bin" },
            Component::Kubeadm => Layout::Binary("/usr/local/bin/kubeadm"),
            Component::Kubelet => Layout::Binary("/usr/local/bin/kubelet"),
            Component::Kubectl => Layout::Binary("/usr/local/bin/kubectl"),
        }
    }

    /// Where its binaries go (a file, or a directory for archives), for plans and messages.
    pub fn destination(self) -> &'static str {
        match self.layout() {
            Layout::Binary(p) => p,
            Layout::Tar { dir, .. } => dir,
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node records after installing a component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Stamp {
    component: Component,
    /// sha256 of the bundle file it came from.
    source_sha256: String,
    /// Every installed binary (absolute path as seen from the node's `/`) → its sha256.
    files: BTreeMap<String, String>,
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn stamp_path(root: &Path, c: Component) -> PathBuf {
    root.join(STAMP_DIR).join(format!("{}.json", c.name()))
}

/// What differs on the node from "`c` installed from the file with this sha256" (empty: in place).
pub fn check(root: &Path, c: Component, source_sha256: &Digest) -> Vec<String> {
    let Ok(text) = fs_err::read_to_string(stamp_path(root, c)) else {
        return vec![format!("{c} is not installed from the bundle")];
    };
    let stamp: Stamp = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(_) => return vec![format!("{c}: unreadable stamp {}", stamp_path(root, c).display())],
    };
    if stamp.source_sha256 != source_sha256.hex() {
        return vec![format!("{c} is installed from another file (sha256 {}), not this bundle's", &stamp.source_sha256)];
    }
    let mut why = Vec::new();
    for (path, want) in &stamp.files {
        match Digest::of_file(&under(root, path)) {
            Ok((d, _)) if d.hex() == want => {}
            Ok(_) => why.push(format!("{path} was changed since {c} was installed")),
            Err(_) => why.push(format!("{path} is missing")),
        }
    }
    why
}

/// A binary written next to its target, renamed into place by [`Staged::commit`]; removed if dropped.
struct Staged {
    tmp: Option<tempfile::TempPath>,
    target: PathBuf,
    abs: String,
    sha256: String,
}

fn stage(root: &Path, abs: String, data: &mut dyn Read) -> Result<Staged> {
    let target = under(root, &abs);
    let dir = target.parent().context("a binary's target has no directory")?;
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".airgap-new-")
        .tempfile_in(dir)
        .with_context(|| format!("failed to create a temporary file in {}", dir.display()))?;
    let mut w = crate::digest::HashingWriter::new(tmp.as_file_mut());
    std::io::copy(data, &mut w).with_context(|| format!("failed to write {}", target.display()))?;
    let (_, sha, _) = w.finish();
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o755))?;
    tmp.as_file().sync_all()?;
    Ok(Staged { tmp: Some(tmp.into_temp_path()), target, abs, sha256: sha.hex().to_string() })
}

impl Staged {
    fn commit(mut self) -> Result<()> {
        if let Some(tmp) = self.tmp.take() {
            // rename over a running binary is fine (the old inode lives on until the process exits)
            tmp.persist(&self.target)
                .map_err(|e| e.error)
                .with_context(|| format!("failed to rename into {}", self.target.display()))?;
        }
        Ok(())
    }
}

/// Install `c` from `file` (which must have `source_sha256`) under `root` (`/` on a node). Nothing is put in
/// place unless the whole file matched its sha256 and had the component's layout. Returns the binaries.
pub fn install(root: &Path, c: Component, file: &Path, source_sha256: &Digest) -> Result<Vec<String>> {
    use crate::error::HintExt;
    let f = fs_err::File::open(file)
        .map_err(anyhow::Error::from)
        .hint("the distribute step copies the bundle's files to the nodes: run it (install --from distribute)")?;
    let mut hashed = HashingReader::expecting(std::io::BufReader::new(f), source_sha256.clone(), None);
    // the hashing reader fails at end of file with InvalidData when the content is not the bundle's
    let mismatch = |e: anyhow::Error| {
        let bad_content = e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData));
        if !bad_content {
            return e;
        }
        crate::error::with_hint(
            e.context(format!("{} does not match the bundle's sha256 for {c}", file.display())),
            "the file on the node is from another bundle or damaged: run the distribute step again (install --from distribute)",
        )
    };
    let mut staged = Vec::new();
    match c.layout() {
        Layout::Binary(abs) => staged.push(stage(root, abs.to_string(), &mut hashed).map_err(mismatch)?),
        Layout::Tar { prefix, dir } => {
            let mut magic = [0u8; 2];
            let mut head = Vec::new();
            let n = hashed.read(&mut magic).map_err(|e| mismatch(e.into()))?;
            head.extend_from_slice(&magic[..n]);
            let chained = std::io::Cursor::new(head).chain(&mut hashed);
            let reader: Box<dyn Read + '_> = if magic == [0x1f, 0x8b] {
                Box::new(flate2::read::GzDecoder::new(chained))
            } else {
                Box::new(chained)
            };
            let mut archive = tar::Archive::new(reader);
            let entries = archive.entries().with_context(|| format!("{} is not a tar archive ({c})", file.display()))?;
            for entry in entries {
                let mut entry = entry.with_context(|| format!("failed to read {} ({c})", file.display()))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let path = entry.path()?.to_string_lossy().into_owned();
                let rel = path.trim_start_matches("./");
                let Some(name) = rel.strip_prefix(prefix) else { continue };
                if name.is_empty() || name.contains('/') || name == ".." || name.starts_with('.') {
                    continue;
                }
                staged.push(stage(root, format!("{dir}/{name}"), &mut entry)?);
            }
            // read to the end of the file (gzip trailer, tar padding): the sha256 is checked there
            let mut rest = archive.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| mismatch(e.into()))?;
            drop(rest);
            std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| mismatch(e.into()))?;
            if staged.is_empty() {
                bail!(
                    "{} holds no binary under {:?}: is it really the {c} release archive?",
                    file.display(),
                    if prefix.is_empty() { "its top directory" } else { prefix }
                );
            }
        }
    }
    let files: BTreeMap<String, String> = staged.iter().map(|s| (s.abs.clone(), s.sha256.clone())).collect();
    let installed: Vec<String> = files.keys().cloned().collect();
    for s in staged {
        s.commit()?;
    }
    let stamp = Stamp { component: c, source_sha256: source_sha256.hex().to_string(), files };
    crate::fsutil::atomic_write(&stamp_path(root, c), &serde_json::to_vec_pretty(&stamp)?, crate::fsutil::Mode::Set(0o644))?;
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn write(dir: &Path, name: &str, data: &[u8]) -> (PathBuf, Digest) {
        let p = dir.join(name);
        fs_err::write(&p, data).unwrap();
        (p, Digest::of_bytes(data))
    }

    #[test]
    fn containerd_archive_installs_its_bin_dir_and_check_sees_changes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let data = targz(&[("bin/containerd", b"c1"), ("bin/ctr", b"c2"), ("bin/containerd-shim-runc-v2", b"c3"), ("README", b"x")]);
        let (file, sha) = write(t.path(), "containerd.tar.gz", &data);
        assert_eq!(check(&root, Component::Containerd, &sha), vec!["containerd is not installed from the bundle"]);
        let got = install(&root, Component::Containerd, &file, &sha).unwrap();
        assert_eq!(got, ["/usr/local/bin/containerd", "/usr/local/bin/containerd-shim-runc-v2", "/usr/local/bin/ctr"]);
        assert_eq!(fs_err::read(root.join("usr/local/bin/ctr")).unwrap(), b"c2");
        assert!(!root.join("usr/local/bin/README").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs_err::metadata(root.join("usr/local/bin/containerd")).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(check(&root, Component::Containerd, &sha).is_empty());
        // another bundle's file, a binary edited by hand, a binary removed
        assert!(check(&root, Component::Containerd, &Digest::of_bytes(b"other"))[0].contains("another file"));
        fs_err::write(root.join("usr/local/bin/ctr"), b"edited").unwrap();
        fs_err::remove_file(root.join("usr/local/bin/containerd")).unwrap();
        let why = check(&root, Component::Containerd, &sha);
        assert_eq!(why, ["/usr/local/bin/containerd is missing", "/usr/local/bin/ctr was changed since containerd was installed"]);
        install(&root, Component::Containerd, &file, &sha).unwrap();
        assert!(check(&root, Component::Containerd, &sha).is_empty());
    }

    #[test]
    fn cni_plugins_and_crictl_take_the_archive_top_level() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let (file, sha) = write(t.path(), "cni.tgz", &targz(&[("./bridge", b"b"), ("./host-local", b"h"), ("./LICENSE", b"l")]));
        let got = install(&root, Component::CniPlugins, &file, &sha).unwrap();
        assert_eq!(got, ["/opt/cni/bin/LICENSE", "/opt/cni/bin/bridge", "/opt/cni/bin/host-local"]);
        let (file, sha) = write(t.path(), "crictl.tgz", &targz(&[("crictl", b"cr")]));
        assert_eq!(install(&root, Component::Crictl, &file, &sha).unwrap(), ["/usr/local/bin/crictl"]);
    }

    #[test]
    fn a_tampered_or_wrong_file_installs_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let data = targz(&[("bin/containerd", b"c1")]);
        let (file, _) = write(t.path(), "c.tar.gz", &data);
        let wrong = Digest::of_bytes(b"what the bundle says");
        let err = format!("{:#}", install(&root, Component::Containerd, &file, &wrong).unwrap_err());
        assert!(err.contains("does not match the bundle's sha256 for containerd"), "{err}");
        assert!(!root.join("usr/local/bin/containerd").exists(), "nothing may be installed from a mismatching file");
        let leftovers: Vec<_> = fs_err::read_dir(root.join("usr/local/bin")).unwrap().collect();
        assert!(leftovers.is_empty(), "staged files must be removed: {leftovers:?}");
        // a bare binary with a wrong sha256
        let (file, _) = write(t.path(), "kubeadm", b"kubeadm");
        let err = format!("{:#}", install(&root, Component::Kubeadm, &file, &wrong).unwrap_err());
        assert!(err.contains("does not match the bundle's sha256 for kubeadm"), "{err}");
        assert!(!root.join("usr/local/bin/kubeadm").exists());
        // the wrong archive for the component
        let (file, sha) = write(t.path(), "x.tgz", &targz(&[("docs/readme", b"r")]));
        let err = format!("{:#}", install(&root, Component::Containerd, &file, &sha).unwrap_err());
        assert!(err.contains("holds no binary under \"bin/\""), "{err}");
    }

    #[test]
    fn bare_binaries_go_to_usr_local() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let (file, sha) = write(t.path(), "runc.amd64", b"runc");
        assert_eq!(install(&root, Component::Runc, &file, &sha).unwrap(), ["/usr/local/sbin/runc"]);
        let (file, sha) = write(t.path(), "kubelet", b"kubelet");
        assert_eq!(install(&root, Component::Kubelet, &file, &sha).unwrap(), ["/usr/local/bin/kubelet"]);
        assert!(check(&root, Component::Kubelet, &sha).is_empty());
        assert_eq!(Component::parse("cni-plugins"), Some(Component::CniPlugins));
        assert_eq!(Component::parse("docker"), None);
    }
}
