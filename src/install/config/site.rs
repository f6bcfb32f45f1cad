//! The [`Site`] of one install run, built from the inventory (nodes, VIPs, router ids, subnet) and the
//! bundle (the upstream hosts of its images, its sandbox image): what the templates in [`super::render`]
//! are rendered from.

use super::{Peer, Site};
use crate::error::HintExt;
use crate::install::Ctx;
use crate::site::inventory::Node;
use anyhow::{anyhow, Context, Result};

fn peer(ctx: &Ctx, n: &Node) -> Peer {
    let interface = n.interface.clone().unwrap_or_else(|| {
        (ctx.warn)(&format!("{} has no `interface:` in the inventory: keepalived will use eth0 (set it if the node's NIC has another name)", n.name));
        "eth0".to_string()
    });
    Peer { name: n.name.clone(), ip: n.address, interface }
}

/// The upstream host of an image reference, as containerd names its hosts.toml directory.
pub fn reference_host(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or("");
    if reference.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        first.to_string()
    } else {
        "docker.io".to_string()
    }
}

/// The sandbox image of the bundle (`.../pause:TAG`) as a path in the site registry: `pause:TAG`.
fn pause_image(references: &[String]) -> Option<String> {
    references.iter().find_map(|r| {
        let no_digest = r.split('@').next().unwrap_or(r);
        let path = if reference_host(r) == "docker.io" && !r.starts_with("docker.io/") {
            no_digest.to_string()
        } else {
            no_digest.split_once('/').map(|(_, p)| p.to_string()).unwrap_or_default()
        };
        let (repo, _tag) = path.rsplit_once(':')?;
        (repo == "pause" || repo.ends_with("/pause")).then_some(path)
    })
}

impl Site {
    /// The site as the infrastructure templates see it, for this run: the inventory's nodes and VIPs, the
    /// bundle's upstream hosts and sandbox image.
    pub fn of(ctx: &Ctx) -> Result<Site> {
        let masters = ctx.inv.masters().map(|n| peer(ctx, n)).collect();
        let registry_workers = ctx.inv.workers().take(2).map(|n| peer(ctx, n)).collect();
        // without --bundle (plan, status), the default upstream hosts and sandbox image stand in
        // (the kit holds the root document read once per run; a --bundle that is no bundle fails here)
        let references: Vec<String> = match (ctx.kit, ctx.bundle) {
            (Some(kit), _) => kit.root.images.iter().map(|i| i.reference.clone()).collect(),
            (None, Some(_)) => bundle_root(ctx)?.images.iter().map(|i| i.reference.clone()).collect(),
            (None, None) => vec![],
        };
        let mut upstream_hosts: Vec<String> = references.iter().map(|r| reference_host(r)).collect();
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

/// The bundle's root document (the first entry; trusted only after the nodes' verified reads).
fn bundle_root(ctx: &Ctx) -> Result<crate::bundle::format::RootDoc> {
    let files = ctx
        .bundle
        .ok_or_else(|| anyhow!("this step needs the bundle"))
        .hint("pass --bundle PATH and --pubkey KEY.pub")?;
    let first = files.first().context("the bundle has no file")?;
    let source = crate::bundle::source::BundleSource::open(&first.path)?;
    crate::bundle::read::read_root(&source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_pause_come_from_references() {
        assert_eq!(reference_host("registry.k8s.io/pause:3.10"), "registry.k8s.io");
        assert_eq!(reference_host("nginx:1.25"), "docker.io");
        assert_eq!(reference_host("library/nginx:1.25"), "docker.io");
        assert_eq!(reference_host("127.0.0.1:5001/test/app:v1"), "127.0.0.1:5001");
        let refs = ["docker.io/library/nginx:1".to_string(), "registry.k8s.io/pause:3.10".into()];
        assert_eq!(pause_image(&refs).unwrap(), "pause:3.10");
        assert_eq!(pause_image(&["127.0.0.1:5001/airgap/pause:3.9".to_string()]).unwrap(), "airgap/pause:3.9");
        assert_eq!(pause_image(&["nginx:1".to_string()]), None);
    }
}
