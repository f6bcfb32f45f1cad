//! The site inventory: cluster, SSH access, nodes, VIPs, subnets, NFS, Redis, preflight thresholds.
//!
//! Parsing uses serde with `deny_unknown_fields` (line and column come from the YAML parser); semantic
//! validation collects EVERY problem and names the line of the offending field, found with a small index of the
//! source text ([`LineIndex`]), e.g. `site.yaml:14: nodes[3].address 10.0.0.11 is also the address of master1`.

use anyhow::Result;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    #[serde(default)]
    pub redis: Redis,
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
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            user: default_user(),
            port: default_port(),
            key_file: None,
            password_env: None,
            connect_timeout: default_connect_timeout(),
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
}

fn default_masters_vrid() -> u8 {
    51
}
fn default_workers_vrid() -> u8 {
    52
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// First port; two instances on each of the 3 masters use `base_port .. base_port + 5`.
    #[serde(default = "default_redis_port")]
    pub base_port: u16,
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            enabled: true,
            base_port: default_redis_port(),
        }
    }
}
fn yes() -> bool {
    true
}
fn default_redis_port() -> u16 {
    7000
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
    /// Free space needed under /opt on every node (plus the bundle's size where the bundle goes).
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

    /// Every semantic problem, each with the line of the field it is about.
    pub fn validate(&self, idx: &LineIndex) -> Vec<Problem> {
        let mut v = Validator {
            idx,
            problems: Vec::new(),
        };
        self.validate_into(&mut v);
        v.problems
    }

    fn validate_into(&self, v: &mut Validator) {
        if !is_dns_label(&self.cluster.name) {
            v.push(
                &["cluster", "name"],
                format!(
                    "cluster.name {:?} must be a DNS label (a-z, 0-9, '-')",
                    self.cluster.name
                ),
            );
        }
        let ver = self.cluster.kubernetes_version.trim_start_matches('v');
        if ver.split('.').count() != 3
            || !ver
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            v.push(
                &["cluster", "kubernetes_version"],
                format!(
                    "cluster.kubernetes_version {:?} is not a version like 1.31.4",
                    self.cluster.kubernetes_version
                ),
            );
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut addrs: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let idx = i.to_string();
            if !is_dns_label(&n.name) {
                v.push(
                    &["nodes", &idx, "name"],
                    format!("nodes[{i}].name {:?} must be a DNS label (a-z, 0-9, '-')", n.name),
                );
            }
            if let Some(&j) = names.get(n.name.as_str()) {
                v.push(
                    &["nodes", &idx, "name"],
                    format!("nodes[{i}].name {} is also the name of nodes[{j}]", n.name),
                );
            } else {
                names.insert(&n.name, i);
            }
            if let Some(&j) = addrs.get(&n.address) {
                v.push(
                    &["nodes", &idx, "address"],
                    format!(
                        "nodes[{i}].address {} is also the address of {}",
                        n.address, self.nodes[j].name
                    ),
                );
            } else {
                addrs.insert(n.address, i);
            }
            if !self.network.node_subnet.contains(&n.address) {
                v.push(
                    &["nodes", &idx, "address"],
                    format!(
                        "nodes[{i}].address {} is outside network.node_subnet {}",
                        n.address, self.network.node_subnet
                    ),
                );
            }
            if let Some(ifc) = &n.interface {
                if ifc.is_empty() || ifc.len() > 15 || ifc.contains(['/', ' ']) {
                    v.push(
                        &["nodes", &idx, "interface"],
                        format!("nodes[{i}].interface {ifc:?} is not an interface name"),
                    );
                }
            }
        }
        let (m, w) = (self.masters().count(), self.workers().count());
        if self.cluster.allow_single_master {
            if m == 0 {
                v.push(&["nodes"], "nodes: at least one master is needed".to_string());
            }
        } else {
            if m < 3 {
                v.push(&["nodes"], format!("nodes: the HA layout needs at least 3 masters, found {m} (set cluster.allow_single_master: true for a single-master layout)"));
            }
            if w < 2 {
                v.push(&["nodes"], format!("nodes: the HA layout needs at least 2 workers (the workers' VIP runs on worker1 and worker2), found {w}"));
            }
        }
        for (key, vip) in [("masters", self.vips.masters), ("workers", self.vips.workers)] {
            if let Some(n) = self.nodes.iter().find(|n| n.address == vip) {
                v.push(
                    &["vips", key],
                    format!(
                        "vips.{key} {vip} is the address of node {}: a VIP needs an unused address",
                        n.name
                    ),
                );
            }
            if !self.network.node_subnet.contains(&vip) {
                v.push(
                    &["vips", key],
                    format!(
                        "vips.{key} {vip} is outside the nodes' subnet {}",
                        self.network.node_subnet
                    ),
                );
            } else if vip == self.network.node_subnet.network() || vip == self.network.node_subnet.broadcast() {
                v.push(
                    &["vips", key],
                    format!(
                        "vips.{key} {vip} is the network or broadcast address of {}",
                        self.network.node_subnet
                    ),
                );
            }
        }
        if self.vips.masters_router_id == self.vips.workers_router_id {
            v.push(
                &["vips", "workers_router_id"],
                format!(
                    "vips.workers_router_id {} equals vips.masters_router_id: each VIP needs its own VRRP router id",
                    self.vips.workers_router_id
                ),
            );
        }
        for (key, id) in [("masters_router_id", self.vips.masters_router_id), ("workers_router_id", self.vips.workers_router_id)] {
            if id == 0 {
                v.push(&["vips", key], format!("vips.{key} must be 1-255 (VRRP router id), not 0"));
            }
        }
        if self.vips.masters == self.vips.workers {
            v.push(
                &["vips", "workers"],
                format!(
                    "vips.workers {} equals vips.masters: the two VIPs must differ",
                    self.vips.workers
                ),
            );
        }
        let nets = [
            ("pod_subnet", self.network.pod_subnet),
            ("service_subnet", self.network.service_subnet),
            ("node_subnet", self.network.node_subnet),
        ];
        for i in 0..nets.len() {
            for j in (i + 1)..nets.len() {
                let ((ka, a), (kb, b)) = (nets[i], nets[j]);
                if a.contains(&b.network()) || b.contains(&a.network()) {
                    v.push(&["network", kb], format!("network.{kb} {b} overlaps network.{ka} {a}"));
                }
            }
        }
        if !self.nfs.path.starts_with('/') || self.nfs.path.contains("..") {
            v.push(
                &["nfs", "path"],
                format!("nfs.path {:?} must be an absolute path without '..'", self.nfs.path),
            );
        }
        if let Some(d) = &self.nfs.drbd_disk {
            if !d.starts_with("/dev/") {
                v.push(
                    &["nfs", "drbd_disk"],
                    format!("nfs.drbd_disk {d:?} must be a block device under /dev/"),
                );
            }
        }
        if self.redis.enabled && self.redis.base_port > 65535 - 5 - 10000 {
            v.push(
                &["redis", "base_port"],
                format!(
                    "redis.base_port {} leaves no room for 6 ports and their cluster bus ports (+10000)",
                    self.redis.base_port
                ),
            );
        }
        if self.ssh.port == 0 {
            v.push(&["ssh", "port"], "ssh.port must not be 0".to_string());
        }
        if self.preflight.max_time_skew_seconds <= 0.0 {
            v.push(
                &["preflight", "max_time_skew_seconds"],
                "preflight.max_time_skew_seconds must be positive".into(),
            );
        }
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

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

struct Validator<'a> {
    idx: &'a LineIndex,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn push(&mut self, path: &[&str], message: String) {
        self.problems.push(Problem {
            line: self.idx.line_of(path),
            column: None,
            path: path.join("."),
            message,
        });
    }
}

/// Where each field of a block-style YAML document is: enough to name the line of a semantic error.
/// A path is a list of mapping keys and sequence indices (`["nodes", "3", "address"]`); when the exact field is
/// not found (flow style, anchors), the nearest enclosing one is returned.
pub struct LineIndex {
    /// (1-based line, indent, key or "-" for a sequence item (with its key, if any, as a second entry))
    entries: Vec<(usize, usize, String)>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') || content == "---" {
                continue;
            }
            let mut indent = line.len() - content.len();
            let mut rest = content;
            while let Some(r) = rest.strip_prefix('-').filter(|r| r.is_empty() || r.starts_with(' ')) {
                entries.push((i + 1, indent, "-".to_string()));
                let r2 = r.trim_start();
                indent += rest.len() - r2.len();
                rest = r2;
            }
            if let Some((k, _)) = rest.split_once(':') {
                let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
                if !k.is_empty() && !k.contains(' ') && !rest.starts_with(['{', '[']) {
                    entries.push((i + 1, indent, k.to_string()));
                }
            }
        }
        LineIndex { entries }
    }

    /// The line of a field, or of its nearest enclosing field found.
    pub fn line_of(&self, path: &[&str]) -> Option<usize> {
        let mut best = None;
        let mut lo = 0usize; // search range in entries
        let mut hi = self.entries.len();
        let mut min_indent: Option<usize> = None; // children are deeper than their parent
        for seg in path {
            let mut found = None;
            if let Ok(k) = seg.parse::<usize>() {
                // the k-th sequence item at the shallowest "-" indent inside the range
                let item_indent = self.entries[lo..hi]
                    .iter()
                    .filter(|e| e.2 == "-" && min_indent.is_none_or(|m| e.1 >= m))
                    .map(|e| e.1)
                    .min();
                if let Some(ind) = item_indent {
                    let items: Vec<usize> = (lo..hi)
                        .filter(|&j| self.entries[j].2 == "-" && self.entries[j].1 == ind)
                        .collect();
                    if let Some(&j) = items.get(k) {
                        let end = items.get(k + 1).copied().unwrap_or(hi);
                        found = Some((j, end, ind));
                    }
                }
            } else {
                let key_indent = self.entries[lo..hi]
                    .iter()
                    .filter(|e| e.2 != "-" && min_indent.is_none_or(|m| e.1 > m))
                    .map(|e| e.1)
                    .min();
                if let Some(ind) = key_indent {
                    if let Some(j) = (lo..hi).find(|&j| self.entries[j].2 == *seg && self.entries[j].1 == ind) {
                        let end = (j + 1..hi)
                            .find(|&x| self.entries[x].1 <= ind && self.entries[x].2 != "-" || self.entries[x].1 < ind)
                            .unwrap_or(hi);
                        found = Some((j, end, ind));
                    }
                }
            }
            match found {
                Some((j, end, ind)) => {
                    best = Some(self.entries[j].0);
                    lo = j + 1;
                    hi = end;
                    min_indent = Some(ind);
                    // a "- key: v" item: its first key is on the same line, at a deeper indent
                    if seg.parse::<usize>().is_ok() {
                        lo = j + 1;
                    }
                }
                None => break,
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_finds_fields() {
        let text = "cluster:\n  name: x\nnodes:\n  - name: a\n    address: 1.1.1.1\n  - name: b\n    address: 1.1.1.2\n    role: master\nvips:\n  masters: 1.2.3.4\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_of(&["cluster", "name"]), Some(2));
        assert_eq!(idx.line_of(&["nodes", "1", "address"]), Some(7));
        assert_eq!(idx.line_of(&["nodes", "0", "name"]), Some(4));
        assert_eq!(idx.line_of(&["nodes", "1", "role"]), Some(8));
        assert_eq!(idx.line_of(&["vips", "masters"]), Some(10));
        assert_eq!(idx.line_of(&["vips", "workers"]), Some(9));
    }
}
