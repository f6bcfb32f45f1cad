//! Which containerd a node's `config.toml` is written for. containerd 2.x reads config `version = 3`
//! (the CRI plugin split into `io.containerd.cri.v1.images` / `io.containerd.cri.v1.runtime`); it still loads
//! a `version = 2` file, but migrates it at every start with a warning (`Configuration migrated from version
//! 2, use containerd config migrate to avoid migration`), and 2.1 deprecated the CNI `bin_dir` that 2.3
//! removed (`bin_dirs` instead). containerd 1.6 / 1.7 read only version 2.
//!
//! The version comes from the bundle, before containerd is on the node: the static release's file name as
//! upstream names it (`containerd-static-2.3.6-linux-amd64.tar.gz`, `.../download/v2.3.6/...`), or the
//! file name of the OS package (`containerd_1.6.20~ds1-1+deb12u3_amd64.deb`, `containerd.io-1.6.33-3.1.el7.x86_64.rpm`).
//! When the bundle does not tell, version 2 is written: every containerd from 1.6 on loads it.

use crate::bundle::format::{FileEntry, PackageEntry};
use crate::install::Ctx;
use crate::node::components::Component;
use crate::site::inventory::Node;
use std::fmt;

/// A containerd release (`major.minor.patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl ContainerdVersion {
    /// `1.6.20`, `v2.3.6`, `2.1.9+ds1-5`, `1:1.6.20~ds1` (a Debian epoch), `1.7` (patch 0).
    pub fn parse(s: &str) -> Option<ContainerdVersion> {
        let s = s.split_once(':').filter(|(e, _)| e.bytes().all(|b| b.is_ascii_digit())).map_or(s, |(_, v)| v);
        let s = s.strip_prefix('v').unwrap_or(s);
        let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let mut parts = s[..end].trim_end_matches('.').split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        Some(ContainerdVersion { major, minor, patch })
    }

    /// The version in a static release's URL or path: the file name's first `X.Y.Z` field
    /// (`containerd-static-2.3.6-linux-amd64.tar.gz`), else a `vX.Y.Z` directory (`.../download/v2.3.6/...`).
    pub fn of_release_file(url_or_path: &str) -> Option<ContainerdVersion> {
        let path = url_or_path.split(['?', '#']).next().unwrap_or_default();
        let mut segments = path.rsplit('/');
        let name = segments.next()?;
        let field = |f: &str| f.contains('.').then(|| ContainerdVersion::parse(f)).flatten();
        name.split('-')
            .find_map(field)
            .or_else(|| {
                segments.find_map(|s| {
                    let rest = s.strip_prefix('v')?;
                    rest.bytes().all(|b| b.is_ascii_digit() || b == b'.').then(|| ContainerdVersion::parse(rest)).flatten()
                })
            })
    }

    /// The version in an OS package's file name: `NAME_VERSION_ARCH.deb` or `NAME-VERSION-RELEASE.ARCH.rpm`.
    pub fn of_package(p: &PackageEntry) -> Option<ContainerdVersion> {
        let file = p.path.rsplit('/').next().unwrap_or(&p.path);
        let rest = file.strip_prefix(p.name.as_str())?;
        ContainerdVersion::parse(rest.strip_prefix(['_', '-'])?)
    }
}

/// What the runtime step knows of the containerd a node will run, and so which config it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerdRelease {
    /// From the bundle: the static release or the OS package, and where the version was read.
    Known { version: ContainerdVersion, from: String },
    /// The bundle does not tell (no bundle, a file name without a version, several different packages).
    Unknown,
}

impl ContainerdRelease {
    /// Config `version = 3` (containerd 2.x and later); else 2.
    pub fn config_version(&self) -> u8 {
        match self {
            ContainerdRelease::Known { version, .. } if version.major >= 2 => 3,
            _ => 2,
        }
    }

    /// What the config file's header says of it.
    pub fn describe(&self) -> String {
        match self {
            ContainerdRelease::Known { version, from } => format!("{version} ({from})"),
            ContainerdRelease::Unknown => "of a version the bundle does not tell".into(),
        }
    }

    /// CNI's `bin_dirs` (containerd 2.1 on: `bin_dir` is deprecated there and gone in 2.3); else `bin_dir`.
    pub fn cni_bin_dirs(&self) -> bool {
        matches!(self, ContainerdRelease::Known { version, .. } if (version.major, version.minor) >= (2, 1))
    }

    /// The containerd of `node`: the bundle's static release for its platform (any platform's when the
    /// facts are not known: they carry one release), else the bundle's `containerd` / `containerd.io`
    /// package for its OS (for every OS when not known, if they agree on the config they need).
    pub fn of(ctx: &Ctx, node: &Node) -> ContainerdRelease {
        let Some(kit) = ctx.kit else { return ContainerdRelease::Unknown };
        let target = ctx.targets.get(&node.name);
        if kit.has_component(Component::Containerd) {
            let file: Option<&FileEntry> = match target {
                Some(t) => kit.component_for(Component::Containerd, &t.platform),
                None => kit.root().files.iter().find(|f| f.install == Some(Component::Containerd)),
            };
            return file
                .and_then(|f| {
                    let version = ContainerdVersion::of_release_file(&f.url).or_else(|| ContainerdVersion::of_release_file(&f.path))?;
                    Some(ContainerdRelease::Known { version, from: format!("the bundle's {}", f.path) })
                })
                .unwrap_or(ContainerdRelease::Unknown);
        }
        let is_containerd = |p: &&PackageEntry| p.name == "containerd" || p.name == "containerd.io";
        let packages: Vec<&PackageEntry> = match target {
            Some(t) => kit.packages_for(t).map(|(_, ps)| ps.into_iter().filter(is_containerd).collect()).unwrap_or_default(),
            None => kit.root().packages.iter().filter(is_containerd).collect(),
        };
        let known: Vec<(ContainerdVersion, &PackageEntry)> =
            packages.iter().filter_map(|p| ContainerdVersion::of_package(p).map(|v| (v, *p))).collect();
        let releases: Vec<ContainerdRelease> = known
            .iter()
            .map(|(version, p)| ContainerdRelease::Known { version: *version, from: format!("the bundle's {}", p.path) })
            .collect();
        match releases.first() {
            // several OSes, several packages: one config only if they all need the same
            Some(first) if known.len() == packages.len() && releases.iter().all(|r| r.config_version() == first.config_version() && r.cni_bin_dirs() == first.cni_bin_dirs()) => {
                first.clone()
            }
            _ => ContainerdRelease::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> Option<ContainerdVersion> {
        Some(ContainerdVersion { major, minor, patch })
    }

    #[test]
    fn versions_are_read_from_upstreams_and_the_distributions_file_names() {
        assert_eq!(ContainerdVersion::parse("2.1.9+ds1-5"), v(2, 1, 9));
        assert_eq!(ContainerdVersion::parse("1:1.6.20~ds1-1+deb12u3"), v(1, 6, 20));
        assert_eq!(ContainerdVersion::parse("v1.7"), v(1, 7, 0));
        assert_eq!(ContainerdVersion::parse("linux"), None);
        let rel = ContainerdVersion::of_release_file;
        assert_eq!(rel("https://github.com/containerd/containerd/releases/download/v2.3.6/containerd-static-2.3.6-linux-amd64.tar.gz"), v(2, 3, 6));
        assert_eq!(rel("archives/linux-amd64/containerd-static-2.3.6.tar.gz"), v(2, 3, 6));
        assert_eq!(rel("https://example.org/v1.7.27/containerd.tgz"), v(1, 7, 27));
        // no version anywhere (the lab's tarball of this host's containerd): not guessed
        assert_eq!(rel("http://127.0.0.1:8000/containerd-static-linux-amd64.tar.gz"), None);
        assert_eq!(rel("archives/linux-arm64/containerd.tar.gz"), None);
        let pkg = |name: &str, path: &str| PackageEntry { os: "x".into(), name: name.into(), path: path.into(), url: String::new(), sha256: String::new(), size: 0 };
        assert_eq!(ContainerdVersion::of_package(&pkg("containerd", "packages/debian-12/containerd_1.6.20~ds1-1+deb12u3_amd64.deb")), v(1, 6, 20));
        assert_eq!(ContainerdVersion::of_package(&pkg("containerd.io", "packages/el7/containerd.io-1.6.33-3.1.el7.x86_64.rpm")), v(1, 6, 33));
        assert_eq!(ContainerdVersion::of_package(&pkg("containerd.io", "packages/el9/containerd.io-2.1.5-1.el9.x86_64.rpm")), v(2, 1, 5));
    }

    #[test]
    fn containerd_2_gets_config_version_3_and_bin_dirs_from_2_1() {
        let known = |major, minor| ContainerdRelease::Known { version: ContainerdVersion { major, minor, patch: 0 }, from: String::new() };
        assert_eq!((known(1, 6).config_version(), known(1, 6).cni_bin_dirs()), (2, false));
        assert_eq!((known(1, 7).config_version(), known(1, 7).cni_bin_dirs()), (2, false));
        assert_eq!((known(2, 0).config_version(), known(2, 0).cni_bin_dirs()), (3, false));
        assert_eq!((known(2, 3).config_version(), known(2, 3).cni_bin_dirs()), (3, true));
        assert_eq!((ContainerdRelease::Unknown.config_version(), ContainerdRelease::Unknown.cni_bin_dirs()), (2, false));
    }
}
