use crate::error::HintExt;
use crate::output::Output;
use crate::registry::server::{self, BlobStore, FsBlobStore, Limits};
use crate::registry::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry store directory (filled by `airgap load`).
    #[arg(long)]
    pub store: PathBuf,
    /// Address to listen on, IP:PORT; repeat for several (e.g. `127.0.0.1:5000` and the node's own
    /// `10.0.0.21:5000`). Only these addresses are served.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:5000")]
    pub listen: Vec<String>,
    /// Also listen on an address this host may not hold yet, like a keepalived VIP (bound with IP_FREEBIND:
    /// served whenever the address moves here, with no restart). Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    pub listen_vip: Vec<String>,
    /// Most connections served at once; over it, the longest-idle connection is closed to make room (or the
    /// new one is answered 503 when every connection is busy). Lowered to fit the open-file limit.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's complete headers, from connecting or from the end of its
    /// previous response (so also the keep-alive idle limit).
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_seconds)]
    pub header_timeout: Duration,
    /// Seconds a response may make no progress (the client reads nothing, the disk answers nothing) before it
    /// is abandoned.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    pub send_timeout: Duration,
    /// Log one JSON object per line instead of text.
    #[arg(long = "json")]
    pub json_logs: bool,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

fn parse_addr(s: &str) -> anyhow::Result<SocketAddr> {
    s.parse::<SocketAddr>()
        .with_context(|| format!("{s:?} is not an IP:PORT address"))
        .hint("give an IP address and a port, e.g. --listen 10.0.0.21:5000 (IPv6: [fd00::21]:5000)")
}

/// Serve the store. The catalog is re-read when `catalog.json` changes (checked every second: one stat) and
/// on SIGHUP, so `airgap load` into a served store takes effect without a restart. SIGTERM/SIGINT stop
/// accepting connections and let running downloads finish (30 s at most).
pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    // A bug hit by one request ends that request's connection (tokio catches the panic in its task), not the
    // registry: log it instead of the CLI's exit-on-panic.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("airgap hit a bug while serving (the registry keeps running; please report it): {info}");
    }));
    let mut addrs: Vec<(SocketAddr, bool)> = Vec::new();
    for a in &args.listen {
        addrs.push((parse_addr(a)?, false));
    }
    for a in &args.listen_vip {
        addrs.push((parse_addr(a)?, true));
    }
    let mut limits = Limits {
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        send_timeout: args.send_timeout,
        ..Limits::default()
    };
    if let Some(w) = limits.fit_open_files() {
        out.warn(w);
    }
    let store = Store::open(&args.store)?;
    let fs = Arc::new(FsBlobStore::open(store).context("failed to read the store")?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start the runtime")?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        let mut shown = Vec::new();
        for (addr, freebind) in &addrs {
            let l = server::bind(*addr, *freebind)
                .with_context(|| format!("failed to listen on {addr}"))
                .hint(if *freebind {
                    "check that no other service uses the port"
                } else {
                    "check that the address belongs to this host (a VIP that may be elsewhere goes in --listen-vip) and that no other registry uses the port"
                })?;
            shown.push(l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string()));
            listeners.push(l);
        }
        let count = fs.index().image_count();
        if count == 0 {
            out.warn(format!("the store {} holds no images yet; load a bundle with `airgap load`", args.store.display()));
        }
        out.info(format!(
            "serving {count} images from {} on {} (at most {} connections, header timeout {:?}, send timeout {:?})",
            args.store.display(),
            shown.join(", "),
            limits.max_connections,
            limits.header_timeout,
            limits.send_timeout
        ));
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
        server::serve(fs, listeners, limits, shutdown, Duration::from_secs(30)).await?;
        out.info("registry stopped");
        anyhow::Ok(())
    })
}
