//! The `nfs` step and docker (`runtime.docker: true`) in the multi-host lab, installed offline from a bundle
//! `airgap build` made (nfs-kernel-server, nfs-common, keepalived, drbd-utils, docker.io and their closure
//! against the lab rootfs, from this machine's apt mirror).
//!
//! The lab's nodes have no kernel NFS server (no nfsd module inside systemd-nspawn): a stand-in
//! `nfs-server.service` (a test fixture, like tests/standins; never shipped) replaces the package's unit with
//! `exportfs -ra`, so what is proven here is everything around the kernel: /etc/exports as `exportfs` parses
//! it, the NFS VIP's keepalived (`keepalived -t`, the VIP on master1), the unit (`systemd-analyze verify`), the
//! scripts (`bash -n`), the client packages on every node, and a second install that changes nothing. DRBD
//! cannot run here either: its resource is checked with `drbdadm dump` by the unit tests. docker pulls a
//! bundled Docker Hub image by its original short name (through its mirror, the site registry), the bundle
//! built with `--registry-mirror docker.io=...` (no internet here).

use crate::support::lab::Lab;
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap_bin, images, require_tool, run_ok};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The lab's stand-in for the kernel NFS server: exportfs only (test fixture).
const NFS_SERVER_STANDIN: &str = "[Unit]\nDescription=lab stand-in for the kernel NFS server (exportfs only; airgap test fixture)\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/sbin/exportfs -ra\nExecReload=/usr/sbin/exportfs -ra\nExecStop=/usr/sbin/exportfs -ua\n[Install]\nWantedBy=multi-user.target\n";
/// docker inside systemd-nspawn: no overlay on the overlay root, no iptables/bridge (test fixture settings that
/// the install must keep).
const DOCKER_LAB_SETTINGS: &str = "{\n  \"storage-driver\": \"vfs\",\n  \"iptables\": false,\n  \"bridge\": \"none\"\n}\n";

fn airgap(args: &[&str]) -> Output {
    Command::new(airgap_bin()).args(args).stdin(Stdio::null()).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Build the bundle: the images, the static runtime, the OS packages' closure against the lab rootfs. The
/// Docker Hub image comes from `upstream` as its mirror (`--registry-mirror docker.io=http://UPSTREAM`).
fn build_bundle(w: &Path, image_refs: &[&str], upstream: &str) -> std::path::PathBuf {
    let rootfs = Path::new("/var/cache/airgap-lab/rootfs-bookworm");
    let closure = run_ok(Command::new("bash").arg(format!("{REPO}/scripts/deb-closure.sh")).arg("--rootfs").arg(rootfs).args([
        "nfs-kernel-server", "nfs-common", "keepalived", "drbd-utils", "docker.io",
    ]));
    let mut manifest = String::from("name: nfs-lab\nversion: 1.0.0\nimages:\n");
    for r in image_refs {
        manifest.push_str(&format!("  - {r}\n"));
    }
    manifest.push_str("files:\n");
    let rel = w.join("releases");
    let files = crate::infra::static_runtime_releases(&rel);
    let server = crate::support::fileserver::FileServer::start(&rel);
    for (name, component) in files {
        let sha = crate::support::sha256sum(&rel.join(&name));
        manifest.push_str(&format!("  - url: {}\n    sha256: {sha}\n    path: runtime/{name}\n    install: {component}\n", server.url(&name)));
    }
    manifest.push_str(&String::from_utf8_lossy(&closure.stdout));
    fs_err::write(w.join("manifest.yaml"), &manifest).unwrap();
    ok(&airgap(&["keygen", "--out-dir", w.join("keys").to_str().unwrap()]));
    ok(&airgap(&[
        "build", w.join("manifest.yaml").to_str().unwrap(), "--out", w.join("out").to_str().unwrap(),
        "--key", w.join("keys/airgap.key").to_str().unwrap(), "--insecure-registry", upstream,
        "--registry-mirror", &format!("docker.io=http://{upstream}"), "--cache-dir", w.join("cache").to_str().unwrap(),
    ]));
    w.join("out/nfs-lab-1.0.0.tar.zst")
}

#[test]
fn nfs_and_docker_install_offline_and_pass_their_checkers_in_the_lab() {
    let _slot = crate::support::lab_slot();
    for t in ["systemd-nspawn", "debootstrap", "ssh", "skopeo", "docker-registry", "apt-get"] {
        require_tool(t);
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let upstream = Registry::start(Mode::Plain);
    let made = images::make_image(&w.join("layout"), "t0", &images::ImageSpec::single(41));
    let image_ref = format!("{}/airgap/app:v1", upstream.addr);
    run_ok(Command::new("skopeo").args(["copy", "--dest-tls-verify=false"]).arg(format!("oci:{}:t0", w.join("layout").display())).arg(format!("docker://{image_ref}")));
    // a Docker Hub image, bundled by its original name from a mirror of Docker Hub (upstream again, serving
    // it as Docker Hub's mirrors do, at library/NAME): no internet here
    let hub = images::make_image(&w.join("layout"), "t1", &images::ImageSpec::single(42));
    run_ok(Command::new("skopeo").args(["copy", "--dest-tls-verify=false"]).arg(format!("oci:{}:t1", w.join("layout").display())).arg(format!("docker://{}/library/airgap-hello:v1", upstream.addr)));
    let hub_ref = "docker.io/library/airgap-hello:v1";
    let lab = Lab::up(5).expect("the lab needs root");
    let bundle = build_bundle(w, &[&image_ref, hub_ref], &upstream.addr);
    let inspect = ok(&airgap(&["inspect", bundle.to_str().unwrap(), "--pubkey", w.join("keys/airgap.pub").to_str().unwrap(), "--json"]));
    assert!(inspect.contains(&format!("\"{hub_ref}\"")) && inspect.contains(&hub.digest.to_string()), "the bundle names the Docker Hub image by its original name and digest:\n{inspect}");

    let nfs_vip = format!("{}.150", lab.net);
    let inv = String::from_utf8_lossy(&lab.script(&["inventory"]).stdout)
        .replace("    role: master\n", "    role: master\n    interface: eth0\n")
        .replace("    role: worker\n", "    role: worker\n    interface: eth0\n")
        .replace(&format!("  workers: {}.200\n", lab.net), &format!("  workers: {}.200\n  nfs: {nfs_vip}\n", lab.net))
        + "runtime:\n  docker: true\n  docker_log_max_size: 20m\n  docker_log_max_file: 3\n";
    fs_err::write(w.join("site.yaml"), inv).unwrap();
    for n in &lab.nodes {
        fs_err::create_dir_all(lab.root(n).join("etc/docker")).unwrap();
        fs_err::write(lab.root(n).join("etc/docker/daemon.json"), DOCKER_LAB_SETTINGS).unwrap();
    }
    for n in ["master1", "master2"] {
        fs_err::write(lab.root(n).join("etc/systemd/system/nfs-server.service"), NFS_SERVER_STANDIN).unwrap();
    }
    let install = |only: &str| {
        airgap(&[
            "install", "-i", w.join("site.yaml").to_str().unwrap(), "--bundle", bundle.to_str().unwrap(),
            "--pubkey", w.join("keys/airgap.pub").to_str().unwrap(), "--only", only,
            "--state-dir", w.join("state").to_str().unwrap(), "--log-dir", w.join("log").to_str().unwrap(),
        ])
    };
    let steps = "preflight,os-prepare,distribute,runtime,registry,nfs";
    let t0 = Instant::now();
    let first = ok(&install(steps));
    eprintln!("nfs + docker install took {:?}:\n{first}", t0.elapsed());

    // every node: the NFS client; docker running with the site's settings and the lab's own kept
    for n in &lab.nodes {
        let out = lab.exec(n, "dpkg -s nfs-common >/dev/null && echo nfs-common; systemctl is-active docker; cat /etc/docker/daemon.json");
        assert!(out.starts_with("nfs-common\nactive\n"), "{n}: {out}");
        let json: serde_json::Value = serde_json::from_str(out.splitn(3, '\n').nth(2).unwrap()).unwrap();
        let registry = format!("{}.200:5000", lab.net);
        assert_eq!(json["storage-driver"], "vfs", "{n}: {json}");
        assert_eq!(json["insecure-registries"], serde_json::json!([registry]), "{n}: {json}");
        assert_eq!(json["registry-mirrors"], serde_json::json!([format!("http://{registry}")]), "{n}: {json}");
        assert_eq!(json["log-opts"], serde_json::json!({"max-size": "20m", "max-file": "3"}), "{n}: {json}");
    }
    // docker pulls a bundled image through the site registry by its name there (VIP:5000/PATH:TAG); its
    // original name has another host than Docker Hub, which docker never sends to a mirror
    let vip_name = format!("{}.200:5000/airgap/app:v1", lab.net);
    let out = lab.exec("master3", &format!("docker pull -q {vip_name} && docker image inspect -f '{{{{.Id}}}} {{{{index .RepoDigests 0}}}}' {vip_name} && docker info -f '{{{{.LoggingDriver}}}}'"));
    assert!(out.contains(&made.digest.to_string()) && out.trim_end().ends_with("json-file"), "{out}");
    let original = lab.script(&["exec", "master3", "docker", "pull", &image_ref]);
    assert!(!original.status.success(), "docker pulled {image_ref} by a non-Docker-Hub original name: the README says it cannot");
    // a Docker Hub image by its original short name: docker sends it to its mirror, the site registry
    let out = lab.exec("master2", "docker pull -q airgap-hello:v1 >/dev/null && docker image inspect -f '{{index .RepoDigests 0}}' airgap-hello:v1");
    assert_eq!(out.trim(), format!("airgap-hello@{}", hub.digest), "docker pull airgap-hello:v1 by its original name");

    // NFS servers: exports as exportfs parses them, keepalived -t, the unit, the scripts
    for n in ["master1", "master2"] {
        let out = lab.exec(n, "exportfs -v; keepalived -t -f /etc/keepalived/airgap-nfs.conf && echo keepalived-ok; systemd-analyze verify --man=no /etc/systemd/system/airgap-nfs-vip.service 2>&1 && echo verify-ok; bash -n /etc/airgap/nfs/check.sh && bash -n /etc/airgap/nfs/notify.sh && echo scripts-ok; systemctl is-active airgap-nfs-vip");
        assert!(out.contains(&format!("/opt/mnt/volumes\n\t\t{}.0/24(", lab.net)) || out.contains(&format!("/opt/mnt/volumes\t{}.0/24(", lab.net)), "{n}: exportfs -v:\n{out}");
        for opt in ["sync", "rw", "no_root_squash", "no_subtree_check"] {
            assert!(out.contains(opt), "{n}: {opt} missing:\n{out}");
        }
        assert!(out.contains("keepalived-ok\nverify-ok\nscripts-ok\nactive\n"), "{n}:\n{out}");
    }
    // a broken exports line is refused by the same exportfs (the check can fail)
    let bad = lab.script(&["exec", "master2", "sh", "-c", "cp /etc/exports /tmp/e && echo '/opt/mnt/volumes 10.0.0.0/24(rw,bogus_opt)' >> /etc/exports && exportfs -ra; r=$?; cp /tmp/e /etc/exports; exportfs -ra; exit $r"]);
    assert!(!bad.status.success() || String::from_utf8_lossy(&bad.stderr).contains("bogus_opt"), "exportfs accepted a bad option: {bad:?}");
    // the NFS VIP on master1 only (keepalived's check: nfs-server active)
    let t = Instant::now();
    while lab.vip_holders(&nfs_vip) != ["master1"] {
        assert!(t.elapsed() < Duration::from_secs(20), "the NFS VIP is on {:?}", lab.vip_holders(&nfs_vip));
        std::thread::sleep(Duration::from_millis(100)); // poll period
    }
    // nfs-server stops on master1: the check fails, the VIP moves to master2
    lab.exec("master1", "systemctl stop nfs-server");
    let t = Instant::now();
    while lab.vip_holders(&nfs_vip) != ["master2"] {
        assert!(t.elapsed() < Duration::from_secs(20), "the NFS VIP did not move: {:?}", lab.vip_holders(&nfs_vip));
        std::thread::sleep(Duration::from_millis(100)); // poll period
    }
    eprintln!("MEASURED NFS VIP on master2 {:?} after nfs-server stopped on master1", t.elapsed());
    lab.exec("master1", "systemctl start nfs-server");

    // again: nothing to do
    let again = ok(&install(steps));
    assert!(again.contains("0 node-steps applied"), "a second install changed something:\n{again}");
    lab.down();
}
