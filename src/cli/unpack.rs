use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`X.tar.zst`, or its first part `X.tar.zst.000`).
    pub bundle: PathBuf,
    /// Directory to create with the bundle's content (must not exist, or be empty).
    #[arg(long)]
    pub to: PathBuf,
    /// The minisign public key the bundle must be signed with.
    #[arg(long)]
    pub pubkey: PathBuf,
}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("unpack is not implemented yet")
}
