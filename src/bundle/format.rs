//! The bundle's on-disk format: entry names, the root document, the checksum list. Shared by the writer
//! (`build`), the reader (`verify`, `unpack`, `inspect`) and the registry loader (`load`).

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

/// Name of the root document, the first entry of every bundle.
pub const ROOT_DOC: &str = "airgap.json";
/// Name of the root document's own signature (minisign, prehashed, by the bundle key), the second entry:
/// `minisign -Vm airgap.json -p airgap.pub` checks it in an unpacked bundle.
pub const ROOT_SIG: &str = "airgap.json.minisig";
/// Name of the checksum list, the third entry.
pub const SHA256SUMS: &str = "SHA256SUMS";
/// Prefix of the OCI image layout inside the bundle.
pub const IMAGES_DIR: &str = "images";
/// Prefix of the files inside the bundle.
pub const FILES_DIR: &str = "files";
/// Schema identifier written into the root document.
pub const SCHEMA: &str = "airgap.bundle/v2";
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
    /// Set in a delta bundle: the bundle it extends. A delta carries only the blobs and files its base lacks;
    /// `images` still lists every image of the new release (a loader checks it has them all), while `files` and
    /// `packages` list only those it carries (new or changed since the base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// Platforms requested in the manifest, e.g. `linux/amd64`.
    pub platforms: Vec<String>,
    /// The Kubernetes release the bundle is for (the manifest's `kubernetes:` section); absent in bundles
    /// that carry no Kubernetes (their root document stays byte-identical to older ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesEntry>,
    pub images: Vec<ImageEntry>,
    pub files: Vec<FileEntry>,
    /// OS packages carried in the bundle (their bytes are under `files/packages/<os>/`).
    #[serde(default)]
    pub packages: Vec<PackageEntry>,
    /// sha256 (hex) of the `SHA256SUMS` entry.
    pub sha256sums: String,
    /// The size in bytes of every entry after the root document's signature (`SHA256SUMS` included), by path:
    /// a reader rejects an entry whose tar header declares another size before reading any of its bytes.
    #[serde(default)]
    pub sizes: std::collections::BTreeMap<String, u64>,
}

/// The base of a delta bundle: its name, version and the sha256 of its root document (`airgap.json`), which
/// identifies it (a store records the root documents it loaded).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BaseRef {
    pub name: String,
    pub version: String,
    /// sha256 (hex) of the base bundle's root document.
    pub root_sha256: String,
}

impl BaseRef {
    /// `name version (root document sha256:...)`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {} (root document sha256:{})", self.name, self.version, self.root_sha256)
    }
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
    /// A Kubernetes manifest, and which step applies it (`flannel`, `ingress`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestRole>,
}

/// The Kubernetes release of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesEntry {
    /// `vMAJOR.MINOR.PATCH`, e.g. `v1.36.3`.
    pub version: String,
}

/// What a bundled Kubernetes manifest is for: the step that applies it finds it by this role, so another
/// controller's manifest can stand in for the default one. Every role's images are checked at build time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ManifestRole {
    /// The pod network (step `flannel`): net-conf.json `Network` and `--iface` are set from the inventory.
    Flannel,
    /// The ingress controller (step `ingress-nginx`): made a DaemonSet on the masters.
    Ingress,
    /// The storage provisioner (applied by the storage step).
    Storage,
    /// Applied by no step (the user's own objects); still image-checked at build time.
    Other,
}

impl ManifestRole {
    pub const ALL: [ManifestRole; 4] = [ManifestRole::Flannel, ManifestRole::Ingress, ManifestRole::Storage, ManifestRole::Other];

    pub fn name(self) -> &'static str {
        match self {
            ManifestRole::Flannel => "flannel",
            ManifestRole::Ingress => "ingress",
            ManifestRole::Storage => "storage",
            ManifestRole::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<ManifestRole> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl std::fmt::Display for ManifestRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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

/// The problems of a root document's fields, each naming the field (`files[2].path ...`). A root document is
/// only used once its signature verified AND it validated: its values decide paths on the deploy machine and
/// the nodes, package names in commands, and what is printed.
pub fn validate(root: &RootDoc) -> Vec<String> {
    let mut p = Vec::new();
    let mut bad = |field: String, why: &str, value: &str| p.push(format!("{field} {} {why}", shown(value)));
    if root.schema != SCHEMA {
        bad("schema".into(), &format!("is not {SCHEMA}"), &root.schema);
    }
    for (what, v) in [("name", &root.name), ("version", &root.version)] {
        if !is_name(v, 128) {
            bad(what.into(), "must be 1-128 characters of A-Z a-z 0-9 . _ + - (not starting with . or -)", v);
        }
    }
    if let Some(b) = &root.base {
        for (what, v) in [("base.name", &b.name), ("base.version", &b.version)] {
            if !is_name(v, 128) {
                bad(what.into(), "must be 1-128 characters of A-Z a-z 0-9 . _ + - (not starting with . or -)", v);
            }
        }
        if !is_hex64(&b.root_sha256) {
            bad("base.root_sha256".into(), "is not 64 lower-case hex digits", &b.root_sha256);
        }
    }
    for (i, pl) in root.platforms.iter().enumerate() {
        if !is_platform(pl) {
            bad(format!("platforms[{i}]"), "is not a platform like linux/amd64", pl);
        }
    }
    if let Some(k) = &root.kubernetes {
        let parsed = k.version.parse::<crate::kube::Version>();
        if !k.version.starts_with('v') || parsed.is_err() {
            bad("kubernetes.version".into(), "is not a Kubernetes release like v1.36.3", &k.version);
        }
    }
    let mut refs = std::collections::BTreeSet::new();
    for (i, im) in root.images.iter().enumerate() {
        let f = |x: &str| format!("images[{i}].{x}");
        if !is_graphic(&im.reference, 512) || crate::oci::reference::ImageRef::parse(&im.reference).is_err() {
            bad(f("reference"), "is not an image reference", &im.reference);
        } else if !refs.insert(&im.reference) {
            bad(f("reference"), "is listed twice", &im.reference);
        }
        if !is_graphic(&im.media_type, 255) || !im.media_type.contains('/') {
            bad(f("media_type"), "is not a media type", &im.media_type);
        }
        for (j, pl) in im.platforms.iter().enumerate() {
            if !is_platform(pl) {
                bad(f(&format!("platforms[{j}]")), "is not a platform like linux/amd64", pl);
            }
        }
    }
    let mut paths = std::collections::BTreeSet::new();
    for (i, fe) in root.files.iter().enumerate() {
        let f = |x: &str| format!("files[{i}].{x}");
        if !is_safe_path(&fe.path) {
            bad(f("path"), "is not a safe relative path (no `..`, not absolute, normal form)", &fe.path);
        } else if !paths.insert(fe.path.as_str()) {
            bad(f("path"), "is listed twice", &fe.path);
        }
        if !is_graphic(&fe.url, 4096) {
            bad(f("url"), "is not a URL", &fe.url);
        }
        if !is_hex64(&fe.sha256) {
            bad(f("sha256"), "is not 64 lower-case hex digits", &fe.sha256);
        }
        if fe.mode != 0o644 && fe.mode != 0o755 {
            bad(f("mode"), "is neither 0644 nor 0755", &format!("{:o}", fe.mode));
        }
        if let Some(pl) = &fe.platform {
            if !is_platform(pl) {
                bad(f("platform"), "is not a platform like linux/amd64", pl);
            }
        }
        if let Some(role) = fe.manifest {
            if role != ManifestRole::Other && root.files[..i].iter().any(|o| o.manifest == Some(role)) {
                bad(f("manifest"), "is a second manifest of this role", role.name());
            }
        }
    }
    for (i, pe) in root.packages.iter().enumerate() {
        let f = |x: &str| format!("packages[{i}].{x}");
        let os_ok = is_name(&pe.os, 64);
        if !os_ok {
            bad(f("os"), "is not an OS tag like debian-12 or el9", &pe.os);
        }
        if !pe.name.is_empty() && !is_name(&pe.name, 128) {
            bad(f("name"), "is not a package name", &pe.name);
        }
        let in_dir = pe
            .path
            .strip_prefix(&format!("packages/{}/", pe.os))
            .is_some_and(|file| !file.is_empty() && !file.contains('/'));
        if !is_safe_path(&pe.path) || (os_ok && !in_dir) {
            bad(f("path"), &format!("is not packages/{}/<file name>", shown(&pe.os)), &pe.path);
        } else if !paths.insert(pe.path.as_str()) {
            bad(f("path"), "is listed twice", &pe.path);
        }
        if !is_graphic(&pe.url, 4096) {
            bad(f("url"), "is not a URL", &pe.url);
        }
        if !is_hex64(&pe.sha256) {
            bad(f("sha256"), "is not 64 lower-case hex digits", &pe.sha256);
        }
    }
    if !is_hex64(&root.sha256sums) {
        bad("sha256sums".into(), "is not 64 lower-case hex digits", &root.sha256sums);
    }
    if !root.sizes.contains_key(SHA256SUMS) {
        p.push(format!("sizes does not give the size of {SHA256SUMS}"));
    }
    for k in root.sizes.keys() {
        if !is_safe_path(k) || k == ROOT_DOC || k == ROOT_SIG {
            p.push(format!("sizes names {}, which cannot be an entry", shown(k)));
        }
    }
    p
}

/// A value from an unverified or hostile source, fit for an error message: quoted, control characters
/// escaped, at most 120 characters.
pub fn shown(v: &str) -> String {
    const MAX: usize = 120;
    if v.chars().count() <= MAX {
        format!("{v:?}")
    } else {
        let head: String = v.chars().take(MAX).collect();
        format!("{head:?}... ({} bytes)", v.len())
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Printable ASCII without spaces, 1..=max bytes.
fn is_graphic(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A name fit for file names and command lines: `[A-Za-z0-9._+-]`, not starting with `.` or `-`.
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with(['.', '-'])
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// `os/arch[/variant]`, lower-case letters, digits and `_`.
fn is_platform(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    (2..=3).contains(&parts.len())
        && s.len() <= 64
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
}

fn is_safe_path(p: &str) -> bool {
    p.len() <= 1024 && p.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80) && crate::fsutil::safe_relative_path(p).is_ok_and(|n| n == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RootDoc {
        RootDoc {
            schema: SCHEMA.into(),
            name: "k8s-ha".into(),
            version: "1.35.1-1".into(),
            base: None,
            platforms: vec!["linux/amd64".into()],
            kubernetes: Some(KubernetesEntry { version: "v1.36.3".into() }),
            images: vec![ImageEntry {
                reference: "registry.k8s.io/pause:3.10.1".into(),
                digest: Digest::of_bytes(b"x"),
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                size: 1,
                platforms: vec!["linux/amd64".into()],
            }],
            files: vec![FileEntry {
                path: "bin/kubeadm".into(),
                url: "https://dl.k8s.io/kubeadm".into(),
                sha256: "a".repeat(64),
                size: 1,
                mode: 0o755,
                install: None,
                platform: Some("linux/amd64".into()),
                manifest: None,
            }],
            packages: vec![PackageEntry {
                os: "debian-12".into(),
                name: "keepalived".into(),
                path: "packages/debian-12/keepalived_1_amd64.deb".into(),
                url: "https://mirror/keepalived_1_amd64.deb".into(),
                sha256: "b".repeat(64),
                size: 1,
            }],
            sha256sums: "c".repeat(64),
            sizes: [(SHA256SUMS.to_string(), 10)].into(),
        }
    }

    #[test]
    fn a_good_root_document_validates() {
        assert_eq!(validate(&good()), Vec::<String>::new());
    }

    #[test]
    fn every_field_that_decides_a_path_or_a_command_is_checked() {
        type Edit = Box<dyn Fn(&mut RootDoc)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("name", Box::new(|r| r.name = "../../etc".into())),
            ("version", Box::new(|r| r.version = "/x".into())),
            ("platforms[0]", Box::new(|r| r.platforms[0] = "linux/../amd64".into())),
            ("kubernetes.version", Box::new(|r| r.kubernetes = Some(KubernetesEntry { version: "1.36.3; rm -rf /".into() }))),
            ("kubernetes.version", Box::new(|r| r.kubernetes = Some(KubernetesEntry { version: "1.36.3".into() }))),
            ("files[1].manifest", Box::new(|r| {
                let mut f = r.files[0].clone();
                f.manifest = Some(ManifestRole::Flannel);
                r.files[0].manifest = Some(ManifestRole::Flannel);
                f.path = "m/b.yaml".into();
                r.files.push(f);
            })),
            ("images[0].reference", Box::new(|r| r.images[0].reference = "bad ref\n".into())),
            ("images[0].media_type", Box::new(|r| r.images[0].media_type = "\u{1b}[31m".into())),
            ("files[0].path", Box::new(|r| r.files[0].path = "/etc/shadow".into())),
            ("files[0].path", Box::new(|r| r.files[0].path = "../x".into())),
            ("files[0].path", Box::new(|r| r.files[0].path = "a//b".into())),
            ("files[0].sha256", Box::new(|r| r.files[0].sha256 = "/x".into())),
            ("files[0].mode", Box::new(|r| r.files[0].mode = 0o4755)),
            ("files[0].url", Box::new(|r| r.files[0].url = "http://x/\u{7}".into())),
            ("packages[0].os", Box::new(|r| r.packages[0].os = "..".into())),
            ("packages[0].name", Box::new(|r| r.packages[0].name = "x;rm -rf /".into())),
            ("packages[0].path", Box::new(|r| r.packages[0].path = "packages/el9/x.rpm".into())),
            ("packages[0].path", Box::new(|r| r.packages[0].path = "packages/debian-12/../../x".into())),
            ("packages[0].sha256", Box::new(|r| r.packages[0].sha256 = "zz".into())),
            ("sha256sums", Box::new(|r| r.sha256sums = "/".into())),
            ("sizes", Box::new(|r| r.sizes = [("../x".to_string(), 1)].into())),
            ("base.name", Box::new(|r| r.base = Some(BaseRef { name: "../x".into(), version: "1".into(), root_sha256: "d".repeat(64) }))),
            ("base.root_sha256", Box::new(|r| r.base = Some(BaseRef { name: "x".into(), version: "1".into(), root_sha256: "/".into() }))),
        ];
        for (field, f) in cases {
            let mut r = good();
            f(&mut r);
            let problems = validate(&r);
            assert!(problems.iter().any(|p| p.starts_with(field)), "{field}: {problems:?}");
        }
    }

    #[test]
    fn a_root_document_without_kubernetes_or_manifests_serializes_as_before() {
        let mut r = good();
        r.kubernetes = None;
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("kubernetes") && !json.contains("manifest"), "{json}");
        r.kubernetes = Some(KubernetesEntry { version: "v1.36.3".into() });
        r.files[0].manifest = Some(ManifestRole::Ingress);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""kubernetes":{"version":"v1.36.3"}"#) && json.contains(r#""manifest":"ingress""#), "{json}");
        assert_eq!(serde_json::from_str::<RootDoc>(&json).unwrap(), r);
    }

    #[test]
    fn hostile_values_are_shown_escaped_and_short() {
        assert_eq!(shown("a\u{1b}[2Jb"), "\"a\\u{1b}[2Jb\"");
        assert!(shown(&"x".repeat(5000)).ends_with("... (5000 bytes)"));
    }
}
