//! The `redis` and `housekeeping` steps in the lab, with real daemons: redis-server (and keepalived, haproxy
//! for apiserver-lb) installed offline from a bundle built by `airgap build` (Debian packages from this
//! machine's apt mirror, closure against the lab rootfs). Proves: 6 instances, each replica on another master
//! than its primary, in sync; the password nowhere but the 0600 auth file; every unit passes
//! `systemd-analyze verify` on a node; writes acknowledged by a replica (`WAIT 1`) survive the loss of a
//! master (time until writes succeed again measured); after the master's reboot the failover unit restores
//! the layout and keepalived starts only after its boot delay; a second install changes nothing.

use crate::support::lab::Lab;
use crate::support::{airgap_bin, require_tool, run_ok};
use airgap::node::resp::{Conn, Reply};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const PW: &str = "lab-Redis-pw-5e1f";
const IO: Duration = Duration::from_millis(800);

fn airgap(args: &[&str]) -> Output {
    Command::new(airgap_bin()).args(args).env("AIRGAP_TEST_REDIS_PW", PW).stdin(Stdio::null()).output().unwrap()
}

fn ok(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "failed:\n{text}");
    text
}

/// A cluster client that follows MOVED redirections (connections by address, reopened on failure).
struct Cluster {
    conns: BTreeMap<String, Conn>,
    seeds: Vec<String>,
}

impl Cluster {
    fn new(seeds: Vec<String>) -> Cluster {
        Cluster { conns: BTreeMap::new(), seeds }
    }
    fn conn(&mut self, addr: &str) -> Option<&mut Conn> {
        if !self.conns.contains_key(addr) {
            let c = Conn::open(addr, PW, IO).ok()?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns.get_mut(addr)
    }
    /// Run `args` on the instance that owns its key; `then` runs on the same connection. `None` on failure.
    fn on_owner(&mut self, args: &[&str], then: Option<&[&str]>) -> Option<(Reply, Option<Reply>)> {
        let mut addr = self.seeds.iter().find(|s| self.conns.contains_key(*s)).cloned().unwrap_or_else(|| self.seeds[0].clone());
        for attempt in 0..(self.seeds.len() + 3) {
            let Some(c) = self.conn(&addr) else {
                addr = self.seeds[(attempt + 1) % self.seeds.len()].clone();
                continue;
            };
            match c.cmd(args) {
                Ok(Reply::Error(e)) if e.starts_with("MOVED ") => addr = e.split_whitespace().nth(2)?.to_string(),
                Ok(r) => {
                    let t = match then {
                        Some(t) => Some(c.cmd(t).ok()?),
                        None => None,
                    };
                    return Some((r, t));
                }
                Err(_) => {
                    self.conns.remove(&addr);
                    addr = self.seeds[(attempt + 1) % self.seeds.len()].clone();
                }
            }
        }
        None
    }
    /// SET, then WAIT 1: acknowledged only when a replica has it.
    fn set_acked(&mut self, k: &str, v: &str) -> bool {
        matches!(self.on_owner(&["SET", k, v], Some(&["WAIT", "1", "2000"])), Some((Reply::Simple(s), Some(Reply::Int(n)))) if s == "OK" && n >= 1)
    }
    fn set(&mut self, k: &str, v: &str) -> bool {
        matches!(self.on_owner(&["SET", k, v], None), Some((Reply::Simple(s), _)) if s == "OK")
    }
    fn get(&mut self, k: &str) -> Option<String> {
        match self.on_owner(&["GET", k], None)? {
            (Reply::Bulk(Some(b)), _) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }
}

/// Each instance's role as it says itself: addr → (is primary, its primary's addr).
fn roles(addrs: &[String]) -> BTreeMap<String, (bool, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut ids = BTreeMap::new();
    let mut masters = BTreeMap::new();
    for a in addrs {
        let Ok(mut c) = Conn::open(a, PW, IO) else { continue };
        let Ok(nodes) = c.text(&["CLUSTER", "NODES"]) else { continue };
        for l in nodes.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            ids.insert(f[0].to_string(), f[1].split('@').next().unwrap().to_string());
            if f[2].contains("myself") {
                masters.insert(a.clone(), (f[2].contains("master"), (f[3] != "-").then(|| f[3].to_string())));
            }
        }
    }
    for (a, (m, id)) in masters {
        out.insert(a, (m, id.and_then(|i| ids.get(&i).cloned())));
    }
    out
}

fn host(addr: &str) -> &str {
    addr.split(':').next().unwrap()
}

/// Every instance answers, 3 primaries on 3 different masters, each replica on another master than its primary.
fn balanced(addrs: &[String]) -> Result<(), String> {
    let r = roles(addrs);
    if r.len() != 6 {
        return Err(format!("{} of 6 answer: {r:?}", r.len()));
    }
    let primaries: Vec<&String> = r.iter().filter(|(_, v)| v.0).map(|(a, _)| a).collect();
    let mut hosts: Vec<&str> = primaries.iter().map(|a| host(a)).collect();
    hosts.dedup();
    if primaries.len() != 3 || hosts.len() != 3 {
        return Err(format!("primaries {primaries:?}"));
    }
    for (a, (m, p)) in &r {
        if !m && p.as_deref().is_none_or(|p| host(p) == host(a)) {
            return Err(format!("{a} replicates {p:?}"));
        }
    }
    Ok(())
}

/// Seconds from the node's systemd start to `unit` becoming active (both on the same monotonic clock).
fn started_after_boot(lab: &Lab, node: &str, unit: &str) -> f64 {
    let boot = lab.exec(node, "systemctl show -p UserspaceTimestampMonotonic --value");
    let unit = lab.exec(node, &format!("systemctl show -p ActiveEnterTimestampMonotonic --value {unit}"));
    (unit.trim().parse::<f64>().unwrap() - boot.trim().parse::<f64>().unwrap()) / 1e6
}

#[test]
fn redis_cluster_and_housekeeping_in_the_lab_survive_a_master_loss_and_reboot() {
    let _slot = crate::support::lab_slot();
    for t in ["systemd-nspawn", "debootstrap", "ssh", "apt-get", "nsenter"] {
        require_tool(t);
    }
    let Some(lab) = Lab::up(5) else { return };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let rootfs = Path::new("/var/cache/airgap-lab/rootfs-bookworm");
    assert!(!rootfs.join("usr/bin/redis-server").exists(), "the lab rootfs must not contain redis-server");
    let closure = run_ok(Command::new("bash").arg(format!("{REPO}/scripts/deb-closure.sh")).arg("--rootfs").arg(rootfs).args(["redis-server", "keepalived", "haproxy"]));
    fs_err::write(w.join("manifest.yaml"), format!("name: redis-lab\nversion: 1.0.0\n{}", String::from_utf8_lossy(&closure.stdout))).unwrap();
    ok(&airgap(&["keygen", "--out-dir", w.join("keys").to_str().unwrap()]));
    ok(&airgap(&["build", w.join("manifest.yaml").to_str().unwrap(), "--out", w.join("out").to_str().unwrap(), "--key", w.join("keys/airgap.key").to_str().unwrap(), "--cache-dir", w.join("cache").to_str().unwrap()]));
    let bundle = w.join("out/redis-lab-1.0.0.tar.zst");
    let site = w.join("site.yaml");
    lab.inventory(&site, "redis:\n  password_env: AIRGAP_TEST_REDIS_PW\nhousekeeping:\n  keepalived_boot_delay_secs: 15\n");
    let inv = fs_err::read_to_string(&site).unwrap().replace("    role: master\n", "    role: master\n    interface: eth0\n").replace("    role: worker\n", "    role: worker\n    interface: eth0\n");
    fs_err::write(&site, inv).unwrap();
    let (logs, state) = (w.join("log"), w.join("state"));
    let install = |only: &str| {
        airgap(&["install", "-i", site.to_str().unwrap(), "--bundle", bundle.to_str().unwrap(), "--pubkey", w.join("keys/airgap.pub").to_str().unwrap(), "--only", only, "--state-dir", state.to_str().unwrap(), "--log-dir", logs.to_str().unwrap()])
    };
    ok(&install("preflight,os-prepare,distribute"));
    let t0 = Instant::now();
    let first = ok(&install("apiserver-lb,redis,housekeeping"));
    let install_secs = t0.elapsed().as_secs_f64();
    eprintln!("install took {install_secs:.1}s:\n{first}");

    let masters = ["master1", "master2", "master3"];
    let addrs: Vec<String> = masters.iter().enumerate().flat_map(|(i, m)| [format!("{}:{}", lab.address(m), 7000 + 2 * i), format!("{}:{}", lab.address(m), 7001 + 2 * i)]).collect();
    // the password: only in the 0600 auth file; not in argv, the plan, the log or the journal
    for m in masters {
        let out = lab.exec(m, "stat -c '%a %U' /etc/airgap/redis/auth.conf; ps -eo args | grep [r]edis-server; systemctl is-active airgap-log-cleanup.timer airgap-log-cut.timer airgap-redis-failover; systemctl is-enabled redis-server || true");
        assert!(out.starts_with("600 root\n"), "{m}: {out}");
        assert!(!out.contains(PW) && out.lines().filter(|l| l.starts_with("/usr/bin/redis-server ")).count() == 2, "{m}: {out}");
        assert!(out.contains("active\nactive\nactive\ndisabled"), "{m}: {out}");
    }
    let plan = ok(&airgap(&["plan", "-i", site.to_str().unwrap()]));
    assert!(plan.contains("<secret>") && !plan.contains(PW));
    for f in fs_err::read_dir(&logs).unwrap() {
        assert!(!fs_err::read_to_string(f.unwrap().path()).unwrap().contains(PW), "the install log holds the password");
    }
    assert!(!fs_err::read_to_string(state.join("journal.json")).unwrap().contains(PW));
    // every unit passes systemd-analyze verify on a node (keepalived with its delayed-start drop-in)
    let verify = lab.script(&["exec", "master1", "systemd-analyze", "verify", "--man=no", "airgap-redis@7000.service", "airgap-redis-failover.service", "airgap-log-cleanup.service", "airgap-log-cleanup.timer", "airgap-log-cut.service", "airgap-log-cut.timer", "keepalived.service"]);
    assert!(verify.status.success(), "systemd-analyze verify: {}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    // the log cleanup deletes what is old, keeps what is not
    lab.exec("master2", "mkdir -p /var/log/pods/ns_p_u/c && echo old > /var/log/pods/ns_p_u/c/0.log && touch -d '11 days ago' /var/log/pods/ns_p_u/c/0.log && echo new > /var/log/pods/ns_p_u/c/1.log && systemctl start airgap-log-cleanup.service");
    assert_eq!(lab.exec("master2", "ls /var/log/pods/ns_p_u/c"), "1.log\n");
    balanced(&addrs).unwrap();

    // writes acknowledged by a replica
    let mut cl = Cluster::new(addrs.clone());
    let mut acked = Vec::new();
    for i in 0..300 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        if cl.set_acked(&k, &v) {
            acked.push((k, v));
        }
    }
    assert_eq!(acked.len(), 300, "every write is acknowledged by a replica on a healthy cluster");
    // a key of master1's primary (7000)
    let mut direct = Conn::open(&addrs[0], PW, IO).unwrap();
    let probe = (0..1000).map(|i| format!("probe{i}")).find(|k| direct.cmd(&["SET", k, "x"]).unwrap() == Reply::Simple("OK".into())).unwrap();

    // master1 lost (both its instances)
    let t = Instant::now();
    lab.stop_node("master1");
    let mut cl = Cluster::new(addrs[2..].to_vec());
    while !cl.set(&probe, "after") {
        assert!(t.elapsed() < Duration::from_secs(40), "no write to master1's slots 40 s after its loss: {:?}", roles(&addrs));
        std::thread::sleep(Duration::from_millis(100)); // poll period
    }
    let outage = t.elapsed();
    let lost: Vec<_> = acked.iter().filter(|(k, v)| cl.get(k).as_deref() != Some(v.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // master1 back: its primary takes over again (the failover unit), keepalived waited its boot delay
    let t = Instant::now();
    lab.start_node("master1");
    let booted = t.elapsed();
    while balanced(&addrs).is_err() || !roles(&addrs).get(&addrs[0]).is_some_and(|r| r.0) {
        assert!(t.elapsed() < Duration::from_secs(120), "the layout is not restored 120 s after master1's reboot: {:?}", roles(&addrs));
        std::thread::sleep(Duration::from_millis(200)); // poll period
    }
    let restored = t.elapsed();
    let journal = lab.exec("master1", "journalctl -b -u airgap-redis-failover --no-pager -o cat");
    assert!(journal.contains("is a primary again"), "{journal}");
    while lab.exec("master1", "systemctl is-active keepalived || true").trim() != "active" {
        assert!(t.elapsed() < Duration::from_secs(120), "keepalived is not active after master1's reboot");
        std::thread::sleep(Duration::from_millis(200)); // poll period
    }
    let ka = started_after_boot(&lab, "master1", "keepalived");
    // boot-delay counts from PID 1's start; systemd's own start timestamp (the reference here) is a little later
    assert!(ka >= 14.0, "keepalived started {ka:.1}s after boot, before its 15 s delay");
    let mut cl = Cluster::new(addrs.clone());
    let lost: Vec<_> = acked.iter().filter(|(k, v)| cl.get(k).as_deref() != Some(v.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged writes lost after the reboot: {lost:?}");
    assert_eq!(cl.get(&probe).as_deref(), Some("after"));

    // install again: nothing to do
    let again = ok(&install("apiserver-lb,redis,housekeeping"));
    assert!(again.contains("0 node-steps applied") || again.contains("0 node-step applied"), "{again}");
    let report = format!(
        "redis+housekeeping install (3 masters, 5 nodes) {install_secs:.1}s\nwrites to the lost master's slots succeed again after {:.2}s (cluster-node-timeout 5000 ms)\n300/300 writes acknowledged by a replica (WAIT 1), 0 lost\nafter master1's reboot (node up in {:.1}s) the layout is restored {:.1}s after the start; keepalived started {ka:.1}s after boot (delay 15 s)\n",
        outage.as_secs_f64(), booted.as_secs_f64(), restored.as_secs_f64()
    );
    eprintln!("MEASURED\n{report}");
    let _ = fs_err::write(format!("{REPO}/target/redis-failover.txt"), &report);
    lab.down();
}
