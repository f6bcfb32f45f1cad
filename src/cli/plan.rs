use crate::inventory::Inventory;
use crate::output::{print_json, Output};
use crate::steps::{self, render, Ctx, LocalFile};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site inventory (YAML; see manifests/site.example.yaml).
    #[arg(long, short = 'i', value_name = "SITE.yaml")]
    pub inventory: PathBuf,
    /// The bundle to distribute (without it, distribute shows placeholders).
    #[arg(long, value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// The bundle signers' public key (minisign `.pub`): the nodes verify the bundle with it before loading
    /// images or installing packages (runtime, registry, apiserver-lb, nginx).
    #[arg(long, value_name = "KEY.pub", env = "AIRGAP_PUBKEY")]
    pub pubkey: Option<PathBuf>,
    /// Only these steps (comma-separated).
    #[arg(long, value_name = "STEP[,STEP...]")]
    pub only: Option<String>,
    /// Start at this step.
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    /// The plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, _out: &Output) -> Result<()> {
    let inv = Inventory::load(&args.inventory)?;
    let steps = steps::select_steps(args.only.as_deref(), args.from.as_deref())?;
    let bundle = args.bundle.as_deref().map(steps::distribute::hash_bundle).transpose()?;
    let binary = LocalFile::hash(std::env::current_exe()?)?;
    let pubkey = args.pubkey.clone().map(LocalFile::hash).transpose()?;
    let warn = |_: &str| {};
    let ctx = Ctx {
        inv: &inv,
        bundle: bundle.as_deref(),
        binary: Some(&binary),
        pubkey: pubkey.as_ref(),
        warn: &warn,
    };
    if args.json {
        print_json(&render::plan_json(&ctx, &steps)?)
    } else {
        print!("{}", render::plan_text(&ctx, &steps)?);
        Ok(())
    }
}
