//! The [`Site`] of one install run, built from the inventory (nodes, VIPs, router ids, subnet) and the
//! bundle (the upstream hosts of its images, its sandbox image): what the templates in [`super::render`]
//! are rendered from.

use super::{Peer, Site};
use crate::install::Ctx;
use crate::oci::reference::ImageRef;
use crate::site::inventory::Node;
use anyhow::{Context, Result};

fn peer(ctx: &Ctx, n: &Node) -> Peer {
    let interface = n.interface.clone().unwrap_or_else(|| {
        (ctx.warn)(&format!("{} has no `interface:` in the inventory: keepalived will use eth0 (set it if the node's NIC has another name)", n.name));
        "eth0".to_string()
    });
    Peer { name: n.name.clone(), ip: n.address, interface }
}

/// The sandbox image of the bundle (a tagged `.../pause`) as the site registry serves it: `PATH:TAG`
/// (`registry.k8s.io/pause:3.10` is `pause:3.10`).
fn pause_image(references: &[ImageRef]) -> Option<String> {
    references.iter().find_map(|r| {
        let tag = r.tag.as_ref()?;
        (r.repository == "pause" || r.repository.ends_with("/pause")).then(|| format!("{}:{tag}", r.repository))
    })
}

impl Site {
    /// The site as the infrastructure templates see it, for this run: the inventory's nodes and VIPs, the
    /// bundle's upstream hosts and sandbox image.
    pub fn of(ctx: &Ctx) -> Result<Site> {
        let masters = ctx.inv.masters().map(|n| peer(ctx, n)).collect();
        let registry_workers = ctx.inv.workers().take(2).map(|n| peer(ctx, n)).collect();
        // without --bundle (plan, status), the default upstream hosts and sandbox image stand in (the kit holds
        // the bundle's verified root document, read once per run)
        let references: Vec<String> = match ctx.kit {
            Some(kit) => kit.root().images.iter().map(|i| i.reference.clone()).collect(),
            None => vec![],
        };
        let references = references
            .iter()
            .map(|r| ImageRef::parse(r).with_context(|| format!("the bundle lists a bad image reference {r:?}")))
            .collect::<Result<Vec<_>>>()?;
        // containerd looks up certs.d/<host>/hosts.toml by the host as the image reference writes it
        let mut upstream_hosts: Vec<String> = references.iter().map(|r| r.host_as_written().to_string()).collect();
        upstream_hosts.extend(["registry.k8s.io", "docker.io", "ghcr.io", "quay.io"].map(String::from));
        upstream_hosts.sort();
        upstream_hosts.dedup();
        let site = Site {
            masters,
            registry_workers,
            masters_vip: ctx.inv.vips.masters,
            workers_vip: ctx.inv.vips.workers,
            vip_prefix: ctx.inv.network.node_subnet.prefix_len(),
            masters_vrid: ctx.inv.vips.masters_router_id,
            workers_vrid: ctx.inv.vips.workers_router_id,
            upstream_hosts,
            pause_image: pause_image(&references).unwrap_or_else(|| "pause:3.10".into()),
            snapshotter: "overlayfs".into(),
            airgap_bin: crate::node::BIN.into(),
        };
        site.validate()?;
        Ok(site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_image_is_named_as_the_site_registry_serves_it() {
        let refs = |rs: &[&str]| rs.iter().map(|r| ImageRef::parse(r).unwrap()).collect::<Vec<_>>();
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(pause_image(&refs(&["docker.io/library/nginx:1", "registry.k8s.io/pause:3.10"])).unwrap(), "pause:3.10");
        assert_eq!(pause_image(&refs(&["127.0.0.1:5001/airgap/pause:3.9"])).unwrap(), "airgap/pause:3.9");
        assert_eq!(pause_image(&refs(&[&format!("registry.k8s.io/pause:3.10@{d}")])).unwrap(), "pause:3.10");
        // a Docker Hub pause is served under library/ (the old string code said `pause:3.9`, a name not served)
        assert_eq!(pause_image(&refs(&["pause:3.9"])).unwrap(), "library/pause:3.9");
        // by digest only, or no pause at all: the default stands in
        assert_eq!(pause_image(&refs(&[&format!("registry.k8s.io/pause@{d}"), "nginx:1"])), None);
    }
}
