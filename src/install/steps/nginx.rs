//! nginx: on worker1/worker2 (behind the workers' VIP), forwards :80 and :443 to the ingress controller on
//! the masters (upstreams from the inventory), TLS passed through. With the site's own registry
//! (`registry.external`) the `registry` step, which installs keepalived's workers' VIP, runs nowhere: this
//! step installs that VIP instead, keepalived on worker1 (worker2 backup) following nginx on :80.

use crate::install::config::render::{self, NginxLayout, NginxPorts, VipRole};
use crate::install::config::Site;
use crate::install::{services, software, Action, Ctx, Step};
use crate::node::OsFamily;
use crate::site::inventory::Node;
use anyhow::Result;

pub struct Nginx;

impl Step for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }
    fn summary(&self) -> &'static str {
        "nginx on worker1/worker2 forwarding :80/:443 of the workers' VIP to the ingress on the masters"
    }
    fn runs_on(&self, ctx: &Ctx, node: &Node) -> bool {
        super::distribute::needs_bundle(ctx.inv, node)
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let site = Site::of(ctx)?;
        let mut v = vec![software::packages(&["nginx", "libnginx-mod-stream|nginx-mod-stream"])];
        // Debian layout (www-data, modules-enabled) or RHEL's (nginx user, conf.modules.d), per the node's facts
        let family = ctx.targets.get(&node.name).map_or(OsFamily::Debian, |t| t.family);
        let specs = render::nginx(&site, &node.name, &NginxLayout::for_os(family), NginxPorts::default())?;
        v.extend(services::files(&specs));
        v.push(services::service("nginx", &specs, &[render::NGINX_CONF], &["nginx", "-t", "-q", "-c", render::NGINX_CONF], false));
        v.push(services::answers("nginx", "check-tcp", "127.0.0.1:80"));
        if site.external.is_some() {
            v.push(software::packages(&["keepalived"]));
            let ka = render::keepalived(&site, &node.name, VipRole::Workers)?;
            v.extend(services::files(&ka));
            v.push(services::service("keepalived", &ka, &[render::KEEPALIVED_CONF], &["keepalived", "-t", "-f", render::KEEPALIVED_CONF], false));
        }
        Ok(v)
    }
}
