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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::format::{FileEntry, RootDoc, SCHEMA};
    use crate::install::facts::Target;
    use crate::install::kit::Kit;

    fn manifest_entry(path: &str, role: ManifestRole, text: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            url: format!("https://example.org/{path}"),
            sha256: crate::digest::Digest::of_bytes(text.as_bytes()).hex().to_string(),
            size: text.len() as u64,
            mode: 0o644,
            install: None,
            platform: None,
            manifest: Some(role),
        }
    }

    /// The flannel and ingress steps on the example site, with a kit holding (or lacking) their manifests.
    #[test]
    fn the_manifest_steps_apply_the_bundles_edited_manifests_from_the_first_master() {
        let root_dir = env!("CARGO_MANIFEST_DIR");
        let inv = crate::site::inventory::Inventory::load(&std::path::Path::new(root_dir).join("manifests/site.example.yaml")).unwrap();
        let fixture = |n: &str| std::fs::read_to_string(format!("{root_dir}/tests/fixtures/manifests/{n}")).unwrap();
        let (flannel, ingress) = (fixture("kube-flannel-v0.28.9.yml"), fixture("ingress-nginx-baremetal-controller-v1.15.1.yaml"));
        let tmp = tempfile::tempdir().unwrap();
        let root = |files: Vec<FileEntry>| RootDoc {
            schema: SCHEMA.into(),
            name: "k8s".into(),
            version: "1".into(),
            platforms: vec!["linux/amd64".into()],
            kubernetes: None,
            base: None,
            images: vec![],
            files,
            packages: vec![],
            sha256sums: "0".repeat(64),
            sizes: Default::default(),
        };
        let files = vec![
            manifest_entry("manifests/flannel.yml", ManifestRole::Flannel, &flannel),
            manifest_entry("manifests/ingress.yaml", ManifestRole::Ingress, &ingress),
        ];
        let kit = Kit::from_root(root(files), tmp.path().to_path_buf());
        std::fs::create_dir_all(kit.local("manifests")).unwrap();
        std::fs::write(kit.local("manifests/flannel.yml"), &flannel).unwrap();
        std::fs::write(kit.local("manifests/ingress.yaml"), &ingress).unwrap();
        let target = Target { family: crate::node::OsFamily::Debian, os_tags: vec!["debian-12".into()], platform: "linux/amd64".into(), interface: None };
        let targets = inv.nodes.iter().map(|n| (n.name.clone(), target.clone())).collect();
        let warn = |_: &str| {};
        let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: Some(&kit), targets: &targets, warn: &warn, secrets: None };
        let node = |n: &str| inv.nodes.iter().find(|x| x.name == n).unwrap();
        let flannel_step = super::super::flannel::Flannel;
        for step in [&flannel_step as &dyn Step, &IngressNginx] {
            assert!(step.runs_on(&ctx, node("master1")) && !step.runs_on(&ctx, node("master2")) && !step.runs_on(&ctx, node("worker1")));
        }
        let plan = flannel_step.plan(&ctx, node("master1")).unwrap();
        let Action::File { path, content, .. } = &plan[0] else { panic!("{plan:?}") };
        assert_eq!(path, "/etc/kubernetes/airgap/manifests/flannel.yaml");
        assert!(content.contains("\\\"Network\\\": \\\"10.244.0.0/16\\\"") || content.contains(r#""Network": "10.244.0.0/16""#), "{content}");
        assert!(content.contains("--iface=ens192") && content.contains("--iface=10.20.0.11"), "{content}");
        let Action::Command { argv, .. } = &plan[1] else { panic!("{plan:?}") };
        assert_eq!(argv.join(" "), "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /etc/kubernetes/airgap/manifests/flannel.yaml");
        let plan = IngressNginx.plan(&ctx, node("master1")).unwrap();
        let Action::File { content, .. } = &plan[0] else { panic!("{plan:?}") };
        assert_eq!(content, &crate::kube::manifests::patch_ingress(&ingress).unwrap().text);

        // a bundle without an ingress manifest: the step says so, and how to fix it
        let kit = Kit::from_root(root(vec![manifest_entry("manifests/flannel.yml", ManifestRole::Flannel, &flannel)]), tmp.path().to_path_buf());
        let ctx = Ctx { kit: Some(&kit), ..ctx };
        let err = IngressNginx.plan(&ctx, node("master1")).unwrap_err();
        assert_eq!(err.to_string(), "the bundle carries no ingress manifest: step ingress-nginx has nothing to apply");
        assert!(crate::error::hints(&err)[0].contains("`manifest: ingress`"));
        // installing without --bundle: named
        let ctx = Ctx { kit: None, ..ctx };
        assert!(flannel_step.plan(&ctx, node("master1")).unwrap_err().to_string().contains("no --bundle was given"));
    }
}
