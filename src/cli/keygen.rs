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

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let password = match &args.password_file {
        Some(p) => Some(crate::sign::read_password_file(p)?),
        None => None,
    };
    let keys = crate::sign::generate_keypair(&args.out_dir, password.as_deref())?;
    out.info(format!("created key {} ({})", keys.key_id, if password.is_some() { "password protected" } else { "no password" }));
    out.info(format!("  secret key: {}  (keep it on the packaging machine; pass it to `airgap build --key`)", keys.secret.display()));
    out.info(format!("  public key: {}  (ship it to the site; pass it to `airgap verify --pubkey`)", keys.public.display()));
    println!("{}", keys.key_id);
    Ok(())
}
