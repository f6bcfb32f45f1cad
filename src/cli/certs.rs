//! `airgap certs check`: kubeadm's certificates on every master, read over SSH (the install's transport and
//! host key checks), judged by `kube::certs`; a table or JSON; exit 1 when any is expired, inside the warning
//! window, missing or not a certificate.

use super::install::connect;
use crate::error::HintExt;
use crate::install::progress::Progress;
use crate::kube::certs::{self, Row};
use crate::output::{print_json, Output};
use crate::site::inventory::Inventory;
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Read every certificate kubeadm manages on each master and show when it expires.
    Check {
        /// The site inventory (YAML).
        #[arg(long, short = 'i', value_name = "SITE.yaml")]
        inventory: PathBuf,
        /// As JSON on stdout.
        #[arg(long)]
        json: bool,
        /// A certificate expiring within this many days counts as a problem.
        #[arg(long, default_value_t = 30, value_name = "N")]
        warn_days: u32,
        /// The deploy machine's state for this cluster (the nodes' recorded host keys).
        #[arg(long, value_name = "DIR", env = "AIRGAP_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
}

pub fn run(args: Args, out: &Output) -> Result<()> {
    let CertsCommand::Check { inventory, json, warn_days, state_dir } = args.command;
    let inv = Inventory::load(&inventory)?;
    let given = state_dir.is_some();
    let state_dir = state_dir.unwrap_or_else(|| std::path::Path::new("/var/lib/airgap").join(&inv.cluster.name));
    fs_err::create_dir_all(&state_dir).hint("run as root, or pass --state-dir")?;
    let masters: Vec<_> = inv.masters().collect();
    let progress = Progress::new(out, &masters, None)?;
    let transports = connect(&inv, &inventory, &state_dir, given, &progress);
    let transports = match transports {
        Ok(t) => t,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let mut rows: Vec<Row> = Vec::new();
    for (node, (t, why)) in inv.nodes.iter().zip(transports) {
        if node.role != crate::site::inventory::Role::Master {
            continue;
        }
        if let Some(e) = why {
            rows.push(certs::unreachable(&node.name, &crate::error::messages(&e).join(": ")));
            continue;
        }
        progress.set(&node.name, "reading the certificates");
        let mut read = |p: &str| t.read_file(p).map_err(|e| format!("{e:#}"));
        let mine = certs::check_node(&node.name, &mut read, now, i64::from(warn_days));
        if mine.iter().all(|r| r.status == certs::Status::Unreadable) {
            rows.push(certs::unreachable(&node.name, &mine[0].detail));
        } else {
            rows.extend(mine);
        }
        progress.outcome(&node.name, "read");
    }
    progress.finish();
    if json {
        print_json(&rows)?;
    } else {
        print!("{}", certs::table(&rows));
    }
    let bad: Vec<String> = rows.iter().filter(|r| r.status.fails()).map(|r| format!("{} {} ({})", r.node, r.certificate, r.status.label())).collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(anyhow::anyhow!("{} certificate(s) need attention: {}", bad.len(), bad.join(", ")))
        .hint("renew with `kubeadm certs renew <name>` (or `all`) on that master, then restart its control-plane static pods; a missing or broken file: `kubeadm init phase certs <name>` / `kubeconfig`")
}
