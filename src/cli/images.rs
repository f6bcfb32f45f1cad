use crate::output::Output;
use crate::registry::store::Store;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let store = Store::open(&args.store)?;
    let catalog = store.catalog()?;
    if args.json {
        return crate::output::print_json(&serde_json::json!({
            "images": catalog.images,
            "bundles": catalog.bundles,
        }));
    }
    if catalog.images.is_empty() {
        out.info(format!("the store {} holds no images", args.store.display()));
        return Ok(());
    }
    let rows: Vec<[String; 6]> = catalog
        .images
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.tag.clone().unwrap_or_else(|| "<none>".into()),
                format!("sha256:{}", &i.digest.hex()[..12]),
                human_size(i.size),
                i.host.clone(),
                i.platforms.join(","),
            ]
        })
        .collect();
    let header = ["REPOSITORY", "TAG", "DIGEST", "SIZE", "HOST", "PLATFORMS"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    let total: u64 = store_bytes(&store);
    out.info(format!(
        "{} images, {} repositories, {} bundles loaded; {} of blobs on disk",
        catalog.images.len(),
        catalog.images.iter().map(|i| &i.name).collect::<std::collections::BTreeSet<_>>().len(),
        catalog.bundles.len(),
        human_size(total)
    ));
    Ok(())
}

fn store_bytes(store: &Store) -> u64 {
    fs_err::read_dir(store.root().join("blobs/sha256"))
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

pub use crate::output::human_bytes as human_size;
