//! Offline OS package installation on a node, from the packages the bundle carries under
//! `files/packages/<os>/`: extracted from the (verified) bundle, then the dependency closure of the wanted
//! packages that the node lacks is computed from the package files' own metadata and installed with the
//! family's low-level tool in one transaction (`dpkg -i` / `rpm -Uvh`), with no repository and no network.

use crate::error::HintExt;
use super::OsFamily;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where a node keeps the packages distribute copied from the bundle: `PACKAGES_DIR/<os tag>/<file>`.
pub const PACKAGES_DIR: &str = "/opt/airgap/packages";

/// This node's OS family and the tags its packages may be filed under in a bundle, most specific first
/// (`debian-12.5`? no: `debian-12`, `ubuntu-22.04`, `ubuntu-22`, `rocky-9.3`, `rocky-9`, `el9`).
pub fn os_tags() -> (OsFamily, Vec<String>) {
    let text = fs_err::read_to_string("/etc/os-release").unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let like: Vec<String> = get("ID_LIKE").split_whitespace().map(str::to_string).collect();
    os_tags_for(&get("ID"), &like, &get("VERSION_ID"))
}

/// [`os_tags`] from the fields of an os-release file (`ID`, `ID_LIKE` words, `VERSION_ID`).
pub fn os_tags_for(id: &str, like: &[String], ver: &str) -> (OsFamily, Vec<String>) {
    let major = ver.split('.').next().unwrap_or("").to_string();
    let rhel = ["rhel", "centos", "fedora", "rocky", "almalinux", "openEuler", "kylin"]
        .iter()
        .any(|f| id.eq_ignore_ascii_case(f) || like.iter().any(|l| l.eq_ignore_ascii_case(f)));
    let mut tags = vec![format!("{id}-{ver}"), format!("{id}-{major}")];
    if rhel {
        tags.push(format!("el{major}"));
    }
    tags.dedup();
    (if rhel { OsFamily::Rhel } else { OsFamily::Debian }, tags)
}

/// The subdirectory of `root` (where distribute copied the packages, one subdirectory per OS tag) for this
/// node's OS: its most specific tag that is there.
pub fn tag_dir(root: &Path) -> Result<PathBuf> {
    let (_, tags) = os_tags();
    if let Some(t) = tags.iter().find(|t| root.join(t).is_dir()) {
        return Ok(root.join(t));
    }
    let have: Vec<String> = fs_err::read_dir(root)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    Err(anyhow!(
        "no OS packages for this node ({}) under {}{}",
        tags.join(" or "),
        root.display(),
        if have.is_empty() { String::new() } else { format!(" (there are: {})", have.join(", ")) }
    ))
    .hint("run the distribute step (it copies the packages of the node's OS from the bundle); the bundle needs a packages: section for this OS")
}

/// One package file's metadata.
#[derive(Debug, Clone)]
pub struct PkgFile {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub provides: Vec<String>,
    /// Each inner list: alternatives, any one satisfies.
    pub depends: Vec<Vec<String>>,
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("failed to run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `libc6 (>= 2.34)` / `foo:any` -> `libc6` / `foo`.
fn dep_name(s: &str) -> String {
    let n = s.trim().split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
    n.split(':').next().unwrap_or("").to_string()
}

fn parse_deb_list(v: &str) -> Vec<Vec<String>> {
    v.split(',').filter(|g| !g.trim().is_empty()).map(|g| g.split('|').map(dep_name).collect()).collect()
}

/// Read a .deb's control fields with `dpkg-deb -f`.
pub fn read_deb(path: &Path) -> Result<PkgFile> {
    let text = output(Command::new("dpkg-deb").arg("-f").arg(path).args(["Package", "Version", "Provides", "Depends", "Pre-Depends"]))?;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut last = String::new();
    for line in text.lines() {
        if line.starts_with(' ') {
            if let Some(v) = fields.get_mut(&last) {
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.to_string();
            fields.insert(last.clone(), v.trim().to_string());
        }
    }
    let f = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let mut depends = parse_deb_list(&f("Pre-Depends"));
    depends.extend(parse_deb_list(&f("Depends")));
    Ok(PkgFile {
        path: path.to_path_buf(),
        name: f("Package"),
        version: f("Version"),
        provides: parse_deb_list(&f("Provides")).into_iter().flatten().collect(),
        depends,
    })
}

/// Read an .rpm's name, provides and requires with `rpm -qp`.
pub fn read_rpm(path: &Path) -> Result<PkgFile> {
    let name = output(Command::new("rpm").args(["-qp", "--qf", "%{NAME}"]).arg(path))?;
    let version = output(Command::new("rpm").args(["-qp", "--qf", "%{EPOCHNUM}:%{VERSION}-%{RELEASE}"]).arg(path))?;
    let caps = |flag: &str| -> Result<Vec<String>> {
        Ok(output(Command::new("rpm").args(["-qp", flag]).arg(path))?
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .filter(|c| !c.is_empty() && !c.starts_with("rpmlib("))
            .collect())
    };
    let mut provides = caps("--provides")?;
    provides.push(name.clone());
    // RPM dependencies may name files (`/usr/sbin/useradd`): a package provides every file it holds
    provides.extend(output(Command::new("rpm").args(["-qpl"]).arg(path))?.lines().filter(|l| l.starts_with('/')).map(str::to_string));
    Ok(PkgFile { path: path.to_path_buf(), name, version, provides, depends: caps("--requires")?.into_iter().map(|c| vec![c]).collect() })
}

/// What is installed: package names and what they provide (Debian), or a capability query (RHEL).
pub struct Installed {
    family: OsFamily,
    root: PathBuf,
    names: BTreeSet<String>,
    /// Debian: installed package -> version.
    versions: BTreeMap<String, String>,
}

impl Installed {
    /// What is installed in the system under `root` (`/` on a node).
    pub fn query(family: OsFamily, root: &Path) -> Result<Installed> {
        let mut names = BTreeSet::new();
        let mut versions = BTreeMap::new();
        if family == OsFamily::Debian {
            let text = output(
                Command::new("dpkg-query")
                    .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
                    .args(["-W", "-f", "${Status}\t${Package}\t${Version}\t${Provides}\n"]),
            )?;
            for l in text.lines() {
                let mut cols = l.split('\t');
                let (Some(status), Some(name)) = (cols.next(), cols.next()) else { continue };
                let version = cols.next().unwrap_or("");
                if status.ends_with(" installed") {
                    names.insert(name.to_string());
                    versions.insert(name.to_string(), version.to_string());
                    names.extend(parse_deb_list(cols.next().unwrap_or("")).into_iter().flatten());
                }
            }
        }
        Ok(Installed { family, root: root.to_path_buf(), names, versions })
    }

    pub fn has(&self, cap: &str) -> bool {
        match self.family {
            OsFamily::Debian => self.names.contains(cap),
            OsFamily::Rhel => Command::new("rpm")
                .arg("--root")
                .arg(&self.root)
                .args(["-q", "--whatprovides", cap])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }
}

/// The package files to install so that every wanted package is installed: the wanted packages and their
/// dependencies, transitively, that the node lacks. Fails naming what is neither installed nor in `files`.
/// `wanted`: groups of alternatives (`libnginx-mod-stream|nginx-mod-stream`: the first the OS has).
pub fn closure<'a>(files: &'a [PkgFile], wanted: &[String], installed: &Installed) -> Result<Vec<&'a PkgFile>> {
    let find = |cap: &str| files.iter().find(|f| f.name == cap).or_else(|| files.iter().find(|f| f.provides.iter().any(|p| p == cap)));
    let mut chosen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let mut queue: VecDeque<(Vec<String>, String)> = wanted.iter().map(|w| (alternatives(w), "requested".to_string())).collect();
    while let Some((alts, why)) = queue.pop_front() {
        if alts.iter().any(|a| chosen.contains(a)) {
            continue;
        }
        // installed: done, unless the bundle carries another version of it (apt put it in the closure
        // because a package of the closure needs exactly that version: e.g. libperl5.36 and perl-base)
        let upgrade = alts.iter().find_map(|a| {
            let v = installed.versions.get(a)?;
            files.iter().find(|f| &f.name == a && !f.version.is_empty() && &f.version != v)
        });
        if upgrade.is_none() && alts.iter().any(|a| installed.has(a)) {
            continue;
        }
        let Some(f) = upgrade.or_else(|| alts.iter().find_map(|a| find(a))) else {
            bail!("{} ({why}) is neither installed on this node nor among the bundle's packages", alts.join(" | "));
        };
        if !chosen.insert(f.name.clone()) {
            continue;
        }
        chosen.extend(f.provides.iter().cloned());
        for d in &f.depends {
            queue.push_back((d.clone(), format!("needed by {}", f.name)));
        }
        out.push(f);
    }
    Ok(out)
}

fn alternatives(w: &str) -> Vec<String> {
    w.split('|').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect()
}

/// The wanted packages (groups of alternatives `a|b`) of which no alternative is installed.
pub fn missing(family: OsFamily, wanted: &[String], root: &Path) -> Result<Vec<String>> {
    let installed = Installed::query(family, root)?;
    Ok(wanted.iter().filter(|w| !alternatives(w).iter().any(|a| installed.has(a))).cloned().collect())
}

/// Install the wanted packages (and what they need) from the package files in `dir`, offline.
/// Returns the files installed (empty when everything was there).
pub fn install(dir: &Path, family: OsFamily, wanted: &[String], root: &Path) -> Result<Vec<String>> {
    if missing(family, wanted, root)?.is_empty() {
        return Ok(vec![]);
    }
    let installed = Installed::query(family, root)?;
    let ext = match family {
        OsFamily::Debian => "deb",
        OsFamily::Rhel => "rpm",
    };
    let mut files = Vec::new();
    for e in fs_err::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == ext) {
            files.push(match family {
                OsFamily::Debian => read_deb(&p)?,
                OsFamily::Rhel => read_rpm(&p)?,
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let todo = closure(&files, wanted, &installed)?;
    let mut cmd = match family {
        OsFamily::Debian => {
            let mut c = Command::new("dpkg");
            if root != Path::new("/") {
                c.arg(format!("--root={}", root.display()));
            }
            // keep the config files airgap writes; never ask
            c.args(["-i", "--force-confold", "--force-confdef"]).env("DEBIAN_FRONTEND", "noninteractive");
            c
        }
        OsFamily::Rhel => {
            let mut c = Command::new("rpm");
            c.arg("--root").arg(root).args(["-Uvh", "--replacepkgs"]);
            c
        }
    };
    let base: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_os_string()).collect();
    cmd.args(todo.iter().map(|f| &f.path));
    // never a pipe the daemons started by maintainer scripts could inherit
    let log = fs_err::File::create(dir.join("install.log"))?.into_parts().0;
    let mut status = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).status().context("failed to run the package tool")?;
    // dpkg -i unpacks in the order given and refuses to unpack a package whose Pre-Depends are unpacked but not
    // configured yet (python3-minimal on python3.11-minimal); they are configured at the end of that run, so
    // another run of the packages still not installed goes one step further down a chain of Pre-Depends
    // (python3 -> python3-minimal -> python3.11-minimal)
    let log_text = || fs_err::read_to_string(dir.join("install.log")).unwrap_or_default();
    for _ in 0..5 {
        if status.success() || family != OsFamily::Debian || !log_text().contains("pre-dependency problem") {
            break;
        }
        fs_err::write(dir.join("install.log"), b"")?;
        let now = Installed::query(family, root)?;
        let rest: Vec<&&PkgFile> = todo.iter().filter(|f| now.versions.get(&f.name) != Some(&f.version)).collect();
        let mut again = Command::new("dpkg");
        again.args(&base).env("DEBIAN_FRONTEND", "noninteractive").args(rest.iter().map(|f| &f.path));
        let log = fs_err::OpenOptions::new().append(true).open(dir.join("install.log"))?.into_parts().0;
        status = again.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).status().context("failed to run the package tool")?;
    }
    if !status.success() {
        let text = fs_err::read_to_string(dir.join("install.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "installing {} failed ({status}):\n{}",
            wanted.join(", "),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let still = missing(family, wanted, root)?;
    if !still.is_empty() {
        bail!("{} still not installed after the package tool succeeded", still.join(", "));
    }
    Ok(todo.iter().map(|f| f.name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, provides: &[&str], depends: &[&[&str]]) -> PkgFile {
        PkgFile {
            path: PathBuf::from(format!("{name}.deb")),
            name: name.into(),
            version: "1".into(),
            provides: provides.iter().map(|s| s.to_string()).collect(),
            depends: depends.iter().map(|g| g.iter().map(|s| s.to_string()).collect()).collect(),
        }
    }

    #[test]
    fn closure_takes_what_is_missing_and_names_what_cannot_be_found() {
        let files = vec![
            pkg("keepalived", &[], &[&["libc6"], &["libnl-3-200"], &["iproute2"]]),
            pkg("libnl-3-200", &[], &[&["libc6"]]),
            pkg("nginx", &[], &[&["nginx-common"], &["libssl3"]]),
            pkg("nginx-common", &[], &[&["lsb-base", "sysvinit-utils"]]),
            pkg("libssl3", &[], &[]),
            pkg("mawk", &["awk"], &[]),
            pkg("needs-awk", &[], &[&["awk"]]),
        ];
        let names = ["libc6", "iproute2", "sysvinit-utils"].map(String::from);
        let installed = Installed { family: OsFamily::Debian, root: PathBuf::from("/"), names: names.clone().into(), versions: names.iter().map(|n| (n.clone(), "1".into())).collect() };
        let names = |v: Vec<&PkgFile>| v.into_iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(closure(&files, &["keepalived".into()], &installed).unwrap()), ["keepalived", "libnl-3-200"]);
        assert_eq!(names(closure(&files, &["nginx".into()], &installed).unwrap()), ["nginx", "nginx-common", "libssl3"]);
        assert_eq!(names(closure(&files, &["needs-awk".into()], &installed).unwrap()), ["needs-awk", "mawk"]);
        assert_eq!(names(closure(&files, &["nginx-mod-stream|libssl3".into()], &installed).unwrap()), ["libssl3"]);
        assert!(closure(&files, &["libc6".into()], &installed).unwrap().is_empty());
        let err = closure(&files, &["haproxy".into()], &installed).unwrap_err().to_string();
        assert!(err.contains("haproxy (requested) is neither installed"), "{err}");
        let files2 = vec![pkg("a", &[], &[&["b"]])];
        let err = closure(&files2, &["a".into()], &installed).unwrap_err().to_string();
        assert!(err.contains("b (needed by a)"), "{err}");
    }

    #[test]
    fn closure_upgrades_an_installed_package_when_the_bundle_carries_another_version() {
        // apt put perl-base in the closure because libperl needs exactly the bundle's version
        let mut perl = pkg("perl-base", &[], &[]);
        perl.version = "5.36.0-7+deb12u4".into();
        let files = vec![pkg("libperl5.36", &[], &[&["perl-base"]]), perl];
        let installed = Installed {
            family: OsFamily::Debian,
            root: PathBuf::from("/"),
            names: ["perl-base".to_string()].into(),
            versions: [("perl-base".to_string(), "5.36.0-7+deb12u1".to_string())].into(),
        };
        let got: Vec<String> = closure(&files, &["libperl5.36".into()], &installed).unwrap().into_iter().map(|f| f.name.clone()).collect();
        assert_eq!(got, ["libperl5.36", "perl-base"]);
    }

    #[test]
    fn deb_dependency_fields_parse() {
        assert_eq!(
            parse_deb_list("libc6 (>= 2.34), libssl3 (>= 3.0.0) | libssl1.1, python3:any"),
            vec![vec!["libc6".to_string()], vec!["libssl3".into(), "libssl1.1".into()], vec!["python3".into()]]
        );
    }
}

#[cfg(test)]
mod os_tag_tests {
    use super::*;

    #[test]
    fn os_tags_cover_debian_and_rhel_families() {
        let (fam, tags) = os_tags_for("debian", &[], "12");
        assert_eq!(fam, OsFamily::Debian);
        assert_eq!(tags, ["debian-12"]);
        let (fam, tags) = os_tags_for("centos", &["rhel".into(), "fedora".into()], "7");
        assert_eq!(fam, OsFamily::Rhel);
        assert_eq!(tags, ["centos-7", "el7"]);
        let (_, tags) = os_tags_for("ubuntu", &["debian".into()], "22.04");
        assert_eq!(tags, ["ubuntu-22.04", "ubuntu-22"]);
    }
}
