//! The Redis cluster of the masters, as `airgap node redis-cluster` (create it, bring it to the layout, wait
//! until every replica is in sync; `--check` only looks) and `airgap node redis-failover` (the
//! `airgap-redis-failover` unit: after a master's reboot, its designated primary, back as a replica, takes its
//! place again with `CLUSTER FAILOVER`).
//!
//! The layout is a list of [`Pair`]s: a primary and its replica, on different masters. The password is read
//! from the instances' auth file (0600, written by the install), sent in `AUTH` and given to `redis-cli` in
//! its `REDISCLI_AUTH` environment variable: never on a command line.

use super::resp::{info_map, Conn};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The instances' password as redis-server reads it (`requirepass` / `masterauth`), 0600, root's.
pub const AUTH_FILE: &str = "/etc/airgap/redis/auth.conf";
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// The password line format of [`AUTH_FILE`] (redis-server gets the file on its stdin).
pub fn auth_conf(header: &str, password: &str) -> String {
    format!("# {header}\nrequirepass \"{password}\"\nmasterauth \"{password}\"\n")
}

/// Characters a password may have (it goes between double quotes in a redis config file, unescaped).
pub fn check_password(pw: &str) -> Result<(), String> {
    if pw.is_empty() || pw.len() > 512 {
        return Err("must have 1 to 512 characters".into());
    }
    if pw.chars().any(|c| !c.is_ascii_graphic() || c == '"' || c == '\\') {
        return Err("has a character a redis config file cannot hold unescaped: use printable ASCII without quotes, backslashes or spaces".into());
    }
    Ok(())
}

/// The password from an auth file.
pub fn read_password(path: &std::path::Path) -> Result<String> {
    let text = fs_err::read_to_string(path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("requirepass "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| anyhow!("{} has no requirepass line", path.display()))
}

/// A primary and the replica that follows it (`ip:port` each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub primary: String,
    pub replica: String,
}

impl std::str::FromStr for Pair {
    type Err = String;
    fn from_str(s: &str) -> Result<Pair, String> {
        let (p, r) = s.split_once('=').ok_or_else(|| format!("{s:?} is not PRIMARY=REPLICA"))?;
        for a in [p, r] {
            a.parse::<std::net::SocketAddrV4>().map_err(|_| format!("{a:?} is not IP:PORT"))?;
        }
        Ok(Pair { primary: p.into(), replica: r.into() })
    }
}

/// What one instance says about itself.
#[derive(Debug, Clone, Default)]
struct Instance {
    id: String,
    master: bool,
    /// The id of its primary (replicas).
    master_id: Option<String>,
    has_slots: bool,
    cluster_ok: bool,
    known_nodes: usize,
    slots_assigned: usize,
    /// Every node it knows: id → `ip:port`.
    peers: BTreeMap<String, String>,
    /// INFO replication.
    repl: BTreeMap<String, String>,
}

fn survey_one(addr: &str, pw: &str) -> Result<Instance> {
    let mut c = Conn::open(addr, pw, IO_TIMEOUT)?;
    let info = info_map(&c.text(&["CLUSTER", "INFO"])?);
    let nodes = c.text(&["CLUSTER", "NODES"])?;
    let repl = info_map(&c.text(&["INFO", "replication"])?);
    let mut me = Instance {
        cluster_ok: info.get("cluster_state").is_some_and(|s| s == "ok"),
        known_nodes: info.get("cluster_known_nodes").and_then(|n| n.parse().ok()).unwrap_or(0),
        slots_assigned: info.get("cluster_slots_assigned").and_then(|n| n.parse().ok()).unwrap_or(0),
        repl,
        ..Default::default()
    };
    // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> [<slot>...]
    for line in nodes.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let peer = f[1].split('@').next().unwrap_or_default().to_string();
        me.peers.insert(f[0].to_string(), peer);
        if f[2].split(',').any(|x| x == "myself") {
            me.id = f[0].into();
            me.master = f[2].split(',').any(|x| x == "master");
            me.master_id = (f[3] != "-").then(|| f[3].to_string());
            me.has_slots = f.len() > 8;
        }
    }
    if me.id.is_empty() {
        bail!("{addr}: CLUSTER NODES has no `myself` line (is cluster-enabled off?)");
    }
    Ok(me)
}

struct Survey {
    instances: BTreeMap<String, Result<Instance>>,
}

impl Survey {
    fn take(pairs: &[Pair], pw: &str) -> Survey {
        let addrs = pairs.iter().flat_map(|p| [p.primary.clone(), p.replica.clone()]);
        Survey { instances: addrs.map(|a| { let i = survey_one(&a, pw); (a, i) }).collect() }
    }
    fn get(&self, addr: &str) -> Option<&Instance> {
        self.instances.get(addr).and_then(|r| r.as_ref().ok())
    }
    /// Every instance alone (a new cluster).
    fn all_fresh(&self) -> bool {
        self.instances.values().all(|i| i.as_ref().is_ok_and(|i| i.known_nodes <= 1 && i.slots_assigned == 0))
    }
}

/// What differs from "the layout, healthy, every replica in sync" (empty: in place).
fn problems(pairs: &[Pair], s: &Survey) -> Vec<String> {
    let mut why = Vec::new();
    let n = pairs.len() * 2;
    for (addr, i) in &s.instances {
        match i {
            Err(e) => why.push(format!("{addr} does not answer: {}", crate::error::messages(e).join(": "))),
            Ok(i) if !i.cluster_ok || i.known_nodes != n => {
                why.push(format!("{addr}: cluster state {}, {} of {n} nodes known", if i.cluster_ok { "ok" } else { "not ok" }, i.known_nodes))
            }
            Ok(_) => {}
        }
    }
    for p in pairs {
        let (Some(pi), Some(ri)) = (s.get(&p.primary), s.get(&p.replica)) else { continue };
        if !pi.master || !pi.has_slots {
            why.push(format!("{} is not a primary with slots", p.primary));
        }
        if ri.master_id.as_deref() != Some(pi.id.as_str()) {
            why.push(format!("{} does not replicate {}", p.replica, p.primary));
            continue;
        }
        if let Some(lag) = sync_problem(pi, ri) {
            why.push(format!("{} is not in sync with {}: {lag}", p.replica, p.primary));
        }
    }
    why
}

/// `None` when the replica's link is up, its initial sync done, and it has everything the primary had sent
/// when the primary was surveyed.
fn sync_problem(primary: &Instance, replica: &Instance) -> Option<String> {
    let r = &replica.repl;
    let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    if get(r, "master_link_status") != "up" {
        return Some(format!("link {}", get(r, "master_link_status")));
    }
    if get(r, "master_sync_in_progress") != "0" {
        return Some("initial sync in progress".into());
    }
    let sent: i64 = get(&primary.repl, "master_repl_offset").parse().unwrap_or(i64::MAX);
    let got: i64 = get(r, "slave_repl_offset").parse().unwrap_or(-1);
    (got < sent).then(|| format!("offset {got} < the primary's {sent}"))
}

/// `redis-cli --cluster create` of the primaries (REDISCLI_AUTH in its environment).
fn create(pairs: &[Pair], pw: &str) -> Result<String> {
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.arg("--cluster").arg("create");
    cmd.args(pairs.iter().map(|p| &p.primary));
    cmd.args(["--cluster-replicas", "0", "--cluster-yes"]);
    cmd.env("REDISCLI_AUTH", pw).stdin(std::process::Stdio::null());
    let out = cmd.output().context("failed to run redis-cli (is redis-tools installed?)")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || text.contains("[ERR]") {
        bail!("redis-cli --cluster create failed:\n{text}");
    }
    Ok(text)
}

/// One step toward the layout from what the survey shows; returns what was done (empty: nothing to do).
fn converge_once(pairs: &[Pair], s: &Survey, pw: &str) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let entry = &pairs[0].primary;
    let (eh, ep) = entry.rsplit_once(':').expect("checked IP:PORT");
    for p in pairs {
        let (Some(pi), Some(ri)) = (s.get(&p.primary), s.get(&p.replica)) else { continue };
        if ri.known_nodes <= 1 && ri.slots_assigned == 0 {
            Conn::open(&p.replica, pw, IO_TIMEOUT)?.text(&["CLUSTER", "MEET", eh, ep])?;
            done.push(format!("{} met the cluster", p.replica));
        } else if pi.master && pi.has_slots && !ri.has_slots && ri.master_id.as_deref() != Some(pi.id.as_str()) {
            // the replica must know its primary before it can follow it (gossip: next round)
            if ri.peers.contains_key(&pi.id) {
                Conn::open(&p.replica, pw, IO_TIMEOUT)?.text(&["CLUSTER", "REPLICATE", &pi.id])?;
                done.push(format!("{} now replicates {}", p.replica, p.primary));
            }
        } else if !pi.master && ri.master && pi.master_id.as_deref() == Some(ri.id.as_str()) && sync_problem(ri, pi).is_none() {
            // the designated primary came back as its replica's replica: swap back
            Conn::open(&p.primary, pw, IO_TIMEOUT)?.text(&["CLUSTER", "FAILOVER"])?;
            done.push(format!("{} took over from {} (CLUSTER FAILOVER)", p.primary, p.replica));
        }
    }
    Ok(done)
}

fn wait_answering(addrs: &[&str], pw: &str, deadline: Instant) -> Result<()> {
    for a in addrs {
        loop {
            match Conn::open(a, pw, IO_TIMEOUT).and_then(|mut c| c.text(&["PING"])) {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => return Err(e.context(format!("{a} does not answer"))),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }
    Ok(())
}

/// `--check`: what differs (empty: the cluster is there, in the layout, every replica in sync). A replica a
/// few bytes behind is given two seconds to catch up before it counts.
pub fn check(pairs: &[Pair], pw: &str) -> Vec<String> {
    let mut why = problems(pairs, &Survey::take(pairs, pw));
    for _ in 0..8 {
        if why.is_empty() || !why.iter().all(|w| w.contains("not in sync")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        why = problems(pairs, &Survey::take(pairs, pw));
    }
    why
}

/// Create the cluster if none exists, bring it to the layout, and wait until every replica is in sync.
pub fn ensure(pairs: &[Pair], pw: &str, wait: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + wait;
    let addrs: Vec<&str> = pairs.iter().flat_map(|p| [p.primary.as_str(), p.replica.as_str()]).collect();
    wait_answering(&addrs, pw, deadline)?;
    let mut done = Vec::new();
    let s = Survey::take(pairs, pw);
    if s.all_fresh() {
        create(pairs, pw)?;
        done.push(format!("created the cluster of {}", pairs.iter().map(|p| p.primary.as_str()).collect::<Vec<_>>().join(" ")));
    } else if let Some((a, _)) = s.instances.iter().find(|(_, i)| i.as_ref().is_ok_and(|i| i.known_nodes > 1 && i.slots_assigned < 16384)) {
        return Err(anyhow!("{a} is in a cluster that does not cover the 16384 slots: airgap does not guess how to repair it"))
            .context("the Redis cluster is partly formed")
            .map_err(|e| crate::error::with_hint(e, "look at `redis-cli --cluster check` on a master (REDISCLI_AUTH set), then `redis-cli --cluster fix`, or reset every instance (CLUSTER RESET HARD) and install again"));
    }
    loop {
        let s = Survey::take(pairs, pw);
        let why = problems(pairs, &s);
        if why.is_empty() {
            return Ok(done);
        }
        if Instant::now() >= deadline {
            bail!("the Redis cluster is not in its layout after {}s: {}", wait.as_secs(), why.join("; "));
        }
        done.extend(converge_once(pairs, &s, pw)?);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The failover unit: when this master's designated primary is back as a replica, wait until it is in sync,
/// then `CLUSTER FAILOVER` on it and wait until it is the primary again.
pub fn failover(pair: &Pair, pw: &str, wait: Duration) -> Result<String> {
    let deadline = Instant::now() + wait;
    wait_answering(&[pair.primary.as_str()], pw, deadline)?;
    let mut asked = None::<Instant>;
    loop {
        let me = survey_one(&pair.primary, pw)?;
        if me.known_nodes <= 1 {
            return Ok(format!("{}: no cluster yet, nothing to do", pair.primary));
        }
        if me.master {
            return Ok(match asked {
                Some(t) => format!("{} is a primary again ({:.1}s after CLUSTER FAILOVER)", pair.primary, t.elapsed().as_secs_f64()),
                None => format!("{} is a primary: nothing to do", pair.primary),
            });
        }
        if Instant::now() >= deadline {
            bail!("{} is still a replica after {}s", pair.primary, wait.as_secs());
        }
        let in_sync = me.repl.get("master_link_status").is_some_and(|s| s == "up") && me.repl.get("master_sync_in_progress").is_some_and(|s| s == "0");
        // asked again after 30 s (a failover that timed out on the primary's side is simply retried)
        if in_sync && asked.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
            Conn::open(&pair.primary, pw, IO_TIMEOUT)?.text(&["CLUSTER", "FAILOVER"])?;
            asked = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_passwords_and_auth_files() {
        let p: Pair = "10.0.0.1:7000=10.0.0.2:7003".parse().unwrap();
        assert_eq!((p.primary.as_str(), p.replica.as_str()), ("10.0.0.1:7000", "10.0.0.2:7003"));
        assert!("10.0.0.1:7000".parse::<Pair>().is_err());
        assert!("host:7000=10.0.0.2:1".parse::<Pair>().is_err());
        assert!(check_password("s3cr#t-!").is_ok());
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(check_password(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.conf");
        fs_err::write(&f, auth_conf("Managed", "s3cr#t")).unwrap();
        assert_eq!(read_password(&f).unwrap(), "s3cr#t");
    }
}
