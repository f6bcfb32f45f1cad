//! runtime: containerd + runc installed offline from the bundle's OS packages, `SystemdCgroup`, the sandbox
//! image from the site registry, and `/etc/containerd/certs.d/<host>/hosts.toml` sending every upstream host
//! of the bundle (and registry.k8s.io, docker.io, ghcr.io, quay.io) to `http://<workers' VIP>:5000` only.

use super::infra_common as c;
use super::{Action, Ctx, Step};
use crate::infra::render;
use crate::inventory::Node;
use anyhow::Result;

pub struct Runtime;

impl Step for Runtime {
    fn name(&self) -> &'static str {
        "runtime"
    }
    fn summary(&self) -> &'static str {
        "containerd + runc from the bundle, pulling only from the site registry (hosts.toml mirrors, sandbox image)"
    }
    fn plan(&self, ctx: &Ctx, _node: &Node) -> Result<Vec<Action>> {
        let site = c::site(ctx)?;
        let mut v = Vec::new();
        let bundle = c::bundle_on_node(ctx, &mut v)?;
        v.push(c::packages(&bundle, &["containerd|containerd.io", "runc"]));
        let specs = render::runtime(&site, false)?;
        v.extend(c::files(&specs));
        v.push(c::service("containerd", &specs, &[render::CONTAINERD_CONFIG], &["containerd", "--config", render::CONTAINERD_CONFIG, "config", "dump"], true));
        Ok(v)
    }
}
