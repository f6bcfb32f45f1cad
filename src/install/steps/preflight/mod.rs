//! preflight: facts from every node in parallel (`airgap node facts --json`), then ALL checks evaluated here,
//! including cross-node ones (time skew, unique product_uuid / MAC / machine-id). Every problem is reported
//! together, per node, and nothing changes on any node.

use crate::node::facts::Facts;
use crate::install::actions::human_size;
use crate::install::{Action, Ctx, Step};
use crate::site::inventory::{Node, Role};
use crate::install::ssh::Transport;
use anyhow::Result;
use std::collections::BTreeMap;

mod disk;
mod external;
mod ports;
pub use disk::{landings, Landing, AIRGAP_DIR};
pub use ports::needed_ports;

pub struct Preflight;

/// Check names, usable in the inventory's `preflight.ignore` to turn a check into a warning.
pub const CHECKS: [&str; 13] = [
    "root", "cpu", "memory", "os", "arch", "address", "ports", "modules", "time", "identity", "disk", "reach", external::CHECK,
];

impl Step for Preflight {
    fn name(&self) -> &'static str {
        "preflight"
    }
    fn summary(&self) -> &'static str {
        "check every node before anything changes (root, CPU/RAM, OS/arch, free ports, swap, kernel modules, clocks, unique identities, disk)"
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let ports = needed_ports(ctx, node)
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let drbd = blocks(ctx, node).iter().map(|b| format!(", nfs.drbd_disk {b} a block device")).collect::<String>();
        Ok(vec![Action::Command {
            argv: facts_argv(ctx, node),
            check: None,
            why: format!(
                "gather facts; checked here: ports {ports} free (or held by airgap's own service there), the address on an interface, modules br_netfilter+overlay, swap, clock, identity, free space for {} plus preflight.min_free_disk_mb{drbd}",
                landings(ctx, node).iter().map(|l| format!("{} ({})", l.path, human_size(l.total()))).collect::<Vec<_>>().join(", ")
            ),
        }])
    }
    /// The node, the thresholds, the ports and what lands where: a new bundle (or airgap binary) checks again.
    fn inputs_hash(&self, ctx: &Ctx, node: &Node) -> Result<crate::digest::Digest> {
        let landing: Vec<(&str, u64)> = landings(ctx, node).iter().map(|l| (l.path, l.total())).collect();
        let json = serde_json::to_vec(&("preflight", node, &ctx.inv.preflight, needed_ports(ctx, node), landing, blocks(ctx, node)))?;
        Ok(crate::digest::Digest::of_bytes(&json))
    }
    /// Its inputs include the sizes of the bundle's files: `status`, which has no bundle, cannot compare them.
    fn uses_bundle(&self) -> bool {
        true
    }
    /// Preflight is done only when the journal says so: its checks describe the node BEFORE the later steps.
    fn check_without_journal(&self) -> bool {
        false
    }
    fn check(&self, _ctx: &Ctx, _node: &Node, _t: &dyn Transport) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn before(&self, ctx: &Ctx, pending: &[(&Node, &dyn Transport)]) -> Result<()> {
        let gathered: Vec<(String, Result<(Facts, i64)>)> = std::thread::scope(|s| {
            let hs: Vec<_> = pending
                .iter()
                .map(|(n, t)| {
                    let argv = facts_argv(ctx, n);
                    (n.name.clone(), s.spawn(move || crate::install::facts::fetch_with(*t, &argv)))
                })
                .collect();
            hs.into_iter()
                .map(|(n, h)| (n, h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))))
                .collect()
        });
        let mut facts = BTreeMap::new();
        let mut report = Report::new(&ctx.inv.preflight.ignore);
        for (name, r) in gathered {
            match r {
                Ok(f) => {
                    facts.insert(name, f);
                }
                Err(e) => report.add(&name, "reach", format!("{e:#}")),
            }
        }
        evaluate(ctx, &facts, &mut report);
        external::check(ctx, pending, &mut report);
        for w in &report.warnings {
            (ctx.warn)(w);
        }
        if report.problems.is_empty() {
            return Ok(());
        }
        let nodes: std::collections::BTreeSet<&str> = report.problems.iter().map(|(n, _)| n.as_str()).collect();
        let mut msg = format!(
            "preflight found {} problem{} on {} node{}; nothing was changed:",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" },
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        );
        for (n, p) in &report.problems {
            msg.push_str(&format!("\n  {n}: {p}"));
        }
        Err(crate::error::with_hint(
            anyhow::anyhow!(msg),
            format!("fix these and run the same command again; to accept a problem, list its check in the inventory's preflight.ignore ({})", CHECKS.join(", ")),
        ))
    }
    fn apply(&self, _ctx: &Ctx, _n: &Node, _t: &dyn Transport, _p: &dyn Fn(&str)) -> Result<Vec<String>> {
        Ok(vec!["all checks passed".into()])
    }
}

/// The block devices preflight asks a node about: `nfs.drbd_disk` on master1 and master2 (with the NFS VIP).
pub fn blocks(ctx: &Ctx, node: &Node) -> Vec<String> {
    match (&ctx.inv.nfs.drbd_disk, ctx.inv.vips.nfs) {
        (Some(d), Some(_)) if ctx.inv.masters().take(2).any(|m| m.name == node.name) => vec![d.clone()],
        _ => vec![],
    }
}

/// The `airgap node facts` command line of this node's preflight: its landing file systems and block devices.
fn facts_argv(ctx: &Ctx, node: &Node) -> Vec<String> {
    let disks: Vec<String> = landings(ctx, node).iter().map(Landing::spec).collect();
    let mut argv = crate::install::facts::facts_cmd(&disks);
    for b in blocks(ctx, node) {
        argv.extend(["--block".to_string(), b]);
    }
    argv
}

struct Report<'a> {
    ignore: &'a [String],
    problems: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl<'a> Report<'a> {
    fn new(ignore: &'a [String]) -> Self {
        Report {
            ignore,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }
    fn add(&mut self, node: &str, check: &str, msg: String) {
        if self.ignore.iter().any(|i| i == check) {
            self.warnings
                .push(format!("{node}: {msg} (ignored: preflight.ignore has {check})"));
        } else {
            self.problems.push((node.to_string(), msg));
        }
    }
    fn warn(&mut self, node: &str, msg: String) {
        self.warnings.push(format!("{node}: {msg}"));
    }
}

fn family(f: &Facts) -> Option<&'static str> {
    let ids: Vec<&str> = std::iter::once(f.os_id.as_str())
        .chain(f.os_like.iter().map(String::as_str))
        .collect();
    if ids.iter().any(|i| *i == "debian" || *i == "ubuntu") {
        Some("debian")
    } else if ids
        .iter()
        .any(|i| ["rhel", "centos", "fedora", "rocky", "almalinux", "ol"].contains(i))
    {
        Some("rhel")
    } else {
        None
    }
}

/// What the bundle offers the nodes: images for some platforms, OS packages for some OS tags.
struct BundleTargets {
    /// `linux/amd64`... as the bundle's root document lists them.
    platforms: Vec<String>,
    /// The same, as `uname -m` names (`x86_64`, `aarch64`...).
    machines: Vec<&'static str>,
    /// The OS tags its packages are filed under (`debian-12`, `el7`...); empty when it carries none.
    os_tags: Vec<String>,
}

/// `linux/amd64` -> `x86_64`: the `uname -m` name of a platform's architecture.
fn uname_machine(platform: &str) -> &'static str {
    match platform.split('/').nth(1).unwrap_or("") {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "armv7l",
        "386" => "i686",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => "unknown",
    }
}

/// What the bundle's verified root document (the kit, read when --bundle is given) offers the nodes.
fn bundle_targets(ctx: &Ctx) -> Option<BundleTargets> {
    let root = ctx.kit?.root();
    let mut os_tags: Vec<String> = root.packages.iter().map(|p| p.os.clone()).collect();
    os_tags.sort();
    os_tags.dedup();
    Some(BundleTargets {
        machines: root.platforms.iter().map(|p| uname_machine(p)).collect(),
        platforms: root.platforms.clone(),
        os_tags,
    })
}

fn evaluate(ctx: &Ctx, facts: &BTreeMap<String, (Facts, i64)>, r: &mut Report) {
    let pf = &ctx.inv.preflight;
    let local_arch = std::env::consts::ARCH;
    let bundle = bundle_targets(ctx);
    let first_family = ctx
        .inv
        .nodes
        .iter()
        .find_map(|n| facts.get(&n.name))
        .and_then(|(f, _)| family(f));
    for node in &ctx.inv.nodes {
        let Some((f, _)) = facts.get(&node.name) else {
            continue;
        };
        let n = node.name.as_str();
        if f.euid != 0 {
            r.add(
                n,
                "root",
                format!(
                    "not running as root (euid {}): the installer needs root on every node (ssh.user root)",
                    f.euid
                ),
            );
        }
        if node.role == Role::Master && f.cpus < pf.master_min_cpus {
            r.add(
                n,
                "cpu",
                format!(
                    "{} CPU{}, a master needs at least {} (preflight.master_min_cpus)",
                    f.cpus,
                    if f.cpus == 1 { "" } else { "s" },
                    pf.master_min_cpus
                ),
            );
        }
        let (min_mem, key) = match node.role {
            Role::Master => (pf.master_min_memory_mb, "master_min_memory_mb"),
            Role::Worker => (pf.worker_min_memory_mb, "worker_min_memory_mb"),
        };
        if f.memory_mb < min_mem {
            r.add(
                n,
                "memory",
                format!(
                    "{} MB of RAM, a {} needs at least {min_mem} MB (preflight.{key})",
                    f.memory_mb, node.role
                ),
            );
        }
        match family(f) {
            None => r.add(
                n,
                "os",
                format!(
                    "unsupported OS {:?} (ID={}): supported are the Debian and RHEL families",
                    f.os_pretty, f.os_id
                ),
            ),
            Some(fam) if Some(fam) != first_family => r.add(
                n,
                "os",
                format!(
                    "OS family {fam} ({}) differs from the other nodes' ({}): the bundle carries one family's packages",
                    f.os_pretty,
                    first_family.unwrap_or("?")
                ),
            ),
            _ => {}
        }
        if f.arch != local_arch {
            r.add(
                n,
                "arch",
                format!(
                    "architecture {} does not match this installer and bundle ({local_arch})",
                    f.arch
                ),
            );
        }
        if let Some(b) = &bundle {
            if !b.machines.contains(&f.arch.as_str()) {
                r.add(
                    n,
                    "arch",
                    format!(
                        "architecture {} has no images in the bundle (it carries {})",
                        f.arch,
                        b.platforms.join(", ")
                    ),
                );
            }
            let (_, tags) = crate::node::packages::os_tags_for(&f.os_id, &f.os_like, &f.os_version);
            if !b.os_tags.is_empty() && !tags.iter().any(|t| b.os_tags.contains(t)) {
                r.add(
                    n,
                    "os",
                    format!(
                        "{} ({}) has no OS packages in the bundle (it carries packages for {}); build the bundle with a packages: section for {}",
                        f.os_pretty,
                        tags.first().map_or("?", String::as_str),
                        b.os_tags.join(", "),
                        tags.last().map_or("?", String::as_str)
                    ),
                );
            }
        }
        if ctx.inv.redis.enabled && node.role == crate::site::inventory::Role::Master {
            let (_, tags) = crate::node::packages::os_tags_for(&f.os_id, &f.os_like, &f.os_version);
            if tags.iter().any(|t| t == "el7") {
                r.add(
                    n,
                    "os",
                    format!(
                        "{} cannot run the Redis cluster: its units need systemd 236 or newer (the password reaches redis-server on its stdin, `StandardInput=file:`) and cluster tooling from Redis 5 or newer; el7 has systemd 219 and Redis 3.2. Put the masters on el8 or newer, or remove the inventory's `redis:` section",
                        f.os_pretty
                    ),
                );
            }
        }
        // the VIPs go on the interface that holds the node's address (unless the inventory names one)
        match (f.interface_holding(node.address), &node.interface) {
            (None, _) => r.add(
                n,
                "address",
                format!(
                    "its inventory address {} is on none of its interfaces ({}): the VIPs and the cluster use that address",
                    node.address,
                    f.addresses_text()
                ),
            ),
            (Some(_), Some(want)) if !f.has_interface(want) => r.add(
                n,
                "address",
                format!("it has no interface {want:?} (the inventory's `interface:`); it has {}", f.interface_names().join(", ")),
            ),
            _ => {}
        }
        ports::check(ctx, node, f, r);
        for (m, ok, how) in &f.modules {
            if !ok {
                r.add(n, "modules", format!("kernel module {m} is not available ({how})"));
            }
        }
        if !f.swaps.is_empty() {
            r.warn(
                n,
                format!(
                    "swap is on ({}): os-prepare turns it off and comments it out of /etc/fstab",
                    f.swaps.join(", ")
                ),
            );
        }
        disk::check(ctx, node, f, r);
        for (path, kind) in &f.blocks {
            if kind != crate::node::facts::BLOCK_DEVICE {
                r.add(n, "disk", format!("nfs.drbd_disk {path} is {kind} here, not a block device: DRBD mirrors a disk or partition between master1 and master2"));
            }
        }
        if f.hostname != node.name {
            r.warn(n, format!("hostname is {:?}: os-prepare sets it to {n}", f.hostname));
        }
    }
    // clocks: against the median offset of all nodes
    let mut offs: Vec<i64> = facts.values().map(|(_, o)| *o).collect();
    offs.sort_unstable();
    if let Some(&median) = offs.get(offs.len() / 2) {
        for (n, (_, o)) in facts {
            let d = (*o - median) as f64 / 1000.0;
            if d.abs() > pf.max_time_skew_seconds {
                r.add(
                    n,
                    "time",
                    format!(
                        "clock is {:.1} s {} the other nodes' (max {} s): sync the clocks (chrony/ntp) first",
                        d.abs(),
                        if d > 0.0 { "ahead of" } else { "behind" },
                        pf.max_time_skew_seconds
                    ),
                );
            }
        }
    }
    // identities must be unique (cloned VMs share them; kubelet and etcd need them distinct)
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for node in &ctx.inv.nodes {
        let Some((f, _)) = facts.get(&node.name) else {
            continue;
        };
        let mut ids = vec![];
        if let Some(u) = &f.product_uuid {
            ids.push(("product_uuid", u.clone()));
        }
        if let Some(m) = &f.machine_id {
            ids.push(("machine-id", m.clone()));
        }
        ids.extend(f.macs.iter().map(|(_, m)| ("MAC", m.clone())));
        for (kind, v) in ids {
            match seen.get(&(kind.to_string(), v.clone())) {
                Some(other) if other != &node.name => r.add(
                    &node.name,
                    "identity",
                    format!("{kind} {v} is also {other}'s (a cloned machine?): every node needs its own"),
                ),
                _ => {
                    seen.insert((kind.to_string(), v), node.name.clone());
                }
            }
        }
    }
    let mut hostnames: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (n, (f, _)) in facts {
        hostnames.entry(f.hostname.as_str()).or_default().push(n);
    }
    for (h, ns) in hostnames.iter().filter(|(_, ns)| ns.len() > 1) {
        r.warn(
            &ns.join(", "),
            format!("share the hostname {h:?}: os-prepare gives each its inventory name"),
        );
    }
}

#[cfg(test)]
mod tests;
