use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("images is not implemented yet")
}
