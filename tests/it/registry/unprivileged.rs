//! The store `airgap load` writes as root is readable by the unprivileged user the `airgap-registry` unit
//! runs as (`DynamicUser=`), whatever the loader's umask.

use super::load::{bundle_from_layout, keys};
use super::{assert_pulled, skopeo_copy};
use crate::support::images::{make_image, ImageSpec};
use crate::support::{airgap_bin, free_port, require_tool, run_ok, wait_for_port, ChildGuard};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn mode(p: &Path) -> u32 {
    fs_err::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_store_loaded_with_umask_077_is_served_by_an_unprivileged_user() {
    assert!(nix::unistd::geteuid().is_root(), "this test loads as root and serves as nobody: run it as root (CI does)");
    require_tool("setpriv");
    let dir = tempfile::tempdir().unwrap();
    fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let k = keys();
    let layout = dir.path().join("layout");
    let img = make_image(&layout, "example.test/team/app:1", &ImageSpec { layers: vec![4096, 300_000], ..ImageSpec::single(41) });
    let bundle = bundle_from_layout(&layout, "site", "1", &dir.path().join("out"), &k);
    let store = dir.path().join("var/lib/airgap/registry");
    let mut load = Command::new(airgap_bin());
    load.arg("load").arg(&bundle).arg("--store").arg(&store).arg("--pubkey").arg(&k.public);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        load.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            Ok(())
        });
    }
    run_ok(&mut load);
    for d in ["var", "var/lib", "var/lib/airgap", "var/lib/airgap/registry", "var/lib/airgap/registry/blobs", "var/lib/airgap/registry/blobs/sha256"] {
        assert_eq!(mode(&dir.path().join(d)), 0o755, "{d}");
    }
    assert_eq!(mode(&store.join("catalog.json")), 0o644);
    for e in fs_err::read_dir(store.join("blobs/sha256")).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o644);
    }

    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(airgap_bin())
        .args(["serve", "--listen", &addr, "--store"])
        .arg(&store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    wait_for_port(&addr, Duration::from_secs(10));
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("app");
    skopeo_copy(&addr, "team/app:1", &dst).unwrap_or_else(|e| panic!("{e}"));
    assert_pulled(&dst, &img);
}
