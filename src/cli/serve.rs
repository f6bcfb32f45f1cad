use crate::error::HintExt;
use crate::output::Output;
use crate::registry::server::{self, BlobStore, FsBlobStore};
use crate::registry::store::Store;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry store directory (filled by `airgap load`).
    #[arg(long)]
    pub store: PathBuf,
    /// Address to listen on, e.g. `10.0.0.20:5000` or `0.0.0.0:5000`.
    #[arg(long, default_value = "0.0.0.0:5000")]
    pub listen: String,
    /// Log one JSON object per line instead of text.
    #[arg(long = "json")]
    pub json_logs: bool,
}

/// Serve the store. The catalog is re-read when `catalog.json` changes (checked every second: one stat) and
/// on SIGHUP, so `airgap load` into a served store takes effect without a restart. SIGTERM/SIGINT stop
/// accepting connections and let running downloads finish (30 s at most).
pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let store = Store::open(&args.store)?;
    let fs = Arc::new(FsBlobStore::open(store).context("failed to read the store")?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))
            .hint("check that the address belongs to this host (or is 0.0.0.0) and that no other registry uses the port")?;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(args.listen.clone());
        let count = fs.index().image_count();
        if count == 0 {
            out.warn(format!("the store {} holds no images yet; load a bundle with `airgap load`", args.store.display()));
        }
        out.info(format!("serving {count} images from {} on {addr}", args.store.display()));
        let watcher = fs.clone();
        tokio::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                };
                let w = watcher.clone();
                let res = tokio::task::spawn_blocking(move || {
                    let changed = if forced { w.reload().map(|_| true) } else { w.reload_if_changed() };
                    changed.map(|c| (c, w.index().image_count()))
                })
                .await;
                match res {
                    Ok(Ok((true, n))) => tracing::info!("catalog reloaded: {n} images"),
                    Ok(Ok((false, _))) => {}
                    Ok(Err(e)) => tracing::error!("failed to reload the catalog (still serving the previous one): {e:#}"),
                    Err(e) => tracing::error!("catalog reload task failed: {e}"),
                }
            }
        });
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down: no new connections, finishing running downloads");
        };
        server::serve(fs, listener, shutdown, Duration::from_secs(30)).await?;
        out.info("registry stopped");
        anyhow::Ok(())
    })
}
