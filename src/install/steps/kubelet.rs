//! kubelet: on every node, the kubelet's systemd unit and kubeadm's drop-in as upstream ships them
//! (kubernetes/release `cmd/krel/templates/latest/kubelet/kubelet.service` and
//! `.../kubeadm/10-kubeadm.conf`, pins.md §3.3/§3.4), with the binary where the runtime step installs it
//! (/usr/local/bin), `KUBELET_EXTRA_ARGS=--node-ip=<inventory address>` in `/etc/default/kubelet` (Debian)
//! or `/etc/sysconfig/kubelet` (RHEL), checked by `systemd-analyze verify`, and enabled but NOT started:
//! `kubeadm init` / `join` write its configuration and start it. The systemd cgroup driver is set in
//! the KubeletConfiguration of kubeadm's init file (see `kube::kubeadm_config`).

use crate::install::{Action, Ctx, Step};
use crate::node::components::Component;
use crate::node::OsFamily;
use crate::site::inventory::Node;
use anyhow::Result;

pub struct Kubelet;

pub const UNIT_PATH: &str = "/etc/systemd/system/kubelet.service";
pub const DROPIN_PATH: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";

/// Where the node's OS keeps the kubelet's environment file (what upstream's deb / rpm drop-ins read).
pub fn env_file(family: Option<OsFamily>) -> &'static str {
    match family {
        Some(OsFamily::Debian) => "/etc/default/kubelet",
        Some(OsFamily::Rhel) => "/etc/sysconfig/kubelet",
        None => "<by the node's OS: /etc/default/kubelet (Debian) or /etc/sysconfig/kubelet (RHEL)>",
    }
}

/// Upstream's kubelet.service with the binary at `bin`.
pub fn unit(bin: &str) -> String {
    format!(
        "[Unit]\nDescription=kubelet: The Kubernetes Node Agent\nDocumentation=https://kubernetes.io/docs/\n\
         Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nExecStart={bin}\nRestart=always\n\
         StartLimitInterval=0\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

/// Upstream's 10-kubeadm.conf with the binary at `bin` and the OS's environment file `env`.
pub fn dropin(bin: &str, env: &str) -> String {
    format!(
        "# Note: This dropin only works with kubeadm and kubelet v1.11+\n[Service]\n\
         Environment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\n\
         Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n\
         # This is a file that \"kubeadm init\" and \"kubeadm join\" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically\n\
         EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n\
         # This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use\n\
         # the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.\n\
         EnvironmentFile=-{env}\n\
         ExecStart=\n\
         ExecStart={bin} $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n"
    )
}

impl Step for Kubelet {
    fn name(&self) -> &'static str {
        "kubelet"
    }
    fn summary(&self) -> &'static str {
        "the kubelet's systemd unit + kubeadm drop-in (upstream's), --node-ip = the node's address, enabled (kubeadm starts it)"
    }
    /// The environment file's path comes from the node's facts (its OS), which `status` does not have.
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let bin = Component::Kubelet.destination();
        let env = env_file(ctx.targets.get(&node.name).map(|t| t.family));
        let file = |path: &str, content: String| Action::File { path: path.into(), mode: 0o644, content, block: None };
        let cmd = |argv: &[&str], check: Option<&[&str]>, why: &str| Action::Command {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            check: check.map(|c| c.iter().map(|s| s.to_string()).collect()),
            why: why.into(),
        };
        Ok(vec![
            file(UNIT_PATH, unit(bin)),
            file(DROPIN_PATH, dropin(bin, env)),
            file(env, format!("KUBELET_EXTRA_ARGS=--node-ip={}\n", node.address)),
            cmd(&["systemctl", "daemon-reload"], None, "systemd reads the kubelet's unit"),
            cmd(
                &["systemd-analyze", "verify", UNIT_PATH],
                None,
                "the kubelet's unit and drop-in pass systemd-analyze verify (the kubelet binary is in place)",
            ),
            cmd(
                &["systemctl", "enable", "--quiet", "kubelet"],
                Some(&["systemctl", "is-enabled", "--quiet", "kubelet"]),
                "the kubelet enabled (not started: kubeadm writes its configuration and starts it)",
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_and_dropin_are_upstreams_with_our_paths() {
        let u = unit("/usr/local/bin/kubelet");
        assert!(u.contains("\nExecStart=/usr/local/bin/kubelet\nRestart=always\n"), "{u}");
        let deb = dropin("/usr/local/bin/kubelet", env_file(Some(OsFamily::Debian)));
        assert!(deb.contains("EnvironmentFile=-/etc/default/kubelet\nExecStart=\nExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS"), "{deb}");
        let rpm = dropin("/usr/local/bin/kubelet", env_file(Some(OsFamily::Rhel)));
        assert!(rpm.contains("EnvironmentFile=-/etc/sysconfig/kubelet\n"), "{rpm}");
        assert!(!rpm.contains("/usr/bin/"), "{rpm}");
    }
}
