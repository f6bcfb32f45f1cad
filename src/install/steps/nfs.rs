//! nfs: the site's NFS service, when the inventory sets `vips.nfs`.
//!
//! - every node: the NFS client packages (`nfs-common` / `nfs-utils`) from the bundle's OS packages (the
//!   kubelet mounts NFS volumes with them);
//! - master1 and master2: the NFS server packages and keepalived, `nfs.path` exported to the node subnet
//!   (`rw,sync,no_root_squash,no_subtree_check`, a managed block of /etc/exports), and the NFS VIP held by its
//!   own keepalived daemon (`airgap-nfs-vip.service`, `vips.nfs_router_id`) with a check and a notify script;
//!   - without `nfs.drbd_disk`: nfs-server runs on both (each exports its own directory), the VIP follows it;
//!   - with it: DRBD resource `airgap-nfs` over that disk between the two (`/etc/drbd.d/airgap-nfs.res`,
//!     checked by `drbdadm dump` before use), nfs-server started only by the VIP holder's notify, which
//!     promotes DRBD and mounts the device first, and refuses (never guesses) on a split brain;
//! - master1: the StorageClass (the nfs-subdir-external-provisioner manifests the bundle carries under
//!   [`PROVISIONER_DIR`], patched with the NFS VIP and path), applied with kubectl and the admin kubeconfig.

use crate::install::config::nfs::{self as cfg, NfsSite};
use crate::install::config::{FileSpec, Site};
use crate::install::{node_cmd, services, software, Action, Ctx, Step};
use crate::kube::nfs_provisioner;
use crate::site::inventory::Node;
use anyhow::{Context, Result};

pub struct Nfs;

/// Where the bundle carries the provisioner's manifests (its `files:` paths; every `.yaml` under it).
pub const PROVISIONER_DIR: &str = "manifests/nfs-subdir-external-provisioner/";
/// The patched manifests on master1.
pub const PROVISIONER_FILE: &str = "/etc/kubernetes/airgap/nfs-provisioner.yaml";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";

fn cmd(argv: &[&str], check: Option<&[&str]>, why: impl Into<String>) -> Action {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Action::Command { argv: v(argv), check: check.map(v), why: why.into() }
}

impl Step for Nfs {
    fn name(&self) -> &'static str {
        "nfs"
    }
    fn summary(&self) -> &'static str {
        "NFS on master1/master2 behind the NFS VIP (keepalived; DRBD with nfs.drbd_disk), clients on every node, the StorageClass"
    }
    fn runs_on(&self, ctx: &Ctx, _node: &Node) -> bool {
        ctx.inv.vips.nfs.is_some()
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let site = Site::of(ctx)?;
        let Some(nfs) = NfsSite::of(ctx.inv, &site)? else { return Ok(vec![]) };
        let mut v = vec![software::packages(&["nfs-common|nfs-utils"])];
        if !nfs.is_server(&node.name) {
            return Ok(v);
        }
        let drbd = nfs.drbd_disk.is_some();
        let mut packages = vec!["nfs-kernel-server|nfs-utils", "keepalived"];
        if drbd {
            packages.push("drbd-utils|drbd9x-utils|drbd90-utils|drbd84-utils");
        }
        v.push(software::packages(&packages));
        v.push(cmd(&["mkdir", "-p", &nfs.path], Some(&["test", "-d", &nfs.path]), format!("{} exists", nfs.path)));
        let exports = nfs.exports_block();
        v.push(Action::File { path: cfg::EXPORTS.into(), mode: 0o644, content: exports.clone(), block: Some(cfg::EXPORTS_BLOCK.into()) });
        let exports_spec = FileSpec::new(cfg::EXPORTS, 0o644, exports);
        if drbd {
            v.push(Action::Command {
                argv: node_cmd(&["modules", "--load", "drbd"]),
                check: Some(node_cmd(&["modules", "--check", "drbd"])),
                why: "the drbd kernel module is loaded".into(),
            });
            let files = nfs.drbd(&node.name)?;
            v.extend(services::files(&files));
            v.push(cmd(
                &["drbdadm", "dump", cfg::DRBD_RESOURCE],
                None,
                format!("drbdadm accepts {} for this node", cfg::DRBD_RES_FILE),
            ));
            v.push(cmd(
                &[cfg::NFS_DRBD_SETUP],
                Some(&[cfg::NFS_DRBD_SETUP, "--check"]),
                format!("DRBD {} up on {} (metadata made once; the file system made once, on {})", cfg::DRBD_RESOURCE, nfs.drbd_disk.as_deref().unwrap_or("?"), nfs.servers[0].name),
            ));
            // only the VIP holder's notify starts nfs-server (on the DRBD device)
            v.push(cmd(
                &["systemctl", "disable", "nfs-server"],
                Some(&["sh", "-c", "! systemctl is-enabled --quiet nfs-server"]),
                "nfs-server is not started at boot: the NFS VIP's holder starts it on the DRBD device",
            ));
            v.push(cmd(
                &["sh", "-c", "! systemctl is-active --quiet nfs-server || exportfs -ra"],
                None,
                format!("the serving node exports {} as /etc/exports says", nfs.path),
            ));
        } else {
            v.push(services::service("nfs-server", &[exports_spec], &[cfg::EXPORTS], &[], false));
        }
        let ka = nfs.keepalived(&node.name)?;
        v.extend(services::files(&ka));
        v.push(services::service(
            cfg::NFS_VIP_SERVICE,
            &ka,
            &[cfg::NFS_KEEPALIVED_CONF],
            &["keepalived", "-t", "-f", cfg::NFS_KEEPALIVED_CONF],
            false,
        ));
        if node.name == nfs.servers[0].name {
            v.extend(storage_class(ctx, &nfs)?);
        }
        Ok(v)
    }
}

/// The provisioner's manifests as the bundle carries them: (their texts, the provisioner image), `None` when
/// the bundle has none; `Some` with no texts when they are not extracted here (plan).
fn provisioner_manifests(ctx: &Ctx) -> Result<Option<(Vec<String>, Option<String>)>> {
    let Some(kit) = ctx.kit else { return Ok(None) };
    let mut files: Vec<_> = kit.root().files.iter().filter(|f| {
        (f.manifest == Some(crate::bundle::format::ManifestRole::Storage) || f.path.starts_with(PROVISIONER_DIR))
            && (f.path.ends_with(".yaml") || f.path.ends_with(".yml"))
    }).collect();
    if files.is_empty() {
        return Ok(None);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let image = kit.root().images.iter().map(|i| i.reference.clone()).find(|r| r.contains("nfs-subdir-external-provisioner"));
    let mut texts = Vec::new();
    for f in files {
        let local = kit.local(&f.path);
        let Ok(bytes) = fs_err::read(&local) else { return Ok(Some((vec![], image))) };
        // the extracted file is used only with the sha256 the verified root document gives it
        let got = crate::digest::Digest::of_bytes(&bytes);
        anyhow::ensure!(got.hex() == f.sha256, "{} has sha256 {}, not the bundle's {}: extract the bundle again", local.display(), got.hex(), f.sha256);
        texts.push(String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", f.path))?);
    }
    Ok(Some((texts, image)))
}

/// The StorageClass on master1: the patched manifests, applied with the admin kubeconfig.
fn storage_class(ctx: &Ctx, nfs: &NfsSite) -> Result<Vec<Action>> {
    let kubectl = ["kubectl", "--kubeconfig", ADMIN_CONF];
    let apply = [&kubectl[..], &["apply", "-f", PROVISIONER_FILE]].concat();
    let Some((texts, image)) = provisioner_manifests(ctx)? else {
        if ctx.kit.is_some() {
            (ctx.warn)(&format!("the bundle carries no NFS provisioner manifests (files under {PROVISIONER_DIR}): the cluster gets no StorageClass"));
            return Ok(vec![]);
        }
        return Ok(vec![cmd(&apply, None, format!("the StorageClass: the bundle's NFS provisioner manifests (files under {PROVISIONER_DIR}), patched with {}:{}, written to {PROVISIONER_FILE} and applied", nfs.vip, nfs.path))]);
    };
    if texts.is_empty() {
        return Ok(vec![cmd(&apply, None, format!("the StorageClass: the bundle's {PROVISIONER_DIR} manifests (extracted by install), patched with {}:{}, applied", nfs.vip, nfs.path))]);
    }
    let docs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vip = nfs.vip.to_string();
    let p = nfs_provisioner::patch(&docs, &nfs_provisioner::Target { server: &vip, path: &nfs.path, image: image.as_deref() })
        .context("the bundle's NFS provisioner manifests cannot be used")?;
    let check = format!(
        "kubectl --kubeconfig {ADMIN_CONF} get storageclass -l {}={} -o name | grep -q .",
        nfs_provisioner::HASH_LABEL,
        p.hash
    );
    Ok(vec![
        Action::File { path: PROVISIONER_FILE.into(), mode: 0o644, content: p.yaml, block: None },
        cmd(&apply, Some(&["sh", "-c", &check]), format!("the StorageClass {} (NFS provisioner on {vip}:{}) applied", p.class, nfs.path)),
    ])
}

#[cfg(test)]
#[path = "nfs_tests.rs"]
mod tests;
