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
        for (key, vip) in self.vips.all() {
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
        let ids = self.vips.router_ids();
        for (i, (key, id)) in ids.iter().enumerate() {
            if *id == 0 {
                v.push(&["vips", *key], format!("vips.{key} must be 1-255 (VRRP router id), not 0"));
            } else if let Some((other, _)) = ids[..i].iter().find(|(_, o)| o == id) {
                v.push(
                    &["vips", *key],
                    format!("vips.{key} {id} equals vips.{other}: each VIP needs its own VRRP router id"),
                );
            }
        }
        let vips = self.vips.all();
        for (i, (key, vip)) in vips.iter().enumerate() {
            if let Some((other, _)) = vips[..i].iter().find(|(_, o)| o == vip) {
                v.push(
                    &["vips", *key],
                    format!("vips.{key} {vip} equals vips.{other}: the two VIPs must differ"),
                );
            }
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
        if let Err(why) = check_nfs_path(&self.nfs.path) {
            v.push(&["nfs", "path"], format!("nfs.path {:?} {why}", self.nfs.path));
        }
        if let Some(d) = &self.nfs.drbd_disk {
            if !d.starts_with("/dev/") || d.len() == 5 || !is_safe_path(d) {
                v.push(
                    &["nfs", "drbd_disk"],
                    format!("nfs.drbd_disk {d:?} must be a block device under /dev/ (e.g. /dev/sdb); preflight checks that it is one on master1 and master2"),
                );
            }
            if self.vips.nfs.is_none() {
                v.push(&["nfs", "drbd_disk"], "nfs.drbd_disk is set but vips.nfs is not: DRBD serves NFS on the NFS VIP".into());
            }
        }
        if self.vips.nfs.is_some() && self.masters().count() < 2 {
            v.push(&["vips", "nfs"], "vips.nfs needs two masters (master1 and master2 serve NFS)".into());
        }
        if !is_docker_size(&self.runtime.docker_log_max_size) {
            v.push(
                &["runtime", "docker_log_max_size"],
                format!("runtime.docker_log_max_size {:?} is not a size docker takes, like 100m, 512k or 1g", self.runtime.docker_log_max_size),
            );
        }
        if self.runtime.docker_log_max_file == 0 {
            v.push(&["runtime", "docker_log_max_file"], "runtime.docker_log_max_file must be at least 1".into());
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
        self.validate_services(v);
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

impl Inventory {
    /// The `redis:` and `housekeeping:` sections.
    fn validate_services(&self, v: &mut Validator) {
        let r = &self.redis;
        if r.enabled {
            match (&r.password_env, &r.password_file) {
                (None, None) => v.push(
                    &["redis"],
                    "redis: the Redis cluster needs a password source: set redis.password_env (an environment variable) or redis.password_file (a file on this machine), or redis.enabled: false".into(),
                ),
                (Some(_), Some(_)) => v.push(&["redis", "password_file"], "redis: give either password_env or password_file, not both".into()),
                (Some(e), None) if e.is_empty() || !e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    v.push(&["redis", "password_env"], format!("redis.password_env {e:?} is not an environment variable name"))
                }
                _ => {}
            }
            if r.node_timeout_ms < 1000 {
                v.push(&["redis", "node_timeout_ms"], format!("redis.node_timeout_ms {} is below 1000: replicas would take over on any hiccup", r.node_timeout_ms));
            }
            if self.masters().count() != 3 {
                v.push(&["redis"], format!("redis: the Redis cluster runs two instances on each of exactly 3 masters; the inventory has {}", self.masters().count()));
            }
        }
        let h = &self.housekeeping;
        if h.log_days == 0 {
            v.push(&["housekeeping", "log_days"], "housekeeping.log_days must be at least 1".into());
        }
        if h.cut_mb == 0 {
            v.push(&["housekeeping", "cut_mb"], "housekeeping.cut_mb must be at least 1".into());
        }
        for (i, d) in h.log_dirs.iter().enumerate() {
            let ok = d.starts_with('/') && d != "/" && !d.contains("..") && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
            if !ok {
                v.push(&["housekeeping", "log_dirs", &i.to_string()], format!("housekeeping.log_dirs[{i}] {d:?} must be an absolute directory (not /) of letters, digits and /._-"));
            }
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

/// An NFS export path: absolute, normal (no `.`/`..`/empty segment), no character that /etc/exports, a
/// mount unit or a shell line would read differently (white space, quotes, `#`, `$`...), not `/`.
pub fn check_nfs_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must be an absolute path (it is exported by master1 and master2 and mounted there)");
    }
    if p == "/" || p.ends_with('/') && p.len() > 1 {
        return Err("must name a directory below / without a trailing '/'");
    }
    if !is_safe_path(p) {
        return Err("must be a normal path (no '.', '..' or empty segments) of letters, digits and . _ - / only");
    }
    Ok(())
}

/// An absolute path of `[A-Za-z0-9._-]` segments, none empty, `.` or `..`: safe in config files and shell lines.
fn is_safe_path(p: &str) -> bool {
    p.starts_with('/')
        && p[1..].split('/').all(|seg| {
            !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// docker's size syntax for json-file's `max-size`: digits and an optional k, m or g.
fn is_docker_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['k', 'm', 'g', 'K', 'M', 'G']);
    s.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && digits != "0".repeat(digits.len())
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
