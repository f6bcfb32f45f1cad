//! preflight's central evaluation on made-up facts: what counts as a problem, and how it is told.

use super::*;
use crate::node::facts::{Holder, Listener};
use crate::site::inventory::Inventory;

pub(super) fn example_inventory() -> Inventory {
    Inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml"))).unwrap()
}

/// Healthy facts for every node of `inv`, each holding its address on its inventory `interface:` or `ens3`.
pub(super) fn healthy(inv: &Inventory) -> BTreeMap<String, (Facts, i64)> {
    let facts = |n: &Node| Facts::example(&n.name, n.address, n.interface.as_deref().unwrap_or("ens3"));
    inv.nodes.iter().map(|n| (n.name.clone(), (facts(n), 0))).collect()
}

/// The problems (node, message) preflight reports for these facts.
pub(super) fn problems(inv: &Inventory, facts: &BTreeMap<String, (Facts, i64)>) -> Vec<(String, String)> {
    let warn = |_: &str| {};
    let ctx = Ctx { inv, bundle: None, binary: None, pubkey: None, kit: None, targets: &Default::default(), warn: &warn, secrets: None };
    let mut r = Report::new(&inv.preflight.ignore);
    evaluate(&ctx, facts, &mut r);
    r.problems
}

#[test]
fn healthy_nodes_pass() {
    let inv = example_inventory();
    assert_eq!(problems(&inv, &healthy(&inv)), vec![]);
}

#[test]
fn a_node_whose_address_is_on_no_interface_is_named_with_the_address() {
    let inv = example_inventory();
    let mut facts = healthy(&inv);
    // master2's inventory address is not on the node (a typo, or an address behind NAT)
    let f = &mut facts.get_mut("master2").unwrap().0;
    f.addresses[0].address = "10.20.0.99".parse().unwrap();
    // worker1's inventory says `interface: ens192`, which the node does not have
    let f = &mut facts.get_mut("worker1").unwrap().0;
    f.addresses[0].interface = "ens3".into();
    f.macs[0].0 = "ens3".into();
    let p = problems(&inv, &facts);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].0, "master2");
    assert_eq!(
        p[0].1,
        "its inventory address 10.20.0.12 is on none of its interfaces (ens3 10.20.0.99/24): the VIPs and the cluster use that address"
    );
    assert_eq!((p[1].0.as_str(), p[1].1.as_str()), ("worker1", "it has no interface \"ens192\" (the inventory's `interface:`); it has ens3"));
}

fn listener(port: u16, holders: &[(u32, &str, Option<&str>)]) -> Listener {
    let holders = holders.iter().map(|(pid, comm, unit)| Holder { pid: *pid, comm: comm.to_string(), unit: unit.map(String::from) }).collect();
    Listener { port, holders }
}

#[test]
fn airgaps_own_services_on_their_ports_are_no_conflict_on_a_re_run() {
    let inv = example_inventory();
    let mut facts = healthy(&inv);
    // what registry, apiserver-lb and nginx leave running (nginx: a master and its workers)
    for w in ["worker1", "worker2"] {
        facts.get_mut(w).unwrap().0.listening = vec![
            listener(80, &[(900, "nginx", Some("nginx.service")), (901, "nginx", Some("nginx.service"))]),
            listener(443, &[(900, "nginx", Some("nginx.service")), (901, "nginx", Some("nginx.service"))]),
            listener(5000, &[(812, "airgap", Some("airgap-registry.service"))]),
            listener(22, &[(300, "sshd", Some("ssh.service"))]),
        ];
    }
    for m in ["master1", "master2", "master3"] {
        facts.get_mut(m).unwrap().0.listening = vec![listener(16443, &[(700, "haproxy", Some("haproxy.service")), (701, "haproxy", Some("haproxy.service"))])];
    }
    assert_eq!(problems(&inv, &facts), vec![]);
}

#[test]
fn a_foreign_process_on_a_needed_port_is_named() {
    let inv = example_inventory();
    let mut facts = healthy(&inv);
    // someone's registry on :5000, in a login session; an apache on :80 and :443
    facts.get_mut("worker1").unwrap().0.listening = vec![
        listener(80, &[(950, "apache2", Some("apache2.service")), (951, "apache2", Some("apache2.service"))]),
        listener(443, &[(950, "apache2", Some("apache2.service"))]),
        listener(5000, &[(4242, "python3", None)]),
    ];
    // haproxy, but on the registry's port; airgap's registry on a master's apiserver port; nothing to tell
    facts.get_mut("worker2").unwrap().0.listening = vec![listener(5000, &[(700, "haproxy", Some("haproxy.service"))])];
    facts.get_mut("master1").unwrap().0.listening = vec![
        listener(6443, &[(812, "airgap", Some("airgap-registry.service"))]),
        listener(16443, &[]),
    ];
    // haproxy sharing :16443 with another process: the port is not airgap's alone
    facts.get_mut("master2").unwrap().0.listening = vec![listener(16443, &[(700, "haproxy", Some("haproxy.service")), (4243, "socat", None)])];
    let p = problems(&inv, &facts);
    let got: Vec<String> = p.iter().map(|(n, m)| format!("{n}: {m}")).collect();
    assert_eq!(
        got,
        [
            "master1: TCP ports already in use: 6443 by `airgap` (pid 812, airgap-registry.service); 16443 by a process the node could not tell (find it with `ss -ltnp`)",
            "master2: TCP port already in use: 16443 by `haproxy` (pid 700, haproxy.service) and `socat` (pid 4243)",
            "worker1: TCP ports already in use: 80 by `apache2` (pids 950, 951, apache2.service); 443 by `apache2` (pid 950, apache2.service); 5000 by `python3` (pid 4242)",
            "worker2: TCP port already in use: 5000 by `haproxy` (pid 700, haproxy.service)",
        ]
    );
}

mod disk {
    use super::*;
    use crate::bundle::format::{FileEntry, PackageEntry, RootDoc, SCHEMA};
    use crate::install::facts::Target;
    use crate::install::kit::Kit;
    use crate::install::LocalFile;
    use crate::node::components::Component;
    use crate::node::facts::Disk;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn kit() -> Kit {
        let hex = |c: char| c.to_string().repeat(64);
        let root = RootDoc {
            schema: SCHEMA.into(),
            name: "k8s".into(),
            version: "1".into(),
            base: None,
            platforms: vec!["linux/amd64".into()],
            kubernetes: None,
            images: vec![],
            files: vec![FileEntry {
                path: "runtime/containerd.tgz".into(),
                url: "https://example.org/containerd.tgz".into(),
                sha256: hex('a'),
                size: 100 * MIB,
                mode: 0o644,
                install: Some(Component::Containerd),
                platform: None,
                manifest: None,
            }],
            packages: vec![PackageEntry {
                os: "debian-12".into(),
                name: "keepalived".into(),
                path: "packages/debian-12/keepalived.deb".into(),
                url: "https://example.org/keepalived.deb".into(),
                sha256: hex('b'),
                size: 50 * MIB,
            }],
            sha256sums: hex('0'),
            sizes: [
                (format!("images/blobs/sha256/{}", hex('c')), GIB),
                (format!("images/blobs/sha256/{}", hex('d')), GIB),
                ("images/index.json".to_string(), 1000),
                ("files/runtime/containerd.tgz".to_string(), 100 * MIB),
                ("files/packages/debian-12/keepalived.deb".to_string(), 50 * MIB),
            ]
            .into(),
        };
        Kit::from_root(root, "/var/lib/airgap/plant-a/kit/0".into())
    }

    fn disk(path: &str, mount: &str, device: u64, free: u64) -> Disk {
        Disk { path: path.into(), mount: mount.into(), device, free, present: Default::default() }
    }

    /// The disk problems of `node` whose file systems are `disks`, in a run with the bundle.
    fn disk_problems(node: &str, disks: Vec<Disk>) -> Vec<String> {
        let inv = example_inventory();
        let kit = kit();
        let bundle = [LocalFile { path: "/media/usb/k8s-1.tar.zst".into(), sha256: crate::digest::Digest::of_bytes(b"b"), size: 3 * GIB }];
        let binary = LocalFile { path: "/usr/local/bin/airgap".into(), sha256: crate::digest::Digest::of_bytes(b"a"), size: 10 * MIB };
        let target = Target { family: crate::node::OsFamily::Debian, os_tags: vec!["debian-12".into()], platform: "linux/amd64".into(), interface: None };
        let targets = inv.nodes.iter().map(|n| (n.name.clone(), target.clone())).collect();
        let warn = |_: &str| {};
        let ctx = Ctx { inv: &inv, bundle: Some(&bundle), binary: Some(&binary), pubkey: None, kit: Some(&kit), targets: &targets, warn: &warn, secrets: None };
        let mut facts = healthy(&inv);
        facts.get_mut(node).unwrap().0.disks = disks;
        let mut r = Report::new(&inv.preflight.ignore);
        evaluate(&ctx, &facts, &mut r);
        r.problems.into_iter().map(|(n, m)| format!("{n}: {m}")).collect()
    }

    /// What lands on worker1 (a registry worker): the binary, its packages and components and the bundle under
    /// /opt/airgap (3 GiB + 160 MiB), the image blobs in the store and in containerd's (2 GiB each).
    fn worker1_on_one_fs(free: u64) -> Vec<Disk> {
        [AIRGAP_DIR, "/var/lib/airgap/registry", "/var/lib/containerd"].iter().map(|p| disk(p, "/", 1, free)).collect()
    }

    #[test]
    fn destinations_on_one_file_system_add_up_with_the_floor() {
        // 3 GiB + 160 MiB + 2 GiB + 2 GiB + 2 GiB (preflight.min_free_disk_mb) = 9 GiB + 160 MiB
        let need = 9 * GIB + 160 * MIB;
        assert_eq!(disk_problems("worker1", worker1_on_one_fs(need)), Vec::<String>::new());
        let got = disk_problems("worker1", worker1_on_one_fs(need - 1));
        assert_eq!(
            got,
            [format!(
                "worker1: 9.2 GiB ({need} bytes) needed on the file system of /, 9.2 GiB ({} bytes) free (/opt/airgap: 3.2 GiB to copy + 2.0 GiB (preflight.min_free_disk_mb); /var/lib/airgap/registry: 2.0 GiB of images to load; /var/lib/containerd: 2.0 GiB of images to pull)",
                need - 1
            )]
        );
    }

    #[test]
    fn each_file_system_is_checked_for_what_lands_on_it() {
        // master1: no store; containerd's root on its own small file system
        let disks = vec![disk(AIRGAP_DIR, "/", 1, 100 * GIB), disk("/var/lib/containerd", "/var/lib/containerd", 2, GIB)];
        assert_eq!(
            disk_problems("master1", disks),
            ["master1: 2.0 GiB (2147483648 bytes) needed on the file system of /var/lib/containerd, 1.0 GiB (1073741824 bytes) free (/var/lib/containerd: 2.0 GiB of images to pull)"]
        );
        // /opt/airgap alone: the floor holds even when little lands there
        let disks = vec![disk(AIRGAP_DIR, "/opt", 1, GIB), disk("/var/lib/containerd", "/var", 2, 100 * GIB)];
        let got = disk_problems("master1", disks);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("master1: 2.2 GiB (2315255808 bytes) needed on the file system of /opt, 1.0 GiB"), "{got:?}");
    }

    #[test]
    fn files_already_there_do_not_land_again() {
        // a re-run: every file is there with its size; only the floor is left to find
        let mut disks = worker1_on_one_fs(2 * GIB + 1);
        let inv = example_inventory();
        let node = inv.node("worker1").unwrap();
        let kit = kit();
        let bundle = [LocalFile { path: "/media/usb/k8s-1.tar.zst".into(), sha256: crate::digest::Digest::of_bytes(b"b"), size: 3 * GIB }];
        let binary = LocalFile { path: "/usr/local/bin/airgap".into(), sha256: crate::digest::Digest::of_bytes(b"a"), size: 10 * MIB };
        let target = Target { family: crate::node::OsFamily::Debian, os_tags: vec!["debian-12".into()], platform: "linux/amd64".into(), interface: None };
        let targets = [("worker1".to_string(), target)].into();
        let warn = |_: &str| {};
        let ctx = Ctx { inv: &inv, bundle: Some(&bundle), binary: Some(&binary), pubkey: None, kit: Some(&kit), targets: &targets, warn: &warn, secrets: None };
        let landings = landings(&ctx, node);
        assert_eq!(
            landings.iter().map(|l| (l.spec(), l.files.len())).collect::<Vec<_>>(),
            [
                ("/opt/airgap=".to_string(), 4),
                ("/var/lib/airgap/registry=blobs".to_string(), 2),
                ("/var/lib/containerd=io.containerd.content.v1.content/blobs".to_string(), 2)
            ]
        );
        assert!(landings[0].files.contains_key("bundles/k8s-1.tar.zst") && landings[0].files.contains_key("bin/airgap"), "{landings:?}");
        for (d, l) in disks.iter_mut().zip(&landings) {
            d.present = l.files.clone();
        }
        // a file of another size (a partial copy) lands again
        *disks[0].present.get_mut("bundles/k8s-1.tar.zst").unwrap() -= 1;
        let got = disk_problems("worker1", disks.clone());
        assert!(got[0].contains("/opt/airgap: 3.0 GiB to copy"), "{got:?}");
        disks[0].present.insert("bundles/k8s-1.tar.zst".into(), 3 * GIB);
        assert_eq!(disk_problems("worker1", disks), Vec::<String>::new());
    }
}

#[test]
fn a_drbd_disk_that_is_not_a_block_device_is_named_on_master1_and_master2() {
    let text = fs_err::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml")).unwrap();
    let inv = Inventory::parse(&text.replace("  # drbd_disk: /dev/sdb ", "  drbd_disk: /dev/sdb   "), "site.yaml").unwrap();
    let warn = |_: &str| {};
    let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: None, targets: &Default::default(), warn: &warn, secrets: None };
    // the facts of master1 and master2 are asked about the disk; the others are not
    for (n, want) in [("master1", true), ("master2", true), ("master3", false), ("worker1", false)] {
        let argv = facts_argv(&ctx, inv.node(n).unwrap());
        assert_eq!(argv.windows(2).any(|w| w == ["--block", "/dev/sdb"]), want, "{n}: {argv:?}");
    }
    let mut facts = healthy(&inv);
    facts.get_mut("master1").unwrap().0.blocks = vec![("/dev/sdb".into(), crate::node::facts::BLOCK_DEVICE.into())];
    facts.get_mut("master2").unwrap().0.blocks = vec![("/dev/sdb".into(), "missing".into())];
    assert_eq!(
        problems(&inv, &facts),
        [("master2".to_string(), "nfs.drbd_disk /dev/sdb is missing here, not a block device: DRBD mirrors a disk or partition between master1 and master2".to_string())]
    );
}

#[test]
fn el7_masters_are_refused_for_the_redis_cluster_and_only_then() {
    let mut inv = example_inventory();
    let mut facts = healthy(&inv);
    for (f, _) in facts.values_mut() {
        f.os_id = "centos".into();
        f.os_like = vec!["rhel".into(), "fedora".into()];
        f.os_version = "7".into();
        f.os_pretty = "CentOS Linux 7 (Core)".into();
    }
    let p = problems(&inv, &facts);
    assert_eq!(p.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["master1", "master2", "master3"], "{p:#?}");
    assert!(p[0].1.starts_with("CentOS Linux 7 (Core) cannot run the Redis cluster: its units need systemd 236 or newer"), "{p:#?}");
    assert!(p[0].1.ends_with("remove the inventory's `redis:` section"), "{p:#?}");
    inv.redis.enabled = false;
    assert_eq!(problems(&inv, &facts), vec![]);
}
