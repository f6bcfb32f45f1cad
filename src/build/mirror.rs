//! Mirror-relative package URLs: a `packages:` url without a scheme (`debian/pool/main/k/keepalived/...deb`)
//! is a path under the ROOT of a distribution mirror (`http://deb.debian.org/`), chosen when the bundle is
//! built: `airgap build --mirror debian-12=http://mirror.corp.example/`, or else the mirror of the packaging
//! machine's own apt (Debian family) or dnf/yum (RHEL family) configuration when its OS is the packages'. So
//! manifests name no mirror host, and the same manifest builds against a customer's internal mirror with the
//! upstream layout (`debian/`, `debian-security/`, `rocky/`...). The sha256 of every package is in the
//! manifest: a mirror can only serve the exact bytes.

use crate::build::manifest::{is_mirror_relative, Manifest};
use crate::error::HintExt;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// `OS=URL` of `--mirror`.
pub fn parse_flag(s: &str) -> Result<(String, String)> {
    let (os, url) = s.split_once('=').ok_or_else(|| anyhow!("--mirror {s:?}: expected OS=URL, e.g. debian-12=http://mirror.example/"))?;
    if os.is_empty() || url_root(url).is_none() {
        bail!("--mirror {s:?}: expected OS=URL with an http(s) URL, e.g. debian-12=http://mirror.example/");
    }
    Ok((os.to_string(), url.to_string()))
}

/// `scheme://host[:port]/` of an http(s) URL.
pub fn url_root(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| format!("{scheme}://{host}/"))
}

/// The first http(s) mirror of apt's sources (`deb URL suite ...` lines and deb822 `URIs:` fields), as its root.
pub fn apt_mirror(sources: &[String]) -> Option<String> {
    sources.iter().flat_map(|t| t.lines()).find_map(|l| {
        let l = l.trim();
        let url = if let Some(rest) = l.strip_prefix("URIs:") {
            rest.split_whitespace().next()
        } else if let Some(rest) = l.strip_prefix("deb ") {
            // `deb [options] URL suite components`
            let rest = rest.trim_start();
            let rest = if rest.starts_with('[') { rest.split_once(']').map(|(_, r)| r)? } else { rest };
            rest.split_whitespace().next()
        } else {
            None
        }?;
        url_root(url)
    })
}

/// The first http(s) `baseurl=` of dnf/yum repository files, as its root.
pub fn dnf_mirror(repos: &[String]) -> Option<String> {
    repos.iter().flat_map(|t| t.lines()).find_map(|l| {
        let v = l.trim().strip_prefix("baseurl")?.trim_start().strip_prefix('=')?;
        url_root(v.trim())
    })
}

fn read_all(dir: &Path, ext: &[&str]) -> Vec<String> {
    let mut files: Vec<_> = fs_err::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| ext.iter().any(|x| e == *x))).collect();
    files.sort();
    files.into_iter().filter_map(|p| fs_err::read_to_string(p).ok()).collect()
}

/// The packaging machine's mirror for packages of `os` (`debian-12`, `el9`...), when this machine is of that
/// distribution: its apt sources when `os` starts with its `/etc/os-release` ID (debian, ubuntu), its dnf/yum
/// repositories when `os` is `elN` and it is a RHEL-family machine.
pub fn machine_default(os: &str) -> Option<String> {
    let release = fs_err::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| release.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(|v| v.trim_matches('"').to_string()).unwrap_or_default();
    let (id, like) = (field("ID"), field("ID_LIKE"));
    let rhel = like.split_whitespace().any(|l| l == "rhel" || l == "fedora") || id == "rhel";
    if !id.is_empty() && os.starts_with(&format!("{id}-")) && Path::new("/etc/apt").is_dir() {
        let mut sources: Vec<String> = fs_err::read_to_string("/etc/apt/sources.list").into_iter().collect();
        sources.extend(read_all(Path::new("/etc/apt/sources.list.d"), &["list", "sources"]));
        return apt_mirror(&sources);
    }
    if rhel && os.starts_with("el") {
        let mut repos = read_all(Path::new("/etc/yum.repos.d"), &["repo"]);
        repos.extend(read_all(Path::new("/etc/dnf/repos.d"), &["repo"]));
        return dnf_mirror(&repos);
    }
    None
}

/// Make every mirror-relative package url absolute: under `given[os]` (`--mirror`), else `default(os)`.
/// Fails naming each OS that has relative urls and no mirror.
pub fn resolve(m: &mut Manifest, given: &BTreeMap<String, String>, default: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let mut chosen: BTreeMap<String, Option<String>> = BTreeMap::new();
    for p in m.packages.iter().filter(|p| is_mirror_relative(&p.url)) {
        chosen.entry(p.os.clone()).or_insert_with(|| given.get(&p.os).cloned().or_else(|| default(&p.os)));
    }
    let missing: Vec<&String> = chosen.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k).collect();
    if !missing.is_empty() {
        let list = missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(anyhow!("{}: the packages for {list} have urls relative to a distribution mirror, and no mirror is known for {list}", m.file))
            .hint(format!("pass --mirror {}=URL (the root of a mirror with the upstream layout, e.g. http://deb.debian.org/); without it, only the packaging machine's own distribution's mirror is known, from its apt/dnf configuration", missing[0]));
    }
    for p in m.packages.iter_mut().filter(|p| is_mirror_relative(&p.url)) {
        let base = chosen[&p.os].as_deref().expect("checked above");
        p.url = format!("{}/{}", base.trim_end_matches('/'), p.url);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_apt_and_dnf_configuration() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n".to_string();
        assert_eq!(apt_mirror(&[deb822]), Some("http://deb.debian.org/".into()));
        let list = "# comment\ndeb [signed-by=/k.gpg arch=amd64] https://mirror.corp.example:8443/debian bookworm main\n".to_string();
        assert_eq!(apt_mirror(&[list]), Some("https://mirror.corp.example:8443/".into()));
        assert_eq!(apt_mirror(&["deb cdrom:[Debian]/ bookworm main\n".into()]), None);
        let repo = "[baseos]\nname=BaseOS\nmirrorlist=https://m/x\nbaseurl = https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/\n".to_string();
        assert_eq!(dnf_mirror(&[repo]), Some("https://dl.rockylinux.org/".into()));
        assert_eq!(parse_flag("el9=https://m.example/x").unwrap(), ("el9".into(), "https://m.example/x".into()));
        assert!(parse_flag("el9").is_err() && parse_flag("el9=ftp://m").is_err());
    }

    #[test]
    fn relative_urls_go_under_the_chosen_mirror() {
        let h = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let text = format!("name: a\nversion: '1'\npackages:\n  - os: debian-12\n    url: debian/pool/main/k/keepalived/keepalived_2.2.8-1_amd64.deb\n    sha256: {h}\n  - os: el9\n    url: https://fixed.example/x-1-1.el9.x86_64.rpm\n    sha256: {h}\n  - os: el9\n    url: pub/rocky/9/BaseOS/x86_64/os/Packages/h/haproxy-2.4-1.el9.x86_64.rpm\n    sha256: {h}\n");
        let mut m = crate::build::manifest::parse(&text, "m.yaml").unwrap();
        assert_eq!(m.packages[0].path, "packages/debian-12/keepalived_2.2.8-1_amd64.deb");
        let none = |_: &str| None;
        let err = resolve(&mut m.clone(), &BTreeMap::new(), &none).unwrap_err();
        assert_eq!(err.to_string(), "m.yaml: the packages for debian-12, el9 have urls relative to a distribution mirror, and no mirror is known for debian-12, el9");
        assert!(crate::error::hints(&err)[0].starts_with("pass --mirror debian-12=URL"));
        let given: BTreeMap<String, String> = [("el9".to_string(), "https://rocky.corp/".to_string())].into();
        let apt = |os: &str| (os == "debian-12").then(|| "http://deb.debian.org/".to_string());
        resolve(&mut m, &given, &apt).unwrap();
        let urls: Vec<&str> = m.packages.iter().map(|p| p.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://deb.debian.org/debian/pool/main/k/keepalived/keepalived_2.2.8-1_amd64.deb",
                "https://fixed.example/x-1-1.el9.x86_64.rpm",
                "https://rocky.corp/pub/rocky/9/BaseOS/x86_64/os/Packages/h/haproxy-2.4-1.el9.x86_64.rpm",
            ]
        );
        for bad in ["/debian/pool/x.deb", "debian/../x.deb", "debian//x.deb", "a b.deb"] {
            let t = text.replace("debian/pool/main/k/keepalived/keepalived_2.2.8-1_amd64.deb", bad);
            let e = crate::build::manifest::parse(&t, "m.yaml").unwrap_err().to_string();
            assert!(e.starts_with("m.yaml:5: bad url"), "{bad}: {e}");
        }
    }
}
