use super::site_args::{SiteArgs, StepArgs};
use crate::site::inventory::Inventory;
use crate::output::{print_json, Output};
use crate::install::plan_text;
use crate::install::steps::distribute;
use crate::install::{kit::Kit, Ctx, LocalFile};
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

pub fn run(args: Args, out: &Output) -> Result<()> {
    let inv = Inventory::load(&args.site.inventory)?;
    let steps = args.steps.select()?;
    let bundle = args.site.bundle.as_deref().map(distribute::hash_bundle).transpose()?;
    let binary = LocalFile::hash(std::env::current_exe()?)?;
    let pubkey = args.steps.pubkey.clone().map(LocalFile::hash).transpose()?;
    let warn = |_: &str| {};
    // the kit's files are shown where `install` extracts them (the default state dir)
    let kit = match bundle.as_deref().and_then(|b| b.first()) {
        Some(archive) => match Kit::open(&archive.path, &std::path::Path::new("/var/lib/airgap").join(&inv.cluster.name)) {
            Ok(k) => Some(k),
            Err(e) => {
                out.warn(format!("{} is not a readable airgap bundle ({}): no packages or binaries shown for the nodes", archive.path.display(), crate::error::messages(&e).join(": ")));
                None
            }
        },
        None => None,
    };
    let ctx = Ctx {
        inv: &inv,
        bundle: bundle.as_deref(),
        binary: Some(&binary),
        pubkey: pubkey.as_ref(),
        kit: kit.as_ref(),
        targets: &Default::default(),
        warn: &warn,
    };
    if args.json {
        print_json(&plan_text::plan_json(&ctx, &steps)?)
    } else {
        print!("{}", plan_text::plan_text(&ctx, &steps)?);
        Ok(())
    }
}
