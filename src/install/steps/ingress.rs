//! ingress-nginx: the ingress controller on the masters. On the first master, the bundle's ingress manifest
//! (`files[]` entry with `manifest: ingress`: ingress-nginx's baremetal `deploy.yaml` by default, or another
//! controller's) with its controller made a DaemonSet on the masters (`hostNetwork`,
//! `ClusterFirstWithHostNet`, control-plane nodeSelector + toleration: `kube::manifests::patch_ingress`),
//! applied with the bundled kubectl; done when the DaemonSet has a ready pod on every master. The workers'
//! nginx forwards :80/:443 of the workers' VIP to the masters.

use crate::bundle::format::ManifestRole;
use crate::error::HintExt;
use crate::install::kubectl::{self, POLL, WAIT};
use crate::install::ssh::Transport;
use crate::install::{actions, Action, Ctx, Step};
use crate::kube::manifests::Patched;
use crate::site::inventory::Node;
use anyhow::{Context, Result};

pub struct IngressNginx;

const FILE: &str = "ingress.yaml";

fn patched(ctx: &Ctx) -> Result<Option<Patched>> {
    match kubectl::bundled_text(ctx, ManifestRole::Ingress, "ingress-nginx")? {
        Some((path, text)) => Ok(Some(
            crate::kube::manifests::patch_ingress(&text).with_context(|| format!("cannot use the bundle's ingress manifest {path}"))?,
        )),
        None => Ok(None),
    }
}

fn masters(ctx: &Ctx) -> Vec<String> {
    ctx.inv.masters().map(|n| n.name.clone()).collect()
}

fn not_rolled_out(t: &dyn Transport, (ns, name): &(String, String), masters: &[String]) -> Result<Vec<String>> {
    let ds = kubectl::get_json(t, &["daemonset", "-n", ns, name])?;
    let pods = kubectl::get_json(t, &["pods", "-n", ns])?;
    Ok(kubectl::daemonset_not_ready(&ds, &pods, masters))
}

impl Step for IngressNginx {
    fn name(&self) -> &'static str {
        "ingress-nginx"
    }
    fn summary(&self) -> &'static str {
        "the ingress controller from the bundle's ingress manifest, as a DaemonSet on the masters (host network); ready on every master"
    }
    fn runs_on(&self, ctx: &Ctx, node: &Node) -> bool {
        kubectl::first_master(ctx).as_deref() == Some(node.name.as_str())
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, _node: &Node) -> Result<Vec<Action>> {
        let content = match patched(ctx)? {
            Some(p) => p.text,
            None => "<the bundle's ingress manifest (manifest: ingress), its controller as a DaemonSet on the masters: hostNetwork, dnsPolicy ClusterFirstWithHostNet, nodeSelector node-role.kubernetes.io/control-plane, tolerating that taint>".into(),
        };
        Ok(kubectl::apply_actions(FILE, content, "the controller DaemonSet has a ready pod on every master"))
    }
    /// The manifest on the node, then the controller's DaemonSet ready on every master.
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<Vec<String>> {
        let plan = self.plan(ctx, node)?;
        let mut diff = actions::check_all(&plan[..1], t)?;
        if diff.is_empty() {
            if let Some(p) = patched(ctx)? {
                match not_rolled_out(t, &p.daemonset, &masters(ctx)) {
                    Ok(problems) => diff.extend(problems),
                    Err(e) => diff.push(format!("{e:#}")),
                }
            }
        }
        Ok(diff)
    }
    fn apply(&self, ctx: &Ctx, node: &Node, t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
        kubectl::required_text(ctx, ManifestRole::Ingress, self.name())?;
        let changed = actions::apply_all(&self.plan(ctx, node)?, t, progress)?;
        let Some(p) = patched(ctx)? else { return Ok(changed) };
        let (ns, name) = &p.daemonset;
        kubectl::wait_for(&format!("DaemonSet {ns}/{name} ready on every master"), WAIT, POLL, progress, || not_rolled_out(t, &p.daemonset, &masters(ctx)))
            .with_hint(|| format!("on {}: `kubectl -n {ns} get pods -o wide` and `kubectl -n {ns} describe daemonset {name}` show why", node.name))?;
        Ok(changed)
    }
}
