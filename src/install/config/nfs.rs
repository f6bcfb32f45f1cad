//! The NFS service of a site: master1 and master2 export `nfs.path` to the node subnet behind the NFS VIP (its
//! own keepalived daemon, its own router id), optionally on a DRBD resource mirrored between the two. The model
//! ([`NfsSite`]) and the files rendered from `templates/` (exports, keepalived config and scripts, the unit,
//! the DRBD resource and its setup script).

use super::render::{render, HEADER};
use super::{FileSpec, Peer, Site};
use crate::site::inventory::Inventory;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;

pub const EXPORTS: &str = "/etc/exports";
/// The managed block of /etc/exports (the operators' own lines are kept).
pub const EXPORTS_BLOCK: &str = "airgap-nfs";
pub const NFS_KEEPALIVED_CONF: &str = "/etc/keepalived/airgap-nfs.conf";
pub const NFS_CHECK: &str = "/etc/airgap/nfs/check.sh";
pub const NFS_NOTIFY: &str = "/etc/airgap/nfs/notify.sh";
pub const NFS_DRBD_SETUP: &str = "/etc/airgap/nfs/drbd-setup.sh";
pub const NFS_VIP_UNIT: &str = "/etc/systemd/system/airgap-nfs-vip.service";
pub const NFS_VIP_SERVICE: &str = "airgap-nfs-vip";
pub const DRBD_RESOURCE: &str = "airgap-nfs";
pub const DRBD_RES_FILE: &str = "/etc/drbd.d/airgap-nfs.res";
pub const DRBD_DEVICE: &str = "/dev/drbd0";
pub const DRBD_PORT: u16 = 7789;
pub const KEEPALIVED_BIN: &str = "/usr/sbin/keepalived";
/// The keepalived instance name (also the state file /run/airgap/keepalived-airgap_nfs.state).
pub const INSTANCE: &str = "airgap_nfs";
/// How long a new holder waits for the old one to leave DRBD Primary before it refuses.
pub const PEER_WAIT_SECS: u32 = 30;
/// The export options the seeds' architecture uses.
pub const EXPORT_OPTIONS: &str = "rw,sync,no_root_squash,no_subtree_check";

/// NFS on master1/master2 behind the NFS VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsSite {
    /// master1 (holds the VIP first) and master2.
    pub servers: Vec<Peer>,
    pub vip: Ipv4Addr,
    pub vip_prefix: u8,
    pub vrid: u8,
    /// The exported directory (the DRBD device's mount point with DRBD).
    pub path: String,
    /// Who may mount it: the node subnet.
    pub subnet: String,
    /// The block device DRBD mirrors, when the site uses DRBD.
    pub drbd_disk: Option<String>,
    pub airgap_bin: String,
}

impl NfsSite {
    /// The site's NFS from the inventory, `None` without `vips.nfs`.
    pub fn of(inv: &Inventory, site: &Site) -> Result<Option<NfsSite>> {
        let Some(vip) = inv.vips.nfs else { return Ok(None) };
        let servers: Vec<Peer> = site.masters.iter().take(2).cloned().collect();
        let nfs = NfsSite {
            servers,
            vip,
            vip_prefix: site.vip_prefix,
            vrid: inv.vips.nfs_router_id,
            path: inv.nfs.path.clone(),
            subnet: inv.network.node_subnet.trunc().to_string(),
            drbd_disk: inv.nfs.drbd_disk.clone(),
            airgap_bin: site.airgap_bin.clone(),
        };
        if nfs.vrid == site.masters_vrid || nfs.vrid == site.workers_vrid {
            bail!("the NFS VIP uses virtual_router_id {} like another VIP: give vips.nfs_router_id its own", nfs.vrid);
        }
        if vip == site.masters_vip || vip == site.workers_vip {
            bail!("the NFS VIP {vip} is also another VIP: they must differ");
        }
        if nfs.servers.len() != 2 {
            bail!("NFS needs two masters (master1 and master2), the inventory has {}", nfs.servers.len());
        }
        Ok(Some(nfs))
    }

    pub fn is_server(&self, node: &str) -> bool {
        self.servers.iter().any(|p| p.name == node)
    }

    fn server(&self, node: &str) -> Result<&Peer> {
        self.servers.iter().find(|p| p.name == node).with_context(|| format!("{node} is not an NFS server (master1 or master2)"))
    }

    /// The managed block of /etc/exports: the path to the node subnet.
    pub fn exports_block(&self) -> String {
        format!("{} {}({EXPORT_OPTIONS})\n", self.path, self.subnet)
    }

    /// keepalived's config, check and notify scripts and its unit, for one NFS server.
    pub fn keepalived(&self, node: &str) -> Result<Vec<FileSpec>> {
        let me = self.server(node)?;
        let idx = self.servers.iter().position(|p| p.name == node).unwrap_or(0);
        let interface = me.interface_name()?;
        let drbd = self.drbd_disk.is_some();
        // with DRBD both start as BACKUP (nopreempt); the priorities still elect master1 first
        let state = if idx == 0 && !drbd { "MASTER" } else { "BACKUP" };
        let peers: Vec<&Peer> = self.servers.iter().filter(|p| p.name != node).collect();
        let ctx = serde_json::json!({
            "header": HEADER, "node": me, "peers": peers, "vip": self.vip.to_string(), "vip_prefix": self.vip_prefix,
            "interface": interface, "virtual_router_id": self.vrid, "priority": 150 - 10 * idx as u32, "state": state,
            "auth_pass": Site::vrrp_pass(self.vip, self.vrid), "path": self.path, "drbd": drbd,
            "drbd_resource": DRBD_RESOURCE, "device": DRBD_DEVICE, "check_script": NFS_CHECK, "notify_script": NFS_NOTIFY,
            "instance": INSTANCE, "peer_wait": PEER_WAIT_SECS, "config": NFS_KEEPALIVED_CONF, "keepalived": KEEPALIVED_BIN,
        });
        let mut script_ctx = ctx.clone();
        script_ctx["node"] = serde_json::Value::String(node.to_string());
        Ok(vec![
            FileSpec::new(NFS_KEEPALIVED_CONF, 0o644, render("keepalived-nfs.conf", ctx.clone())?),
            FileSpec::new(NFS_CHECK, 0o755, render("nfs-check.sh", script_ctx.clone())?),
            FileSpec::new(NFS_NOTIFY, 0o755, render("nfs-notify.sh", script_ctx)?),
            FileSpec::new(NFS_VIP_UNIT, 0o644, render("airgap-nfs-vip.service", ctx)?),
        ])
    }

    /// With DRBD: the resource file and the setup script, for one NFS server.
    pub fn drbd(&self, node: &str) -> Result<Vec<FileSpec>> {
        let Some(disk) = &self.drbd_disk else { return Ok(vec![]) };
        self.server(node)?;
        let ctx = serde_json::json!({
            "header": HEADER, "resource": DRBD_RESOURCE, "device": DRBD_DEVICE, "disk": disk, "path": self.path,
            "peers": self.servers, "port": DRBD_PORT, "node": node, "first": self.servers[0].name,
        });
        Ok(vec![
            FileSpec::new(DRBD_RES_FILE, 0o644, render("drbd-nfs.res", ctx.clone())?),
            FileSpec::new(NFS_DRBD_SETUP, 0o755, render("nfs-drbd-setup.sh", ctx)?),
        ])
    }
}

#[cfg(test)]
#[path = "nfs_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "nfs_script_tests.rs"]
mod script_tests;
