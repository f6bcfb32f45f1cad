//! The bundle manifest (YAML): what a bundle holds. Parsed strictly (unknown fields are errors) and checked
//! semantically; every error names `FILE:LINE[:COLUMN]`.
//!
//! ```yaml
//! name: k8s-ha
//! version: 1.31.4-1
//! platforms: [linux/amd64, linux/arm64]      # optional, default [linux/amd64]
//! kubernetes:                                 # optional: the Kubernetes release the bundle is for
//!   version: v1.36.3                          # recorded in the signed root document; kubeadm's images
//!                                             # for it must be among `images:` (the closure check)
//! images:
//!   - registry.k8s.io/kube-apiserver:v1.31.4
//! files:
//!   - url: https://example.org/kubeadm          # fixed url + sha256
//!     sha256: <64 hex>
//!     path: bin/kubeadm                          # under files/ in the bundle
//!     mode: "0755"                               # or `executable: true`; default 0644
//!   - url: https://dl.k8s.io/release/v1.31.4/bin/linux/{arch}/kubectl   # per-platform form
//!     sha256_url: https://dl.k8s.io/release/v1.31.4/bin/linux/{arch}/kubectl.sha256
//!     path: bin/{arch}/kubectl
//! packages:
//!   - os: debian-12
//!     url: debian/pool/main/k/keepalived/keepalived_2.2.8-1_amd64.deb   # relative: to the mirror
//!     sha256: <64 hex>
//!     name: keepalived
//! include:                                    # fragments holding `packages:` (scripts/deb-closure.sh)
//!   - packages/debian-12.yaml                 # relative to the manifest's directory
//! ```
//!
//! A package `url` without a scheme is relative to the root of the distribution mirror chosen at build time
//! (`airgap build --mirror OS=URL`, default: the packaging machine's apt/dnf configuration; `build::mirror`),
//! so a manifest names no mirror host and works against a customer's internal mirror.
//!
//! Per-platform files: `{os}`, `{arch}`, `{variant}` and `{platform}` (`linux-arm-v7`) in `url`, `sha256_url`
//! and `path` expand once per requested platform; `path` must then contain a placeholder too, so every
//! platform's file lands at its own path. A fixed-url file for one platform says so with `platform: linux/amd64`.
//!
//! `install: COMPONENT` (containerd, runc, cni-plugins, crictl, kubeadm, kubelet, kubectl) marks the file the
//! installer puts on the nodes as that component (see `node::components` for each layout); one file per
//! component and platform, and a component given for one platform must be given for all.
//!
//! `manifest: ROLE` marks a Kubernetes manifest (one file for every platform): `flannel` (applied by the
//! flannel step), `ingress` (the ingress-nginx step), `storage`, or `other` (applied by no step). At most one
//! file per role but `other`. Every image a bundled manifest references must be among `images:`
//! (`build::closure`).

use crate::bundle::format::ManifestRole;
use crate::digest::Digest;
use crate::kube::Version;
use crate::error::HintExt;
use crate::fsutil::safe_relative_path;
use crate::node::components::Component;
use crate::oci::platform::Platform;
use crate::yaml_lines::LineIndex;
use crate::oci::reference::ImageRef;
use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    #[serde(default)]
    platforms: Option<Vec<String>>,
    #[serde(default)]
    kubernetes: Option<RawKubernetes>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    packages: Vec<RawPackage>,
    #[serde(default)]
    include: Vec<String>,
}

/// A manifest fragment (`include:`), as `scripts/deb-closure.sh` / `rpm-closure.sh` print them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragment {
    #[serde(default)]
    packages: Vec<RawPackage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    url: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    sha256_url: Option<String>,
    path: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    executable: Option<bool>,
    #[serde(default)]
    install: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    manifest: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    os: String,
    url: String,
    sha256: String,
    #[serde(default)]
    name: Option<String>,
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest's file name, as errors name it.
    pub file: String,
    pub name: String,
    pub version: String,
    pub platforms: Vec<Platform>,
    /// The Kubernetes release the bundle is for (`kubernetes: { version: v1.36.3 }`).
    pub kubernetes: Option<KubernetesSpec>,
    pub images: Vec<ImageRef>,
    /// Files with per-platform forms expanded, in manifest order.
    pub files: Vec<FileSpec>,
    pub packages: Vec<PackageSpec>,
}

/// The manifest's `kubernetes:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSpec {
    pub version: Version,
    /// The line of `version:` in the manifest (the closure check names it).
    pub line: usize,
}

/// Where a file's sha256 comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Checksum {
    Fixed(Digest),
    /// A URL whose content's first token is the hex sha256 (upstream `NAME.sha256` files).
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    pub url: String,
    pub checksum: Checksum,
    /// Path under `files/` (checked with `safe_relative_path`).
    pub path: String,
    pub mode: u32,
    /// The node component this file is (`install: containerd`...): the installer puts it in place.
    pub install: Option<Component>,
    /// The platform this file is for (`linux/amd64`): set for per-platform forms and by `platform:`;
    /// `None`: every platform.
    pub platform: Option<String>,
    /// A Kubernetes manifest (`manifest: flannel`...): its images are checked against `images:` at build time.
    pub manifest: Option<ManifestRole>,
    /// The line of the entry's `url:` in the manifest.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackageSpec {
    pub os: String,
    pub name: String,
    pub url: String,
    pub sha256: Digest,
    /// `packages/<os>/<url's file name>` under `files/`.
    pub path: String,
}

fn has_placeholder(s: &str) -> bool {
    ["{os}", "{arch}", "{variant}", "{platform}"].iter().any(|p| s.contains(p))
}

/// Read and check a manifest file (its `include:` fragments are read relative to its directory).
pub fn load(path: &Path) -> Result<Manifest> {
    let text = fs_err::read_to_string(path).context("failed to read the manifest")?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_in(&text, &name, Some(&dir)).with_context(|| format!("invalid manifest {}", path.display()))
}

/// Parse and check a manifest's text; `file` names it in errors (`file:line:column: ...`). `include:` needs
/// [`load`] (or [`parse_in`] with the manifest's directory).
pub fn parse(text: &str, file: &str) -> Result<Manifest> {
    parse_in(text, file, None)
}

fn from_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
        Some(loc) => anyhow!("{file}:{}:{}: {}", loc.line(), loc.column(), strip_location(&e.to_string())),
        None => anyhow!("{file}: {e}"),
    })
}

/// [`parse`], with `include:` paths read relative to `dir`.
pub fn parse_in(text: &str, file: &str, dir: Option<&Path>) -> Result<Manifest> {
    let raw: RawManifest = from_yaml(text, file)?;
    let lines = LineIndex::new(text);
    // the line of a field (`["files", "3", "url"]`), or of its nearest enclosing one; 1 when none is found
    let line_of = |path: &[&str]| lines.line_of(path).unwrap_or(1);
    let at = |line: usize, msg: String| anyhow!("{file}:{line}: {msg}");

    for (key, value) in [("name", &raw.name), ("version", &raw.version)] {
        let ok = !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
            && !value.starts_with(['.', '-']);
        if !ok {
            return Err(at(line_of(&[key]), format!("bad {key} {value:?}: use letters, digits, '.', '_', '+', '-' (it names the bundle file)")));
        }
    }

    let mut platforms: Vec<Platform> = Vec::new();
    for p in raw.platforms.clone().unwrap_or_else(|| vec!["linux/amd64".into()]) {
        let line = line_of(&["platforms", &platforms.len().to_string()]);
        let plat = Platform::parse(&p).map_err(|e| at(line, e.to_string()))?;
        if platforms.contains(&plat) {
            return Err(at(line, format!("platform {plat} is listed twice")));
        }
        platforms.push(plat);
    }
    if platforms.is_empty() {
        return Err(at(line_of(&["platforms"]), "no platforms: list at least one, e.g. [linux/amd64]".into()));
    }

    let kubernetes = match &raw.kubernetes {
        None => None,
        Some(k) => {
            let line = line_of(&["kubernetes", "version"]);
            let version: Version = k.version.parse().map_err(|e: crate::kube::Error| at(line, e.to_string()))?;
            if !k.version.starts_with('v') {
                return Err(at(line, format!("write the Kubernetes version as its release tag: {version}")));
            }
            // the bundle must carry kubeadm's images for this release: the table must know them
            crate::kube::images::images_for(&version).map_err(|e| at(line, e.to_string()))?;
            Some(KubernetesSpec { version, line })
        }
    };

    let mut images: Vec<ImageRef> = Vec::new();
    for (i, s) in raw.images.iter().enumerate() {
        let line = line_of(&["images", &i.to_string()]);
        let r = ImageRef::parse(s).map_err(|e| at(line, format!("bad image reference {s:?}: {e:#}")))?;
        if images.iter().any(|x| x.as_written == r.as_written) {
            return Err(at(line, format!("image {s:?} is listed twice")));
        }
        images.push(r);
    }

    let mut seen_paths = BTreeSet::new();
    let mut files = Vec::new();
    for (i, f) in raw.files.iter().enumerate() {
        let line = |field: &str| line_of(&["files", &i.to_string(), field]);
        let mode = match (&f.mode, f.executable) {
            (Some(_), Some(_)) => return Err(at(line("mode"), "give either `mode` or `executable`, not both".into())),
            (Some(m), None) => match m.as_str() {
                "0755" | "755" => 0o755,
                "0644" | "644" => 0o644,
                _ => return Err(at(line("mode"), format!("bad mode {m:?}: use \"0755\" or \"0644\""))),
            },
            (None, Some(true)) => 0o755,
            (None, _) => 0o644,
        };
        let per_platform = has_placeholder(&f.url) || f.sha256_url.as_deref().is_some_and(has_placeholder);
        if per_platform && !has_placeholder(&f.path) {
            return Err(at(line("path"), format!("path {:?} needs a placeholder such as {{arch}}: the url differs per platform, so each platform's file needs its own path", f.path)));
        }
        let install = match &f.install {
            None => None,
            Some(name) => Some(Component::parse(name).ok_or_else(|| {
                at(line("install"), format!("unknown component {name:?} for `install`: the installer knows {}", Component::names()))
            })?),
        };
        let fixed_platform = match &f.platform {
            None => None,
            Some(p) => {
                let plat = Platform::parse(p).map_err(|e| at(line("platform"), e.to_string()))?;
                if !platforms.contains(&plat) {
                    return Err(at(line("platform"), format!("platform {plat} is not in the bundle's platforms ({})", platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))));
                }
                if per_platform || has_placeholder(&f.path) {
                    return Err(at(line("platform"), "`platform` names the one platform of a fixed url; a per-platform form ({arch}...) already expands per platform".into()));
                }
                Some(plat)
            }
        };
        let manifest = match &f.manifest {
            None => None,
            Some(name) => {
                let role = ManifestRole::parse(name).ok_or_else(|| {
                    at(line("manifest"), format!("unknown manifest role {name:?}: use {} (other: applied by no step, images still checked)", ManifestRole::ALL.map(|r| r.name()).join(", ")))
                })?;
                if per_platform || has_placeholder(&f.path) || f.install.is_some() {
                    return Err(at(line("manifest"), "a Kubernetes manifest is one file for every platform: no {arch}-style placeholder, no `install:`".into()));
                }
                // flannel and ingress: one file each (the step edits one object set); a storage provisioner
                // ships several files (RBAC, Deployment, StorageClass), `other` any number
                if matches!(role, ManifestRole::Flannel | ManifestRole::Ingress) {
                    if let Some(o) = files.iter().find(|o: &&FileSpec| o.manifest == Some(role)) {
                        return Err(at(line("manifest"), format!("the {role} manifest is already {:?}: one flannel and one ingress manifest (use `other` for more objects)", o.path)));
                    }
                }
                Some(role)
            }
        };
        let targets: Vec<Option<&Platform>> =
            if per_platform || has_placeholder(&f.path) { platforms.iter().map(Some).collect() } else { vec![None] };
        for plat in targets {
            let expand = |s: &str| plat.map_or_else(|| s.to_string(), |p| p.expand(s));
            let url = expand(&f.url);
            check_url(&url).map_err(|e| at(line("url"), e.to_string()))?;
            let checksum = match (&f.sha256, &f.sha256_url) {
                (Some(_), Some(_)) => return Err(at(line("sha256"), "give either `sha256` or `sha256_url`, not both".into())),
                (None, None) => return Err(at(line("url"), format!("missing sha256 for {url}: add `sha256: <64 hex>` (or `sha256_url:` pointing to a published checksum file)"))),
                (Some(h), None) => {
                    if per_platform && platforms.len() > 1 {
                        return Err(at(line("sha256"), "one `sha256` cannot match a per-platform url: use `sha256_url` with the same placeholders".into()));
                    }
                    Checksum::Fixed(parse_hex(h).map_err(|e| at(line("sha256"), e.to_string()))?)
                }
                (None, Some(u)) => {
                    let u = expand(u);
                    check_url(&u).map_err(|e| at(line("sha256_url"), e.to_string()))?;
                    Checksum::Url(u)
                }
            };
            let path = safe_relative_path(&expand(&f.path)).map_err(|e| at(line("path"), format!("unsafe path: {e:#}")))?;
            if path.starts_with("packages/") {
                return Err(at(line("path"), format!("path {path:?} is under packages/, which is reserved for `packages:` entries")));
            }
            if !seen_paths.insert(path.clone()) {
                return Err(at(line("path"), format!("duplicate path {path:?}: another file already lands there")));
            }
            let platform = match (plat, &fixed_platform) {
                (Some(p), _) | (None, Some(p)) => Some(p.to_string()),
                (None, None) => None,
            };
            if let Some(c) = install {
                let clash = files.iter().find(|o: &&FileSpec| {
                    o.install == Some(c) && (o.platform.is_none() || platform.is_none() || o.platform == platform)
                });
                if let Some(o) = clash {
                    return Err(at(line("install"), format!("{c} is already installed from {:?}{}: one file per component and platform", o.path, o.platform.as_deref().map(|p| format!(" ({p})")).unwrap_or_default())));
                }
            }
            files.push(FileSpec { url, checksum, path, mode, install, platform, manifest, line: line("url") });
        }
    }

    // a component given for some platforms must be there for every platform the bundle targets
    for c in crate::node::components::Component::ALL {
        let of_c: Vec<&FileSpec> = files.iter().filter(|f| f.install == Some(c)).collect();
        if of_c.is_empty() || of_c.iter().any(|f| f.platform.is_none()) {
            continue;
        }
        let missing: Vec<String> =
            platforms.iter().map(|p| p.to_string()).filter(|p| !of_c.iter().any(|f| f.platform.as_ref() == Some(p))).collect();
        if !missing.is_empty() {
            let i = raw.files.iter().position(|f| f.install.as_deref() == Some(c.name())).unwrap_or(0);
            return Err(at(
                line_of(&["files", &i.to_string(), "install"]),
                format!("{c} has no file for {}: the nodes of that platform would have none", missing.join(", ")),
            ));
        }
    }

    let mut packages = Vec::new();
    check_packages(&raw.packages, text, file, &mut seen_paths, &mut packages)?;
    for (i, inc) in raw.include.iter().enumerate() {
        let line = line_of(&["include", &i.to_string()]);
        let Some(dir) = dir else {
            return Err(at(line, format!("include {inc:?}: fragments are read relative to the manifest file (airgap build MANIFEST)")));
        };
        let rel = safe_relative_path(inc).map_err(|e| at(line, format!("include {inc:?}: {e:#}: give a path relative to the manifest's directory")))?;
        let frag_text = fs_err::read_to_string(dir.join(&rel)).map_err(|e| at(line, format!("include {inc:?}: {e}")))?;
        let frag: RawFragment = from_yaml(&frag_text, &rel).map_err(|e| at(line, format!("include: {e:#}")))?;
        check_packages(&frag.packages, &frag_text, &rel, &mut seen_paths, &mut packages).map_err(|e| at(line, format!("include: {e:#}")))?;
    }

    Ok(Manifest { file: file.to_string(), name: raw.name, version: raw.version, platforms, kubernetes, images, files, packages })
}

/// serde_yaml_ng appends " at line L column C" to its messages; we print the location first instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn parse_hex(h: &str) -> Result<Digest> {
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    Digest::from_hex(&h.to_ascii_lowercase()).map_err(|_| anyhow!("malformed sha256 {h:?}: expected 64 hex characters"))
}

/// The `packages:` entries of a manifest or fragment `file` (text `text`), appended to `out`.
fn check_packages(raw: &[RawPackage], text: &str, file: &str, seen_paths: &mut BTreeSet<String>, out: &mut Vec<PackageSpec>) -> Result<()> {
    let lines = LineIndex::new(text);
    let at = |line: usize, msg: String| anyhow!("{file}:{line}: {msg}");
    for (i, p) in raw.iter().enumerate() {
        let line = |field: &str| lines.line_of(&["packages", &i.to_string(), field]).unwrap_or(1);
        let os_ok = !p.os.is_empty() && p.os.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) && !p.os.starts_with('.');
        if !os_ok {
            return Err(at(line("os"), format!("bad os tag {:?}: use e.g. debian-12, ubuntu-22.04, el7, el9", p.os)));
        }
        if is_mirror_relative(&p.url) {
            check_relative(&p.url).map_err(|e| at(line("url"), e.to_string()))?;
        } else {
            check_url(&p.url).map_err(|e| at(line("url"), e.to_string()))?;
        }
        let sha256 = parse_hex(&p.sha256).map_err(|e| at(line("sha256"), e.to_string()))?;
        let file_name = url_file_name(&p.url).ok_or_else(|| at(line("url"), format!("url {} does not end in a file name", p.url)))?;
        let path = safe_relative_path(&format!("packages/{}/{file_name}", p.os)).map_err(|e| at(line("url"), format!("unsafe package file name: {e:#}")))?;
        if !seen_paths.insert(path.clone()) {
            return Err(at(line("url"), format!("duplicate path {path:?}: another package for {} has the same file name", p.os)));
        }
        let name = match &p.name {
            Some(n) => n.clone(),
            None => guess_package_name(&file_name),
        };
        out.push(PackageSpec { os: p.os.clone(), name, url: p.url.clone(), sha256, path });
    }
    Ok(())
}

/// A package url without a scheme is relative to the distribution mirror chosen at build time
/// (`build::mirror`).
pub fn is_mirror_relative(u: &str) -> bool {
    !u.contains("://")
}

fn check_relative(u: &str) -> Result<()> {
    let ok = !u.is_empty()
        && !u.starts_with('/')
        && !u.contains(char::is_whitespace)
        && !u.contains(['?', '#', '\\'])
        && u.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(anyhow!("bad url {u:?}: a package url is http(s)://... or a path relative to the distribution mirror, like debian/pool/main/k/keepalived/keepalived_2.2.8-1_amd64.deb"))
    }
}

fn check_url(u: &str) -> Result<()> {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !u.contains(char::is_whitespace) => Ok(()),
        _ => Err(anyhow!("bad url {u:?}: expected http:// or https://")).hint("file urls must be absolute http(s) urls"),
    }
}

/// The last path segment of a URL or mirror-relative path (query and fragment removed), percent-decoding not
/// applied.
pub fn url_file_name(u: &str) -> Option<String> {
    let no_query = u.split(['?', '#']).next()?;
    let path = match no_query.split_once("://") {
        Some((_, after_scheme)) => after_scheme.split_once('/')?.1,
        None => no_query,
    };
    let name = path.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// `keepalived_2.2.7-1+b2_amd64.deb` → `keepalived`; `haproxy-1.5.18-9.el7.x86_64.rpm` → `haproxy`.
fn guess_package_name(file: &str) -> String {
    if let Some(n) = file.strip_suffix(".deb").and_then(|s| s.split('_').next()) {
        return n.to_string();
    }
    let stem = file.strip_suffix(".rpm").unwrap_or(file);
    // name-version-release.arch: drop the last two '-' separated fields.
    let mut parts: Vec<&str> = stem.split('-').collect();
    if parts.len() > 2 {
        parts.truncate(parts.len() - 2);
    }
    parts.join("-")
}

#[cfg(test)]
mod tests;
