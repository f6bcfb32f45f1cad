//! os-prepare: hostname, `/etc/hosts` with every node, swap off (now and in fstab), kernel modules at boot,
//! sysctl for the pod network. Each file written atomically and only when different.

use crate::install::{node_cmd, Action, Ctx, Step};
use crate::site::inventory::Node;
use anyhow::Result;

pub struct OsPrepare;

pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-airgap.conf";
pub const MODULES_FILE: &str = "/etc/modules-load.d/airgap.conf";

/// The `/etc/hosts` block: every node by name.
pub fn hosts_block(ctx: &Ctx) -> String {
    let mut s = String::new();
    for n in &ctx.inv.nodes {
        s.push_str(&format!("{}\t{}\n", n.address, n.name));
    }
    s
}

pub fn sysctl_conf() -> String {
    "# written by airgap (os-prepare): needed by kube-proxy and the pod network\n\
     net.bridge.bridge-nf-call-iptables = 1\n\
     net.bridge.bridge-nf-call-ip6tables = 1\n\
     net.ipv4.ip_forward = 1\n"
        .to_string()
}

pub fn modules_conf() -> String {
    let mut s = "# written by airgap (os-prepare): loaded at boot for containerd and the pod network\n".to_string();
    for m in crate::node::facts::MODULES {
        s.push_str(m);
        s.push('\n');
    }
    s
}

impl Step for OsPrepare {
    fn name(&self) -> &'static str {
        "os-prepare"
    }
    fn summary(&self) -> &'static str {
        "hostname, /etc/hosts with every node, swap off, kernel modules at boot, sysctl"
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let n = node.name.as_str();
        let mut modules = vec!["modules", "--load"];
        modules.extend(crate::node::facts::MODULES);
        Ok(vec![
            Action::Command {
                argv: node_cmd(&["hostname", n]),
                check: Some(node_cmd(&["hostname", n, "--check"])),
                why: format!("set the hostname to {n} (kernel and /etc/hostname)"),
            },
            Action::File {
                path: "/etc/hosts".into(),
                mode: 0o644,
                content: hosts_block(ctx),
                block: Some("airgap".into()),
            },
            Action::Command {
                argv: node_cmd(&["swap-off"]),
                check: Some(node_cmd(&["swap-off", "--check"])),
                why: "turn swap off (swapoff -a) and comment swap out of /etc/fstab".into(),
            },
            Action::File {
                path: MODULES_FILE.into(),
                mode: 0o644,
                content: modules_conf(),
                block: None,
            },
            Action::Command {
                argv: node_cmd(&modules),
                check: Some(node_cmd(&["modules", "--check", "br_netfilter", "overlay"])),
                why: "load br_netfilter and overlay (nothing to do when built in)".into(),
            },
            Action::File {
                path: SYSCTL_FILE.into(),
                mode: 0o644,
                content: sysctl_conf(),
                block: None,
            },
            Action::Command {
                argv: node_cmd(&["sysctl", "--file", SYSCTL_FILE]),
                check: Some(node_cmd(&["sysctl", "--file", SYSCTL_FILE, "--check"])),
                why: format!("apply {SYSCTL_FILE} (like sysctl -p)"),
            },
        ])
    }
}
