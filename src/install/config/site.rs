//! The [`Site`] of one install run, built from the inventory (nodes, VIPs, router ids, subnet) and the
//! bundle (the upstream hosts of its images, its sandbox image): what the templates in [`super::render`]
//! are rendered from.

use super::{ExternalRegistry, Interface, Peer, Site};
use crate::install::Ctx;
use crate::oci::reference::ImageRef;
use crate::site::inventory::Node;
use anyhow::{Context, Result};

/// A node with its VIP interface: the inventory's `interface:`, else the one that holds the node's address
/// in its facts (known to `install`; `plan` and `status` say so instead).
fn peer(ctx: &Ctx, n: &Node) -> Peer {
    let interface = match (&n.interface, ctx.targets.get(&n.name)) {
        (Some(i), _) => Interface::Named(i.clone()),
        (None, Some(t)) => t.interface.clone().map_or(Interface::NotOnNode, Interface::Named),
        (None, None) => Interface::FromFacts,
    };
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

/// The inventory's `registry.external`, its CA read here (the credentials are read only when written).
fn external(ctx: &Ctx) -> Result<Option<ExternalRegistry>> {
    let cfg = &ctx.inv.registry;
    let Some(e) = cfg.external() else { return Ok(None) };
    let ca_pem = match &cfg.ca_file {
        Some(f) => {
            let pem = fs_err::read_to_string(f).context("failed to read the inventory's registry.ca_file")?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("registry.ca_file {} holds no PEM certificate", f.display());
            }
            Some(pem)
        }
        None => None,
    };
    Ok(Some(ExternalRegistry { host: e.host, prefix: e.prefix, ca_pem, authenticated: cfg.username.is_some() }))
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
            external: external(ctx)?,
        };
        site.validate()?;
        Ok(site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::config::render::{self, VipRole, KEEPALIVED_CONF, KEEPALIVED_DROPIN, KEEPALIVED_NOTIFY};
    use crate::install::facts::Target;

    #[test]
    fn the_vip_interface_comes_from_the_nodes_facts_unless_the_inventory_names_one() {
        let inv = crate::site::inventory::Inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml"))).unwrap();
        let target = |interface: Option<&str>| Target {
            family: crate::node::OsFamily::Debian,
            os_tags: vec!["debian-12".into()],
            platform: "linux/amd64".into(),
            interface: interface.map(String::from),
        };
        // master1: facts say ens3; master2: no facts (plan); master3: its address is on no interface;
        // worker1: the inventory says ens192, the facts enp1s0
        let targets = [
            ("master1".to_string(), target(Some("ens3"))),
            ("master3".to_string(), target(None)),
            ("worker1".to_string(), target(Some("enp1s0"))),
        ]
        .into();
        let warnings = std::sync::Mutex::new(Vec::<String>::new());
        let warn = |w: &str| warnings.lock().unwrap().push(w.to_string());
        let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: None, targets: &targets, warn: &warn, secrets: None };
        let site = Site::of(&ctx).unwrap();
        let files = |node: &str, role| render::keepalived(&site, node, role);
        let content = |fs: &[crate::install::config::FileSpec], path: &str| fs.iter().find(|f| f.path == path).unwrap().content.clone();

        let m1 = files("master1", VipRole::Masters).unwrap();
        assert!(content(&m1, KEEPALIVED_CONF).contains("    interface ens3\n"));
        assert!(content(&m1, KEEPALIVED_CONF).contains("10.20.0.100/24 dev ens3\n"));
        assert!(content(&m1, KEEPALIVED_NOTIFY).contains("ip addr del 10.20.0.100/24 dev ens3 "));
        assert!(content(&m1, KEEPALIVED_DROPIN).contains("dev ens3 "));
        let m2 = files("master2", VipRole::Masters).unwrap();
        assert!(content(&m2, KEEPALIVED_CONF).contains("    interface <the interface holding 10.20.0.12>\n"), "{}", content(&m2, KEEPALIVED_CONF));
        let err = files("master3", VipRole::Masters).unwrap_err();
        assert_eq!(err.to_string(), "master3's address 10.20.0.13 is on none of its network interfaces: keepalived has no interface for the VIP");
        assert_eq!(crate::error::hints(&err), ["fix master3's address in the inventory, or give its `interface:` there"]);
        let w1 = files("worker1", VipRole::Workers).unwrap();
        assert!(content(&w1, KEEPALIVED_CONF).contains("    interface ens192\n"));
        // no more "keepalived will use eth0" guess
        assert!(warnings.lock().unwrap().is_empty(), "{:?}", warnings.lock().unwrap());
        // a name from the facts is checked like one from the inventory before it reaches a config or a shell line
        let bad = [("master1".to_string(), target(Some("e$(reboot)")))].into();
        let ctx = Ctx { targets: &bad, ..ctx };
        assert!(Site::of(&ctx).unwrap_err().to_string().contains("invalid network interface name"));
    }

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
