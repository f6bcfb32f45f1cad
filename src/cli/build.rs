use crate::bundle::split::parse_size;
use crate::build::pipeline::Arrivals;
use crate::bundle::write::{write_bundle_gated, WriteOptions};
use crate::error::HintExt;
use crate::build::lock::Lock;
use crate::transfer::retry::RetryPolicy;
use crate::build::fetch::{fetch, human, FetchOptions};
use crate::oci::auth::Credentials;
use crate::output::Output;
use anyhow::{bail, Context};
use std::path::PathBuf;

const DEFAULT_AUTHFILE: &str = "~/.docker/config.json";

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
    #[arg(long, default_value = DEFAULT_AUTHFILE)]
    pub authfile: String,
    /// Split the bundle into parts of at most SIZE bytes (`1M`, `700M`, `4G`, `fat32` = 4 GiB - 1).
    #[arg(long, value_name = "SIZE")]
    pub split_size: Option<String>,
    /// Pin images to the digests in this lock file (written beside the bundle by an earlier build).
    #[arg(long)]
    pub lock: Option<PathBuf>,
    /// Build a delta bundle against the bundle this lock file (written beside it by its build) describes:
    /// only the blobs and files it lacks are carried; loading needs a store that holds that bundle.
    #[arg(long, value_name = "PREVIOUS.lock.json")]
    pub base: Option<PathBuf>,
    /// Content-addressed download cache.
    #[arg(long, env = "AIRGAP_CACHE", default_value = "~/.cache/airgap")]
    pub cache_dir: String,
    /// Parallel downloads.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Attempts per download on transient failures (HTTP 429/5xx, resets, timeouts), with exponential backoff.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// The distribution mirror for the packages of OS whose urls are relative (repeatable), e.g.
    /// `debian-12=http://mirror.example/`; default: this machine's apt/dnf mirror, for its own distribution.
    #[arg(long = "mirror", value_name = "OS=URL")]
    pub mirrors: Vec<String>,
    /// Fetch the images of registry HOST from a mirror (repeatable), e.g. `docker.io=https://harbor.example/dockerhub-proxy`
    /// (a pull-through cache or a copy, `http://` for plain HTTP); the bundle still names every image by its
    /// original reference, with the same digests. The auth file's entry for the mirror's host applies.
    #[arg(long = "registry-mirror", value_name = "HOST=URL")]
    pub registry_mirrors: Vec<String>,
}

/// `~/x` → `$HOME/x`.
pub fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ if p == "~" => std::env::var_os("HOME").map_or_else(|| PathBuf::from(p), PathBuf::from),
        _ => PathBuf::from(p),
    }
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut manifest = crate::build::manifest::load(&args.manifest)?;
    let mirrors = args.mirrors.iter().map(|m| crate::build::mirror::parse_flag(m)).collect::<anyhow::Result<_>>()?;
    let registry_mirrors = args.registry_mirrors.iter().map(|m| crate::oci::mirror::RegistryMirror::parse(m)).collect::<anyhow::Result<Vec<_>>>()?;
    crate::build::mirror::resolve(&mut manifest, &mirrors, &crate::build::mirror::machine_default)?;
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if args.retries == 0 {
        bail!("--retries must be at least 1 (it counts attempts)");
    }
    let split_size = args.split_size.as_deref().map(parse_size).transpose()?;
    let password = args.password_file.as_deref().map(crate::sign::read_password_file).transpose()?;
    let sk = crate::sign::load_secret_key(&args.key, password.as_deref())?;
    let lock = args.lock.as_deref().map(Lock::load).transpose()?;
    if let Some(l) = &lock {
        if l.name != manifest.name {
            out.warn(format!("the lock file is for bundle {:?}, the manifest names {:?}", l.name, manifest.name));
        }
    }
    let base = args.base.as_deref().map(crate::build::delta::Base::load).transpose().context("failed to read --base")?;
    let authfile = expand_tilde(&args.authfile);
    let credentials = Credentials::load(&authfile, args.authfile != DEFAULT_AUTHFILE)
        .hint("pass --authfile FILE with a docker-style config.json (auths.<host>.auth = base64 user:password)")?;
    let mut ca_pems = Vec::new();
    for p in &args.ca_certs {
        ca_pems.push(fs_err::read(p).context("failed to read a --ca-cert file")?);
    }
    let opts = FetchOptions {
        cache_dir: expand_tilde(&args.cache_dir),
        insecure_registries: args.insecure_registries.clone(),
        ca_pems,
        credentials,
        jobs: args.jobs,
        retry: RetryPolicy { attempts: args.retries, ..RetryPolicy::default() },
        lock,
        skip_blobs: base.as_ref().map(|b| b.blobs().clone()).unwrap_or_default(),
        registry_mirrors,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(args.jobs.clamp(2, 16)).enable_all().build().context("failed to start the async runtime")?;
    let start = std::time::Instant::now();
    let mut fetched = rt.block_on(fetch(&manifest, &opts, out))?;
    let mut record = crate::build::delta::release_record(&fetched.content, base.as_ref());
    let dropped = match &base {
        Some(b) => Some(crate::build::delta::make_delta(&mut fetched.content, b)?),
        None => None,
    };

    // the writer in its own thread, taking each blob as its download completes (in the bundle's order)
    let wopts = WriteOptions { out_dir: args.out.clone(), split_size, ..WriteOptions::default() };
    let pending = &fetched.pending;
    let bar = out.bar(0, "{spinner} writing [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}");
    let arrivals = Arrivals::new(pending.digests());
    let content = &fetched.content;
    // fetch_time: resolving, the files, and the blobs (downloaded while the writer runs)
    let (downloaded, fetch_time, written) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let r = write_bundle_gated(content, &sk, &wopts, &bar, &|d| arrivals.wait(d));
            if r.is_err() {
                arrivals.cancel();
            }
            r
        });
        let downloaded = rt.block_on(pending.download(&arrivals));
        (downloaded, start.elapsed(), writer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the bundle writer panicked"))))
    });
    drop(rt);
    // a download error says more than the writer's (which stopped for want of the blob)
    let downloaded = downloaded? + fetched.downloaded;
    let written = written.context("failed to write the bundle")?;
    bar.finish_and_clear();

    record.root_sha256 = written.root_sha256.hex().to_string();
    fetched.lock.bundle = Some(record);
    let lock_path = args.out.join(format!("{}-{}.lock.json", manifest.name, manifest.version));
    crate::fsutil::atomic_write(&lock_path, &fetched.lock.to_bytes(), crate::fsutil::Mode::Set(0o644)).context("failed to write the lock file")?;

    if written.parts.is_empty() {
        println!("{}", written.archive.display());
    } else {
        for p in &written.parts {
            println!("{}", p.display());
        }
        let list = PathBuf::from(format!("{}.parts", written.archive.display()));
        println!("{}", list.display());
        let list_sig = PathBuf::from(format!("{}.minisig", list.display()));
        if list_sig.exists() {
            println!("{}", list_sig.display());
        }
    }
    println!("{}", written.signature.display());
    println!("{}", lock_path.display());
    if !out.quiet {
        let root = &fetched.content.root;
        println!(
            "built {}-{}: {} images, {} files, {} packages, {} ({}) in {:.1}s (fetched {} in {:.1}s, {} from cache)",
            root.name,
            root.version,
            root.images.len(),
            root.files.len(),
            root.packages.len(),
            human(written.size),
            written.sha256,
            start.elapsed().as_secs_f64(),
            human(downloaded),
            fetch_time.as_secs_f64(),
            human(fetched.cached),
        );
        if let (Some(b), Some(d)) = (&base, &dropped) {
            println!(
                "delta of {} {}: left out {} blobs ({}) and {} files ({}) the base holds; carries {} blobs and {} files",
                b.name,
                b.version,
                d.blobs,
                human(d.blob_bytes),
                d.files,
                human(d.file_bytes),
                fetched.content.blobs.len(),
                fetched.content.files.len(),
            );
        }
    }
    Ok(())
}
