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

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let pk = crate::sign::load_public_key(&args.pubkey)?;
    let source = crate::bundle::read::BundleSource::open(&args.bundle)?;
    let bar = out.bar(0, "{spinner} unpacking {bytes}/{total_bytes} {wide_bar} {eta}");
    let v = crate::bundle::unpack::unpack(&source, &pk, &args.to, &bar)?;
    out.info(format!(
        "unpacked {} {} ({} entries, {} bytes, signed by key {}) into {}",
        v.name,
        v.version,
        v.entries,
        v.content_bytes,
        v.key_id,
        args.to.display()
    ));
    if let Some(b) = &v.root.base {
        out.warn(format!(
            "{} {} is a delta bundle of {}: {} holds only the blobs and files that bundle lacks, not a complete image layout",
            v.name,
            v.version,
            b.describe(),
            args.to.display()
        ));
    }
    Ok(())
}
