//! Semantic validation of an inventory: EVERY problem is collected (not just the first), each naming the line
//! of the offending field found with [`LineIndex`], e.g.
//! `site.yaml:14: nodes[3].address 10.0.0.11 is also the address of master1`.

use super::inventory::{Inventory, Problem};
use crate::yaml_lines::LineIndex;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

impl Inventory {
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
                if !is_interface_name(ifc) {
                    v.push(
                        &["nodes", &idx, "interface"],
                        format!("nodes[{i}].interface {ifc:?} is not an interface name"),
                    );
                }
            }
        }
        let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(fp) = n.host_key.as_deref() else { continue };
            let idx = i.to_string();
            if let Err(why) = check_fingerprint(fp) {
                v.push(&["nodes", &idx, "host_key"], format!("nodes[{i}].host_key {fp:?} {why}"));
            } else if let Some(&j) = keys.get(fp) {
                v.push(
                    &["nodes", &idx, "host_key"],
                    format!(
                        "nodes[{i}].host_key {fp} is also the host key of {} (cloned nodes must get their own host keys)",
                        self.nodes[j].name
                    ),
                );
            } else {
                keys.insert(fp, i);
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
        for (field, message) in self.registry.problems() {
            v.push(&["registry", field], message);
        }
        if self.ssh.port == 0 {
            v.push(&["ssh", "port"], "ssh.port must not be 0".to_string());
        }
        for (key, value) in [
            ("command", self.ssh.timeouts.command),
            ("install", self.ssh.timeouts.install),
            ("copy_mib_per_s", self.ssh.timeouts.copy_mib_per_s),
        ] {
            if value == 0 {
                v.push(&["ssh", "timeouts", key], format!("ssh.timeouts.{key} must be positive"));
            }
        }
        if self.preflight.max_time_skew_seconds <= 0.0 {
            v.push(
                &["preflight", "max_time_skew_seconds"],
                "preflight.max_time_skew_seconds must be positive".into(),
            );
        }
    }
}

/// An SSH host key fingerprint as `ssh-keygen -l` prints it: `SHA256:` and the unpadded base64 of 32 bytes.
pub fn check_fingerprint(fp: &str) -> Result<(), String> {
    use base64::Engine;
    const HOW: &str = "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the node prints it)";
    let Some(b64) = fp.strip_prefix("SHA256:") else {
        return Err(if fp.starts_with("MD5:") || fp.contains(':') && fp.len() == 47 {
            format!("is an MD5 fingerprint: give the SHA256 one {HOW}")
        } else {
            format!("is not an SSH host key fingerprint like SHA256:AbC... {HOW}")
        });
    };
    match base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64) {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        _ => Err(format!(
            "is not a SHA256 fingerprint: SHA256: must be followed by 43 base64 characters {HOW}"
        )),
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

/// Is `name` a network interface name that is safe in a config file and a shell line (`ip addr del ... dev
/// NAME`)? The kernel allows more (up to 15 bytes, no `/`, `:` or white space); real NICs, bonds, bridges and
/// VLANs use these characters.
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
