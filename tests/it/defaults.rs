//! Site defaults that must hold on real machines: the VIP interface comes from the node's facts (NICs named
//! `ens3` / `enp0s3`, no `interface:` in the inventory), preflight passes on a second install while airgap's
//! own services hold their ports and still names a foreign process on them, the disk check sees a small file
//! system where images land, file modes survive on the nodes, and the deploy machine's kit must fit in the
//! state dir.
//!
//! The lab is `scripts/lab.sh` (systemd-nspawn nodes, real sshd and systemd, nothing of keepalived, haproxy or
//! nginx in their rootfs): the bundle carries those as Debian packages (the closure against the lab's rootfs,
//! from this machine's apt mirror) and two images from a local docker-registry.

use crate::support::lab::{self, Lab};
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap, images, require_tool, run_ok};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed ({}):\n{}", o.status, text(o));
    text(o)
}

fn root_or_fail(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (CI runs as root): nothing was tested; run the suite as root"
    );
}

/// The site of one test: inventory, bundle, key; each install gets the state dir it is given.
struct Site {
    inventory: PathBuf,
    bundle: PathBuf,
    pubkey: PathBuf,
    logs: PathBuf,
}

impl Site {
    fn install(&self, only: &str, state: &Path) -> Output {
        airgap()
            .args(["install", "--only", only, "--inventory"])
            .arg(&self.inventory)
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--pubkey")
            .arg(&self.pubkey)
            .arg("--state-dir")
            .arg(state)
            .arg("--log-dir")
            .arg(&self.logs)
            .output()
            .unwrap()
    }
}

/// The addresses (`10.x.y.z/24`) on `interface` of `node`, read from the node's network namespace.
fn addresses_on(lab: &Lab, node: &str, interface: &str) -> Vec<String> {
    let out = run_ok(Command::new("ip").args(["-n", &format!("{}-{node}", lab.id), "-4", "-br", "addr", "show", interface]));
    String::from_utf8_lossy(&out.stdout).split_whitespace().skip(2).map(String::from).collect()
}

/// Rename a node's NIC (as udev's predictable names do on real machines); its address stays on it.
fn rename_nic(lab: &Lab, node: &str, to: &str) {
    let ns = format!("{}-{node}", lab.id);
    for args in [vec!["link", "set", "eth0", "down"], vec!["link", "set", "eth0", "name", to], vec!["link", "set", to, "up"]] {
        run_ok(Command::new("ip").args(["-n", &ns]).args(&args));
    }
    assert_eq!(addresses_on(lab, node, to), [format!("{}/24", lab.address(node))]);
}

/// Build the bundle: keepalived, haproxy, nginx (+ the stream module) as Debian packages for the lab's
/// rootfs, and two images, one of them with a 3 MB layer (for the disk check).
fn build_bundle(w: &Path) -> (PathBuf, PathBuf) {
    let upstream = Registry::start(Mode::Plain);
    let mut manifest = String::from("name: defaults-lab\nversion: 1.0.0\nimages:\n");
    for (i, (path, big)) in [("airgap/pause:3.10", false), ("airgap/app:v1", true)].into_iter().enumerate() {
        let mut spec = images::ImageSpec::single(70 + i as u64);
        if big {
            spec.layers = vec![3_000_000];
            spec.gzip = false;
        }
        images::make_image(&w.join("layout"), &format!("t{i}"), &spec);
        let dest = format!("{}/{path}", upstream.addr);
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:t{i}", w.join("layout").display()))
                .arg(format!("docker://{dest}")),
        );
        manifest.push_str(&format!("  - {dest}\n"));
    }
    let closure = run_ok(
        Command::new("bash")
            .arg(crate::support::repo().join("scripts/deb-closure.sh"))
            .arg("--rootfs")
            .arg(lab::rootfs())
            .args(["keepalived", "haproxy", "nginx", "libnginx-mod-stream"]),
    );
    manifest.push_str(&String::from_utf8_lossy(&closure.stdout));
    fs_err::write(w.join("manifest.yaml"), &manifest).unwrap();
    ok(&airgap().args(["keygen", "--out-dir"]).arg(w.join("keys")).output().unwrap());
    ok(&airgap()
        .arg("build")
        .arg(w.join("manifest.yaml"))
        .arg("--out")
        .arg(w.join("out"))
        .arg("--key")
        .arg(w.join("keys/airgap.key"))
        .args(["--insecure-registry", &upstream.addr])
        .arg("--cache-dir")
        .arg(w.join("cache"))
        .output()
        .unwrap());
    (w.join("out/defaults-lab-1.0.0.tar.zst"), w.join("keys/airgap.pub"))
}

fn mode_on(lab: &Lab, node: &str, paths: &str) -> String {
    lab.exec(node, &format!("stat -c '%n %a' {paths}"))
}

#[test]
fn site_defaults_hold_on_a_lab_with_predictable_nic_names() {
    if !lab::should_run() {
        return;
    }
    for t in ["systemd-nspawn", "debootstrap", "ssh", "skopeo", "docker-registry", "nsenter", "apt-get", "ip"] {
        require_tool(t);
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // the bundle is made before the test takes the shared lab (other lab tests use it meanwhile)
    let (bundle, pubkey) = build_bundle(w);
    let Some(lab) = lab::shared() else { return };
    // the lab's NICs get the names real machines have; master2, master3 and worker2 keep eth0
    rename_nic(&lab, "master1", "ens3");
    rename_nic(&lab, "worker1", "enp0s3");
    // no `interface:` anywhere: the inventory as `lab.sh inventory` writes it
    let inventory = w.join("site.yaml");
    lab.inventory(&inventory, "");
    assert!(!fs_err::read_to_string(&inventory).unwrap().contains("interface"));
    let site = Site { inventory, bundle, pubkey, logs: w.join("log") };

    // an operator's modes on the nodes, to survive the install: /etc/hosts (os-prepare manages a block in it)
    // and docker's daemon.json (a node with docker)
    lab.exec("master3", "printf '127.0.0.1 localhost\\n' > /etc/hosts && chmod 640 /etc/hosts");
    lab.exec(
        "master3",
        "printf '#!/bin/sh\\n' > /usr/bin/dockerd && chmod 755 /usr/bin/dockerd && mkdir -p /etc/docker && echo '{\"log-driver\": \"local\"}' > /etc/docker/daemon.json && chmod 640 /etc/docker/daemon.json",
    );

    let steps = "preflight,os-prepare,distribute,registry,apiserver-lb,nginx";
    let state = w.join("state");
    let first = ok(&site.install(steps, &state));
    assert!(!first.contains("keepalived will use eth0"), "the eth0 guess is back:\n{first}");

    // keepalived runs on the interface holding each node's address
    let conf = |node: &str| lab.exec(node, "cat /etc/keepalived/keepalived.conf");
    for (node, nic) in [("master1", "ens3"), ("master2", "eth0"), ("worker1", "enp0s3"), ("worker2", "eth0")] {
        assert!(conf(node).contains(&format!("    interface {nic}\n")), "{node}:\n{}", conf(node));
        lab.exec(node, "keepalived -t -f /etc/keepalived/keepalived.conf && systemctl is-active --quiet keepalived");
    }
    let (mvip, wvip) = (format!("{}.100/24", lab.net), format!("{}.200/24", lab.net));
    assert!(addresses_on(&lab, "master1", "ens3").contains(&mvip), "{:?}", addresses_on(&lab, "master1", "ens3"));
    assert!(addresses_on(&lab, "worker1", "enp0s3").contains(&wvip), "{:?}", addresses_on(&lab, "worker1", "enp0s3"));
    let v2 = format!("http://{}.200:5000/v2/", lab.net);
    airgap::node::checks::check_http(&v2, std::time::Duration::from_secs(5)).expect("the registry answers on the workers' VIP");

    // modes: set on purpose where airgap owns the file, kept where it manages a block or merges settings
    let registry = format!("{}.200:5000", lab.net);
    lab.exec("master3", &format!("/opt/airgap/bin/airgap node docker-registry {registry}"));
    assert!(lab.exec("master3", "cat /etc/docker/daemon.json").contains(&registry));
    assert_eq!(mode_on(&lab, "master3", "/etc/hosts /etc/docker/daemon.json"), "/etc/hosts 640\n/etc/docker/daemon.json 640\n");
    assert_eq!(
        mode_on(&lab, "worker1", "/etc/keepalived/keepalived.conf /etc/keepalived/airgap-notify.sh /var/lib/airgap/registry/catalog.json /etc/hosts"),
        "/etc/keepalived/keepalived.conf 644\n/etc/keepalived/airgap-notify.sh 755\n/var/lib/airgap/registry/catalog.json 644\n/etc/hosts 644\n"
    );
    let journal = fs_err::metadata(state.join("journal.json")).unwrap().permissions().mode() & 0o777;
    assert_eq!(journal, 0o644);

    // a second install with a fresh journal runs preflight again: airgap's own registry, haproxy and nginx
    // hold :5000, :16443, :80 and :443 now, and that is no conflict
    for (node, port) in [("worker1", 5000), ("worker1", 80), ("worker2", 443), ("master1", 16443)] {
        lab.exec(node, &format!("/opt/airgap/bin/airgap node check-tcp 127.0.0.1:{port}"));
    }
    let again = ok(&site.install("preflight", &w.join("state-2")));
    assert!(again.contains("install finished: 5 node-steps applied"), "{again}");

    // foreign processes on those ports (the registry stopped on worker2, sshd in its place; an sshd on
    // master2's kubelet port) and a 1 MiB file system on master3's containerd root: all told at once
    lab.exec("worker2", "systemctl stop airgap-registry && systemd-run --unit=imposter-registry /usr/sbin/sshd -D -p 5000");
    lab.exec("master2", "systemd-run --unit=imposter /usr/sbin/sshd -D -p 10250");
    lab.exec("worker2", "/opt/airgap/bin/airgap node check-tcp 127.0.0.1:5000 --wait-secs 10");
    lab.exec("master2", "/opt/airgap/bin/airgap node check-tcp 127.0.0.1:10250 --wait-secs 10");
    lab.exec("master3", "mkdir -p /var/lib/containerd && mount -t tmpfs -o size=1m tmpfs /var/lib/containerd");
    let pid = |node: &str, unit: &str| lab.exec(node, &format!("systemctl show -p MainPID --value {unit}")).trim().to_string();
    let (p_w2, p_m2) = (pid("worker2", "imposter-registry"), pid("master2", "imposter"));
    let out = site.install("preflight", &w.join("state-3"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = text(&out);
    assert!(err.contains(&format!("worker2: TCP port already in use: 5000 by `sshd` (pid {p_w2}, imposter-registry.service)")), "{err}");
    assert!(err.contains(&format!("master2: TCP port already in use: 10250 by `sshd` (pid {p_m2}, imposter.service)")), "{err}");
    assert!(err.contains("needed on the file system of /var/lib/containerd, 1.0 MiB (1048576 bytes) free (/var/lib/containerd: "), "{err}");
    assert!(err.contains("of images to pull)") && err.contains("  master3: "), "{err}");
    assert!(err.contains("preflight found 3 problems on 3 nodes; nothing was changed"), "{err}");
    assert!(!err.contains("  worker1: ") && !err.contains("  master1: "), "{err}");
}

#[test]
fn the_kit_must_fit_in_the_state_dir_on_the_deploy_machine() {
    root_or_fail("mounting a small file system");
    let fx = crate::support::bundle::Fixture::new();
    // the fixture's files/ hold about 53 KB: more than a 32 KiB file system has
    let w = fx.write(&fx.content(20_000), "out", None, 2);
    let state = fx.path().join("state");
    fs_err::create_dir_all(&state).unwrap();
    run_ok(Command::new("mount").args(["-t", "tmpfs", "-o", "size=32k", "tmpfs"]).arg(&state));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    let out = airgap()
        .args(["install", "--only", "distribute", "--inventory"])
        .arg(crate::support::repo().join("manifests/site.example.yaml"))
        .arg("--bundle")
        .arg(&w.archive)
        .arg("--pubkey")
        .arg(&fx.public)
        .arg("--state-dir")
        .arg(&state)
        .arg("--log-dir")
        .arg(fx.path().join("log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("not enough disk space on this machine for the bundle's files for the nodes: {}/kit needs ", state.display())),
        "{err}"
    );
    assert!(err.contains("bytes free") || err.contains("are free"), "{err}");
    assert!(err.contains("hint: free space there, or pass --state-dir DIR"), "{err}");
    // nothing was extracted, nothing half-written is left
    let left: Vec<_> = fs_err::read_dir(state.join("kit")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn what_airgap_writes_has_its_mode_whatever_the_umask() {
    // a hardened packaging machine or node (umask 077): tempfile's 0600 and the umask used to decide
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let umask077 = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg("-c").arg("umask 077; exec \"$@\"").arg("sh").arg(crate::support::airgap_bin()).args(args);
        run_ok(&mut c);
    };
    let p = |rel: &str| w.join(rel).to_str().unwrap().to_string();
    umask077(&["keygen", "--out-dir", &p("keys")]);
    // a bundle of one image and one file, split in parts
    let upstream = Registry::start(Mode::Plain);
    let mut spec = images::ImageSpec::single(90);
    spec.layers = vec![2_500_000];
    spec.gzip = false;
    images::make_image(&w.join("layout"), "t", &spec);
    let image = format!("{}/airgap/app:v1", upstream.addr);
    run_ok(Command::new("skopeo").args(["copy", "--dest-tls-verify=false"]).arg(format!("oci:{}:t", p("layout"))).arg(format!("docker://{image}")));
    fs_err::create_dir_all(w.join("files")).unwrap();
    fs_err::write(w.join("files/payload.bin"), images::pseudo_random(5, 200_000)).unwrap();
    let server = crate::support::fileserver::FileServer::start(&w.join("files"));
    let sha = crate::support::sha256sum(&w.join("files/payload.bin"));
    let manifest = format!(
        "name: modes\nversion: 1.0.0\nplatforms: [linux/amd64]\nimages:\n  - {image}\nfiles:\n  - url: {}\n    sha256: {sha}\n    path: payload.bin\n",
        server.url("payload.bin")
    );
    fs_err::write(w.join("manifest.yaml"), manifest).unwrap();
    umask077(&[
        "build", &p("manifest.yaml"), "--out", &p("out"), "--key", &p("keys/airgap.key"), "--insecure-registry", &upstream.addr,
        "--cache-dir", &p("cache"), "--split-size", "1M",
    ]);
    umask077(&["load", &p("out/modes-1.0.0.tar.zst"), "--store", &p("store"), "--pubkey", &p("keys/airgap.pub")]);

    let mode = |path: &Path| fs_err::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&w.join("keys/airgap.key")), 0o600);
    assert_eq!(mode(&w.join("keys/airgap.pub")), 0o644);
    let mut published: Vec<(String, u32)> =
        fs_err::read_dir(w.join("out")).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name().to_string_lossy().into_owned(), mode(&e.path()))).collect();
    published.sort();
    assert!(published.len() >= 6, "{published:?}");
    assert!(published.iter().any(|(n, _)| n.ends_with(".parts.minisig")) && published.iter().any(|(n, _)| n.ends_with(".lock.json")));
    assert!(published.iter().all(|(_, m)| *m == 0o644), "{published:?}");
    // what the registry serves: readable whatever user serves it
    let mut store: Vec<(String, u32)> =
        fs_err::read_dir(w.join("store/blobs/sha256")).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name().to_string_lossy().into_owned(), mode(&e.path()))).collect();
    store.push(("catalog.json".into(), mode(&w.join("store/catalog.json"))));
    assert!(store.len() >= 4 && store.iter().all(|(_, m)| *m == 0o644), "{store:?}");
}
