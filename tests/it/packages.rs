//! Offline OS package installation on the RHEL family: real `.rpm` files built with `rpmbuild`, their metadata
//! read with `rpm -qp`, the dependency closure computed against what is installed, and installed with `rpm` into
//! a scratch root (`rpm --root`) exactly as a node's `airgap node packages` does into `/`. (The Debian path runs
//! for real on the lab nodes: tests/it/infra.rs.)

use airgap::infra::packages::{install, missing, read_rpm};
use airgap::infra::OsFamily;
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
