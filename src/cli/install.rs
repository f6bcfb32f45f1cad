use super::site_args::{LogArgs, SiteArgs, StepArgs};
use crate::error::HintExt;
use crate::site::inventory::Inventory;
use crate::output::Output;
use crate::install::ssh::timeouts::Timeouts;
use crate::install::ssh::{hostkeys, OpenSsh, RunDir, SshSettings, Transport};
use crate::install::engine::{self, NodeConn, NodeFailure};
use crate::install::progress::Progress;
use crate::install::journal::Journal;
use crate::install::facts::Target;
use crate::install::steps::distribute;
use crate::install::{Ctx, LocalFile};
use std::collections::BTreeMap;
use anyhow::{Context, Result};
use std::path::Path;

#[derive(Debug, clap::Args)]
#[command(mut_arg("bundle", |a| a.help(
    "The bundle (`.tar.zst`, or the base name / any `.NNN` part of a split bundle). Needed by distribute"
)))]
pub struct Args {
    #[command(flatten)]
    pub site: SiteArgs,
    #[command(flatten)]
    pub steps: StepArgs,
    /// Print, per step and node, every file (or its diff against the node) and command; change nothing
    /// (except putting this binary under /opt/airgap/bin, which the checks need).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The error that ends an install with failures: one line per node and step, then each hint once, as a hint.
fn stopped(failed: &[NodeFailure]) -> anyhow::Error {
    let n = failed.len();
    let mut msg = format!("install stopped: {n} failure{}", if n == 1 { "" } else { "s" });
    let mut hints: Vec<&str> = Vec::new();
    for f in failed {
        msg.push_str(&format!("\n  {}: {}: {}", f.node, f.step, f.failure.message()));
        for h in &f.failure.hints {
            if !hints.contains(&h.as_str()) {
                hints.push(h);
            }
        }
    }
    let mut err = anyhow::anyhow!(msg);
    for h in hints.into_iter().rev() {
        err = crate::error::with_hint(err, h);
    }
    err
}

/// One `install` at a time per state dir (`hostkey forget` takes it too).
pub fn lock(state_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let p = state_dir.join("install.lock");
    let f = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)?
        .into_parts()
        .0;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| {
            anyhow::anyhow!(
                "another airgap install is running with this state dir ({}): {e}",
                state_dir.display()
            )
        })
        .hint("wait for it to finish, or stop it; a killed install leaves nothing to clean up")
}

/// How ssh reaches the nodes; asks for the password on the terminal when `ssh.password_env` names an unset
/// variable (then hands it to ssh through that variable: never on a command line).
pub fn ssh_settings(inv: &Inventory) -> Result<SshSettings> {
    let settings = SshSettings {
        user: inv.ssh.user.clone(),
        port: inv.ssh.port,
        key_file: inv.key_file(),
        password_env: inv.ssh.password_env.clone(),
        connect_timeout: inv.ssh.connect_timeout,
        timeouts: Timeouts::from(&inv.ssh.timeouts),
    };
    if let Some(v) = &inv.ssh.password_env {
        if settings.key_file.is_none() && std::env::var_os(v).is_none() {
            // the fallback: ask on the terminal (no echo), then hand it to ssh through the same variable
            match crate::install::ssh::prompt_password(&format!("SSH password for {}@the nodes ({v} is not set): ", inv.ssh.user))? {
                Some(pw) => std::env::set_var(v, pw),
                None => {
                    return Err(anyhow::anyhow!("ssh.password_env names {v}, which is not set, and there is no terminal to ask on"))
                        .with_hint(|| format!("export {v}=... (the nodes' password) before running airgap, or set ssh.key_file"));
                }
            }
        }
    }
    Ok(settings)
}

/// A node that could not be scanned: every command fails with why.
struct NotReached {
    name: String,
}

impl Transport for NotReached {
    fn node(&self) -> &str {
        &self.name
    }
    fn run(&self, _: &[String], _: crate::install::ssh::Stdin<'_>) -> Result<crate::install::ssh::CmdOutput> {
        anyhow::bail!("{} was not reached (its host key could not be fetched)", self.name)
    }
}

/// Each node's transport, or why the node was not reached.
type Transports = Vec<(Box<dyn Transport>, Option<anyhow::Error>)>;

/// Check every node's host key (pinned, recorded or first contact: see `install::ssh::hostkeys`), then one
/// transport per node that requires exactly that key. Nodes whose key could not be fetched come back with
/// why; a node presenting another key than expected stops everything here, before any authentication.
pub fn connect(
    inv: &Inventory,
    inventory_path: &Path,
    state_dir: &Path,
    state_dir_given: bool,
    progress: &Progress,
) -> Result<Transports> {
    let settings = ssh_settings(inv)?;
    let help = hostkeys::AcceptHelp { inventory: inventory_path, state_dir: state_dir_given.then_some(state_dir) };
    for n in &inv.nodes {
        progress.set(&n.name, &format!("checking the host key of {}:{}", n.address, inv.ssh.port));
    }
    let timeout = std::time::Duration::from_secs(u64::from(inv.ssh.connect_timeout.max(1)));
    let mut checked = hostkeys::check_all(inv, state_dir, &help, timeout)?;
    if !checked.first_contact.is_empty() {
        progress.warn(&hostkeys::first_contact_notice(
            &checked.first_contact,
            inv.ssh.port,
            inventory_path,
            &hostkeys::Records::path_in(state_dir),
        ));
    }
    let run_dir = RunDir::new(&hostkeys::run_known_hosts(&checked.keys))?;
    inv.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Ok(match (checked.keys.get(&n.name), checked.unreachable.remove(&n.name)) {
                (Some(key), _) => (
                    Box::new(OpenSsh::new(&n.name, &n.address.to_string(), settings.clone(), run_dir.clone(), i, key)?)
                        as Box<dyn Transport>,
                    None,
                ),
                (None, why) => (
                    Box::new(NotReached { name: n.name.clone() }) as Box<dyn Transport>,
                    Some(why.unwrap_or_else(|| anyhow::anyhow!("{} was not reached", n.name))),
                ),
            })
        })
        .collect()
}

pub fn run(args: Args, out: &Output) -> Result<()> {
    let inv = Inventory::load(&args.site.inventory)?;
    let steps = args.steps.select()?;
    let state_dir = args.site.state_dir(&inv);
    // the bundle's signed head verifies before anything else is done with it
    let kit = super::site_args::open_kit(&args.site, &args.steps, &state_dir)?;
    if let Some((kit, _)) = &kit {
        kit.check_kubernetes_version(&inv.cluster.kubernetes_version)?;
    }
    let steps = super::site_args::steps_for_bundle(steps, kit.as_ref().map(|(k, _)| k))?;
    if let Some(base) = kit.as_ref().and_then(|(k, _)| k.root().base.as_ref()) {
        out.info(format!(
            "the bundle is a delta of {}: only {} run (the registry workers' store must hold the base)",
            base.describe(),
            super::site_args::DELTA_STEPS.join(" and ")
        ));
    }
    let wants_bundle =
        steps.iter().any(|s| s.name() == "distribute") && inv.nodes.iter().any(|n| distribute::needs_bundle(&inv, n));
    let bundle = match (&args.site.bundle, wants_bundle) {
        (Some(b), _) => Some(distribute::hash_bundle(b).context("failed to read the bundle")?),
        (None, true) => {
            return Err(anyhow::anyhow!(
                "distribute needs the bundle, and no --bundle was given"
            ))
            .hint("pass --bundle PATH (the .tar.zst written by `airgap build`), or leave distribute out with --only")
        }
        (None, false) => None,
    };
    let pubkey = args.steps.pubkey.clone().map(LocalFile::hash).transpose().context("failed to read --pubkey")?;
    fs_err::create_dir_all(&state_dir)
        .with_context(|| "failed to create the state dir")
        .hint("run as root, or pass --state-dir")?;
    let _lock = lock(&state_dir)?;
    // the nodes' packages and binaries come from the whole bundle, verified here and extracted once
    let kit = match kit {
        Some((kit, pk)) => {
            // distribute copies the kit's files; flannel and ingress-nginx and nfs apply its Kubernetes manifests
            let uses_files = steps.iter().any(|s| matches!(s.name(), "distribute" | "flannel" | "ingress-nginx" | "nfs"));
            if uses_files && kit.has_node_files() && !args.dry_run {
                if !kit.is_complete() {
                    let b = args.site.bundle.as_deref().unwrap_or(std::path::Path::new("the bundle"));
                    out.info(format!("verifying {} and extracting the nodes' packages and binaries", b.display()));
                }
                kit.extract(&pk)?;
            }
            Some(kit)
        }
        None => None,
    };
    let journal = Journal::open(&state_dir, &inv.cluster.name)?;
    let binary = LocalFile::hash(std::env::current_exe().context("failed to find this airgap binary")?)?;
    let stamp = crate::install::journal::now_rfc3339().replace(':', "");
    let log_file = args
        .log
        .log_dir()
        .join(format!("install-{}-{stamp}.log", inv.cluster.name));
    let nodes: Vec<&crate::site::inventory::Node> = inv.nodes.iter().collect();
    let progress = Progress::new(out, &nodes, Some(&log_file))
        .with_context(|| format!("failed to open the log {}", log_file.display()))
        .hint("run as root, or pass --log-dir")?;
    progress.log(&format!(
        "airgap {} install: steps {}",
        env!("CARGO_PKG_VERSION"),
        steps.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
    ));
    let transports = connect(&inv, &args.site.inventory, &state_dir, args.site.state_dir.is_some(), &progress);
    let transports = match transports {
        Ok(t) => t,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    let mut conns: Vec<NodeConn> = inv
        .nodes
        .iter()
        .zip(transports)
        .map(|(node, (t, why))| {
            let unreachable = why.map(|e| {
                let f = engine::Failure::of(&e);
                progress.outcome(&node.name, &format!("unreachable: {}", f.message()));
                f
            });
            NodeConn { node, t, unreachable, facts: None }
        })
        .collect();
    engine::bootstrap(&mut conns, &binary, &progress);
    let targets: BTreeMap<String, Target> = conns
        .iter()
        .filter_map(|c| c.facts.as_ref().map(|f| (c.node.name.clone(), Target::from_facts(f, c.node.address))))
        .collect();
    let warn = |w: &str| progress.warn(w);
    // the cluster's secrets: made once (state dir, 0600) before the first Kubernetes step, reused after
    let secrets = if args.dry_run || !crate::install::kubeadm::needs_secrets(&steps) {
        crate::install::secrets::ClusterSecrets::load(&state_dir)
    } else {
        crate::install::secrets::ClusterSecrets::load_or_create(&state_dir).map(Some)
    };
    let secrets = match secrets {
        Ok(s) => s,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    let ctx = Ctx {
        inv: &inv,
        bundle: bundle.as_deref(),
        binary: Some(&binary),
        pubkey: pubkey.as_ref(),
        kit: kit.as_ref(),
        targets: &targets,
        warn: &warn,
        secrets: secrets.as_ref(),
    };
    let result = engine::run(&ctx, &steps, &conns, &journal, &progress, args.dry_run);
    for c in &conns {
        c.t.close();
    }
    let summary = result?;
    if !summary.failed.is_empty() {
        return Err(crate::error::with_hint(
            stopped(&summary.failed),
            format!(
                "fix it and run the same command again: done steps are skipped (the other nodes' results are kept in {}; full log {})",
                journal.path().display(),
                log_file.display()
            ),
        ));
    }
    if args.dry_run {
        out.info(format!(
            "dry run: nothing changed ({} node-step{} already done)",
            summary.skipped,
            if summary.skipped == 1 { "" } else { "s" }
        ));
    } else {
        out.info(format!(
            "install finished: {} node-step{} applied, {} already done; journal {}, log {}",
            summary.applied,
            if summary.applied == 1 { "" } else { "s" },
            summary.skipped,
            journal.path().display(),
            log_file.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HintExt;
    use crate::install::engine::Failure;

    #[test]
    fn the_summary_keeps_messages_and_prints_each_hint_once() {
        let e = |msg: &str, hint: &str| Failure::of(&Err::<(), _>(anyhow::anyhow!(msg.to_string())).context("failed to x").hint(hint.to_string()).unwrap_err());
        let failed = [
            // a message that itself contains "(hint: " is not taken apart
            NodeFailure { step: "runtime".into(), node: "master1".into(), failure: e("ssh said (hint: nothing)", "check ssh") },
            NodeFailure { step: "runtime".into(), node: "master2".into(), failure: e("refused", "check ssh") },
        ];
        assert_eq!(failed[0].failure.text(), "failed to x: ssh said (hint: nothing) (hint: check ssh)");
        let err = stopped(&failed);
        assert_eq!(
            crate::error::messages(&err),
            ["install stopped: 2 failures\n  master1: runtime: failed to x: ssh said (hint: nothing)\n  master2: runtime: failed to x: refused"]
        );
        assert_eq!(crate::error::hints(&err), ["check ssh"]);
    }
}
