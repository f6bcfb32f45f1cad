//! Host keys: every node's SSH host key is known and checked before anything is sent to it.
//!
//! Before any connection that authenticates, each node's host keys are fetched with `ssh-keyscan` (a key
//! exchange only: no user name, key or password leaves this machine) on the inventory's port and compared
//! with, in order:
//! 1. the fingerprint pinned in the inventory (`host_key: SHA256:...` on the node): one of the keys the node
//!    presents must have it, whatever the state dir holds;
//! 2. else the key recorded on an earlier contact in `<state dir>/ssh/known_hosts` (one line per node, by
//!    node name; lines an older airgap wrote by address are still honoured);
//! 3. else this is the first contact: the node's preferred key (ED25519, ECDSA, then RSA) is trusted, printed
//!    with its fingerprint and the inventory lines that pin it, and recorded.
//!
//! A node presenting another key is a hard error naming the node and both fingerprints; no node is
//! authenticated to in that run. The accepted key of each node then goes into this run's own known_hosts
//! (in the private run directory, see `openssh`), and every ssh of the run uses exactly that file
//! (`StrictHostKeyChecking=yes`, `GlobalKnownHostsFile=/dev/null`, `HostKeyAlias=<node>`, `-F /dev/null`,
//! `HostKeyAlgorithms` of the accepted key's type): ssh itself refuses any other key during the key
//! exchange, before authentication, so a host that swaps keys between the scan and the connection gets
//! nothing either.
//!
//! Why `ssh-keyscan` rather than ssh's `KnownHostsCommand`: it exists on every OpenSSH the deploy machine may
//! have (`KnownHostsCommand` needs 8.5), shows every key a node offers (to print on first contact and to
//! find a pinned one of any type) and keeps the decision in airgap, where the error can name both
//! fingerprints; ssh is still the one that enforces it on the real connection.
//!
//! A re-installed node (new keys) is accepted again with `airgap hostkey forget NODE` (its record goes; the
//! next install trusts it on first use and prints its fingerprint) or by pinning its new fingerprint.

use super::openssh::{unreachable, Unreachable};
use super::process;
use crate::site::inventory::{Inventory, Node};
use anyhow::{bail, Context, Result};
use base64::Engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A public host key as ssh-keyscan and known_hosts give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    kind: String,
    blob: Vec<u8>,
}

impl HostKey {
    /// From a known_hosts key type and its base64 blob (whose own type field must agree).
    pub fn parse(kind: &str, b64: &str) -> Result<HostKey> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("malformed {kind} host key (not base64)"))?;
        let inner = blob
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n));
        if inner != Some(kind.as_bytes()) {
            bail!("malformed host key: the {kind} line holds a key of another type");
        }
        Ok(HostKey { kind: kind.to_string(), blob })
    }

    /// The key type as known_hosts names it (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&self.blob);
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(d))
    }

    /// The type as `ssh-keygen -l` shows it: ED25519, ECDSA, RSA.
    pub fn label(&self) -> String {
        match self.kind.as_str() {
            "ssh-ed25519" => "ED25519".into(),
            k if k.starts_with("ecdsa-sha2-") => "ECDSA".into(),
            "ssh-rsa" => "RSA".into(),
            k => k.to_uppercase(),
        }
    }

    /// `SHA256:... (ED25519)`
    pub fn describe(&self) -> String {
        format!("{} ({})", self.fingerprint(), self.label())
    }

    /// The `HostKeyAlgorithms` that make ssh negotiate this key.
    pub fn algorithms(&self) -> String {
        match self.kind.as_str() {
            "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256".into(),
            k => k.into(),
        }
    }

    /// A known_hosts line for `host`.
    pub fn known_hosts_line(&self, host: &str) -> String {
        format!("{host} {} {}", self.kind, base64::engine::general_purpose::STANDARD.encode(&self.blob))
    }

    fn preference(&self) -> u8 {
        match self.kind.as_str() {
            "ssh-ed25519" => 0,
            k if k.starts_with("ecdsa-sha2-") => 1,
            "ssh-rsa" => 2,
            _ => 3,
        }
    }
}

/// `HOST TYPE BASE64 [comment]` (known_hosts and ssh-keyscan output); `None` for comments, markers and junk.
pub fn parse_line(line: &str) -> Option<(String, HostKey)> {
    let mut f = line.split_whitespace();
    let host = f.next().filter(|h| !h.starts_with('#') && !h.starts_with('@'))?;
    let key = HostKey::parse(f.next()?, f.next()?).ok()?;
    Some((host.to_string(), key))
}

/// The host keys `address:port` presents, after a plain TCP connection tells an unreachable node apart.
pub fn scan(node: &str, address: &str, port: u16, connect_timeout: Duration) -> Result<Vec<HostKey>> {
    let sock = std::net::SocketAddr::new(
        address.parse().with_context(|| format!("bad address {address}"))?,
        port,
    );
    if let Err(e) = std::net::TcpStream::connect_timeout(&sock, connect_timeout) {
        use std::io::ErrorKind as K;
        let why = match e.kind() {
            K::ConnectionRefused => Unreachable::Refused,
            K::TimedOut | K::WouldBlock => Unreachable::TimedOut,
            K::HostUnreachable | K::NetworkUnreachable => Unreachable::NoRoute,
            _ => Unreachable::Other(e.to_string()),
        };
        return Err(unreachable(node, address, port, why));
    }
    let secs = connect_timeout.as_secs().max(1);
    let mut cmd = std::process::Command::new("ssh-keyscan");
    cmd.args(["-T", &secs.to_string(), "-p", &port.to_string(), "-t", "rsa,ecdsa,ed25519", address]);
    let out = process::run(&mut cmd, process::Input::Null, Duration::from_secs(secs * 3 + 10), false)
        .context("failed to run ssh-keyscan (is openssh-client installed?)")?;
    let keys: Vec<HostKey> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_line)
        .map(|(_, k)| k)
        .collect();
    if keys.is_empty() {
        return Err(unreachable(
            node,
            address,
            port,
            Unreachable::Other(if out.timed_out {
                "no SSH host key received in time".into()
            } else {
                "it accepts connections but sent no SSH host key (is it an SSH server?)".into()
            }),
        ));
    }
    Ok(keys)
}

/// Where a node's expected key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Pinned,
    Recorded,
    FirstContact,
}

/// What the node should have presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The fingerprint pinned in the inventory.
    Pinned(String),
    /// The key recorded on an earlier contact.
    Recorded(HostKey),
}

/// A node that presented another key than expected.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub node: String,
    pub address: String,
    pub port: u16,
    pub expected: Expected,
    pub presented: Vec<HostKey>,
}

impl Mismatch {
    /// One line: the node, what it presents, what was expected.
    pub fn line(&self) -> String {
        let shown: Vec<&HostKey> = match &self.expected {
            // the key of the recorded type, when the node still has one
            Expected::Recorded(r) if self.presented.iter().any(|k| k.kind == r.kind) => {
                self.presented.iter().filter(|k| k.kind == r.kind).collect()
            }
            _ => self.presented.iter().collect(),
        };
        let now = shown.iter().map(|k| k.describe()).collect::<Vec<_>>().join(", ");
        let (what, was) = match &self.expected {
            Expected::Pinned(fp) => ("the host_key pinned in the inventory", fp.clone()),
            Expected::Recorded(k) => ("the key recorded on first contact", k.describe()),
        };
        format!(
            "{} ({}:{}) presents {now}, not {what}: {was}",
            self.node, self.address, self.port
        )
    }
}

/// Decide one node: the key to require from it now, or why not.
pub fn decide(pin: Option<&str>, recorded: &[HostKey], presented: &[HostKey]) -> Result<(HostKey, How), Expected> {
    if let Some(fp) = pin {
        return presented
            .iter()
            .find(|k| k.fingerprint() == fp)
            .map(|k| (k.clone(), How::Pinned))
            .ok_or_else(|| Expected::Pinned(fp.to_string()));
    }
    if recorded.is_empty() {
        let best = presented.iter().min_by_key(|k| k.preference()).cloned();
        return best.map(|k| (k, How::FirstContact)).ok_or(Expected::Pinned(String::new()));
    }
    match presented.iter().find(|k| recorded.contains(k)) {
        Some(k) => Ok((k.clone(), How::Recorded)),
        None => Err(Expected::Recorded(recorded.iter().min_by_key(|k| k.preference()).cloned().unwrap_or_else(|| recorded[0].clone()))),
    }
}

/// The keys recorded on earlier contacts: `<state dir>/ssh/known_hosts`, one `NODE TYPE KEY` line per node
/// (known_hosts format, `ssh-keygen -lf` reads it). Lines by address, written by earlier airgap versions
/// through ssh's `accept-new`, are looked up with `ssh-keygen -F` and still count as recorded.
pub struct Records {
    pub path: PathBuf,
    lines: Vec<String>,
}

impl Records {
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("ssh").join("known_hosts")
    }

    pub fn load(state_dir: &Path) -> Result<Records> {
        let path = Records::path_in(state_dir);
        let lines = match fs_err::read_to_string(&path) {
            Ok(t) => t.lines().map(String::from).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Records { path, lines })
    }

    /// The keys recorded for `node` (by name; else by its address, as older versions recorded them).
    pub fn get(&self, node: &Node, port: u16) -> Vec<HostKey> {
        let by_name: Vec<HostKey> = self
            .lines
            .iter()
            .filter_map(|l| parse_line(l))
            .filter(|(h, _)| h == &node.name)
            .map(|(_, k)| k)
            .collect();
        if !by_name.is_empty() {
            return by_name;
        }
        self.legacy_lines(node, port).iter().filter_map(|l| parse_line(l)).map(|(_, k)| k).collect()
    }

    /// Lines an earlier version recorded for the node's address (hashed or not), found by `ssh-keygen -F`.
    fn legacy_lines(&self, node: &Node, port: u16) -> Vec<String> {
        if !self.path.exists() {
            return Vec::new();
        }
        let host = if port == 22 { node.address.to_string() } else { format!("[{}]:{port}", node.address) };
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.arg("-F").arg(&host).arg("-f").arg(&self.path);
        match process::run(&mut cmd, process::Input::Null, Duration::from_secs(30), false) {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with('#') && self.lines.iter().any(|x| x == l))
                .map(String::from)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Record `key` as the node's key (replacing what was recorded for it).
    pub fn set(&mut self, node: &Node, port: u16, key: &HostKey) {
        self.forget(node, port);
        self.lines.push(key.known_hosts_line(&node.name));
    }

    /// Remove what is recorded for the node; returns the keys removed.
    pub fn forget(&mut self, node: &Node, port: u16) -> Vec<HostKey> {
        let legacy = self.legacy_lines(node, port);
        let mut removed = Vec::new();
        self.lines.retain(|l| {
            let mine = parse_line(l).is_some_and(|(h, _)| h == node.name) || legacy.contains(l);
            if mine {
                removed.extend(parse_line(l).map(|(_, k)| k));
            }
            !mine
        });
        removed
    }

    pub fn save(&self) -> Result<()> {
        let dir = self.path.parent().context("known_hosts has no directory")?;
        fs_err::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mut text = self.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        crate::fsutil::atomic_write(&self.path, text.as_bytes(), crate::fsutil::Mode::Set(0o644))
    }
}

/// The outcome of checking every node's host key.
pub struct Checked {
    /// The key required from each node this run.
    pub keys: BTreeMap<String, HostKey>,
    /// Nodes that could not be scanned, with the reason (their steps fail with it; the others go on).
    pub unreachable: BTreeMap<String, anyhow::Error>,
    /// Nodes trusted on first use this run, in inventory order.
    pub first_contact: Vec<(Node, HostKey)>,
}

/// How the person at the keyboard can accept a node's new key: for the hint of a mismatch.
pub struct AcceptHelp<'a> {
    pub inventory: &'a Path,
    /// The `--state-dir` given on the command line, if any (repeated in the command shown).
    pub state_dir: Option<&'a Path>,
}

/// Scan every node in parallel and decide; record what was accepted. A node presenting another key than
/// expected is an error for the whole run (returned before anything authenticates anywhere).
pub fn check_all(inv: &Inventory, state_dir: &Path, help: &AcceptHelp, connect_timeout: Duration) -> Result<Checked> {
    let mut records = Records::load(state_dir)?;
    let port = inv.ssh.port;
    let scans: Vec<Result<Vec<HostKey>>> = std::thread::scope(|s| {
        let hs: Vec<_> = inv
            .nodes
            .iter()
            .map(|n| s.spawn(move || scan(&n.name, &n.address.to_string(), port, connect_timeout)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("bug: a host key scan panicked")))
            .collect()
    });
    let mut checked = Checked { keys: BTreeMap::new(), unreachable: BTreeMap::new(), first_contact: Vec::new() };
    let mut mismatches = Vec::new();
    for (n, scan) in inv.nodes.iter().zip(scans) {
        let presented = match scan {
            Ok(k) => k,
            Err(e) => {
                checked.unreachable.insert(n.name.clone(), e);
                continue;
            }
        };
        match decide(n.host_key.as_deref(), &records.get(n, port), &presented) {
            Ok((key, how)) => {
                if how == How::FirstContact {
                    checked.first_contact.push((n.clone(), key.clone()));
                }
                checked.keys.insert(n.name.clone(), key);
            }
            Err(expected) => mismatches.push(Mismatch {
                node: n.name.clone(),
                address: n.address.to_string(),
                port,
                expected,
                presented,
            }),
        }
    }
    if !mismatches.is_empty() {
        return Err(mismatch_error(&mismatches, help));
    }
    let before = records.lines.clone();
    for n in &inv.nodes {
        if let Some(k) = checked.keys.get(&n.name) {
            // one line under the node's name, holding the accepted key
            if !(records.has_name_line(&n.name) && records.get(n, port) == [k.clone()]) {
                records.set(n, port, k);
            }
        }
    }
    if records.lines != before {
        records.save().with_context(|| format!("failed to record the nodes' host keys in {}", records.path.display()))?;
    }
    Ok(checked)
}

impl Records {
    fn has_name_line(&self, node: &str) -> bool {
        self.lines.iter().filter_map(|l| parse_line(l)).any(|(h, _)| h == node)
    }
}

fn mismatch_error(ms: &[Mismatch], help: &AcceptHelp) -> anyhow::Error {
    let n = ms.len();
    let mut msg = format!(
        "refusing to connect: {n} node{} presented another SSH host key than expected (nothing was sent to any node)",
        if n == 1 { "" } else { "s" }
    );
    for m in ms {
        msg.push_str(&format!("\n  {}", m.line()));
    }
    let names: Vec<&str> = ms.iter().map(|m| m.node.as_str()).collect();
    let state = help.state_dir.map(|d| format!(" --state-dir {}", super::shell_quote(&d.display().to_string()))).unwrap_or_default();
    let inventory = super::shell_quote(&help.inventory.display().to_string());
    let mut hint = format!(
        "someone may be intercepting the connection, or {} was re-installed: compare with the node's own key on its console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); if it is the node's, ",
        names.join(", ")
    );
    let pinned: Vec<&Mismatch> = ms.iter().filter(|m| matches!(m.expected, Expected::Pinned(_))).collect();
    let recorded: Vec<&str> = ms.iter().filter(|m| matches!(m.expected, Expected::Recorded(_))).map(|m| m.node.as_str()).collect();
    if !recorded.is_empty() {
        hint.push_str(&format!(
            "run `airgap hostkey forget {} --inventory {inventory}{state}` (the next install trusts and records its new key) or pin the new key in the inventory",
            recorded.join(" ")
        ));
    }
    if !pinned.is_empty() {
        if !recorded.is_empty() {
            hint.push_str("; ");
        }
        let fixes: Vec<String> = pinned
            .iter()
            .map(|m| format!("{}: host_key: {}", m.node, m.presented.iter().min_by_key(|k| k.preference()).map(|k| k.fingerprint()).unwrap_or_default()))
            .collect();
        hint.push_str(&format!("put its new fingerprint in {inventory} ({})", fixes.join("; ")));
    }
    crate::error::with_hint(anyhow::anyhow!(msg), hint)
}

/// What to tell the person about nodes trusted on first use: their fingerprints, and the inventory lines
/// that pin them.
pub fn first_contact_notice(first: &[(Node, HostKey)], port: u16, inventory: &Path, records: &Path) -> String {
    let names: Vec<&str> = first.iter().map(|(n, _)| n.name.as_str()).collect();
    let mut s = format!(
        "no host_key is pinned for {} in {}: trusting the SSH host key{} presented now (trust on first use), recorded in {} and required from now on:",
        names.join(", "),
        inventory.display(),
        if first.len() == 1 { "" } else { "s" },
        records.display()
    );
    for (n, k) in first {
        s.push_str(&format!("\n  {} ({}:{port}): {}", n.name, n.address, k.describe()));
    }
    s.push_str(&format!(
        "\ncheck them on each node's console (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`), then pin them in {} so that a new state dir never trusts again; under `nodes:`:",
        first.first().map(|(_, k)| k.label().to_lowercase()).unwrap_or_else(|| "ed25519".into()),
        inventory.display()
    ));
    s.push_str(&pin_yaml(first.iter().map(|(n, k)| (n, k))));
    s
}

/// The inventory lines that pin these keys.
pub fn pin_yaml<'a>(keys: impl Iterator<Item = (&'a Node, &'a HostKey)>) -> String {
    let mut s = String::new();
    for (n, k) in keys {
        s.push_str(&format!(
            "\n  - name: {}\n    host_key: {}    # {}",
            n.name,
            k.fingerprint(),
            k.label()
        ));
    }
    s
}

/// This run's known_hosts: exactly the accepted key of each node, under its node name (`HostKeyAlias`).
pub fn run_known_hosts(keys: &BTreeMap<String, HostKey>) -> String {
    keys.iter().map(|(n, k)| k.known_hosts_line(n) + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // ssh-keygen -lf of this key prints SHA256:E/riCNVqGK1RiG+NjiHkRkf4+bfFCp/K0zSKR0cq8WI (ED25519)
    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPuT34h1sklu+yQWauWeD+D+0JyeQLt5d5Ednz8saX6U";
    const ED_FP: &str = "SHA256:E/riCNVqGK1RiG+NjiHkRkf4+bfFCp/K0zSKR0cq8WI";

    fn ed() -> HostKey {
        HostKey::parse("ssh-ed25519", ED).unwrap()
    }

    fn other() -> HostKey {
        // a well-formed ed25519 blob with other key bytes
        let mut blob = ed().blob;
        let last = blob.len() - 1;
        blob[last] ^= 1;
        HostKey { kind: "ssh-ed25519".into(), blob }
    }

    #[test]
    fn fingerprints_as_ssh_keygen_prints_them() {
        assert_eq!(ed().fingerprint(), ED_FP);
        assert_eq!(ed().describe(), format!("{ED_FP} (ED25519)"));
        assert!(crate::site::validate::check_fingerprint(&ed().fingerprint()).is_ok());
        // the type inside the blob must match the line's
        assert!(HostKey::parse("ssh-rsa", ED).is_err());
        assert_eq!(parse_line(&format!("10.0.0.1 ssh-ed25519 {ED}")).unwrap().1, ed());
        assert!(parse_line("# 10.0.0.1:22 SSH-2.0-OpenSSH_9.2").is_none());
    }

    #[test]
    fn decisions() {
        let (k, o) = (ed(), other());
        // a pin wins over any record, and must be presented
        assert_eq!(decide(Some(ED_FP), std::slice::from_ref(&o), &[o.clone(), k.clone()]).unwrap(), (k.clone(), How::Pinned));
        assert_eq!(decide(Some(ED_FP), &[], std::slice::from_ref(&o)).unwrap_err(), Expected::Pinned(ED_FP.into()));
        // a record must be presented
        assert_eq!(decide(None, std::slice::from_ref(&k), std::slice::from_ref(&k)).unwrap().1, How::Recorded);
        assert_eq!(decide(None, std::slice::from_ref(&k), std::slice::from_ref(&o)).unwrap_err(), Expected::Recorded(k.clone()));
        // first contact: the preferred type
        assert_eq!(decide(None, &[], std::slice::from_ref(&o)).unwrap(), (o, How::FirstContact));
    }

    #[test]
    fn records_by_node_name_and_legacy_lines() {
        let d = tempfile::tempdir().unwrap();
        let node: Node = serde_yaml_ng::from_str("name: master1\naddress: 10.0.0.11\nrole: master").unwrap();
        let mut r = Records::load(d.path()).unwrap();
        assert!(r.get(&node, 22).is_empty());
        r.set(&node, 22, &ed());
        r.save().unwrap();
        let r = Records::load(d.path()).unwrap();
        assert_eq!(r.get(&node, 22), [ed()]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.path().join("ssh")).unwrap().permissions().mode() & 0o777, 0o700);
        // an older version's line (by address, as ssh's accept-new wrote it) still counts, and is forgotten
        std::fs::write(Records::path_in(d.path()), format!("10.0.0.11 ssh-ed25519 {ED}\n10.0.0.12 ssh-ed25519 {ED}\n")).unwrap();
        let mut r = Records::load(d.path()).unwrap();
        assert_eq!(r.get(&node, 22), [ed()]);
        assert_eq!(r.forget(&node, 22), [ed()]);
        assert_eq!(r.lines, [format!("10.0.0.12 ssh-ed25519 {ED}")]);
    }

    #[test]
    fn mismatch_messages_name_both_fingerprints_and_the_way_out() {
        let m = Mismatch { node: "master1".into(), address: "10.0.0.11".into(), port: 22, expected: Expected::Recorded(ed()), presented: vec![other()] };
        let e = mismatch_error(&[m], &AcceptHelp { inventory: Path::new("site.yaml"), state_dir: Some(Path::new("/s d")) });
        let msg = crate::error::messages(&e).join("\n");
        assert!(msg.contains(&format!("master1 (10.0.0.11:22) presents {} (ED25519), not the key recorded on first contact: {ED_FP} (ED25519)", other().fingerprint())), "{msg}");
        let hint = crate::error::hints(&e).join("\n");
        assert!(hint.contains("airgap hostkey forget master1 --inventory site.yaml --state-dir '/s d'"), "{hint}");
    }
}
