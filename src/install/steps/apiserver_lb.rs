//! apiserver-lb: haproxy on every master listening on :16443 (TCP, health-checked backends = the masters'
//! :6443) and keepalived (masters' instance) holding the masters' VIP on master1, the others as backups,
//! following haproxy. kubeadm's `controlPlaneEndpoint` is `<masters' VIP>:16443`.

use crate::install::config::render::{self, VipRole};
use crate::install::config::{Site, LB_PORT};
use crate::install::{services, software, Action, Ctx, Step};
use crate::site::inventory::{Node, Role};
use anyhow::Result;

pub struct ApiserverLb;

impl Step for ApiserverLb {
    fn name(&self) -> &'static str {
        "apiserver-lb"
    }
    fn summary(&self) -> &'static str {
        "haproxy :16443 over the masters' :6443, behind the masters' VIP (keepalived)"
    }
    fn runs_on(&self, _ctx: &Ctx, node: &Node) -> bool {
        node.role == Role::Master
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let site = Site::of(ctx)?;
        let mut v = vec![software::packages(&["haproxy", "keepalived"])];
        let hap = render::haproxy(&site, &node.name)?;
        v.extend(services::files(&hap));
        v.push(services::service("haproxy", &hap, &[render::HAPROXY_CFG], &["haproxy", "-c", "-q", "-f", render::HAPROXY_CFG], false));
        v.push(services::answers("haproxy", "check-tcp", &format!("127.0.0.1:{LB_PORT}")));
        let ka = render::keepalived(&site, &node.name, VipRole::Masters)?;
        v.extend(services::files(&ka));
        v.push(services::service("keepalived", &ka, &[render::KEEPALIVED_CONF], &["keepalived", "-t", "-f", render::KEEPALIVED_CONF], false));
        Ok(v)
    }
}
