//! kubeadm-init: the first master becomes the cluster's first control-plane member.
//!
//! In order, and only while the cluster is not initialised (`kubectl --kubeconfig admin.conf get node
//! <first master>` answers through the masters' VIP):
//! 1. the kubeadm on the node is the inventory's Kubernetes version;
//! 2. every image kubeadm will pull for that version resolves in the site registry (a HEAD of each
//!    manifest on `<workers' VIP>:5000` from the node): a missing one stops the step before anything
//!    Kubernetes-related changed, naming it;
//! 3. the cluster CA pre-seeded to /etc/kubernetes/pki/ca.{crt,key} (the key: a secret file, 0600), so the
//!    joins' `caCertHashes` is known before init;
//! 4. /etc/kubernetes/airgap/kubeadm-init.yaml (0600: bootstrap token and certificate key in it);
//! 5. `kubeadm init --config F --upload-certs --skip-token-print --skip-certificate-key-print` (without the
//!    two `--skip-*` kubeadm prints the token and the key).
//!
//! Then (and on every run) /etc/kubernetes/admin.conf comes back to `<state>/admin.conf` (0600). A
//! half-done init (kubeadm's files there, the apiserver not answering) is an error with a hint, never a
//! second `kubeadm init`.

use crate::install::actions::{apply_all, check_all};
use crate::install::kubeadm::{self as k, ADMIN_CONF, APISERVER_MANIFEST, CA_CRT, CA_KEY};
use crate::install::ssh::{shell_join, Stdin, Transport};
use crate::install::{node_cmd, Action, Ctx, Step};
use crate::error::HintExt;
use crate::kube::kubeadm_config::{render_init, INIT_CONFIG_PATH};
use crate::site::inventory::Node;
use anyhow::{bail, Context, Result};

pub struct KubeadmInit;

/// The `kubeadm init` command line (the secrets are in the file, and the `--skip-*` keep them out of its
/// output).
pub fn init_cmd() -> Vec<String> {
    k::kubeadm(&["init", "--config", INIT_CONFIG_PATH, "--upload-certs", "--skip-token-print", "--skip-certificate-key-print"])
}

/// Exit 0 when the cluster is initialised: admin.conf there and the apiserver answering through the VIP.
pub fn initialised_cmd(first: &Node) -> Vec<String> {
    k::kubectl(ADMIN_CONF, &["get", "node", &first.name, "-o", "name"])
}

/// The images kubeadm pulls for the inventory's version, as the site registry serves them.
pub fn site_images(ctx: &Ctx) -> Result<Vec<String>> {
    let input = k::cluster_input(ctx)?;
    let set = crate::kube::images::images_for(&input.kubernetes_version)
        .with_context(|| format!("cluster.kubernetes_version {}", ctx.inv.cluster.kubernetes_version))?;
    let mut images = set.at_site(&input.image_repository);
    // every image of the bundle too: the closure check made them a superset of what the bundled manifests
    // (flannel, ingress, the NFS provisioner...) reference, so the later steps find theirs
    if let Some(kit) = ctx.kit {
        // named in the site registry as `push` and `serve` name them
        let site = crate::push::Target::parse(&input.image_repository)?;
        for i in &kit.root().images {
            let at = site.reference(&crate::oci::reference::ImageRef::parse(&i.reference)?);
            if !images.contains(&at) {
                images.push(at);
            }
        }
    }
    Ok(images)
}

impl KubeadmInit {
    /// (checks before init, files, the init command)
    fn parts(&self, ctx: &Ctx, node: &Node) -> Result<(Vec<Action>, Vec<Action>, Action)> {
        let input = k::cluster_input(ctx)?;
        let version = input.kubernetes_version.to_string();
        let checks = vec![
            Action::Command {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "v=$({} version -o short) && [ \"$v\" = {version} ] || {{ echo \"kubeadm here is ${{v:-missing}}\" >&2; exit 1; }}",
                        shell_join(&k::kubeadm(&[]))
                    ),
                ],
                check: None,
                why: format!("the node's kubeadm is Kubernetes {version} (the inventory's)"),
            },
            Action::Command {
                argv: { let mut v = node_cmd(&["check-images"]); v.extend(site_images(ctx)?); v },
                check: None,
                why: "every image kubeadm pulls, and every image of the bundle, resolves in the site registry (else: stop before any change)".into(),
            },
        ];
        let ca_crt = ctx.secrets.map_or_else(|| "<the cluster CA certificate, made by the first install>\n".to_string(), |s| s.ca.cert_pem().to_string());
        let files = vec![
            Action::File { path: CA_CRT.into(), mode: 0o644, content: ca_crt, block: None },
            Action::secret_file(CA_KEY, 0o600, ctx.secrets.map(|s| s.ca.expose_key_pem().to_string()), "<secret>\n".into(), k::CLUSTER_SECRETS),
            k::secret_file(ctx, INIT_CONFIG_PATH, |secrets, mode| render_init(&input, secrets, mode))?,
        ];
        let init = Action::Command {
            argv: init_cmd(),
            check: Some(initialised_cmd(node)),
            why: "kubeadm init (skipped when the cluster answers through the masters' VIP)".into(),
        };
        Ok((checks, files, init))
    }

    /// admin.conf from the node to `<state>/admin.conf` (0600); returns whether it changed.
    fn fetch_admin_conf(&self, ctx: &Ctx, t: &dyn Transport) -> Result<bool> {
        let Some(secrets) = ctx.secrets else { bail!("bug: no cluster secrets in the install context") };
        let conf = t.read_file(ADMIN_CONF)?.with_context(|| format!("{ADMIN_CONF} is missing on {} after kubeadm init", t.node()))?;
        let want = format!("server: https://{}:{}", ctx.inv.vips.masters, crate::kube::kubeadm_config::CONTROL_PLANE_ENDPOINT_PORT);
        if !String::from_utf8_lossy(&conf).contains(&want) {
            bail!("{ADMIN_CONF} on {} does not point at the masters' VIP ({want})", t.node());
        }
        let local = secrets.admin_conf();
        if fs_err::read(&local).ok().as_deref() == Some(&conf[..]) {
            return Ok(false);
        }
        crate::fsutil::atomic_write(&local, &conf, crate::fsutil::Mode::Set(0o600))
            .with_context(|| format!("failed to write {}", local.display()))?;
        Ok(true)
    }
}

impl Step for KubeadmInit {
    fn name(&self) -> &'static str {
        "kubeadm-init"
    }
    fn summary(&self) -> &'static str {
        "kubeadm init on the first master (images checked in the site registry first, CA pre-seeded, secrets in a 0600 file), admin.conf back to the state dir"
    }
    fn runs_on(&self, ctx: &Ctx, node: &Node) -> bool {
        k::is_first_master(ctx, node)
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let (mut v, files, init) = self.parts(ctx, node)?;
        v.extend(files);
        v.push(init);
        v.push(Action::Command {
            argv: vec!["cat".into(), ADMIN_CONF.into()],
            check: None,
            why: "the admin kubeconfig back to <state>/admin.conf on this machine (mode 0600, server = the masters' VIP)".into(),
        });
        Ok(v)
    }
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<Vec<String>> {
        let (_, files, init) = self.parts(ctx, node)?;
        let mut diff = check_all(&[init], t)?;
        if diff.is_empty() {
            diff.extend(check_all(&files, t)?);
        }
        match ctx.secrets.map(|s| s.admin_conf()) {
            Some(p) if !p.is_file() => diff.push(format!("{} is missing on this machine", p.display())),
            _ => {}
        }
        Ok(diff)
    }
    fn apply(&self, ctx: &Ctx, node: &Node, t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
        let (checks, files, init) = self.parts(ctx, node)?;
        let mut changed = Vec::new();
        progress("is the cluster initialised?");
        let initialised = t.run(&initialised_cmd(node), Stdin::Null)?;
        if initialised.success() {
            // the files may differ (new inputs), but the cluster is not reconfigured by a second init
            changed.extend(apply_all(&files, t, progress)?);
        } else {
            for leftover in [ADMIN_CONF, APISERVER_MANIFEST] {
                if t.run(&k::exists(leftover), Stdin::Null)?.success() {
                    return Err(anyhow::anyhow!(
                        "{} has {leftover} from an earlier kubeadm init, but the cluster does not answer through the masters' VIP ({})",
                        node.name,
                        initialised.reason()
                    ))
                    .with_hint(|| format!(
                        "if the apiserver is only restarting, wait and run install again; if that init was interrupted, run `kubeadm reset -f` on {} and run install again",
                        node.name
                    ));
                }
            }
            // nothing of Kubernetes changes before these pass
            for c in &checks {
                if let Action::Command { argv, why, .. } = c {
                    progress(why);
                    let out = t.run(argv, Stdin::Null)?;
                    if !out.success() {
                        let detail = [out.stderr.trim(), out.stdout_str().trim()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
                        return Err(anyhow::anyhow!("{} on {}: not so: {detail}", why, node.name)).with_hint(|| {
                            "the bundle must be built for the inventory's kubernetes_version: its kubeadm installed by the runtime step and its images loaded into the site registry by the registry step".to_string()
                        });
                    }
                }
            }
            changed.extend(apply_all(&files, t, progress)?);
            progress("kubeadm init");
            let out = t.run(&init_cmd(), Stdin::Null)?;
            if !out.success() {
                let tail: Vec<&str> = out.stderr.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
                return Err(anyhow::anyhow!("`{}` failed on {} (exit {}):\n{}", shell_join(&init_cmd()), node.name, out.code, tail.join("\n")))
                    .with_hint(|| format!("look at the lines above and `journalctl -u kubelet` on {0}; fix it, run `kubeadm reset -f` on {0}, then install again", node.name));
            }
            changed.push("ran kubeadm init".into());
        }
        if self.fetch_admin_conf(ctx, t)? {
            changed.push(format!("copied {ADMIN_CONF} to the state dir"));
        }
        let _ = init;
        Ok(changed)
    }
}
