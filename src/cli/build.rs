use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle manifest (YAML).
    pub manifest: PathBuf,
    /// Output directory for `<name>-<version>.tar.zst` and its `.minisig`.
    #[arg(long)]
    pub out: PathBuf,
    /// The minisign secret key to sign with (from `airgap keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// File with the secret key's password, if it has one.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Reach this registry over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificate (PEM) to trust for registries and file URLs (repeatable).
    #[arg(long = "ca-cert", value_name = "PEM")]
    pub ca_certs: Vec<PathBuf>,
    /// Docker-style auth file with registry credentials.
    #[arg(long, default_value = "~/.docker/config.json")]
    pub authfile: String,
    /// Split the bundle into parts of at most SIZE bytes (`1M`, `700M`, `4G`, `fat32` = 4 GiB - 1).
    #[arg(long, value_name = "SIZE")]
    pub split_size: Option<String>,
    /// Pin images to the digests in this lock file (written beside the bundle by an earlier build).
    #[arg(long)]
    pub lock: Option<PathBuf>,
    /// Content-addressed download cache.
    #[arg(long, env = "AIRGAP_CACHE", default_value = "~/.cache/airgap")]
    pub cache_dir: String,
    /// Parallel downloads.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("build is not implemented yet")
}
