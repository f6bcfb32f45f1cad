//! What the Kubernetes steps (kubelet, kubeadm-init, kubeadm-join) share: the site's kubeadm inputs from the
//! inventory, the secrets (or placeholders when `plan` runs before the first install made them), the
//! files holding secrets as [`Action::SecretFile`]s, and the kubeadm / kubectl command lines on the nodes.

use super::{Action, Ctx, Step};
use crate::kube::kubeadm_config::{ClusterInput, JoinSecrets, NodeInput, Secrets};
use crate::kube::pki::{CaCertHash, CertificateKey};
use crate::kube::Version;
use crate::node::components::Component;
use crate::site::inventory::Node;
use anyhow::{Context, Result};
use std::net::IpAddr;

/// Files kubeadm writes on the nodes (its contract, checked by the stand-ins).
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
pub const CA_CRT: &str = "/etc/kubernetes/pki/ca.crt";
pub const CA_KEY: &str = "/etc/kubernetes/pki/ca.key";

/// What `plan` shows for the CA pin before the first install made the CA.
const PIN_PLACEHOLDER: &str = "sha256:<the pin of the cluster CA, made by the first install>";

/// Do these steps need the cluster's secrets?
pub fn needs_secrets(steps: &[Box<dyn Step>]) -> bool {
    steps.iter().any(|s| matches!(s.name(), "kubeadm-init" | "kubeadm-join"))
}

/// The master `kubeadm init` runs on: the first in the inventory.
pub fn first_master<'a>(ctx: &Ctx<'a>) -> Option<&'a Node> {
    ctx.inv.masters().next()
}

pub fn is_first_master(ctx: &Ctx, node: &Node) -> bool {
    first_master(ctx).is_some_and(|m| m.name == node.name)
}

/// The inventory's Kubernetes version (`1.36.3` or `v1.36.3`).
pub fn version(ctx: &Ctx) -> Result<Version> {
    let v = &ctx.inv.cluster.kubernetes_version;
    let with_v = if v.starts_with('v') { v.clone() } else { format!("v{v}") };
    with_v.parse().with_context(|| format!("cluster.kubernetes_version {v:?}"))
}

pub fn node_input(n: &Node) -> NodeInput {
    NodeInput { name: n.name.clone(), address: IpAddr::V4(n.address) }
}

/// The kubeadm inputs of the site: version, VIPs, subnets, masters (the first one first).
pub fn cluster_input(ctx: &Ctx) -> Result<ClusterInput> {
    let inv = ctx.inv;
    let mut input = ClusterInput::new(
        version(ctx)?,
        inv.cluster.name.clone(),
        IpAddr::V4(inv.vips.masters),
        inv.masters().map(node_input).collect(),
        IpAddr::V4(inv.vips.workers),
        inv.network.pod_subnet.into(),
        inv.network.service_subnet.into(),
    );
    if let Some(s) = ctx.secrets {
        input.key_algorithm = s.ca.algorithm();
    }
    // the site's registry: the workers' VIP :5000, or `registry.external` (HOST[/PREFIX])
    input.image_repository = crate::install::config::Site::of(ctx)?.image_repository();
    Ok(input)
}

/// The joins' secrets: the real ones, or (before the first install made them) placeholders that are never
/// shown (`<secret>`) except the CA pin, which [`secret_file`] replaces by [`PIN_PLACEHOLDER`].
fn join_secrets(ctx: &Ctx) -> Result<(JoinSecrets, bool)> {
    match ctx.secrets {
        Some(s) => Ok((s.join()?, true)),
        None => Ok((
            JoinSecrets {
                token: "abcdef.0123456789abcdef".parse()?,
                certificate_key: "0".repeat(64).parse::<CertificateKey>()?,
                ca_cert_hash: CaCertHash::of_spki(b"placeholder"),
            },
            false,
        )),
    }
}

/// A kubeadm configuration file holding secrets, rendered by `render` (real for the node, masked for people).
pub fn secret_file(
    ctx: &Ctx,
    path: &str,
    render: impl Fn(&JoinSecrets, Secrets) -> crate::kube::Result<String>,
) -> Result<Action> {
    let (secrets, real) = join_secrets(ctx)?;
    let mut shown = render(&secrets, Secrets::Redacted).with_context(|| format!("failed to render {path}"))?;
    if !real {
        shown = shown.replace(&secrets.ca_cert_hash.to_string(), PIN_PLACEHOLDER);
    }
    let content = if real { Some(render(&secrets, Secrets::Real)?) } else { None };
    Ok(Action::secret_file(path, crate::kube::kubeadm_config::CONFIG_FILE_MODE, content, shown, CLUSTER_SECRETS))
}

/// Where the kubeadm files' secrets come from, as the plan says it.
pub const CLUSTER_SECRETS: &str = "the cluster's secrets (<state dir>/secrets/, made once)";

/// The bootstrap token's public id (names its Secret `bootstrap-token-<id>`).
pub fn token_id(ctx: &Ctx) -> String {
    ctx.secrets.map_or_else(|| "<token id>".to_string(), |s| s.token.id().to_string())
}

/// `kubeadm ARGS` (the binary where the runtime step installs it).
pub fn kubeadm(args: &[&str]) -> Vec<String> {
    let mut v = vec![Component::Kubeadm.destination().to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// `kubectl --kubeconfig KUBECONFIG ARGS`.
pub fn kubectl(kubeconfig: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![Component::Kubectl.destination().to_string(), "--kubeconfig".into(), kubeconfig.into()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// Exit 0 when `path` exists on the node.
pub fn exists(path: &str) -> Vec<String> {
    vec!["test".into(), "-e".into(), path.into()]
}

#[cfg(test)]
mod tests;
