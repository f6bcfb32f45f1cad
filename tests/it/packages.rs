//! Offline OS package installation on the RHEL family: real `.rpm` files built with `rpmbuild`, their metadata
//! read with `rpm -qp`, the dependency closure computed against what is installed, and installed with `rpm` into
//! a scratch root (`rpm --root`) exactly as a node's `airgap node packages` does into `/`; and
//! `scripts/rpm-closure.sh` resolving with dnf against a repository made by createrepo_c. (The Debian path runs
//! for real on the lab nodes: tests/it/infra.rs.)

use airgap::node::packages::{install, missing, read_rpm};
use airgap::node::OsFamily;
use crate::support::{require_tool, run_ok};
use std::path::Path;
use std::process::Command;

/// Build a noarch rpm `name-version` holding `/usr/share/NAME/marker`, with these `Requires:`.
fn rpm(top: &Path, out: &Path, name: &str, version: &str, requires: &[&str]) {
    let req: String = requires.iter().map(|r| format!("Requires: {r}\n")).collect();
    let spec = format!(
        "Name: {name}\nVersion: {version}\nRelease: 1\nSummary: airgap test package\nLicense: MIT\nBuildArch: noarch\n{req}\
         %description\nairgap test package\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\necho {name} > %{{buildroot}}/usr/share/{name}/marker\n\
         %files\n/usr/share/{name}/marker\n"
    );
    let spec_path = top.join(format!("{name}.spec"));
    fs_err::write(&spec_path, spec).unwrap();
    run_ok(Command::new("rpmbuild").args(["-bb", "--quiet", "--define"]).arg(format!("_topdir {}", top.display())).arg(&spec_path));
    let built = top.join(format!("RPMS/noarch/{name}-{version}-1.noarch.rpm"));
    fs_err::copy(&built, out.join(built.file_name().unwrap())).unwrap();
}

fn installed(root: &Path, name: &str) -> bool {
    Command::new("rpm").arg("--root").arg(root).args(["-q", name]).output().unwrap().status.success()
}

#[test]
fn rpm_closure_installs_offline_what_is_missing_and_nothing_else() {
    require_tool("rpmbuild");
    require_tool("rpm");
    let t = tempfile::tempdir().unwrap();
    let (top, dir, root) = (t.path().join("top"), t.path().join("packages"), t.path().join("root"));
    for d in [&top, &dir, &root] {
        fs_err::create_dir_all(d).unwrap();
    }
    // a needs b (versioned) and a FILE that c holds; x is unrelated; d needs something nobody has
    rpm(&top, &dir, "airgap-rt-a", "1.0", &["airgap-rt-b >= 1.0", "/usr/share/airgap-rt-c/marker"]);
    rpm(&top, &dir, "airgap-rt-b", "1.2", &[]);
    rpm(&top, &dir, "airgap-rt-c", "1.0", &[]);
    rpm(&top, &dir, "airgap-rt-x", "1.0", &[]);
    rpm(&top, &dir, "airgap-rt-d", "1.0", &["airgap-rt-nowhere"]);
    run_ok(Command::new("rpm").arg("--root").arg(&root).arg("--initdb"));

    let a = read_rpm(&dir.join("airgap-rt-a-1.0-1.noarch.rpm")).unwrap();
    assert_eq!((a.name.as_str(), a.version.as_str()), ("airgap-rt-a", "0:1.0-1"));
    assert!(a.provides.iter().any(|p| p == "/usr/share/airgap-rt-a/marker"), "{:?}", a.provides);
    let deps: Vec<&str> = a.depends.iter().flatten().map(String::as_str).collect();
    assert!(deps.contains(&"airgap-rt-b") && deps.contains(&"/usr/share/airgap-rt-c/marker"), "{deps:?}");

    let want = vec!["airgap-rt-a".to_string()];
    assert_eq!(missing(OsFamily::Rhel, &want, &root).unwrap(), want);
    let mut done = install(&dir, OsFamily::Rhel, &want, &root).unwrap();
    done.sort();
    assert_eq!(done, ["airgap-rt-a", "airgap-rt-b", "airgap-rt-c"]);
    for n in ["airgap-rt-a", "airgap-rt-b", "airgap-rt-c"] {
        assert!(installed(&root, n), "{n} is not in the scratch root's rpm database");
    }
    assert!(!installed(&root, "airgap-rt-x"), "an unrelated package was installed");
    assert_eq!(fs_err::read_to_string(root.join("usr/share/airgap-rt-a/marker")).unwrap(), "airgap-rt-a\n");
    // installed: nothing missing, a second install does nothing
    assert!(missing(OsFamily::Rhel, &want, &root).unwrap().is_empty());
    assert!(install(&dir, OsFamily::Rhel, &want, &root).unwrap().is_empty());
    // alternatives: the first the system has or the bundle carries
    let alt = vec!["airgap-rt-none|airgap-rt-x".to_string()];
    assert_eq!(install(&dir, OsFamily::Rhel, &alt, &root).unwrap(), ["airgap-rt-x"]);

    // a dependency neither installed nor carried: named, and nothing installed
    let err = format!("{:#}", install(&dir, OsFamily::Rhel, &["airgap-rt-d".to_string()], &root).unwrap_err());
    assert!(err.contains("airgap-rt-nowhere"), "{err}");
    assert!(!installed(&root, "airgap-rt-d"));
}

#[test]
fn rpm_closure_script_lists_what_the_base_lacks_and_build_takes_it() {
    for t in ["rpmbuild", "rpm", "dnf", "createrepo_c"] {
        require_tool(t);
    }
    let t = tempfile::tempdir().unwrap();
    let (top, repo, base) = (t.path().join("top"), t.path().join("repo"), t.path().join("base"));
    for d in [&top, &repo, &base] {
        fs_err::create_dir_all(d).unwrap();
    }
    rpm(&top, &repo, "airgap-rt-a", "1.0", &["airgap-rt-b >= 1.0", "/usr/share/airgap-rt-c/marker"]);
    rpm(&top, &repo, "airgap-rt-b", "1.2", &[]);
    rpm(&top, &repo, "airgap-rt-c", "1.0", &[]);
    rpm(&top, &repo, "airgap-rt-x", "1.0", &[]);
    run_ok(Command::new("createrepo_c").arg("-q").arg(&repo));
    let server = crate::support::fileserver::FileServer::start(&repo);
    // the base system already has b (its rpm database where RHEL keeps it, whatever this host's rpm defaults to)
    run_ok(Command::new("rpm").arg("--root").arg(&base).args(["--dbpath", "/var/lib/rpm", "--initdb"]));
    run_ok(Command::new("rpm").arg("--root").arg(&base).args(["--dbpath", "/var/lib/rpm", "-i"]).arg(repo.join("airgap-rt-b-1.2-1.noarch.rpm")));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rpm-closure.sh");
    let out = run_ok(Command::new("bash").arg(script).args(["--os", "el9", "--repo", &server.url("")]).arg("--installroot").arg(&base).arg("airgap-rt-a"));
    let fragment = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = fragment.lines().filter_map(|l| l.trim().strip_prefix("name: ")).collect();
    assert_eq!(names, ["airgap-rt-a", "airgap-rt-c"], "{fragment}");
    for (name, file) in [("airgap-rt-a", "airgap-rt-a-1.0-1.noarch.rpm"), ("airgap-rt-c", "airgap-rt-c-1.0-1.noarch.rpm")] {
        let sha = crate::support::sha256sum(&repo.join(file));
        // relative to the mirror's root: the fragment names no mirror host
        let entry = format!("    name: {name}\n    url: {file}\n    sha256: {sha}\n");
        assert!(fragment.contains(&entry), "{entry} not in\n{fragment}");
    }

    // the fragment is a valid manifest section: airgap build fetches, checks and bundles the packages
    let manifest = t.path().join("m.yaml");
    fs_err::write(&manifest, format!("name: rpms\nversion: '1'\n{fragment}")).unwrap();
    let keys = t.path().join("keys");
    let kg = crate::support::airgap_bin();
    run_ok(Command::new(&kg).args(["keygen", "--out-dir"]).arg(&keys));
    let build = |extra: &[&str]| {
        Command::new(&kg).arg("build").arg(&manifest).arg("--out").arg(t.path().join("out")).arg("--key").arg(keys.join("airgap.key")).arg("--cache-dir").arg(t.path().join("cache")).args(extra).output().unwrap()
    };
    // no mirror for el9 on this (Debian) machine: named, with the flag that gives one
    let no_mirror = build(&[]);
    let stderr = String::from_utf8_lossy(&no_mirror.stderr);
    assert!(!no_mirror.status.success() && stderr.contains("no mirror is known for el9") && stderr.contains("--mirror el9=URL"), "{stderr}");
    let mirror = format!("el9={}", server.url(""));
    let built = build(&["--mirror", &mirror]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let list = run_ok(Command::new("tar").args(["-I", "zstd", "-tf"]).arg(t.path().join("out/rpms-1.tar.zst")));
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("files/packages/el9/airgap-rt-a-1.0-1.noarch.rpm"), "{list}");
    assert!(list.contains("files/packages/el9/airgap-rt-c-1.0-1.noarch.rpm") && !list.contains("airgap-rt-b"), "{list}");
}

/// A .deb with no files but its control fields (`Pre-Depends` when `pre` is set).
fn deb(top: &Path, out: &Path, name: &str, pre: Option<&str>) {
    let d = top.join(name);
    fs_err::create_dir_all(d.join("DEBIAN")).unwrap();
    let pre = pre.map(|p| format!("Pre-Depends: {p}\n")).unwrap_or_default();
    fs_err::write(d.join("DEBIAN/control"), format!("Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\n{pre}Description: test\n")).unwrap();
    run_ok(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&d).arg(out.join(format!("{name}_1.0-1_all.deb"))));
}

/// dpkg -i refuses a package whose Pre-Depends is unpacked but not configured in the same run (python3 ->
/// python3-minimal -> python3.11-minimal in nfs-common's closure): the install goes on down the chain.
#[test]
fn deb_closure_with_a_chain_of_pre_depends_installs() {
    let t = tempfile::tempdir().unwrap();
    let (src, pkgs, root) = (t.path().join("src"), t.path().join("pkgs"), t.path().join("root"));
    fs_err::create_dir_all(&pkgs).unwrap();
    deb(&src, &pkgs, "ag-a", Some("ag-b"));
    deb(&src, &pkgs, "ag-b", Some("ag-c"));
    deb(&src, &pkgs, "ag-c", None);
    for d in ["var/lib/dpkg/updates", "var/lib/dpkg/info"] {
        fs_err::create_dir_all(root.join(d)).unwrap();
    }
    fs_err::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let done = airgap::node::packages::install(&pkgs, airgap::node::OsFamily::Debian, &["ag-a".to_string()], &root).unwrap();
    assert_eq!(done.len(), 3, "{done:?}");
    let status = fs_err::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert_eq!(status.matches("Status: install ok installed").count(), 3, "{status}");
}
