//! flannel: the pod network. On the first master, the bundle's flannel manifest (`files[]` entry with
//! `manifest: flannel`) with `net-conf.json` `Network` = the inventory's pod subnet (kubeadm's podSubnet) and
//! `--iface=` for the inventory's interfaces (`kube::manifests::patch_flannel`), applied with the bundled
//! kubectl; done when every node of the inventory is Ready.

use crate::bundle::format::ManifestRole;
use crate::error::HintExt;
use crate::install::kubectl::{self, POLL, WAIT};
use crate::install::ssh::Transport;
use crate::install::{actions, Action, Ctx, Step};
use crate::site::inventory::{Inventory, Node};
use anyhow::{Context, Result};

pub struct Flannel;

const FILE: &str = "flannel.yaml";

/// flanneld's `--iface` values: the distinct `interface:` names of the inventory's nodes, in order (flanneld
/// takes the first that exists on its node); when only some nodes name one, the others' addresses follow,
/// so each node finds its own. No interface named anywhere: none (flanneld uses the default route's).
pub fn interfaces(inv: &Inventory) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for n in &inv.nodes {
        if let Some(i) = &n.interface {
            if !v.contains(i) {
                v.push(i.clone());
            }
        }
    }
    if !v.is_empty() {
        v.extend(inv.nodes.iter().filter(|n| n.interface.is_none()).map(|n| n.address.to_string()));
    }
    v
}

fn node_names(ctx: &Ctx) -> Vec<String> {
    ctx.inv.nodes.iter().map(|n| n.name.clone()).collect()
}

impl Step for Flannel {
    fn name(&self) -> &'static str {
        "flannel"
    }
    fn summary(&self) -> &'static str {
        "the pod network: the bundle's flannel manifest (Network = the pod subnet, --iface) applied from the first master; every node Ready"
    }
    fn runs_on(&self, ctx: &Ctx, node: &Node) -> bool {
        kubectl::first_master(ctx).as_deref() == Some(node.name.as_str())
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, _node: &Node) -> Result<Vec<Action>> {
        let subnet = ctx.inv.network.pod_subnet.to_string();
        let ifaces = interfaces(ctx.inv);
        let content = match kubectl::bundled_text(ctx, ManifestRole::Flannel, self.name())? {
            Some((path, text)) => {
                kube_patch(&text, &subnet, &ifaces).with_context(|| format!("cannot use the bundle's flannel manifest {path}"))?
            }
            None => format!(
                "<the bundle's flannel manifest (manifest: flannel), net-conf.json Network {subnet}{}>",
                if ifaces.is_empty() { String::new() } else { format!(", flanneld --iface={}", ifaces.join(" --iface=")) }
            ),
        };
        Ok(kubectl::apply_actions(FILE, content, "every node of the inventory is Ready"))
    }
    /// The manifest on the node, then every node Ready.
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<Vec<String>> {
        let plan = self.plan(ctx, node)?;
        let mut diff = actions::check_all(&plan[..1], t)?;
        if diff.is_empty() {
            match kubectl::get_json(t, &["nodes"]) {
                Ok(nodes) => diff.extend(kubectl::nodes_not_ready(&nodes, &node_names(ctx))),
                Err(e) => diff.push(format!("{e:#}")),
            }
        }
        Ok(diff)
    }
    fn apply(&self, ctx: &Ctx, node: &Node, t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
        kubectl::required_text(ctx, ManifestRole::Flannel, self.name())?;
        let changed = actions::apply_all(&self.plan(ctx, node)?, t, progress)?;
        let names = node_names(ctx);
        kubectl::wait_for("every node Ready", WAIT, POLL, progress, || Ok(kubectl::nodes_not_ready(&kubectl::get_json(t, &["nodes"])?, &names)))
            .with_hint(|| format!(
                "on {}: `kubectl -n kube-flannel get pods -o wide` and `kubectl describe node NAME` show why; flannel's Network must be kubeadm's podSubnet ({})",
                node.name, ctx.inv.network.pod_subnet
            ))?;
        Ok(changed)
    }
}

fn kube_patch(text: &str, subnet: &str, ifaces: &[String]) -> Result<String> {
    Ok(crate::kube::manifests::patch_flannel(text, subnet, ifaces)?.text)
}
