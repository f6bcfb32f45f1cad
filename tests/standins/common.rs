//! What every tool of the stand-in shares: where the node's files are, the cluster's clock, the version the
//! tools claim, errors, and the call log.
//!
//! Environment (all optional; a lab node needs none of them):
//! - `K8S_STANDIN_ROOT`: the node's file system root (default `/`). The fast tests run several "nodes" on one
//!   machine, each with its own root directory; every node path (`/etc/kubernetes/...`) is resolved under it
//!   and services are then started as plain processes instead of systemd units (see `services`).
//! - `K8S_STANDIN_VERSION`: the Kubernetes version the tools claim (default [`DEFAULT_VERSION`]); the file
//!   `<root>/etc/k8s-standin/version` does the same on a node.
//! - The cluster's clock is the system clock plus the seconds in `<root>/var/lib/k8s-standin/clock-offset`
//!   on the node holding the cluster state (read at every request): that is how a test ages bootstrap tokens
//!   and the uploaded certificates (`echo 7300 > .../clock-offset` = 2 h 1 min 40 s later).

use airgap::kube::Version;
use sha2::Digest as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The version the stand-in tools claim unless told otherwise (pins.md: the default Kubernetes release).
pub const DEFAULT_VERSION: &str = "v1.36.3";
pub const CALL_LOG: &str = "/var/log/k8s-standin/calls.jsonl";
pub const CLOCK_OFFSET: &str = "/var/lib/k8s-standin/clock-offset";

/// A failed call: the message goes to stderr, the code is the exit code.
#[derive(Debug)]
pub struct Fail {
    pub msg: String,
    pub code: i32,
}

pub type R<T> = Result<T, Fail>;

pub fn fail(msg: impl Into<String>) -> Fail {
    Fail { msg: msg.into(), code: 1 }
}

pub fn fail_code(code: i32, msg: impl Into<String>) -> Fail {
    Fail { msg: msg.into(), code }
}

/// `result.ctx("doing x")?` turns any error into a [`Fail`] saying what failed.
pub trait Context<T> {
    fn ctx(self, what: impl std::fmt::Display) -> R<T>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: impl std::fmt::Display) -> R<T> {
        self.map_err(|e| fail(format!("{what}: {e}")))
    }
}

#[derive(Clone, Debug)]
pub struct Ctx {
    pub root: PathBuf,
}

static CONFIG_READS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

impl Ctx {
    pub fn from_env() -> Ctx {
        let root = std::env::var_os("K8S_STANDIN_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        Ctx { root }
    }

    /// Several nodes on one machine (a root other than `/`): no systemd, no host-wide checks.
    pub fn sandboxed(&self) -> bool {
        self.root != Path::new("/")
    }

    /// A node path under the node's root.
    pub fn path(&self, node_path: &str) -> PathBuf {
        if Path::new(node_path).is_absolute() {
            self.root.join(node_path.trim_start_matches('/'))
        } else {
            // relative to the working directory, as the real tools read them
            PathBuf::from(node_path)
        }
    }

    pub fn exists(&self, node_path: &str) -> bool {
        self.path(node_path).exists()
    }

    pub fn read(&self, node_path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(node_path))
    }

    /// Read a configuration file the way the tools do, remembering its sha256 for the call log.
    pub fn read_config(&self, node_path: &str) -> std::io::Result<String> {
        let text = self.read(node_path)?;
        let sha = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        CONFIG_READS.lock().unwrap_or_else(|p| p.into_inner()).push((node_path.to_string(), sha));
        Ok(text)
    }

    /// Write a node file (parents created), with `mode`.
    pub fn write(&self, node_path: &str, content: impl AsRef<[u8]>, mode: u32) -> R<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let p = self.path(node_path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).ctx(format!("cannot create {}", d.display()))?;
        }
        let tmp = p.with_extension("standin-tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .ctx(format!("cannot write {node_path}"))?;
        f.write_all(content.as_ref()).ctx(format!("cannot write {node_path}"))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode)).ctx(format!("cannot chmod {node_path}"))?;
        drop(f);
        std::fs::rename(&tmp, &p).ctx(format!("cannot write {node_path}"))
    }

    pub fn remove(&self, node_path: &str) {
        let p = self.path(node_path);
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }

    /// The version the tools claim.
    pub fn version(&self) -> Version {
        let s = std::env::var("K8S_STANDIN_VERSION")
            .ok()
            .or_else(|| self.read("/etc/k8s-standin/version").ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| DEFAULT_VERSION.to_string());
        s.parse().unwrap_or_else(|_| DEFAULT_VERSION.parse().expect("default version"))
    }

    /// The cluster's clock, in Unix seconds: the system clock plus the node's clock offset.
    pub fn now(&self) -> i64 {
        let sys = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let offset = self.read(CLOCK_OFFSET).ok().and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or(0);
        sys + offset
    }

    /// The node's hostname (`/etc/hostname` under a sandbox root, else the kernel's).
    pub fn hostname(&self) -> String {
        if self.sandboxed() {
            if let Ok(h) = self.read("/etc/hostname") {
                return h.trim().to_string();
            }
        }
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Append one line to the node's call log: argv, cwd, uid, time, exit code (`None`: a daemon starting),
/// the sha256 of every configuration file read, and the error message if any.
pub fn record_call(ctx: &Ctx, tool: &str, argv: &[String], exit_code: Option<i32>, error: Option<&str>) {
    use std::os::unix::fs::OpenOptionsExt;
    let reads: Vec<serde_json::Value> = CONFIG_READS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(p, s)| serde_json::json!({"path": p, "sha256": s}))
        .collect();
    let line = serde_json::json!({
        "tool": tool,
        "argv": argv,
        "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "uid": nix::unistd::getuid().as_raw(),
        "pid": std::process::id(),
        "time": rfc3339(ctx.now()),
        "exit_code": exit_code,
        "config_files": reads,
        "error": error,
    });
    let p = ctx.path(CALL_LOG);
    if let Some(d) = p.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).mode(0o644).open(&p) {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-12-02T10:00:00Z`).
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// RFC 3339 (`Z` or `+hh:mm`, fractional seconds ignored) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (c, o) = rest.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (c, sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60))
    };
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (c.next()??, c.next()??, c.next()??);
    // days_from_civil
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss - offset)
}

/// A Go duration (`24h0m0s`, `5m`, `1.5s`) in seconds.
pub fn go_duration_secs(s: &str) -> Option<f64> {
    s.parse::<airgap::kube::Duration>().ok().map(|d| d.as_nanos() as f64 / 1e9)
}

/// A duration as kubeadm prints a TTL (`23h`, `59m`, `<forever>`).
pub fn human_duration(secs: i64) -> String {
    match secs {
        s if s >= 48 * 3600 => format!("{}d", s / 86400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{}s", s.max(0)),
    }
}

/// Poll `f` every `every` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: std::time::Duration, every: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(every); // the poll period of a condition with a timeout
    }
}

