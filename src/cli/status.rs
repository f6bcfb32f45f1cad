use super::site_args::SiteArgs;
use crate::site::inventory::Inventory;
use crate::output::{print_json, Output};
use crate::install::journal::{Journal, Status};
use crate::install::{self, Ctx};
use anyhow::Result;
use serde::Serialize;

#[derive(Debug, clap::Args)]
#[command(mut_arg("bundle", |a| a.help("The bundle, to tell whether distribute's inputs changed since it ran (optional)")))]
pub struct Args {
    #[command(flatten)]
    pub site: SiteArgs,
    /// As JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    step: &'static str,
    node: String,
    status: &'static str,
    at: Option<String>,
    message: Option<String>,
}

pub fn run(args: Args, _out: &Output) -> Result<()> {
    let inv = Inventory::load(&args.site.inventory)?;
    let journal = Journal::open(&args.site.state_dir(&inv), &inv.cluster.name)?;
    let warn = |_: &str| {};
    let secrets = crate::install::secrets::ClusterSecrets::load(&args.site.state_dir(&inv))?;
    let ctx = Ctx {
        inv: &inv,
        bundle: None,
        binary: None,
        pubkey: None,
        kit: None,
        targets: &Default::default(),
        warn: &warn,
        secrets: secrets.as_ref(),
    };
    let mut rows = Vec::new();
    for s in install::steps::all() {
        for n in inv.nodes.iter().filter(|n| s.runs_on(&ctx, n)) {
            let e = journal.get(s.name(), &n.name);
            // done, but with other inputs than now (inventory, thresholds, binary, bundle): the next install redoes it
            let complete = !s.uses_bundle()
                && s
                .plan(&ctx, n)?
                .iter()
                .all(|a| !matches!(a, install::Action::Copy { sha256: None, .. }));
            let changed = complete
                && e.as_ref().is_some_and(|e| e.status == Status::Done)
                && e.as_ref().map(|e| &e.inputs) != Some(&s.inputs_hash(&ctx, n)?);
            rows.push(Row {
                step: s.name(),
                node: n.name.clone(),
                status: match e.as_ref().map(|e| e.status) {
                    Some(Status::Done) if changed => "changed",
                    Some(Status::Done) => "done",
                    Some(Status::Failed) => "failed",
                    None => "pending",
                },
                at: e.as_ref().map(|e| e.at.clone()),
                message: e.map(|e| e.message),
            });
        }
    }
    if args.json {
        return print_json(&rows);
    }
    let w = inv.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
    println!("{:<11} {:<w$} {:<8} {:<20} MESSAGE", "STEP", "NODE", "STATUS", "AT");
    for r in rows {
        println!(
            "{:<11} {:<w$} {:<8} {:<20} {}",
            r.step,
            r.node,
            r.status,
            r.at.unwrap_or_else(|| "-".into()),
            r.message.unwrap_or_default()
        );
    }
    Ok(())
}
