use crate::bundle::read::BundleSource;
use crate::cli::images::human_size;
use crate::error::HintExt;
use crate::output::Output;
use crate::registry::store::Store;
use anyhow::Context;
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

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let pk = crate::sign::load_public_key(&args.pubkey)?;
    let source = BundleSource::open(&args.bundle)?;
    let failed = || format!("failed to load {} into {}", source.name(), args.store.display());
    // the signed head verifies before anything is created
    let head = crate::bundle::read::read_head(&source, &pk)
        .with_context(failed)
        .hint("nothing was added: the store is exactly as it was before this load")?;
    if let Some(base) = &head.root().base {
        // a delta into a store without its base fails before anything is created or locked (checked again
        // under the store's lock before anything is staged)
        let catalog = match args.store.join(crate::registry::store::CATALOG_FILE).exists() {
            true => Store::open(&args.store)?.catalog()?,
            false => Default::default(),
        };
        crate::registry::delta::check_base(&catalog, base, &args.store)
            .with_context(failed)
            .hint("nothing was added: the store is exactly as it was before this load")?;
    }
    let created = args.store.symlink_metadata().is_err();
    let store = Store::create(&args.store)?;
    let bar = out.bar(0, "{spinner} verifying and loading {bytes}/{total_bytes} {wide_bar} {eta}");
    let loaded = match crate::registry::load::load_bundle(&store, &source, &pk, &bar) {
        Ok(l) => l,
        Err(e) => {
            if created {
                // a store this load created holds nothing of value: leave no directory behind
                let _ = fs_err::remove_dir_all(&args.store);
            }
            let hint = if created {
                "nothing was added, and the store directory (new) was removed"
            } else {
                "nothing was added: the store is exactly as it was before this load"
            };
            return Err(e).with_context(failed).hint(hint);
        }
    };
    let (v, r) = (&loaded.verified, &loaded.report);
    if r.stats.blobs_repaired > 0 {
        out.warn(format!(
            "{} blob(s) in {} did not match their digest (damaged disk or tampering): replaced with the bundle's verified copies",
            r.stats.blobs_repaired,
            args.store.display()
        ));
    }
    if r.noop {
        println!(
            "{} {} (signed by key {}) was already loaded into {}: nothing changed",
            v.name,
            v.version,
            v.key_id,
            args.store.display()
        );
        return Ok(());
    }
    let delta = v.root.base.as_ref().map(|b| format!(" (delta of {} {})", b.name, b.version)).unwrap_or_default();
    println!(
        "loaded {} {}{delta} (signed by key {}) into {}: {} images ({} added, {} moved, {} unchanged)",
        v.name,
        v.version,
        v.key_id,
        args.store.display(),
        r.images,
        r.added.len(),
        r.moved.len(),
        r.unchanged
    );
    println!(
        "  blobs: {} new ({}), {} already in the store ({})",
        r.stats.blobs_new,
        human_size(r.stats.bytes_new),
        r.stats.blobs_present,
        human_size(r.stats.bytes_present)
    );
    for (reference, old, new) in &r.moved {
        println!("  moved {reference}: {old} -> {new}");
    }
    if !r.moved.is_empty() {
        out.info(format!(
            "the blobs only the old digests of moved tags need stay in the store: `airgap gc --store {}` lists them, with --apply deletes them",
            args.store.display()
        ));
    }
    Ok(())
}
