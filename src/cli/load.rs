use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`X.tar.zst`, or its first part `X.tar.zst.000`).
    pub bundle: PathBuf,
    /// The registry store directory (created if missing).
    #[arg(long)]
    pub store: PathBuf,
    /// The minisign public key the bundle must be signed with.
    #[arg(long)]
    pub pubkey: PathBuf,
}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("load is not implemented yet")
}
