//! The NFS files for the example site, snapshotted, and each checked by its own tool: `keepalived -t`,
//! `bash -n` + shellcheck for the scripts, `drbdadm dump` (as master1 and master2: in a UTS namespace with
//! that host name) for the DRBD resource, `systemd-analyze verify` for the unit. Each checker is also shown
//! to reject a broken file.

use super::*;
use crate::install::config::render::tests::example_site;
use std::path::Path;
use std::process::{Command, Output};

pub(crate) fn example_nfs(drbd: bool) -> NfsSite {
    let site = example_site();
    NfsSite {
        servers: site.masters[..2].to_vec(),
        vip: "10.20.0.150".parse().unwrap(),
        vip_prefix: 24,
        vrid: 53,
        path: "/opt/mnt/volumes".into(),
        subnet: "10.20.0.0/24".into(),
        drbd_disk: drbd.then(|| "/dev/sdb".to_string()),
        airgap_bin: crate::node::BIN.into(),
    }
}

fn file<'a>(files: &'a [FileSpec], path: &str) -> &'a str {
    &files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not rendered")).content
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e} (scripts/setup-debian.sh installs it)"))
}

fn ok(cmd: &mut Command) {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} rejected it:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn fails(cmd: &mut Command) {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} accepted a broken file");
}

#[test]
fn exports_give_the_path_to_the_node_subnet() {
    assert_eq!(example_nfs(false).exports_block(), "/opt/mnt/volumes 10.20.0.0/24(rw,sync,no_root_squash,no_subtree_check)\n");
}

/// keepalived -t on the NFS config, its scripts in a temp dir (script security wants them to exist).
#[test]
fn keepalived_nfs_passes_keepalived_t() {
    for drbd in [false, true] {
        let nfs = example_nfs(drbd);
        for node in ["master1", "master2"] {
            let files = nfs.keepalived(node).unwrap();
            let conf = file(&files, NFS_KEEPALIVED_CONF);
            let tmp = tempfile::tempdir().unwrap();
            let mut text = conf.to_string();
            for (path, name) in [(NFS_CHECK, "check.sh"), (NFS_NOTIFY, "notify.sh")] {
                let p = tmp.path().join(name);
                fs_err::write(&p, file(&files, path)).unwrap();
                use std::os::unix::fs::PermissionsExt;
                fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                text = text.replace(path, p.to_str().unwrap());
            }
            let p = tmp.path().join("keepalived.conf");
            fs_err::write(&p, &text).unwrap();
            ok(Command::new("keepalived").arg("-t").arg("-f").arg(&p));
            fs_err::write(&p, text.replace("virtual_router_id 53", "virtual_router_id 300")).unwrap();
            fails(Command::new("keepalived").arg("-t").arg("-f").arg(&p));
            let suffix = if drbd { "_drbd" } else { "" };
            insta::assert_snapshot!(format!("keepalived_nfs_{node}{suffix}"), conf);
        }
        let files = nfs.keepalived("master1").unwrap();
        let suffix = if drbd { "_drbd" } else { "" };
        insta::assert_snapshot!(format!("nfs_check{suffix}"), file(&files, NFS_CHECK));
        insta::assert_snapshot!(format!("nfs_notify{suffix}"), file(&files, NFS_NOTIFY));
        insta::assert_snapshot!(format!("nfs_vip_unit{suffix}"), file(&files, NFS_VIP_UNIT));
    }
    assert!(example_nfs(false).keepalived("master3").is_err());
}

fn check_script(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    fs_err::write(&p, text).unwrap();
    ok(Command::new("bash").arg("-n").arg(&p));
    ok(Command::new("shellcheck").arg("-s").arg("bash").arg(&p));
}

#[test]
fn scripts_pass_bash_n_and_shellcheck() {
    let tmp = tempfile::tempdir().unwrap();
    for drbd in [false, true] {
        let nfs = example_nfs(drbd);
        let mut scripts: Vec<FileSpec> = nfs.keepalived("master2").unwrap();
        scripts.extend(nfs.drbd("master1").unwrap());
        for f in scripts.iter().filter(|f| f.path.ends_with(".sh")) {
            check_script(tmp.path(), "s.sh", &f.content);
        }
    }
    // shellcheck does fail on a defect of the kind it is here for
    fs_err::write(tmp.path().join("bad.sh"), "#!/bin/bash\nrm -rf $DIR/*\n").unwrap();
    fails(Command::new("shellcheck").arg(tmp.path().join("bad.sh")));
    fs_err::write(tmp.path().join("bad.sh"), "#!/bin/bash\nif true; then\n").unwrap();
    fails(Command::new("bash").arg("-n").arg(tmp.path().join("bad.sh")));
}

/// `drbdadm dump` as each of the two hosts (drbdadm checks that the resource has an `on` section for the host
/// it runs on): a UTS namespace with that host name.
fn drbdadm_dump(res: &Path, host: &str) -> Output {
    run(Command::new("unshare").args(["--uts", "sh", "-c", &format!("hostname {host} && drbdadm -c \"$0\" dump {DRBD_RESOURCE}")]).arg(res))
}

#[test]
fn the_drbd_resource_passes_drbdadm_dump_on_both_masters() {
    assert!(nix::unistd::geteuid().is_root(), "unshare --uts needs root (CI runs as root)");
    let nfs = example_nfs(true);
    let tmp = tempfile::tempdir().unwrap();
    let res = tmp.path().join("airgap-nfs.res");
    for node in ["master1", "master2"] {
        let files = nfs.drbd(node).unwrap();
        fs_err::write(&res, file(&files, DRBD_RES_FILE)).unwrap();
        let out = drbdadm_dump(&res, node);
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "drbdadm dump as {node}:\n{dump}{}", String::from_utf8_lossy(&out.stderr));
        for want in ["disk                 /dev/sdb;", "address          ipv4 10.20.0.11:7789;", "address          ipv4 10.20.0.12:7789;", "after-sb-2pri    disconnect;", "protocol           C;"] {
            assert!(dump.contains(want), "drbdadm dump lacks {want:?}:\n{dump}");
        }
        insta::assert_snapshot!(format!("drbd_res_{node}"), file(&files, DRBD_RES_FILE));
    }
    insta::assert_snapshot!("nfs_drbd_setup", file(&nfs.drbd("master1").unwrap(), NFS_DRBD_SETUP));
    // drbdadm refuses a resource without this host, and a broken one
    assert!(!drbdadm_dump(&res, "master3").status.success());
    let text = file(&nfs.drbd("master1").unwrap(), DRBD_RES_FILE).replace("protocol C;", "protocol C; bogus 1;");
    fs_err::write(&res, text).unwrap();
    assert!(!drbdadm_dump(&res, "master1").status.success());
    // without DRBD nothing is rendered for it
    assert!(example_nfs(false).drbd("master1").unwrap().is_empty());
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    for drbd in [false, true] {
        let files = example_nfs(drbd).keepalived("master1").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // the unit runs keepalived and the notify script: point it at files that exist here
        let notify = tmp.path().join("notify.sh");
        fs_err::write(&notify, file(&files, NFS_NOTIFY)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&notify, std::fs::Permissions::from_mode(0o755)).unwrap();
        let unit = tmp.path().join("airgap-nfs-vip.service");
        let text = file(&files, NFS_VIP_UNIT).replace(NFS_NOTIFY, notify.to_str().unwrap());
        fs_err::write(&unit, &text).unwrap();
        // systemd-analyze verify exits 0 on what it ignores (an unknown key or value): its output must be empty
        let verify = |text: &str| {
            fs_err::write(&unit, text).unwrap();
            let out = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit));
            (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
        };
        assert_eq!(verify(&text), (true, String::new()));
        let (_, said) = verify(&text.replace("Type=simple", "Type=bogus"));
        assert!(said.contains("Failed to parse service type"), "{said}");
        assert!(!verify(&text.replace(KEEPALIVED_BIN, "/nonexistent/keepalived")).0);
    }
}
