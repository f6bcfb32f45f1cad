use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry store directory (filled by `airgap load`).
    #[arg(long)]
    pub store: PathBuf,
    /// Address to listen on, e.g. `10.0.0.20:5000` or `0.0.0.0:5000`.
    #[arg(long, default_value = "0.0.0.0:5000")]
    pub listen: String,
    /// Log one JSON object per line instead of text.
    #[arg(long = "json")]
    pub json_logs: bool,
}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("serve is not implemented yet")
}
