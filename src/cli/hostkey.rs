//! `airgap hostkey`: the nodes' SSH host keys as this deploy machine knows them (pinned in the inventory,
//! recorded on first contact), and `forget` to accept a legitimately re-installed node.

use super::site_args::StateArgs;
use crate::install::ssh::hostkeys::{self, Records};
use crate::output::Output;
use crate::site::inventory::Inventory;
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: HostkeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HostkeyCommand {
    /// Show each node's pinned and recorded host key, and the inventory lines that pin the recorded ones.
    List {
        /// The site inventory.
        #[arg(long, short = 'i', value_name = "SITE.yaml")]
        inventory: PathBuf,
        #[command(flatten)]
        dirs: StateArgs,
    },
    /// Forget the recorded host key of these nodes (e.g. re-installed): the next install trusts the key they
    /// present then, prints it and records it. Check it on the node's console first; better, pin it.
    Forget {
        /// Node names, as in the inventory.
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
        /// The site inventory.
        #[arg(long, short = 'i', value_name = "SITE.yaml")]
        inventory: PathBuf,
        #[command(flatten)]
        dirs: StateArgs,
    },
}

pub fn run(args: Args, out: &Output) -> Result<()> {
    match args.command {
        HostkeyCommand::List { inventory, dirs } => {
            let inv = Inventory::load(&inventory)?;
            let records = Records::load(&dirs.state_dir(&inv))?;
            let w = inv.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
            println!("{:<w$} {:<15} {:<55} RECORDED", "NODE", "ADDRESS", "PINNED");
            let mut unpinned = Vec::new();
            for n in &inv.nodes {
                let rec = records.get(n, inv.ssh.port);
                let shown = if rec.is_empty() { "-".to_string() } else { rec.iter().map(|k| k.describe()).collect::<Vec<_>>().join(", ") };
                println!("{:<w$} {:<15} {:<55} {shown}", n.name, n.address.to_string(), n.host_key.as_deref().unwrap_or("-"));
                if n.host_key.is_none() {
                    if let Some(k) = rec.into_iter().next() {
                        unpinned.push((n.clone(), k));
                    }
                }
            }
            if !unpinned.is_empty() {
                out.info(format!(
                    "recorded on first contact, not pinned: after checking them on each node's console, pin them in {} under `nodes:`:{}",
                    inventory.display(),
                    hostkeys::pin_yaml(unpinned.iter().map(|(n, k)| (n, k)))
                ));
            }
            Ok(())
        }
        HostkeyCommand::Forget { nodes, inventory, dirs } => {
            let inv = Inventory::load(&inventory)?;
            let state_dir = dirs.state_dir(&inv);
            for name in &nodes {
                if inv.node(name).is_none() {
                    anyhow::bail!("{} has no node named {name}", inventory.display());
                }
            }
            if !Records::path_in(&state_dir).exists() {
                out.info(format!("no host key is recorded in {}: nothing to forget", Records::path_in(&state_dir).display()));
                return Ok(());
            }
            let _lock = super::install::lock(&state_dir)?;
            let mut records = Records::load(&state_dir)?;
            for name in &nodes {
                let n = inv.node(name).expect("checked above");
                let removed = records.forget(n, inv.ssh.port);
                if removed.is_empty() {
                    out.info(format!("{name}: no host key recorded"));
                } else {
                    for k in removed {
                        out.info(format!("{name}: forgot {}", k.describe()));
                    }
                    if let Some(pin) = &n.host_key {
                        out.warn(format!("{name}: the inventory still pins {pin}: the node must present that key"));
                    }
                }
            }
            records.save()?;
            out.info(format!(
                "the next install trusts the key each of them presents, prints it and records it in {}",
                records.path.display()
            ));
            Ok(())
        }
    }
}
