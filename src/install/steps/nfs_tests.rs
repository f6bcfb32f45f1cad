use super::*;
use crate::bundle::format::{FileEntry, ImageEntry, RootDoc, SCHEMA};
use crate::install::facts::Target;
use crate::install::kit::Kit;
use crate::site::inventory::Inventory;

fn inventory(extra: &str) -> Inventory {
    let text = fs_err::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml")).unwrap();
    Inventory::parse(&(text.replace("nfs:\n  path: /opt/mnt/volumes", &format!("nfs:\n  path: /opt/mnt/volumes{extra}"))), "site.yaml").unwrap()
}

/// Each action in one line: commands without the airgap binary's path, files as `file PATH`.
fn lines(plan: &[Action]) -> Vec<String> {
    plan.iter()
        .map(|a| match a {
            Action::Command { argv, .. } if argv[0] == crate::node::BIN => argv[2..].join(" "),
            Action::Command { argv, .. } => argv.join(" "),
            Action::File { path, .. } | Action::SecretFile { path, .. } => format!("file {path}"),
            Action::Copy { remote, .. } => format!("copy {remote}"),
        })
        .collect()
}

fn with_ctx<R>(inv: &Inventory, kit: Option<&Kit>, f: impl FnOnce(&Ctx) -> R) -> (R, Vec<String>) {
    let targets = std::collections::BTreeMap::<String, Target>::new();
    let warnings = std::sync::Mutex::new(Vec::new());
    let warn = |w: &str| warnings.lock().unwrap().push(w.to_string());
    let ctx = Ctx { inv, bundle: None, binary: None, pubkey: None, kit, targets: &targets, warn: &warn, secrets: None };
    let r = f(&ctx);
    (r, warnings.into_inner().unwrap())
}

#[test]
fn clients_everywhere_servers_on_master1_and_master2() {
    let inv = inventory("");
    let ((m1, m3, w2), _) = with_ctx(&inv, None, |ctx| {
        let plan = |n: &str| lines(&Nfs.plan(ctx, inv.node(n).unwrap()).unwrap());
        (plan("master1"), plan("master3"), plan("worker2"))
    });
    assert_eq!(m3, ["packages --install nfs-common|nfs-utils --dir /opt/airgap/packages"]);
    assert_eq!(w2, m3);
    assert_eq!(m1[1], "packages --install nfs-kernel-server|nfs-utils,keepalived --dir /opt/airgap/packages");
    for want in ["file /etc/exports", "file /etc/keepalived/airgap-nfs.conf", "file /etc/airgap/nfs/check.sh", "file /etc/airgap/nfs/notify.sh", "file /etc/systemd/system/airgap-nfs-vip.service"] {
        assert!(m1.contains(&want.to_string()), "{want}: {m1:#?}");
    }
    assert!(m1.iter().any(|l| l.starts_with("service nfs-server ")), "{m1:#?}");
    assert!(m1.iter().any(|l| l.starts_with("service airgap-nfs-vip ") && l.ends_with("-- keepalived -t -f /etc/keepalived/airgap-nfs.conf")), "{m1:#?}");
    // no DRBD without a disk; the StorageClass is master1's (a placeholder without the bundle)
    assert!(!m1.iter().any(|l| l.contains("drbd")), "{m1:#?}");
    assert_eq!(m1.last().unwrap(), "kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /etc/kubernetes/airgap/nfs-provisioner.yaml");
    // without vips.nfs the step runs nowhere
    let none = Inventory::parse(&fs_err::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml")).unwrap().replace("  nfs: 10.20.0.150 ", "  # nfs: "), "s.yaml").unwrap();
    assert!(none.vips.nfs.is_none());
    let (runs, _) = with_ctx(&none, None, |ctx| none.nodes.iter().any(|n| Nfs.runs_on(ctx, n)));
    assert!(!runs);
}

#[test]
fn with_drbd_the_notify_serves_and_nfs_server_is_not_enabled() {
    let inv = inventory("\n  drbd_disk: /dev/sdb");
    let ((m1, m2), _) = with_ctx(&inv, None, |ctx| {
        let plan = |n: &str| lines(&Nfs.plan(ctx, inv.node(n).unwrap()).unwrap());
        (plan("master1"), plan("master2"))
    });
    for plan in [&m1, &m2] {
        assert_eq!(plan[1], "packages --install nfs-kernel-server|nfs-utils,keepalived,drbd-utils|drbd9x-utils|drbd90-utils|drbd84-utils --dir /opt/airgap/packages");
        let at = |l: &str| plan.iter().position(|x| x == l).unwrap_or_else(|| panic!("{l}: {plan:#?}"));
        // the resource file, checked by drbdadm, then the resource up, before keepalived may promote it
        assert!(at("modules --load drbd") < at("file /etc/drbd.d/airgap-nfs.res"));
        assert!(at("file /etc/drbd.d/airgap-nfs.res") < at("drbdadm dump airgap-nfs"));
        assert!(at("drbdadm dump airgap-nfs") < at("/etc/airgap/nfs/drbd-setup.sh"));
        assert!(at("/etc/airgap/nfs/drbd-setup.sh") < at("systemctl disable nfs-server"));
        assert!(!plan.iter().any(|l| l.starts_with("service nfs-server")), "{plan:#?}");
        assert!(at("systemctl disable nfs-server") < plan.iter().position(|l| l.starts_with("service airgap-nfs-vip")).unwrap());
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nfs-client-provisioner\nspec:\n  template:\n    spec:\n      containers:\n        - name: p\n          image: x\n          env:\n            - name: NFS_SERVER\n              value: 192.0.2.1\n            - name: NFS_PATH\n              value: /x\n      volumes:\n        - name: root\n          nfs:\n            server: 192.0.2.1\n            path: /x\n";
const CLASS: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: nfs-client\nprovisioner: k8s-sigs.io/nfs-subdir-external-provisioner\n";

fn kit_with(dir: &std::path::Path, files: &[(&str, &str)], image: Option<&str>) -> Kit {
    let entries = files
        .iter()
        .map(|(path, text)| {
            let local = dir.join("files").join(path);
            fs_err::create_dir_all(local.parent().unwrap()).unwrap();
            fs_err::write(&local, text).unwrap();
            FileEntry { path: path.to_string(), url: format!("https://example.org/{path}"), sha256: crate::digest::Digest::of_bytes(text.as_bytes()).hex().to_string(), size: text.len() as u64, mode: 0o644, install: None, platform: None, manifest: None }
        })
        .collect();
    let images = image.map(|r| ImageEntry { reference: r.into(), digest: crate::digest::Digest::of_bytes(b"i"), media_type: "application/vnd.oci.image.index.v1+json".into(), size: 1, platforms: vec!["linux/amd64".into()] }).into_iter().collect();
    let root = RootDoc { schema: SCHEMA.into(), name: "t".into(), version: "1".into(), platforms: vec!["linux/amd64".into()], kubernetes: None, base: None, images, files: entries, packages: vec![], sha256sums: "0".repeat(64), sizes: Default::default() };
    Kit::from_root(root, dir.to_path_buf())
}

#[test]
fn the_storage_class_is_the_bundles_manifests_patched_and_checked_by_its_label() {
    let inv = inventory("");
    let tmp = tempfile::tempdir().unwrap();
    let image = "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2";
    let kit = kit_with(tmp.path(), &[("manifests/nfs-subdir-external-provisioner/class.yaml", CLASS), ("manifests/nfs-subdir-external-provisioner/deployment.yaml", DEPLOYMENT)], Some(image));
    let (plan, warnings) = with_ctx(&inv, Some(&kit), |ctx| Nfs.plan(ctx, inv.node("master1").unwrap()).unwrap());
    assert!(warnings.is_empty(), "{warnings:?}");
    let n = plan.len();
    let Action::File { path, content, .. } = &plan[n - 2] else { panic!("{:#?}", &plan[n - 2]) };
    assert_eq!(path, PROVISIONER_FILE);
    assert!(content.contains("server: 10.20.0.150") && content.contains("value: /opt/mnt/volumes") && content.contains(image), "{content}");
    let Action::Command { argv, check: Some(check), .. } = &plan[n - 1] else { panic!() };
    assert_eq!(argv.join(" "), "kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /etc/kubernetes/airgap/nfs-provisioner.yaml");
    assert!(check[2].contains("get storageclass -l airgap.io/manifest-sha256=") && check[2].ends_with("-o name | grep -q ."), "{check:?}");
    // a damaged extracted file is refused, never applied
    fs_err::write(tmp.path().join("files/manifests/nfs-subdir-external-provisioner/class.yaml"), CLASS.replace("nfs-client", "evil")).unwrap();
    let (err, _) = with_ctx(&inv, Some(&kit), |ctx| Nfs.plan(ctx, inv.node("master1").unwrap()).unwrap_err().to_string());
    assert!(err.contains("not the bundle's"), "{err}");
    // a bundle without the manifests: no StorageClass, said once
    let bare = kit_with(&tmp.path().join("bare"), &[], None);
    let (plan, warnings) = with_ctx(&inv, Some(&bare), |ctx| lines(&Nfs.plan(ctx, inv.node("master1").unwrap()).unwrap()));
    assert!(!plan.iter().any(|l| l.contains("kubectl")), "{plan:#?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}
