//! registry: on the first two workers, `airgap load` the bundle into the store and serve it on :5000 as the
//! `airgap-registry` systemd service; keepalived (workers' instance) holds the workers' VIP on worker1 with
//! worker2 as backup, dropping priority when the local registry stops answering.

use crate::install::config::render::{self, VipRole};
use crate::install::config::{Site, REGISTRY_PORT, REGISTRY_STORE};
use crate::install::{copies, node_cmd, services, software, Action, Ctx, Step};
use crate::site::inventory::Node;
use anyhow::Result;

pub struct Registry;

impl Step for Registry {
    fn name(&self) -> &'static str {
        "registry"
    }
    fn summary(&self) -> &'static str {
        "the bundle's images served on :5000 by worker1/worker2, behind the workers' VIP (keepalived)"
    }
    fn runs_on(&self, ctx: &Ctx, node: &Node) -> bool {
        // with the site's own registry (`registry.external`) there is no built-in one, nor its VIP
        super::distribute::loads_bundle(ctx.inv, node)
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let site = Site::of(ctx)?;
        let mut v = Vec::new();
        let bundle = copies::bundle_on_node(ctx, &mut v)?;
        let mut load = vec![crate::node::BIN.to_string(), "load".into(), bundle.clone()];
        load.extend(["--store", REGISTRY_STORE, "--pubkey", copies::REMOTE_PUBKEY].map(String::from));
        v.push(Action::Command {
            argv: load,
            check: Some(node_cmd(&["registry-loaded", "--store", REGISTRY_STORE, "--bundle", &bundle, "--pubkey", copies::REMOTE_PUBKEY])),
            why: match ctx.kit.and_then(|k| k.root().base.as_ref()) {
                Some(b) => format!("load the delta bundle's images into the registry store (verified); the store must hold its base {}", b.describe()),
                None => "load the bundle's images into the registry store (verified)".into(),
            },
        });
        // el7's systemd 219 gets the unit without the sandboxing it does not know
        let el7 = ctx.targets.get(&node.name).is_some_and(|t| t.os_tags.iter().any(|t| t == "el7"));
        let unit = vec![render::registry_unit(&site, &node.name, el7)?];
        v.extend(services::files(&unit));
        v.push(services::service("airgap-registry", &unit, &[], &[], true));
        v.push(services::answers("the registry", "check-http", &format!("http://127.0.0.1:{REGISTRY_PORT}/v2/")));
        let registry = format!("127.0.0.1:{REGISTRY_PORT}");
        v.push(Action::Command {
            argv: node_cmd(&["registry-serves", "--store", REGISTRY_STORE, "--registry", &registry, "--wait-secs", "30"]),
            check: Some(node_cmd(&["registry-serves", "--store", REGISTRY_STORE, "--registry", &registry])),
            why: "the registry serves every image of its store as loaded (the running registry re-read its catalog)".into(),
        });
        v.push(software::packages(&["keepalived"]));
        let ka = render::keepalived(&site, &node.name, VipRole::Workers)?;
        v.extend(services::files(&ka));
        v.push(services::service("keepalived", &ka, &[render::KEEPALIVED_CONF], &["keepalived", "-t", "-f", render::KEEPALIVED_CONF], false));
        Ok(v)
    }
}
