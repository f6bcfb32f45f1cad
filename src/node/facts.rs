//! Facts about a node, gathered ON the node by `airgap node facts --json` and evaluated centrally by preflight
//! (the deploy side fetches them with `install::facts::fetch`).

use super::system;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The kernel modules the cluster needs.
pub const MODULES: [&str; 2] = ["br_netfilter", "overlay"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub euid: u32,
    pub cpus: u32,
    pub memory_mb: u64,
    /// `/etc/os-release` ID, ID_LIKE, VERSION_ID, PRETTY_NAME
    pub os_id: String,
    pub os_like: Vec<String>,
    pub os_version: String,
    pub os_pretty: String,
    /// `uname -m`
    pub arch: String,
    pub kernel: String,
    /// Wall clock when the facts were taken (ms since the epoch).
    pub time_ms: i64,
    pub product_uuid: Option<String>,
    pub machine_id: Option<String>,
    /// (interface, MAC) of every non-loopback interface
    pub macs: Vec<(String, String)>,
    /// TCP ports something listens on
    pub listening: Vec<u16>,
    pub swaps: Vec<String>,
    /// (module, available, how)
    pub modules: Vec<(String, bool, String)>,
    /// free MB under /opt (the nearest existing directory)
    pub free_opt_mb: u64,
    pub in_container: bool,
}

fn read_trim(p: &str) -> Option<String> {
    fs_err::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn os_release() -> Vec<(String, String)> {
    let text = read_trim("/etc/os-release")
        .or_else(|| read_trim("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Listening TCP ports from /proc/net/tcp and tcp6 (state 0A).
pub fn listening_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs_err::read_to_string(f) else {
            continue;
        };
        for l in text.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() > 3 && cols[3] == "0A" {
                if let Some(p) = cols[1].rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()) {
                    ports.push(p);
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[allow(clippy::unnecessary_cast)] // fsblkcnt_t is not u64 everywhere
fn free_mb(mut p: &Path) -> u64 {
    loop {
        if p.exists() {
            if let Ok(s) = nix::sys::statvfs::statvfs(p) {
                return (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64) / (1024 * 1024);
            }
        }
        match p.parent() {
            Some(q) => p = q,
            None => return 0,
        }
    }
}

fn macs() -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs_err::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            if let Some(mac) = read_trim(&format!("/sys/class/net/{name}/address")) {
                if mac != "00:00:00:00:00:00" {
                    v.push((name, mac));
                }
            }
        }
    }
    v.sort();
    v
}

fn memory_mb() -> u64 {
    let text = fs_err::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Gather the facts of this machine.
pub fn gather() -> Result<Facts> {
    let os = os_release();
    let get = |k: &str| {
        os.iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let uts = nix::sys::utsname::uname()?;
    Ok(Facts {
        hostname: nix::unistd::gethostname()?.to_string_lossy().into_owned(),
        euid: nix::unistd::geteuid().as_raw(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_mb: memory_mb(),
        os_id: get("ID"),
        os_like: get("ID_LIKE").split_whitespace().map(String::from).collect(),
        os_version: get("VERSION_ID"),
        os_pretty: get("PRETTY_NAME"),
        arch: uts.machine().to_string_lossy().into_owned(),
        kernel: uts.release().to_string_lossy().into_owned(),
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        product_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
        machine_id: read_trim("/etc/machine-id"),
        macs: macs(),
        listening: listening_ports(),
        swaps: system::active_swaps().unwrap_or_default(),
        modules: MODULES
            .iter()
            .map(|m| {
                let (ok, how) = system::module_available(m);
                (m.to_string(), ok, how)
            })
            .collect(),
        free_opt_mb: free_mb(Path::new("/opt/airgap")),
        in_container: system::in_container(),
    })
}
