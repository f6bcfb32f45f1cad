use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`X.tar.zst`, or its first part `X.tar.zst.000`).
    pub bundle: PathBuf,
    /// The minisign public key the bundle must be signed with.
    #[arg(long)]
    pub pubkey: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("verify is not implemented yet")
}
