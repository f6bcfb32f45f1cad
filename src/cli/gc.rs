use crate::cli::images::human_size;
use crate::error::HintExt;
use crate::output::Output;
use crate::registry::gc;
use crate::registry::store::Store;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Delete what no image reaches (without it, only list it).
    #[arg(long)]
    pub apply: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// List (or with `--apply` delete) the blobs no image of the store's catalog reaches: the manifests, configs
/// and layers of tags that newer bundles moved. Runs under the store's lock, so never during a load.
pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let store = Store::open(&args.store)?;
    let report = gc::collect(&store, args.apply)
        .hint("the store was not changed by this gc, or only partly freed: it stays consistent either way")?;
    if args.json {
        return crate::output::print_json(&report);
    }
    for u in &report.unreachable {
        println!("{}  {}", u.digest, human_size(u.size));
    }
    for p in &report.problems {
        out.warn(format!("problem: {p}"));
    }
    for s in &report.stray_files {
        out.warn(format!("{} is not a blob (its name is not a sha256 digest); gc leaves it alone", s.display()));
    }
    let n = report.unreachable.len();
    let staging = report.stale_staging.len();
    let kept = format!("{} blobs ({}) are in use", report.kept_blobs, human_size(report.kept_bytes));
    if report.applied {
        out.info(format!(
            "deleted {n} blobs no image reaches ({} freed){}; {kept}",
            human_size(report.freed_bytes),
            if staging > 0 { format!(" and {staging} staging directories of interrupted loads") } else { String::new() }
        ));
    } else if n == 0 && staging == 0 {
        out.info(format!("nothing to collect in {}: every blob is reached by an image; {kept}", args.store.display()));
    } else {
        out.info(format!(
            "{n} blobs ({}) are reached by no image{}; {kept}",
            human_size(report.unreachable_bytes),
            if staging > 0 { format!(", {staging} staging directories are left from interrupted loads") } else { String::new() }
        ));
        if report.problems.is_empty() {
            out.info(format!("dry run: nothing was deleted; `airgap gc --store {} --apply` deletes them", args.store.display()));
        } else {
            out.warn("dry run; `--apply` refuses to delete anything until the problems above are fixed (load the bundles again)");
        }
    }
    Ok(())
}
