//! kubeadm's preflight checks (cmd/kubeadm/app/preflight/checks.go), the ones that protect a node from a
//! second init or join: FileAvailable (`<path> already exists`), DirAvailable (`<path> is not empty`),
//! Port-N (`Port N is in use`), IsPrivilegedUser, FileContent--proc-sys-net-ipv4-ip_forward, ImagePull.
//! Failures print as kubeadm prints them and exit 2; `--ignore-preflight-errors` (and
//! `nodeRegistration.ignorePreflightErrors`) turn named checks (or `all`) into warnings.

use super::kerr;
use crate::common::{Ctx, R};
use std::net::IpAddr;

pub struct Checks {
    errors: Vec<(String, String)>,
    ignore: Vec<String>,
}

impl Checks {
    pub fn new(ignore: impl IntoIterator<Item = String>) -> Checks {
        println!("[preflight] Running pre-flight checks");
        Checks { errors: Vec::new(), ignore: ignore.into_iter().map(|s| s.to_lowercase()).collect() }
    }

    pub fn error(&mut self, name: &str, msg: impl Into<String>) {
        self.errors.push((name.to_string(), msg.into()));
    }

    fn dashed(path: &str) -> String {
        path.replace('/', "-")
    }

    pub fn file_available(&mut self, ctx: &Ctx, path: &str) {
        if ctx.exists(path) {
            self.error(&format!("FileAvailable-{}", Self::dashed(path)), format!("{path} already exists"));
        }
    }

    pub fn dir_available(&mut self, ctx: &Ctx, path: &str) {
        let non_empty = std::fs::read_dir(ctx.path(path)).map(|mut d| d.next().is_some()).unwrap_or(false);
        if non_empty {
            self.error(&format!("DirAvailable-{}", Self::dashed(path)), format!("{path} is not empty"));
        }
    }

    /// Port check: on a real node kubeadm binds `:PORT`; under a sandbox root (several nodes on one
    /// machine) the node's own address is bound instead.
    pub fn port(&mut self, ctx: &Ctx, node_ip: Option<IpAddr>, port: u16) {
        let ip = if ctx.sandboxed() { node_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])) } else { IpAddr::from([0, 0, 0, 0]) };
        if std::net::TcpListener::bind((ip, port)).is_err() {
            self.error(&format!("Port-{port}"), format!("Port {port} is in use"));
        }
    }

    pub fn privileged(&mut self) {
        if !nix::unistd::geteuid().is_root() {
            self.error("IsPrivilegedUser", "user is not running as root");
        }
    }

    /// On a real node only: a sandbox root shares the machine's /proc.
    pub fn ip_forward(&mut self, ctx: &Ctx) {
        if ctx.sandboxed() {
            return;
        }
        let v = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
        if v.trim() != "1" {
            self.error("FileContent--proc-sys-net-ipv4-ip_forward", "/proc/sys/net/ipv4/ip_forward contents are not set to 1");
        }
    }

    /// Fail (exit 2) with every error not ignored; print the ignored ones as warnings.
    pub fn finish(self) -> R<()> {
        let all = self.ignore.iter().any(|i| i == "all");
        let mut fatal = String::new();
        for (name, msg) in &self.errors {
            if all || self.ignore.contains(&name.to_lowercase()) {
                println!("\t[WARNING {name}]: {msg}");
            } else {
                fatal.push_str(&format!("\t[ERROR {name}]: {msg}\n"));
            }
        }
        if fatal.is_empty() {
            return Ok(());
        }
        Err(kerr(
            2,
            format!(
                "error execution phase preflight: [preflight] Some fatal errors occurred:\n{fatal}[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`"
            ),
        ))
    }
}
