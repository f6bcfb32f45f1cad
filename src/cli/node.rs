//! `airgap node ...`: node-local work, run by `install` on each node over SSH (hidden from help).
//! Checks exit 0 when the node is in the desired state and 1 (with the reason on stdout) when not.

use crate::digest::Digest;
use crate::output::Output;
use crate::node::{checks, components, docker, facts, files, housekeeping, packages, redis, service, system};
use anyhow::{Context, Result};
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Print this node's facts (for preflight).
    Facts {
        #[arg(long)]
        json: bool,
        /// Also the file system of PATH (free space, mount point) and the files already under its
        /// subdirectory LISTED (`PATH=LISTED`; `PATH=` lists all of PATH).
        #[arg(long, value_name = "PATH[=LISTED]")]
        disk: Vec<String>,
        /// Also what PATH is (a block device, missing, a regular file...).
        #[arg(long, value_name = "PATH")]
        block: Vec<String>,
    },
    /// Exit 0 when PATH has the sha256 (of the whole file, or of its managed block) and mode.
    CheckFile {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        sha256: String,
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
        #[arg(long)]
        block: Option<String>,
    },
    /// Write stdin to PATH atomically, only when different; stdin must have the given sha256.
    WriteFile {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, value_parser = parse_mode)]
        mode: u32,
        #[arg(long)]
        sha256: String,
        /// Manage only the lines between `# BEGIN BLOCK` and `# END BLOCK`.
        #[arg(long)]
        block: Option<String>,
    },
    /// Write stdin (a file holding secrets) to PATH, atomically, only when different (`--check`: compare
    /// content and mode). Nothing of the content, not even its hash, is on the command line. The mode has no
    /// group or other bits (default 0600).
    SecretFile {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, value_parser = parse_mode, default_value = "600")]
        mode: u32,
        #[arg(long)]
        check: bool,
    },
    /// Stream stdin into PATH; renamed into place only when its sha256 matches.
    Receive {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, value_parser = parse_mode)]
        mode: u32,
        #[arg(long)]
        sha256: String,
    },
    /// Set the hostname (kernel and /etc/hostname).
    Hostname {
        name: String,
        #[arg(long)]
        check: bool,
    },
    /// Turn swap off now and in /etc/fstab.
    SwapOff {
        #[arg(long)]
        check: bool,
    },
    /// Make sure kernel modules are available (loaded, built in or loadable).
    Modules {
        #[arg(long)]
        load: bool,
        #[arg(long)]
        check: bool,
        modules: Vec<String>,
    },
    /// Exit 0 when something accepts TCP connections on ADDR (keepalived's check of haproxy).
    CheckTcp {
        addr: String,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Keep trying for this long before failing.
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Exit 0 when an HTTP GET of URL answers 2xx or 401 (keepalived's check of the registry).
    CheckHttp {
        url: String,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Exit 0 when every image (`HOST:PORT/PATH:TAG` or `...@sha256:...`) resolves in its registry (a HEAD of
    /// its manifest over plain HTTP answers 200); else the missing ones on stderr, exit 1.
    CheckImages {
        images: Vec<String>,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Install OS packages (and the dependencies the node lacks) offline from the bundle's packages.
    Packages {
        /// Package names, comma-separated; `a|b` takes the first alternative the OS has.
        #[arg(long, value_delimiter = ',', required = true)]
        install: Vec<String>,
        /// Where distribute put the packages: this node takes its OS tag's subdirectory.
        #[arg(long, required_unless_present = "check")]
        dir: Option<PathBuf>,
        #[arg(long)]
        check: bool,
    },
    /// Install a component (static binaries) from a file distribute copied, checked against its sha256.
    Component {
        #[arg(value_enum)]
        component: components::Component,
        #[arg(long)]
        file: PathBuf,
        /// sha256 (hex) of the file, from the verified bundle's root document.
        #[arg(long, value_parser = |s: &str| crate::digest::Digest::from_hex(s))]
        sha256: crate::digest::Digest,
        #[arg(long)]
        check: bool,
    },
    /// Point docker (when installed) at the site registry: `insecure-registries` in /etc/docker/daemon.json,
    /// other settings kept; docker restarted when it changed. Nothing when docker is not installed.
    DockerRegistry {
        /// host:port of the site registry.
        registry: String,
        /// Also the site registry in `registry-mirrors` (Docker Hub names pulled by their original name).
        #[arg(long)]
        mirror: bool,
        /// The registry speaks TLS (the site's own one): never in `insecure-registries`, mirrored over https.
        #[arg(long)]
        tls: bool,
        /// json-file logs with this `max-size` (e.g. 100m).
        #[arg(long)]
        log_max_size: Option<String>,
        /// json-file logs with this `max-file`.
        #[arg(long)]
        log_max_file: Option<u32>,
        #[arg(long)]
        check: bool,
    },
    /// Merge the registry credentials of a docker config.json the install wrote (0600) into root's
    /// `~/.docker/config.json` (other keys and entries kept; written 0600).
    DockerAuth {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// Enable and start a systemd service; reload/restart it when its configuration hash changed.
    Service {
        name: String,
        /// sha256 of the service's configuration files as the step rendered them.
        #[arg(long)]
        hash: String,
        #[arg(long)]
        check: bool,
        /// Restart (not reload) on a configuration change.
        #[arg(long)]
        restart: bool,
        /// Files that must exist before starting.
        #[arg(long)]
        require: Vec<PathBuf>,
        /// The daemon's own configuration check, run before (re)starting: `-- haproxy -c -f FILE`.
        #[arg(last = true)]
        validate: Vec<String>,
    },
    /// Exit 0 when the registry store holds the bundle's images (loaded by `airgap load`).
    RegistryLoaded {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        bundle: PathBuf,
        /// The key the bundle's signed head must verify with (nothing unverified is looked at).
        #[arg(long)]
        pubkey: PathBuf,
    },
    /// Exit 0 when the registry on `--registry` serves every tag of the store's catalog with the catalog's
    /// digest (a running `airgap serve` re-reads the catalog after a load within a second); `--wait-secs`
    /// waits for it. Else the first differences on stderr.
    RegistryServes {
        #[arg(long)]
        store: PathBuf,
        #[arg(long, default_value = "127.0.0.1:5000")]
        registry: String,
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Create the Redis cluster of the pairs if there is none, bring it to that layout, wait until every
    /// replica is in sync (`--check`: only look). The password comes from the auth file.
    RedisCluster {
        #[arg(long, default_value = redis::AUTH_FILE)]
        auth_file: PathBuf,
        /// PRIMARY=REPLICA (`ip:port=ip:port`), once per primary.
        #[arg(long = "pair", required = true)]
        pairs: Vec<redis::Pair>,
        #[arg(long, default_value_t = 300)]
        wait_secs: u64,
        #[arg(long)]
        check: bool,
    },
    /// After a reboot: this master's designated primary, back as a replica, takes over again once in sync.
    RedisFailover {
        #[arg(long, default_value = redis::AUTH_FILE)]
        auth_file: PathBuf,
        #[arg(long)]
        pair: redis::Pair,
        #[arg(long, default_value_t = 600)]
        wait_secs: u64,
    },
    /// Delete container log files not modified for DAYS days under each --dir.
    LogCleanup {
        #[arg(long)]
        days: u32,
        #[arg(long = "dir", required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Cut container log files (`*.log`) bigger than MAX_MB: copy aside, truncate in place.
    LogCut {
        #[arg(long)]
        max_mb: u64,
        #[arg(long = "dir", required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Return once the machine has been up SECS seconds (keepalived's delayed start at boot).
    BootDelay {
        #[arg(long)]
        secs: u64,
    },
    /// systemctl daemon-reload when UNIT's files (drop-ins included) changed since systemd loaded them.
    DaemonReload {
        #[arg(long)]
        unit: String,
        #[arg(long)]
        check: bool,
    },
    /// Stop and disable UNIT (a package's default instance that airgap's own units replace).
    UnitOff {
        unit: String,
        #[arg(long)]
        check: bool,
    },
    /// Apply a sysctl.d file (like `sysctl -p FILE`), or check that its values are in effect.
    Sysctl {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        check: bool,
    },
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|_| format!("{s:?} is not an octal mode like 644"))
}

fn digest(hex: &str) -> Result<Digest> {
    Digest::from_hex(hex).context("bad --sha256")
}

/// A check that failed: the reason on stdout, exit 1 (no `error:`: it is an answer, not a failure).
fn differs(reason: &str) -> ! {
    println!("{reason}");
    std::process::exit(1)
}

pub fn run(args: Args, _out: &Output) -> Result<()> {
    match args.command {
        NodeCommand::Facts { json: _, disk, block } => {
            let f = facts::gather_with(&disk, &block)?;
            println!("{}", serde_json::to_string(&f)?);
        }
        NodeCommand::CheckFile {
            path,
            sha256,
            mode,
            block,
        } => {
            if let files::FileState::Differs(why) =
                files::check_file(&path, &digest(&sha256)?, mode, block.as_deref())?
            {
                differs(&why);
            }
        }
        NodeCommand::WriteFile {
            path,
            mode,
            sha256,
            block,
        } => {
            let want = digest(&sha256)?;
            let mut content = Vec::new();
            std::io::stdin()
                .take(64 << 20)
                .read_to_end(&mut content)
                .context("failed to read the content from stdin")?;
            let got = Digest::of_bytes(&content);
            anyhow::ensure!(
                got == want,
                "the content on stdin has {got}, expected {want} (truncated transfer?)"
            );
            let written = files::write_file(&path, mode, &content, block.as_deref())?;
            println!("{}", if written { "written" } else { "unchanged" });
        }
        NodeCommand::SecretFile { path, mode, check } => {
            anyhow::ensure!(mode & 0o077 == 0, "a file holding secrets gets no group or other permissions (mode {mode:o})");
            let mut content = Vec::new();
            std::io::stdin().take(1 << 20).read_to_end(&mut content).context("failed to read the content from stdin")?;
            anyhow::ensure!(!content.is_empty(), "no content on stdin for {}", path.display());
            if check {
                if let files::FileState::Differs(why) = files::check_file(&path, &Digest::of_bytes(&content), Some(mode), None)? {
                    differs(&why);
                }
            } else {
                let written = files::write_file(&path, mode, &content, None)?;
                println!("{}", if written { "written" } else { "unchanged" });
            }
        }
        NodeCommand::Receive { path, mode, sha256 } => {
            files::receive(&path, mode, &digest(&sha256)?, std::io::stdin().lock())?;
        }
        NodeCommand::Hostname { name, check } => {
            if check {
                if !system::hostname_is(&name)? {
                    differs(&format!("hostname is not {name}"));
                }
            } else {
                system::set_hostname(&name)?;
            }
        }
        NodeCommand::SwapOff { check } => {
            if check {
                let why = system::swap_state()?;
                if !why.is_empty() {
                    differs(&why.join("; "));
                }
            } else {
                system::swap_off()?;
            }
        }
        NodeCommand::Modules { load, check, modules } => {
            if load && !check {
                system::load_modules(&modules)?;
            }
            let missing: Vec<String> = modules
                .iter()
                .filter_map(|m| {
                    let (ok, how) = system::module_available(m);
                    (!ok).then(|| format!("kernel module {m} is not available ({how})"))
                })
                .collect();
            if !missing.is_empty() {
                if check {
                    differs(&missing.join("; "));
                }
                anyhow::bail!("{}", missing.join("; "));
            }
        }
        NodeCommand::CheckTcp { addr, timeout_ms, wait_secs } => {
            let t = std::time::Duration::from_millis(timeout_ms);
            if let Err(e) = checks::wait_for(std::time::Duration::from_secs(wait_secs), || checks::check_tcp(&addr, t)) {
                differs(&format!("{e:#}"));
            }
        }
        NodeCommand::CheckHttp { url, timeout_ms, wait_secs } => {
            let t = std::time::Duration::from_millis(timeout_ms);
            if let Err(e) = checks::wait_for(std::time::Duration::from_secs(wait_secs), || checks::check_http(&url, t).map(|_| ())) {
                differs(&format!("{e:#}"));
            }
        }
        NodeCommand::CheckImages { images, timeout_ms } => {
            let t = std::time::Duration::from_millis(timeout_ms);
            let missing: Vec<String> = images
                .iter()
                .filter_map(|i| checks::check_manifest(i, t).err().map(|e| format!("{e:#}")))
                .collect();
            if !missing.is_empty() {
                anyhow::bail!("{} of {} images do not resolve:\n  {}", missing.len(), images.len(), missing.join("\n  "));
            }
        }
        NodeCommand::Packages { install, dir, check } => {
            let (family, _) = packages::os_tags();
            let missing = packages::missing(family, &install, std::path::Path::new("/"))?;
            if check {
                if !missing.is_empty() {
                    differs(&format!("not installed: {}", missing.join(", ")));
                }
            } else if !missing.is_empty() {
                let Some(dir) = dir else { anyhow::bail!("--dir is needed to install") };
                let dir = packages::tag_dir(&dir)?;
                let done = packages::install(&dir, family, &install, std::path::Path::new("/"))?;
                println!("installed {}", done.join(" "));
            }
        }
        NodeCommand::Component { component, file, sha256, check } => {
            let root = std::path::Path::new("/");
            if check {
                let why = components::check(root, component, &sha256);
                if !why.is_empty() {
                    differs(&why.join("; "));
                }
            } else {
                let done = components::install(root, component, &file, &sha256)?;
                println!("installed {}", done.join(" "));
            }
        }
        NodeCommand::DockerRegistry { registry, mirror, tls, log_max_size, log_max_file, check } => {
            let want = docker::Settings { registry, mirror, tls, log_max_size, log_max_file };
            let changed = docker::ensure(std::path::Path::new("/"), &want, check)?;
            match (check, changed) {
                (true, Some(why)) => differs(&why),
                (false, Some(what)) => println!("{what}"),
                _ => {}
            }
        }
        NodeCommand::DockerAuth { from, check } => match (check, docker::ensure_auths(std::path::Path::new("/"), &from, check)?) {
            (true, Some(why)) => differs(&why),
            (false, Some(what)) => println!("{what}"),
            _ => {}
        },
        NodeCommand::Service { name, hash, check, restart, require, validate } => {
            if check {
                let why = service::check(&name, &hash);
                if !why.is_empty() {
                    differs(&why.join("; "));
                }
            } else {
                println!("{}", service::apply(&name, &hash, &require, &validate, restart)?);
            }
        }
        NodeCommand::RegistryLoaded { store, bundle, pubkey } => {
            let head = crate::sign::load_public_key(&pubkey).and_then(|pk| {
                let source = crate::bundle::source::BundleSource::open(&bundle)?;
                crate::bundle::read::read_head(&source, &pk)
            });
            let root = match head {
                Ok(h) => h.into_root(),
                Err(e) => differs(&format!("{}: {}", bundle.display(), crate::error::messages(&e).join(": "))),
            };
            let loaded = crate::registry::store::Store::open(&store)
                .and_then(|s| s.catalog())
                .map(|c| c.bundles.iter().any(|b| b.sha256sums == root.sha256sums))
                .unwrap_or(false);
            if !loaded {
                differs(&format!("the registry store {} does not hold bundle {}-{}", store.display(), root.name, root.version));
            }
        }
        NodeCommand::RegistryServes { store, registry, wait_secs } => {
            let catalog = crate::registry::store::Store::open(&store)?.catalog()?;
            let t = std::time::Duration::from_secs(5);
            let serves = || {
                let wrong: Vec<String> = catalog
                    .images
                    .iter()
                    .filter_map(|i| Some((i, i.tag.as_deref()?)))
                    .filter_map(|(i, tag)| match checks::served_digest(&registry, &i.name, tag, Some(&i.host), t) {
                        Ok(d) if d == i.digest.to_string() => None,
                        Ok(d) => Some(format!("{}: served as {d}, the store holds {}", i.reference, i.digest)),
                        Err(e) => Some(format!("{}: {e:#}", i.reference)),
                    })
                    .collect();
                match wrong.len() {
                    0 => Ok(()),
                    n => Err(anyhow::anyhow!("{n} of {} images are not served as the store holds them: {}", catalog.images.len(), wrong.iter().take(3).cloned().collect::<Vec<_>>().join("; "))),
                }
            };
            if let Err(e) = checks::wait_for(std::time::Duration::from_secs(wait_secs), serves) {
                differs(&format!("the registry on {registry}: {e:#}"));
            }
        }
        NodeCommand::RedisCluster { auth_file, pairs, wait_secs, check } => {
            let pw = redis::read_password(&auth_file)?;
            if check {
                let why = redis::check(&pairs, &pw);
                if !why.is_empty() {
                    differs(&why.join("; "));
                }
            } else {
                for d in redis::ensure(&pairs, &pw, std::time::Duration::from_secs(wait_secs))? {
                    println!("{d}");
                }
            }
        }
        NodeCommand::RedisFailover { auth_file, pair, wait_secs } => {
            let pw = redis::read_password(&auth_file)?;
            println!("{}", redis::failover(&pair, &pw, std::time::Duration::from_secs(wait_secs))?);
        }
        NodeCommand::LogCleanup { days, dirs } => {
            let removed = housekeeping::cleanup(&dirs, days, std::time::SystemTime::now())?;
            for p in &removed {
                println!("deleted {}", p.display());
            }
            println!("{} log file(s) older than {days} days deleted", removed.len());
        }
        NodeCommand::LogCut { max_mb, dirs } => {
            let copies = housekeeping::cut(&dirs, max_mb.saturating_mul(1 << 20), time::OffsetDateTime::now_utc())?;
            for p in &copies {
                println!("cut into {}", p.display());
            }
        }
        NodeCommand::BootDelay { secs } => {
            let waited = housekeeping::boot_delay(secs)?;
            println!("waited {waited:.0}s (up {secs}s after boot)");
        }
        NodeCommand::DaemonReload { unit, check } => {
            if let Some(why) = housekeeping::needs_reload(&unit)? {
                if check {
                    differs(&why);
                }
                housekeeping::daemon_reload()?;
            }
        }
        NodeCommand::UnitOff { unit, check } => {
            if let Some(why) = housekeeping::unit_on(&unit)? {
                if check {
                    differs(&why);
                }
                housekeeping::unit_off(&unit)?;
            }
        }
        NodeCommand::Sysctl { file, check } => match system::sysctl_file(&file, !check) {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
            }
            Err(e) if check => differs(&e.to_string()),
            Err(e) => return Err(e),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_node_subcommand_has_a_timeout_kind() {
        use crate::install::ssh::timeouts::{COPY_NODE_COMMANDS, LONG_NODE_COMMANDS, QUICK_NODE_COMMANDS};
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command();
        let node = cmd.find_subcommand("node").unwrap();
        for sub in node.get_subcommands() {
            let name = sub.get_name();
            let listed = [QUICK_NODE_COMMANDS, LONG_NODE_COMMANDS, COPY_NODE_COMMANDS].iter().filter(|l| l.contains(&name)).count();
            assert_eq!(listed, 1, "`airgap node {name}` must be in exactly one list of install::ssh::timeouts");
        }
    }
}
