use crate::output::Output;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`X.tar.zst`, or its first part `X.tar.zst.000`).
    pub bundle: PathBuf,
    /// The minisign public key the bundle must be signed with: nothing of the bundle is shown before its signed
    /// root document verified with it.
    #[arg(long, value_name = "KEY.pub", env = "AIRGAP_PUBKEY")]
    pub pubkey: PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Shows the signed root document (its signature verified first); the entries are not read (that is `verify`).
pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let pk = crate::sign::load_public_key(&args.pubkey)?;
    let source = crate::bundle::read::BundleSource::open(&args.bundle)?;
    let summary = crate::bundle::inspect::summarize(&source, &pk)?;
    if args.json {
        crate::output::print_json(&summary)?;
    } else {
        print!("{}", crate::bundle::inspect::render(&summary));
        out.info("note: inspect checked the signed root document only; `airgap verify` checks every entry");
    }
    Ok(())
}
