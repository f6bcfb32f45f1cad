use super::site_args::{SiteArgs, StepArgs};
use crate::site::inventory::Inventory;
use crate::output::{print_json, Output};
use crate::install::plan_text;
use crate::install::steps::distribute;
use crate::install::{Ctx, LocalFile};
use anyhow::Result;

#[derive(Debug, clap::Args)]
#[command(
    mut_arg("bundle", |a| a.help("The bundle to distribute (without it, distribute shows placeholders)")),
    mut_arg("from", |a| a.help("Start at this step")),
    mut_arg("only", |a| a.help("Only these steps (comma-separated)"))
)]
pub struct Args {
    #[command(flatten)]
    pub site: SiteArgs,
    #[command(flatten)]
    pub steps: StepArgs,
    /// The plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, _out: &Output) -> Result<()> {
    let inv = Inventory::load(&args.site.inventory)?;
    let steps = args.steps.select()?;
    // the kit's files are shown where `install` extracts them (the same --state-dir); nothing of the bundle
    // is shown before its signed head verified
    let state_dir = args.site.state_dir(&inv);
    let kit = super::site_args::open_kit(&args.site, &args.steps, &state_dir)?.map(|(k, _)| k);
    if let Some(kit) = &kit {
        kit.check_kubernetes_version(&inv.cluster.kubernetes_version)?;
    }
    let steps = super::site_args::steps_for_bundle(steps, kit.as_ref())?;
    let bundle = args.site.bundle.as_deref().map(distribute::hash_bundle).transpose()?;
    let binary = LocalFile::hash(std::env::current_exe()?)?;
    let pubkey = args.steps.pubkey.clone().map(LocalFile::hash).transpose()?;
    let warn = |_: &str| {};
    // the secrets the first install made (plan makes none: placeholders then); shown as <secret> either way
    let secrets = crate::install::secrets::ClusterSecrets::load(&state_dir)?;
    let ctx = Ctx {
        inv: &inv,
        bundle: bundle.as_deref(),
        binary: Some(&binary),
        pubkey: pubkey.as_ref(),
        kit: kit.as_ref(),
        targets: &Default::default(),
        warn: &warn,
        secrets: secrets.as_ref(),
    };
    if args.json {
        print_json(&plan_text::plan_json(&ctx, &steps)?)
    } else {
        print!("{}", plan_text::plan_text(&ctx, &steps)?);
        Ok(())
    }
}
