use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`X.tar.zst`, or its first part `X.tar.zst.000`).
    pub bundle: PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Shows the root document; does NOT verify (that is `airgap verify`).
pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let source = crate::bundle::read::BundleSource::open(&args.bundle)?;
    let summary = crate::bundle::inspect::summarize(&source)?;
    if args.json {
        crate::output::print_json(&summary)?;
    } else {
        print!("{}", crate::bundle::inspect::render(&summary));
        out.info("note: inspect reads the bundle's root document without verifying it; use `airgap verify` before trusting it");
    }
    Ok(())
}
