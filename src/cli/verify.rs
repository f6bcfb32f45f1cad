use crate::bundle::read::{self, BundleSource, NullSink};
use crate::output::Output;
use anyhow::Context;
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

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let pk = crate::sign::load_public_key(&args.pubkey)?;
    let source = BundleSource::open(&args.bundle)?;
    let ctx = || format!("verification of {} failed", source.name());
    // One pass: the signed head first (nothing else is parsed before it verified), then every entry against
    // SHA256SUMS (pinned by the head), and the whole archive's signature over the raw bytes.
    let bar = out.bar(0, "{spinner} verifying {bytes}/{total_bytes} {wide_bar} {eta}");
    let (v, ()) = read::read_verified_with_progress(&source, &pk, NullSink, &bar).with_context(ctx)?;
    if args.json {
        crate::output::print_json(&v)?;
    } else {
        println!("OK {} {} is intact and signed by key {}", v.name, v.version, v.key_id);
        println!("  root document: {}", v.root_digest);
        if let Some(b) = &v.root.base {
            println!("  delta of: {} (carries only what it lacks; every image of the release is listed)", b.describe());
        }
        println!("  entries: {} ({} bytes unpacked)", v.entries, v.content_bytes);
        let parts = if v.parts > 0 { format!(" in {} parts", v.parts) } else { String::new() };
        println!("  archive: {} bytes{parts}", v.archive_size);
        println!("  images: {}, files: {}, packages: {}", v.root.images.len(), v.root.files.len(), v.root.packages.len());
    }
    Ok(())
}
