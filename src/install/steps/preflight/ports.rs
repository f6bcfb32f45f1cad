//! The ports check: every TCP port the later steps listen on must be free on the node, or held by the very
//! airgap service that will listen there (a re-run of preflight after `registry`, `apiserver-lb` or `nginx`
//! ran finds them at work; that is no conflict). Who holds a port comes from the node's facts: the processes
//! whose open files include the listening socket, with their `comm` and systemd unit.

use super::Report;
use crate::install::config::render::{NginxPorts, REGISTRY_UNIT};
use crate::install::config::{APISERVER_PORT, LB_PORT, REGISTRY_PORT};
use crate::install::steps::distribute::needs_bundle;
use crate::install::Ctx;
use crate::node::facts::{Facts, Holder};
use crate::site::inventory::{Node, Role};

/// The TCP ports the later steps need on a node (free, or held by airgap's own service for that port).
pub fn needed_ports(ctx: &Ctx, node: &Node) -> Vec<u16> {
    let mut p = vec![10250];
    match node.role {
        Role::Master => {
            p.extend([APISERVER_PORT, LB_PORT, 2379, 2380, 10257, 10259]);
            if ctx.inv.redis.enabled {
                p.extend((0..6).map(|i| ctx.inv.redis.base_port + i));
            }
        }
        Role::Worker => {
            if needs_bundle(ctx.inv, node) {
                let nginx = NginxPorts::default();
                p.extend([REGISTRY_PORT, nginx.listen_http, nginx.listen_https]);
            }
        }
    }
    p.sort_unstable();
    p.dedup();
    p
}

/// The systemd unit of the airgap service that listens on `port` on this node, once the steps ran: the site
/// registry on the registry workers, haproxy on the masters, nginx on the registry workers.
pub fn own_service(ctx: &Ctx, node: &Node, port: u16) -> Option<&'static str> {
    let registry_worker = node.role == Role::Worker && needs_bundle(ctx.inv, node);
    let nginx = NginxPorts::default();
    match port {
        REGISTRY_PORT if registry_worker => REGISTRY_UNIT.rsplit('/').next(),
        LB_PORT if node.role == Role::Master => Some("haproxy.service"),
        p if registry_worker && (p == nginx.listen_http || p == nginx.listen_https) => Some("nginx.service"),
        _ => None,
    }
}

/// `python3` (pid 812, user-1000.slice) / `nginx` (pids 901, 902, nginx.service): who holds a port.
fn who(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "a process the node could not tell (find it with `ss -ltnp`)".into();
    }
    let mut groups: Vec<(&str, Option<&str>, Vec<u32>)> = Vec::new();
    for h in holders {
        match groups.iter_mut().find(|(c, u, _)| *c == h.comm && *u == h.unit.as_deref()) {
            Some(g) => g.2.push(h.pid),
            None => groups.push((&h.comm, h.unit.as_deref(), vec![h.pid])),
        }
    }
    let parts: Vec<String> = groups
        .into_iter()
        .map(|(comm, unit, pids)| {
            let pids = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            let s = if pids.contains(',') { "s" } else { "" };
            match unit {
                Some(u) => format!("`{comm}` (pid{s} {pids}, {u})"),
                None => format!("`{comm}` (pid{s} {pids})"),
            }
        })
        .collect();
    parts.join(" and ")
}

/// Report the needed ports that something other than airgap's own service for them holds.
pub(super) fn check(ctx: &Ctx, node: &Node, f: &Facts, r: &mut Report) {
    let mut busy = Vec::new();
    for port in needed_ports(ctx, node) {
        let Some(l) = f.listening.iter().find(|l| l.port == port) else { continue };
        let own = own_service(ctx, node, port);
        let ours = own.is_some() && !l.holders.is_empty() && l.holders.iter().all(|h| h.unit.as_deref() == own);
        if !ours {
            busy.push(format!("{port} by {}", who(&l.holders)));
        }
    }
    if !busy.is_empty() {
        r.add(
            &node.name,
            "ports",
            format!("TCP port{} already in use: {}", if busy.len() == 1 { "" } else { "s" }, busy.join("; ")),
        );
    }
}
