//! runtime: the container runtime and the Kubernetes node binaries, pulling only from the site registry.
//!
//! - containerd + runc: the bundle's static releases (`install: containerd` / `install: runc` files, for the
//!   node's platform) under /usr/local with containerd's own systemd unit; a bundle without them falls back
//!   to the OS packages it carries (`containerd`|`containerd.io`, `runc`).
//! - CNI plugins (/opt/cni/bin), crictl (+ /etc/crictl.yaml), kubeadm, kubelet, kubectl: from the bundle when
//!   it carries them (the kubelet's unit comes with the kubeadm step).
//! - containerd's config: `SystemdCgroup`, the sandbox image from the site registry, and
//!   `/etc/containerd/certs.d/<host>/hosts.toml` sending every upstream host of the bundle (and
//!   registry.k8s.io, docker.io, ghcr.io, quay.io) to `http://<workers' VIP>:5000` only.
//! - docker, when the node has it: `insecure-registries` lists the site registry.

use super::infra_common as c;
use super::{node_cmd, Action, Ctx, Step};
use crate::infra::components::Component;
use crate::infra::render;
use crate::inventory::Node;
use anyhow::Result;

pub struct Runtime;

impl Step for Runtime {
    fn name(&self) -> &'static str {
        "runtime"
    }
    fn summary(&self) -> &'static str {
        "containerd + runc (+ CNI plugins, crictl, kubeadm/kubelet/kubectl) from the bundle, pulling only from the site registry"
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let site = c::site(ctx)?;
        let mut v = Vec::new();
        let is_static = |comp| ctx.kit.is_some_and(|k| k.has_component(comp));
        let (static_containerd, static_runc) = (is_static(Component::Containerd), is_static(Component::Runc));
        let mut os_packages = Vec::new();
        if !static_containerd {
            os_packages.push("containerd|containerd.io");
        }
        if !static_runc {
            os_packages.push("runc");
        }
        if !os_packages.is_empty() {
            v.push(c::packages(&os_packages));
        }
        let mut components = Vec::new();
        for comp in Component::ALL {
            if let Some(a) = c::component(ctx, node, comp) {
                components.push(comp);
                v.push(a);
            }
        }
        if ctx.kit.is_some() && !components.contains(&Component::CniPlugins) {
            (ctx.warn)("the bundle carries no cni-plugins (`install: cni-plugins`): pods need /opt/cni/bin (bridge, host-local, loopback, portmap) for flannel");
        }
        let mut specs = render::runtime(&site)?;
        if static_containerd {
            specs.push(render::containerd_unit(crate::infra::components::Component::Containerd.destination())?);
        }
        if components.contains(&Component::Crictl) {
            specs.push(render::crictl_yaml()?);
        }
        v.extend(c::files(&specs));
        // the service restarts when its configuration or its binaries (the bundle's files) change
        let mut hashed = specs.clone();
        for a in &v {
            if let Action::Command { argv, .. } = a {
                hashed.push(crate::infra::FileSpec::new("<command>", 0, argv.join(" ")));
            }
        }
        v.push(c::service("containerd", &hashed, &[render::CONTAINERD_CONFIG], &["containerd", "--config", render::CONTAINERD_CONFIG, "config", "dump"], true));
        v.push(Action::Command {
            argv: node_cmd(&["docker-registry", &site.registry()]),
            check: Some(node_cmd(&["docker-registry", &site.registry(), "--check"])),
            why: "docker (only if the node has it) trusts the site registry (insecure-registries)".into(),
        });
        Ok(v)
    }
}
