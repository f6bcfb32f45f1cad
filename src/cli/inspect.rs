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

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("inspect is not implemented yet")
}
