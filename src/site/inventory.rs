//! The site inventory: cluster, SSH access, nodes, VIPs, subnets, NFS, Redis, preflight thresholds; read
//! with [`Inventory::load`] / [`Inventory::parse`], which validate it (see [`super::validate`]).
//!
//! Parsing uses serde with `deny_unknown_fields` (line and column come from the YAML parser).

use crate::yaml_lines::LineIndex;
use anyhow::Result;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub cluster: Cluster,
    #[serde(default)]
    pub ssh: SshConfig,
    pub nodes: Vec<Node>,
    pub vips: Vips,
    pub network: Network,
    #[serde(default)]
    pub nfs: Nfs,
    /// No `redis:` section: no Redis cluster.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub redis: Redis,
    /// The site's own registry instead of the built-in one (see [`super::registry`]).
    #[serde(default)]
    pub registry: super::registry::RegistryConfig,
    #[serde(default)]
    pub housekeeping: Housekeeping,
    #[serde(default)]
    pub preflight: Preflight,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    pub kubernetes_version: String,
    /// Allow fewer than 3 masters / 2 workers (a single-master layout, no HA).
    #[serde(default)]
    pub allow_single_master: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Private key file (`~` expands to $HOME). Without it, ssh's own defaults and agent apply.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name of an environment variable holding the password (fallback when key authentication is not set up).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Seconds to wait for a TCP connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u32,
    /// How long a remote command may run before it is stopped (on the node too) and fails.
    #[serde(default)]
    pub timeouts: SshTimeouts,
}

/// Timeouts of remote commands, per kind, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTimeouts {
    /// What airgap knows to be quick: checks, facts, file writes.
    #[serde(default = "default_command_timeout")]
    pub command: u64,
    /// Everything else: package and component installs, service (re)starts, image loads.
    #[serde(default = "default_install_timeout")]
    pub install: u64,
    /// Copies may take `command` seconds plus their size at this rate (MiB/s): the slowest link tolerated.
    #[serde(default = "default_copy_rate")]
    pub copy_mib_per_s: u64,
}

impl Default for SshTimeouts {
    fn default() -> Self {
        SshTimeouts {
            command: default_command_timeout(),
            install: default_install_timeout(),
            copy_mib_per_s: default_copy_rate(),
        }
    }
}

fn default_command_timeout() -> u64 {
    300
}
fn default_install_timeout() -> u64 {
    1800
}
fn default_copy_rate() -> u64 {
    1
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            user: default_user(),
            port: default_port(),
            key_file: None,
            password_env: None,
            connect_timeout: default_connect_timeout(),
            timeouts: SshTimeouts::default(),
        }
    }
}

fn default_user() -> String {
    "root".into()
}
fn default_port() -> u16 {
    22
}
fn default_connect_timeout() -> u32 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Worker => "worker",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub address: Ipv4Addr,
    pub role: Role,
    /// Network interface for the VIPs and the pod network (default: the one holding `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The node's SSH host key fingerprint as `ssh-keygen -lf` prints it (`SHA256:` + 43 base64 characters).
    /// When set, the node must present this key before anything is sent to it; else the key it presents on
    /// first contact is recorded in the state dir and required afterwards (trust on first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vips {
    /// The masters' VIP: haproxy on :16443 in front of the apiservers, keepalived on the masters.
    pub masters: Ipv4Addr,
    /// The workers' VIP: registry on :5000 and nginx, keepalived on worker1/worker2.
    pub workers: Ipv4Addr,
    /// VRRP `virtual_router_id` of the masters' VIP (1-255; must be unique on the network segment: change it
    /// when another keepalived/VRRP setup there already uses 51).
    #[serde(default = "default_masters_vrid")]
    pub masters_router_id: u8,
    /// VRRP `virtual_router_id` of the workers' VIP (default 52).
    #[serde(default = "default_workers_vrid")]
    pub workers_router_id: u8,
    /// The NFS VIP: the NFS server of master1/master2 (keepalived on both, its own router id). Without it the
    /// `nfs` step does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<Ipv4Addr>,
    /// VRRP `virtual_router_id` of the NFS VIP (default 53).
    #[serde(default = "default_nfs_vrid")]
    pub nfs_router_id: u8,
}

impl Vips {
    /// The VIPs the inventory sets, with their field names: `masters`, `workers`, and `nfs` when set.
    pub fn all(&self) -> Vec<(&'static str, Ipv4Addr)> {
        let mut v = vec![("masters", self.masters), ("workers", self.workers)];
        v.extend(self.nfs.map(|n| ("nfs", n)));
        v
    }

    /// The VRRP router ids in use, with their field names (the NFS one only when the NFS VIP is set).
    pub fn router_ids(&self) -> Vec<(&'static str, u8)> {
        let mut v = vec![("masters_router_id", self.masters_router_id), ("workers_router_id", self.workers_router_id)];
        if self.nfs.is_some() {
            v.push(("nfs_router_id", self.nfs_router_id));
        }
        v
    }
}

fn default_masters_vrid() -> u8 {
    51
}
fn default_workers_vrid() -> u8 {
    52
}
fn default_nfs_vrid() -> u8 {
    53
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The subnet holding every node address and both VIPs.
    pub node_subnet: Ipv4Net,
    #[serde(default = "default_pod_subnet")]
    pub pod_subnet: Ipv4Net,
    #[serde(default = "default_service_subnet")]
    pub service_subnet: Ipv4Net,
}

fn default_pod_subnet() -> Ipv4Net {
    "10.244.0.0/16".parse().expect("valid default")
}
fn default_service_subnet() -> Ipv4Net {
    "10.96.0.0/12".parse().expect("valid default")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nfs {
    #[serde(default = "default_nfs_path")]
    pub path: String,
    /// Block device mirrored by DRBD between master1 and master2 (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drbd_disk: Option<String>,
}

impl Default for Nfs {
    fn default() -> Self {
        Nfs {
            path: default_nfs_path(),
            drbd_disk: None,
        }
    }
}
fn default_nfs_path() -> String {
    "/opt/mnt/volumes".into()
}

/// The container runtime besides containerd (which the kubelet uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Install docker (from the bundle's OS packages) on every node next to containerd, for the operators'
    /// docker CLI: it pulls from the site registry.
    #[serde(default)]
    pub docker: bool,
    /// docker's json-file log `max-size` (a number with an optional k/m/g unit, as docker takes it).
    #[serde(default = "default_log_max_size")]
    pub docker_log_max_size: String,
    /// docker's json-file log `max-file` (files kept per container).
    #[serde(default = "default_log_max_file")]
    pub docker_log_max_file: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { docker: false, docker_log_max_size: default_log_max_size(), docker_log_max_file: default_log_max_file() }
    }
}
fn default_log_max_size() -> String {
    "100m".into()
}
fn default_log_max_file() -> u32 {
    5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// A `redis:` section means a Redis cluster unless it says `enabled: false`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// First port; two instances on each of the 3 masters use `base_port .. base_port + 5`.
    #[serde(default = "default_redis_port")]
    pub base_port: u16,
    /// Name of an environment variable holding the cluster's password (read on the deploy machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A file (on the deploy machine) whose first line is the cluster's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Milliseconds a primary may be unreachable before its replica takes over (redis `cluster-node-timeout`).
    #[serde(default = "default_redis_node_timeout")]
    pub node_timeout_ms: u32,
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            enabled: false,
            base_port: default_redis_port(),
            password_env: None,
            password_file: None,
            node_timeout_ms: default_redis_node_timeout(),
        }
    }
}
fn yes() -> bool {
    true
}
fn default_redis_port() -> u16 {
    7000
}
fn default_redis_node_timeout() -> u32 {
    5000
}

/// The host services of the `housekeeping` step (systemd timers and units on every node).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Housekeeping {
    /// Container log files not written for this many days are deleted (daily timer).
    #[serde(default = "default_log_days")]
    pub log_days: u32,
    /// Container log files larger than this (MiB) are cut: copied aside and truncated in place (hourly timer).
    #[serde(default = "default_cut_mb")]
    pub cut_mb: u64,
    /// Where the container logs are (missing directories are skipped).
    #[serde(default = "default_log_dirs")]
    pub log_dirs: Vec<String>,
    /// keepalived starts no earlier than this many seconds after boot (and after the NFS/DRBD units).
    #[serde(default = "default_keepalived_delay")]
    pub keepalived_boot_delay_secs: u32,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Housekeeping {
            log_days: default_log_days(),
            cut_mb: default_cut_mb(),
            log_dirs: default_log_dirs(),
            keepalived_boot_delay_secs: default_keepalived_delay(),
        }
    }
}
fn default_log_days() -> u32 {
    10
}
fn default_cut_mb() -> u64 {
    200
}
fn default_log_dirs() -> Vec<String> {
    vec!["/var/log/pods".into(), "/var/log/containers".into(), "/var/lib/docker/containers".into()]
}
fn default_keepalived_delay() -> u32 {
    60
}

/// Preflight thresholds (kubeadm's minimums by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preflight {
    #[serde(default = "default_master_cpus")]
    pub master_min_cpus: u32,
    #[serde(default = "default_master_memory")]
    pub master_min_memory_mb: u64,
    #[serde(default = "default_worker_memory")]
    pub worker_min_memory_mb: u64,
    /// Free space (MiB) kept on the file system of /opt/airgap on every node, on top of what lands there
    /// (preflight checks every destination's file system for the bytes that land on it).
    #[serde(default = "default_disk")]
    pub min_free_disk_mb: u64,
    /// Largest allowed clock difference between nodes.
    #[serde(default = "default_skew")]
    pub max_time_skew_seconds: f64,
    /// Checks to turn into warnings (like kubeadm's --ignore-preflight-errors): e.g. `ports`, `memory`.
    #[serde(default)]
    pub ignore: Vec<String>,
}

impl Default for Preflight {
    fn default() -> Self {
        Preflight {
            master_min_cpus: default_master_cpus(),
            master_min_memory_mb: default_master_memory(),
            worker_min_memory_mb: default_worker_memory(),
            min_free_disk_mb: default_disk(),
            max_time_skew_seconds: default_skew(),
            ignore: Vec::new(),
        }
    }
}
fn default_master_cpus() -> u32 {
    2
}
fn default_master_memory() -> u64 {
    1700
}
fn default_worker_memory() -> u64 {
    1000
}
fn default_disk() -> u64 {
    2048
}
fn default_skew() -> f64 {
    5.0
}

/// One validation problem, with the line of the offending field when found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    /// Known for syntax errors and unknown fields (from the YAML parser).
    pub column: Option<usize>,
    pub path: String,
    pub message: String,
}

/// All problems of an inventory file, reported together.
#[derive(Debug)]
pub struct InvalidInventory {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidInventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid inventory {} ({n} problem{}):",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            match (p.line, p.column) {
                (Some(l), Some(c)) => write!(f, "\n  {}:{l}:{c}: {}", self.file, p.message)?,
                (Some(l), None) => write!(f, "\n  {}:{l}: {}", self.file, p.message)?,
                _ => write!(f, "\n  {}: {}", self.file, p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for InvalidInventory {}

impl Inventory {
    /// Read and validate an inventory file.
    pub fn load(path: &Path) -> Result<Inventory> {
        use crate::error::HintExt;
        let text = fs_err::read_to_string(path)?;
        Inventory::parse(&text, &path.display().to_string())
            .hint("fix the lines named above; manifests/site.example.yaml documents every field")
    }

    /// Parse and validate inventory text; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Inventory, InvalidInventory> {
        let inv: Inventory = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (Some(l.line()), Some(l.column())))
                .unwrap_or((None, None));
            let msg = e.to_string();
            // serde_yaml_ng appends " at line X column Y": the line is printed in front instead
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            InvalidInventory {
                file: file.into(),
                problems: vec![Problem {
                    line,
                    column,
                    path: String::new(),
                    message: msg,
                }],
            }
        })?;
        let mut problems = inv.validate(&LineIndex::new(text));
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        if problems.is_empty() {
            Ok(inv)
        } else {
            Err(InvalidInventory {
                file: file.into(),
                problems,
            })
        }
    }

    pub fn masters(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Master)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Worker)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The private key file with `~` expanded.
    pub fn key_file(&self) -> Option<PathBuf> {
        self.ssh.key_file.as_ref().map(|p| expand_tilde(p))
    }
}

fn expand_tilde(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}
