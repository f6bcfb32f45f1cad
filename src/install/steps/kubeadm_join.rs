//! kubeadm-join: the other masters join as control-plane members ONE AT A TIME (etcd grows one member at a
//! time), then the workers, in parallel.
//!
//! Before the joins, on the first master, when some node is pending:
//! - the bootstrap token exists in the cluster (its Secret `bootstrap-token-<id>`; the public id only is
//!   on the command line), else `kubeadm token create --config <init file>` makes it again from the file
//!   (it expires after 24 h);
//! - when a control-plane join is pending: `kubeadm init phase upload-certs --upload-certs --config F
//!   --skip-certificate-key-print` (the uploaded certificates live 2 h; uploading again is idempotent).
//!
//! On each node: /etc/kubernetes/airgap/kubeadm-join.yaml (0600: token, CA pin, certificate key) and
//! `kubeadm join --config F`, skipped when the node has joined (its kubelet.conf works and the cluster knows
//! the node). A node with a kubelet.conf that the cluster does not know is an error with a hint.

use crate::error::HintExt;
use crate::install::actions::{apply_all, check_all};
use crate::install::kubeadm::{self as k, ADMIN_CONF, KUBELET_CONF};
use crate::install::ssh::{shell_join, Stdin, Transport};
use crate::install::{Action, ApplyOrder, Ctx, Step};
use crate::kube::kubeadm_config::{render_join, JoinRole, INIT_CONFIG_PATH, JOIN_CONFIG_PATH};
use crate::site::inventory::{Node, Role};
use anyhow::Result;
use std::time::{Duration, Instant};

pub struct KubeadmJoin;

/// How long a joined node may take to appear in the cluster (the kubelet's first status post).
const REGISTER_WAIT: Duration = Duration::from_secs(60);

fn role(node: &Node) -> JoinRole {
    if node.role == Role::Master {
        JoinRole::ControlPlane
    } else {
        JoinRole::Worker
    }
}

/// Exit 0 when the node has joined: its kubelet.conf works and the cluster knows the node.
pub fn joined_cmd(node: &Node) -> Vec<String> {
    k::kubectl(KUBELET_CONF, &["get", "node", &node.name, "-o", "name"])
}

pub fn join_cmd() -> Vec<String> {
    k::kubeadm(&["join", "--config", JOIN_CONFIG_PATH])
}

/// `kubeadm init phase upload-certs` on the first master.
pub fn upload_certs_cmd() -> Vec<String> {
    k::kubeadm(&["init", "phase", "upload-certs", "--upload-certs", "--config", INIT_CONFIG_PATH, "--skip-certificate-key-print"])
}

impl KubeadmJoin {
    fn parts(&self, ctx: &Ctx, node: &Node) -> Result<(Action, Action)> {
        let input = k::cluster_input(ctx)?;
        let me = k::node_input(node);
        let file = k::secret_file(ctx, JOIN_CONFIG_PATH, |secrets, mode| render_join(&input, &me, role(node), secrets, mode))?;
        let join = Action::Command {
            argv: join_cmd(),
            check: Some(joined_cmd(node)),
            why: match role(node) {
                JoinRole::ControlPlane => "kubeadm join as a control-plane member (skipped when joined)".into(),
                JoinRole::Worker => "kubeadm join as a worker (skipped when joined)".into(),
            },
        };
        Ok((file, join))
    }
}

impl Step for KubeadmJoin {
    fn name(&self) -> &'static str {
        "kubeadm-join"
    }
    fn summary(&self) -> &'static str {
        "the other masters join as control-plane members one at a time (certificates uploaded again first), then the workers"
    }
    fn runs_on(&self, ctx: &Ctx, node: &Node) -> bool {
        !k::is_first_master(ctx, node)
    }
    fn apply_order(&self, _ctx: &Ctx, node: &Node) -> ApplyOrder {
        match role(node) {
            JoinRole::ControlPlane => ApplyOrder::OneAtATime,
            JoinRole::Worker => ApplyOrder::Parallel,
        }
    }
    fn cluster_actions(&self, ctx: &Ctx, pending: Option<&[&Node]>) -> Result<Vec<(String, Vec<Action>)>> {
        let Some(first) = k::first_master(ctx) else { return Ok(Vec::new()) };
        let id = k::token_id(ctx);
        let mut v = vec![Action::Command {
            argv: k::kubeadm(&["token", "create", "--config", INIT_CONFIG_PATH]),
            check: Some(k::kubectl(ADMIN_CONF, &["-n", "kube-system", "get", "secret", &format!("bootstrap-token-{id}"), "-o", "name"])),
            why: "the bootstrap token exists (made again from the init file when it expired)".into(),
        }];
        let masters_pending = match pending {
            Some(p) => p.iter().any(|n| n.role == Role::Master),
            None => ctx.inv.masters().count() > 1,
        };
        if masters_pending {
            v.push(Action::Command {
                argv: upload_certs_cmd(),
                check: None,
                why: "the control-plane certificates uploaded again for the control-plane joins (the uploaded copy lives 2 h)".into(),
            });
        }
        Ok(vec![(first.name.clone(), v)])
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let (file, join) = self.parts(ctx, node)?;
        Ok(vec![file, join])
    }
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<Vec<String>> {
        let (file, join) = self.parts(ctx, node)?;
        let mut diff = check_all(&[join], t)?;
        if diff.is_empty() {
            // joined: the file is kept as it was (a changed file does not make kubeadm join again)
            diff.extend(check_all(&[file], t)?);
        }
        Ok(diff)
    }
    fn apply(&self, ctx: &Ctx, node: &Node, t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
        let (file, _) = self.parts(ctx, node)?;
        let mut changed = apply_all(&[file], t, progress)?;
        let joined = t.run(&joined_cmd(node), Stdin::Null)?;
        if joined.success() {
            return Ok(changed);
        }
        if t.run(&k::exists(KUBELET_CONF), Stdin::Null)?.success() {
            return Err(anyhow::anyhow!(
                "{} has {KUBELET_CONF}, but the cluster does not know node {} ({})",
                node.name,
                node.name,
                joined.reason()
            ))
            .with_hint(|| format!(
                "if the apiserver answers and the node is really not in the cluster (an interrupted join, another cluster), run `kubeadm reset -f` on {} and install again",
                node.name
            ));
        }
        progress("kubeadm join");
        let out = t.run(&join_cmd(), Stdin::Null)?;
        if !out.success() {
            let tail: Vec<&str> = out.stderr.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(anyhow::anyhow!("`{}` failed on {} (exit {}):\n{}", shell_join(&join_cmd()), node.name, out.code, tail.join("\n")))
                .with_hint(|| format!("look at the lines above and `journalctl -u kubelet` on {0}; fix it, run `kubeadm reset -f` on {0}, then install again", node.name));
        }
        changed.push("ran kubeadm join".into());
        Ok(changed)
    }
    fn verify(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<()> {
        // kubeadm join returns once the kubelet has its certificate; the Node appears with its first status
        let start = Instant::now();
        loop {
            let diff = self.check(ctx, node, t)?;
            if diff.is_empty() {
                return Ok(());
            }
            if start.elapsed() > REGISTER_WAIT {
                anyhow::bail!("{} joined, but is not in the cluster after {} s: {}", node.name, REGISTER_WAIT.as_secs(), diff.join("; "));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
