use crate::bundle::read::BundleSource;
use crate::cli::build::expand_tilde;
use crate::error::HintExt;
use crate::output::{human_bytes, Output};
use crate::push::client::{BlobOutcome, ClientOptions, RegistryClient};
use crate::push::early::{self, Early, Planner};
use crate::push::{source, PushOptions, Target};
use crate::transfer::retry::{retry, RetryPolicy};
use anyhow::{bail, Context};
use oci_client::secrets::RegistryAuth;
use std::path::PathBuf;

const DEFAULT_AUTHFILE: &str = "~/.docker/config.json";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle (`X.tar.zst`, or its first part `X.tar.zst.000`); or --from-store.
    #[arg(required_unless_present = "from_store", conflicts_with = "from_store")]
    pub bundle: Option<PathBuf>,
    /// The minisign public key the bundle must be signed with.
    #[arg(long, required_unless_present = "from_store")]
    pub pubkey: Option<PathBuf>,
    /// Push the images a loaded registry store serves (from `airgap load`) instead of a bundle.
    #[arg(long, value_name = "DIR")]
    pub from_store: Option<PathBuf>,
    /// The registry to push to, with an optional repository prefix: `HOST[:PORT][/PREFIX]`
    /// (`registry.k8s.io/pause:3.10` goes to `HOST/PREFIX/pause:3.10`).
    #[arg(long, value_name = "REGISTRY[/PREFIX]")]
    pub to: String,
    /// Docker-style auth file with the registry's credentials (`auths.<host>.auth`), as for `build`.
    #[arg(long, default_value = DEFAULT_AUTHFILE)]
    pub authfile: String,
    /// Extra CA certificate (PEM) to trust for the registry (repeatable).
    #[arg(long = "ca-cert", value_name = "PEM")]
    pub ca_certs: Vec<PathBuf>,
    /// Reach the registry over plain HTTP (only then).
    #[arg(long)]
    pub insecure_registry: bool,
    /// Parallel uploads.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Attempts per request on transient failures (HTTP 429/5xx, resets, timeouts).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Where a bundle's blobs are staged while it is verified (removed afterwards).
    #[arg(long, env = "TMPDIR", default_value = "/var/tmp")]
    pub work_dir: PathBuf,
    /// Print the table of original → pushed references as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.jobs == 0 || args.retries == 0 {
        bail!("--jobs and --retries must be at least 1");
    }
    let target = Target::parse(&args.to).context("bad --to")?;
    let authfile = expand_tilde(&args.authfile);
    let creds = crate::oci::auth::Credentials::load(&authfile, args.authfile != DEFAULT_AUTHFILE)
        .hint("pass --authfile FILE with a docker-style config.json (auths.<host>.auth = base64 user:password)")?;
    let basic = match creds.for_registry(&target.host) {
        RegistryAuth::Basic(u, p) => Some((u, p)),
        _ => None,
    };
    let mut ca_pems = Vec::new();
    for p in &args.ca_certs {
        ca_pems.push(fs_err::read(p).context("failed to read a --ca-cert file")?);
    }
    let copts = ClientOptions { insecure: args.insecure_registry, ca_pems, basic };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(args.jobs.clamp(2, 16)).enable_all().build().context("failed to start the async runtime")?;
    let start = std::time::Instant::now();
    // the registry and the credentials are checked before the (long) bundle read
    let policy = RetryPolicy { attempts: args.retries, ..RetryPolicy::default() };
    let what = format!("connecting to {}", target.host);
    let client = rt.block_on(retry(&what, policy, || RegistryClient::connect(&target.host, &copts))).hint("nothing was pushed")?;

    let opts = PushOptions { jobs: args.jobs, retry: policy };
    let (images, early) = match (&args.from_store, &args.bundle) {
        (Some(store), _) => (source::from_store(store)?, Early::default()),
        (None, Some(bundle)) => {
            let pubkey = args.pubkey.as_ref().context("--pubkey is required with a bundle")?;
            let pk = crate::sign::load_public_key(pubkey)?;
            let src = BundleSource::open(bundle)?;
            let bar = out.bar(0, "{spinner} verifying {bytes}/{total_bytes} {wide_bar} {eta}");
            // the reader in its own thread; each blob that verified is uploaded meanwhile (manifests wait)
            let (tx, rx) = futures::channel::mpsc::unbounded();
            let planner = Planner::new(target.clone(), tx);
            let (read, early) = std::thread::scope(|s| {
                let reader = s.spawn(|| source::from_bundle(&src, &pk, &args.work_dir, &bar, Some(planner)));
                let early = rt.block_on(early::upload(rx, &client, &opts));
                (reader.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the bundle reader panicked"))), early)
            });
            let uploaded = early.done.values().filter(|(_, o)| *o == BlobOutcome::Uploaded).count();
            let images = read.with_context(|| format!("failed to read {}", src.name())).hint(if uploaded == 0 {
                "nothing was pushed".to_string()
            } else {
                format!(
                    "no image was pushed: no manifest was sent, and the {uploaded} blobs uploaded meanwhile (each checked against the signed SHA256SUMS) are referenced by none; the registry's garbage collection removes them"
                )
            })?;
            (images, early)
        }
        (None, None) => bail!("give a bundle, or --from-store DIR"),
    };
    let verified_in = start.elapsed();
    let bar = out.bar(0, "{spinner} pushing {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}");
    let report = rt
        .block_on(crate::push::push(&images, &target, &client, &opts, &early, &bar))
        .hint("re-run the same command to continue: what is on the registry already is not sent again")?;
    drop(rt);
    if args.json {
        return crate::output::print_json(&report);
    }
    let w = report.images.iter().map(|i| i.original.len()).max().unwrap_or(8).max(8);
    println!("{:<w$}  PUSHED AS", "ORIGINAL");
    for i in &report.images {
        println!("{:<w$}  {}", i.original, i.pushed);
    }
    if !out.quiet {
        let changed = report.images.iter().filter(|i| !i.unchanged).count();
        println!(
            "pushed {} images from {} to {} ({} new or moved) in {:.1}s (reading {:.1}s): uploaded {} blobs ({}; {} while reading), mounted {}, {} already there; {} manifests sent, {} already there",
            report.images.len(),
            images.label,
            args.to,
            changed,
            start.elapsed().as_secs_f64(),
            verified_in.as_secs_f64(),
            report.blobs_uploaded,
            human_bytes(report.bytes_uploaded),
            report.blobs_uploaded_early,
            report.blobs_mounted,
            report.blobs_present,
            report.manifests_pushed,
            report.manifests_present,
        );
        if report.bytes_uploaded == 0 && report.manifests_pushed == 0 {
            println!("the registry had everything already: uploaded 0 bytes");
        }
    }
    Ok(())
}
