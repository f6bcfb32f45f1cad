use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write `airgap.key` (secret) and `airgap.pub` into. Existing keys are never overwritten.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Protect the secret key with the password in this file (first line). Without it, no password.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("keygen is not implemented yet")
}
