//! Site infrastructure: the host services that must run before kubeadm (container runtime pulling only from
//! the site registry, the registry on the workers' VIP, haproxy + keepalived for the apiserver VIP, nginx in
//! front of the ingress), described by a typed [`Site`] and rendered into files by [`render`].
//!
//! What lives here: the model ([`Site`], [`Peer`], [`FileSpec`], the ports and paths the services use),
//! [`site`] (the [`Site`] of one run, from the inventory and the bundle) and [`render`] (the templates of
//! `templates/`, with snapshot tests and each daemon's own config check in `render_tests.rs`).
//!
//! Nothing here touches a machine: the steps in `install::steps` turn the rendered [`FileSpec`]s into
//! actions, which write on a node only what differs.

pub mod containerd;
pub mod nfs;
pub mod render;
pub mod site;
pub mod units;
#[cfg(test)]
mod units_tests;

use anyhow::{bail, Result};
use serde::Serialize;
use std::net::Ipv4Addr;

/// The registry's port on the workers (and so on the workers' VIP).
pub const REGISTRY_PORT: u16 = 5000;
/// The apiserver load balancer's port on the masters (and so on the masters' VIP).
pub const LB_PORT: u16 = 16443;
/// Every apiserver's own port.
pub const APISERVER_PORT: u16 = 6443;
/// How many nodes may share one VIP (priorities 150, 140, ... minus the check weight stay >= 1).
pub const MAX_VRRP_NODES: usize = 7;
/// Where the registry keeps its blobs on the registry workers.
pub const REGISTRY_STORE: &str = "/var/lib/airgap/registry";
/// containerd's root (its content store and snapshots).
pub const CONTAINERD_ROOT: &str = "/var/lib/containerd";
/// containerd's hosts.toml directory.
pub const CERTS_DIR: &str = "/etc/containerd/certs.d";

/// Where keepalived puts a VIP on a node: the interface that carries the node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interface {
    /// The inventory's `interface:`, or else the one holding the node's address in its facts.
    Named(String),
    /// Not known here (`plan`, `status`: no facts): the interface holding the node's address, found when
    /// `install` gathers the node's facts.
    FromFacts,
    /// The node's facts show its address on none of its interfaces (preflight reports it).
    NotOnNode,
}

/// One node as the infrastructure steps see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The interface that carries `ip` (and the VIP when this node holds it): see [`Peer::interface_name`].
    #[serde(skip)]
    pub interface: Interface,
}

impl Peer {
    /// The interface name for this node's config files: a placeholder that says what it will be when the
    /// facts are not known (plan); an error when the node's address is on none of its interfaces.
    pub fn interface_name(&self) -> Result<String> {
        match &self.interface {
            Interface::Named(i) => Ok(i.clone()),
            Interface::FromFacts => Ok(format!("<the interface holding {}>", self.ip)),
            Interface::NotOnNode => Err(crate::error::with_hint(
                anyhow::anyhow!("{}'s address {} is on none of its network interfaces: keepalived has no interface for the VIP", self.name, self.ip),
                format!("fix {}'s address in the inventory, or give its `interface:` there", self.name),
            )),
        }
    }
}

/// Everything the infrastructure steps need from the inventory and the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// master1, master2, master3...: master1 holds the masters' VIP, the others are backups in order.
    pub masters: Vec<Peer>,
    /// The workers that run the registry (worker1 holds the workers' VIP, worker2 is its backup).
    pub registry_workers: Vec<Peer>,
    pub masters_vip: Ipv4Addr,
    pub workers_vip: Ipv4Addr,
    /// Prefix length of the VIPs on their interface (usually the subnet's).
    pub vip_prefix: u8,
    pub masters_vrid: u8,
    pub workers_vrid: u8,
    /// Upstream registry hosts of the bundle's images (registry.k8s.io, docker.io...): each gets a hosts.toml.
    pub upstream_hosts: Vec<String>,
    /// The sandbox image as a repository path + tag in the site registry, e.g. `pause:3.9`.
    pub pause_image: String,
    /// containerd snapshotter (`overlayfs`; `native` where overlay-on-overlay is refused, e.g. the lab).
    pub snapshotter: String,
    /// Where the installer binary lives on the nodes.
    pub airgap_bin: String,
    /// The site's own registry (inventory `registry.external`), instead of the built-in one.
    pub external: Option<ExternalRegistry>,
}

/// The site's own registry as the nodes use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRegistry {
    /// `HOST[:PORT]`
    pub host: String,
    /// Repository prefix (no slashes at the ends); empty for none.
    pub prefix: String,
    /// Its CA certificate (PEM), written to [`EXTERNAL_CA`] on every node.
    pub ca_pem: Option<String>,
    /// Pull credentials are configured (the Authorization header in hosts.toml, [`SECRET`] in the plan).
    pub authenticated: bool,
}

/// Where the nodes keep the external registry's CA.
pub const EXTERNAL_CA: &str = "/etc/containerd/airgap-registry-ca.crt";
/// What the plan shows in place of a secret; the steps fill in the real value only when they write the file.
pub const SECRET: &str = "<secret>";

impl Site {
    /// The site registry as containerd and docker address it (the external one's `HOST[:PORT]`).
    pub fn registry(&self) -> String {
        match &self.external {
            Some(e) => e.host.clone(),
            None => format!("{}:{}", self.workers_vip, REGISTRY_PORT),
        }
    }

    /// Where images are named: the registry and, for an external one, its prefix (kubeadm's
    /// `imageRepository`).
    pub fn image_repository(&self) -> String {
        match &self.external {
            Some(e) if !e.prefix.is_empty() => format!("{}/{}", e.host, e.prefix),
            _ => self.registry(),
        }
    }

    /// The sandbox image reference pulled from the site registry.
    pub fn sandbox_image(&self) -> String {
        format!("{}/{}", self.image_repository(), self.pause_image.trim_start_matches('/'))
    }

    /// The kubeadm `controlPlaneEndpoint`.
    pub fn control_plane_endpoint(&self) -> String {
        format!("{}:{}", self.masters_vip, LB_PORT)
    }

    pub fn is_master(&self, node: &str) -> bool {
        self.masters.iter().any(|p| p.name == node)
    }

    pub fn is_registry_worker(&self, node: &str) -> bool {
        self.registry_workers.iter().any(|p| p.name == node)
    }

    /// VRRP password shared by a VIP's nodes: derived from the VIP so that renders are reproducible (VRRP
    /// authentication only keeps two clusters on one segment apart; it is not a secret).
    pub fn vrrp_pass(vip: Ipv4Addr, vrid: u8) -> String {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(format!("airgap-vrrp/{vip}/{vrid}").as_bytes());
        format!("ag{}", &hex::encode(h)[..6])
    }

    /// Check what the templates rely on; errors name the inventory field to fix.
    pub fn validate(&self) -> Result<()> {
        if self.masters.is_empty() {
            bail!("the inventory has no master: the apiserver load balancer needs at least one");
        }
        if self.registry_workers.is_empty() {
            bail!("the inventory has no worker to run the registry on");
        }
        if self.masters_vrid == self.workers_vrid {
            bail!(
                "the masters' and the workers' VIP use the same virtual_router_id {}: give each its own",
                self.masters_vrid
            );
        }
        if self.masters_vip == self.workers_vip {
            bail!("the masters' VIP and the workers' VIP are both {}: they must differ", self.masters_vip);
        }
        if self.vip_prefix == 0 || self.vip_prefix > 32 {
            bail!("invalid VIP prefix length /{}", self.vip_prefix);
        }
        if self.masters.len() > MAX_VRRP_NODES || self.registry_workers.len() > MAX_VRRP_NODES {
            bail!("at most {MAX_VRRP_NODES} nodes can share one VIP");
        }
        for p in self.masters.iter().chain(&self.registry_workers) {
            if p.ip == self.masters_vip || p.ip == self.workers_vip {
                bail!("{}'s address {} is also a VIP: a VIP must be a free address", p.name, p.ip);
            }
            if let Interface::Named(i) = &p.interface {
                if !crate::site::validate::is_interface_name(i) {
                    bail!("{}: invalid network interface name {i:?}", p.name);
                }
            }
        }
        if let Some(p) = self.masters.iter().find(|m| self.is_registry_worker(&m.name)) {
            bail!("{} is both a master and a registry worker: keepalived holds one VIP per node", p.name);
        }
        for h in &self.upstream_hosts {
            if h.is_empty() || h.contains('/') || h.contains("..") || h.contains(char::is_whitespace) {
                bail!("invalid upstream registry host {h:?} in the bundle");
            }
        }
        Ok(())
    }
}

/// A file a step puts on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: String,
    pub mode: u32,
    pub content: String,
}

impl FileSpec {
    pub fn new(path: impl Into<String>, mode: u32, content: String) -> Self {
        Self { path: path.into(), mode, content }
    }
}
