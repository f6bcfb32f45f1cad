//! How long a remote command may run, per kind (`ssh.timeouts` in the inventory), and the error when one
//! runs longer.
//!
//! The kind is read from the command line, in one place: `airgap node` subcommands airgap knows to be quick
//! (checks, facts, file writes) and every `--check` are [`Kind::Command`]; copies (anything streaming a
//! local file) are [`Kind::Copy`], allowed `command` seconds plus their size at `copy_mib_per_s`; everything
//! else (package and component installs, service (re)starts, image loads, and any command a step adds that
//! is not listed here) is [`Kind::Install`], the long one. `cli::node`'s tests check that every `airgap node`
//! subcommand is listed.

use std::time::Duration;

/// `airgap node` subcommands that are quick whatever their arguments.
pub const QUICK_NODE_COMMANDS: &[&str] = &[
    "facts",
    "check-file",
    "write-file",
    "hostname",
    "swap-off",
    "modules",
    "check-tcp",
    "check-http",
    "check-images",
    "registry-loaded",
    "registry-serves",
    "sysctl",
    "log-cleanup",
    "log-cut",
    "daemon-reload",
    "unit-off",
    "secret-file",
    "docker-auth",
];
/// `airgap node` subcommands that install or start things (quick with `--check`).
pub const LONG_NODE_COMMANDS: &[&str] =
    &["packages", "component", "docker-registry", "service", "redis-cluster", "redis-failover", "boot-delay"];
/// `airgap node` subcommands that stream a file from stdin.
pub const COPY_NODE_COMMANDS: &[&str] = &["receive"];

/// The kind of a remote command, which sets its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Install,
    /// A copy of this many bytes.
    Copy(u64),
}

/// The timeouts of one site (from `ssh.timeouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub command: Duration,
    pub install: Duration,
    /// The slowest copy rate tolerated, in bytes per second.
    pub copy_rate: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from(&crate::site::inventory::SshTimeouts::default())
    }
}

impl From<&crate::site::inventory::SshTimeouts> for Timeouts {
    fn from(t: &crate::site::inventory::SshTimeouts) -> Self {
        Timeouts {
            command: Duration::from_secs(t.command),
            install: Duration::from_secs(t.install),
            copy_rate: t.copy_mib_per_s.max(1) << 20,
        }
    }
}

impl Timeouts {
    /// The time allowed and the inventory setting that sets it.
    pub fn limit(&self, kind: Kind) -> (Duration, &'static str) {
        match kind {
            Kind::Command => (self.command, "ssh.timeouts.command"),
            Kind::Install => (self.install, "ssh.timeouts.install"),
            Kind::Copy(bytes) => (
                self.command + Duration::from_secs(bytes / self.copy_rate.max(1)),
                "ssh.timeouts.copy_mib_per_s",
            ),
        }
    }
}

/// The kind of `argv`; `copy_bytes` is the size of the local file streamed on stdin, if any.
pub fn kind_of(argv: &[String], copy_bytes: Option<u64>) -> Kind {
    if let Some(n) = copy_bytes {
        return Kind::Copy(n);
    }
    let is_airgap = argv.first().is_some_and(|a| a == crate::node::BIN || a.ends_with("/airgap"));
    match (is_airgap, argv.get(1).map(String::as_str), argv.get(2).map(String::as_str)) {
        (true, Some("node"), Some(sub)) if QUICK_NODE_COMMANDS.contains(&sub) => Kind::Command,
        (true, Some("node"), Some(_)) if argv.iter().any(|a| a == "--check") => Kind::Command,
        (true, Some("node"), Some(sub)) if COPY_NODE_COMMANDS.contains(&sub) => Kind::Copy(0),
        // the transport's own scripts (hash of the binary) and reads are quick
        _ if argv.first().is_some_and(|a| a == "sh") && argv.get(1).is_some_and(|a| a == "-c") => Kind::Command,
        _ => Kind::Install,
    }
}

/// A remote command that ran past its time: stopped (on the node too) and reported with its last output.
#[derive(Debug)]
pub struct TimedOut {
    pub node: String,
    pub command: String,
    pub after: Duration,
    pub setting: &'static str,
    pub last_lines: Vec<String>,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` timed out on {} after {} s ({})", self.command, self.node, self.after.as_secs(), self.setting)?;
        if self.last_lines.is_empty() {
            write!(f, "; it printed nothing")
        } else {
            write!(f, "; its last output: {}", self.last_lines.join(" | "))
        }
    }
}

impl std::error::Error for TimedOut {}

impl TimedOut {
    pub fn into_error(self) -> anyhow::Error {
        let hint = format!(
            "the command was stopped on the node; if the node is only slow, raise {} in the inventory",
            self.setting
        );
        crate::error::with_hint(anyhow::Error::new(self), hint)
    }
}

/// The remote command line: `argv` run under the node's `timeout` (coreutils; run plainly where it is
/// missing), so that a command that outlives its time is stopped on the node too, not only its ssh here.
pub fn remote_command(argv: &[String], limit: Duration) -> String {
    let cmd = super::shell_join(argv);
    format!(
        "if command -v timeout >/dev/null 2>&1; then exec timeout -k 10 {} {cmd}; else exec {cmd}; fi",
        limit.as_secs().max(1)
    )
}

/// The exit codes of `timeout` when it stopped the command (TERM, then KILL).
pub fn is_timeout_exit(code: Option<i32>) -> bool {
    matches!(code, Some(124) | Some(137))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::ssh::sv;

    #[test]
    fn kinds() {
        let node = |a: &[&str]| {
            let mut v = sv(&[crate::node::BIN, "node"]);
            v.extend(sv(a));
            v
        };
        assert_eq!(kind_of(&node(&["facts", "--json"]), None), Kind::Command);
        assert_eq!(kind_of(&node(&["packages", "--install", "x", "--dir", "/d"]), None), Kind::Install);
        assert_eq!(kind_of(&node(&["packages", "--install", "x", "--check"]), None), Kind::Command);
        assert_eq!(kind_of(&node(&["receive", "--path", "/x"]), Some(5 << 20)), Kind::Copy(5 << 20));
        assert_eq!(kind_of(&sv(&[crate::node::BIN, "load", "b.tar.zst"]), None), Kind::Install);
        assert_eq!(kind_of(&sv(&["kubeadm", "init"]), None), Kind::Install);
        assert_eq!(kind_of(&sv(&["sh", "-c", "x"]), None), Kind::Command);
        let t = Timeouts::default();
        assert_eq!(t.limit(Kind::Command).0, Duration::from_secs(300));
        assert_eq!(t.limit(Kind::Install).0, Duration::from_secs(1800));
        assert_eq!(t.limit(Kind::Copy(600 << 20)).0, Duration::from_secs(900));
    }

    #[test]
    fn the_remote_command_runs_under_timeout_and_keeps_its_quoting() {
        let argv = sv(&["sh", "-c", "echo \"$1\"", "sh", "it's"]);
        let line = remote_command(&argv, Duration::from_secs(300));
        assert!(line.contains("exec timeout -k 10 300 sh -c"), "{line}");
        let out = std::process::Command::new("sh").args(["-c", &line]).output().unwrap();
        assert_eq!(out.stdout, b"it's\n");
        let out = std::process::Command::new("sh").args(["-c", &remote_command(&sv(&["sleep", "30"]), Duration::from_secs(1))]).output().unwrap();
        assert!(is_timeout_exit(out.status.code()), "{:?}", out.status);
    }
}
