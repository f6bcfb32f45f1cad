//! The transport over the system's OpenSSH client: one ControlMaster per node, started by airgap and kept in
//! the foreground as its child, and one short ssh (a mux client over the master's socket) per command.
//!
//! - Every ssh reads no configuration file (`-F /dev/null`: the inventory says everything) and checks the
//!   node's host key against this run's known_hosts only (see [`super::hostkeys`]).
//! - The run directory holds the control sockets and that known_hosts: a private (0700) directory made
//!   fresh for each run under `$TMPDIR` (or `/tmp` when `$TMPDIR` is long or odd), with sockets named by the
//!   node's index: a short path whatever the cluster name or the state dir (a unix socket path has at most
//!   107 bytes, and ssh adds 17 while it binds), with no space for ssh's option parser to split. It goes
//!   when the run ends; one left by a killed run is removed by the next.
//! - The master (`-M -o ControlPersist=no`, remote command `echo READY; cat`) is ready once it printed its
//!   marker: authenticated, its socket listening. It dies with airgap ([`super::process`]); [`OpenSsh::close`]
//!   ends it. A client whose master is gone connects on its own, with the same checks.
//! - The password of `ssh.password_env` reaches ssh through `SSH_ASKPASS` (this binary, [`askpass_main`]),
//!   never through a command line or a log.

use super::process;
use super::timeouts::{self, Timeouts};
use super::{CmdOutput, Stdin, Transport};
use crate::error::HintExt;
use anyhow::{Context, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach the nodes over OpenSSH.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub key_file: Option<PathBuf>,
    /// Environment variable holding a password (used through SSH_ASKPASS; see [`askpass_main`]).
    pub password_env: Option<String>,
    pub connect_timeout: u32,
    pub timeouts: Timeouts,
}

/// Environment variable telling the airgap binary that ssh started it as SSH_ASKPASS.
pub const ASKPASS_VAR: &str = "AIRGAP_ASKPASS_FROM";

/// What ssh prints on stdout once the master is authenticated and its socket listens.
const READY: &str = "airgap-ssh-ready";

/// Longest path of a run directory: its sockets (`DIR/NN`) plus the 17 bytes ssh appends while binding must
/// fit the 107 bytes of a unix socket path.
const MAX_RUN_DIR: usize = 60;

/// Run directories are named `airgap-ssh-<PID>-<random>`.
const RUN_DIR_PREFIX: &str = "airgap-ssh-";

/// Remove the run directories of airgap processes that are gone (killed before they could clean up): ours
/// (same owner), real directories, whose PID no longer runs.
fn remove_stale_run_dirs(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else { return };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(RUN_DIR_PREFIX).and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let ours = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One run's private directory: the control sockets and the known_hosts every ssh of the run checks against.
/// Removed when dropped.
pub struct RunDir {
    dir: tempfile::TempDir,
}

impl RunDir {
    /// A fresh 0700 directory holding `known_hosts` (see [`super::hostkeys::run_known_hosts`]).
    pub fn new(known_hosts: &str) -> Result<Arc<RunDir>> {
        RunDir::new_in(&std::env::temp_dir(), known_hosts)
    }

    /// Like [`RunDir::new`], under `tmp` when its path is short and plain, else under `/tmp`.
    pub fn new_in(tmp: &Path, known_hosts: &str) -> Result<Arc<RunDir>> {
        let usable = |p: &Path| {
            let s = p.to_string_lossy();
            s.len() + 20 <= MAX_RUN_DIR && !s.contains(|c: char| c.is_whitespace() || c == '%' || c == '"' || c == '\'')
        };
        let base = if usable(tmp) { tmp.to_path_buf() } else { PathBuf::from("/tmp") };
        remove_stale_run_dirs(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{RUN_DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .with_context(|| format!("failed to create a private directory for ssh under {}", base.display()))?;
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        fs_err::write(dir.path().join("known_hosts"), known_hosts)?;
        Ok(Arc::new(RunDir { dir }))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    pub fn socket(&self, index: usize) -> PathBuf {
        self.dir.path().join(index.to_string())
    }
}

/// The system OpenSSH client, one ControlMaster per node.
pub struct OpenSsh {
    node: String,
    address: String,
    settings: SshSettings,
    run_dir: Arc<RunDir>,
    index: usize,
    /// The accepted host key's algorithms (`HostKeyAlgorithms`).
    algorithms: String,
    master: Mutex<Option<Master>>,
}

struct Master {
    child: Child,
    /// Held open: the master's own session lasts until it is closed.
    _stdin: ChildStdin,
}

impl OpenSsh {
    /// `index` names the node's control socket in `run_dir`; `host_key` is the key accepted for it this run.
    pub fn new(
        node: &str,
        address: &str,
        settings: SshSettings,
        run_dir: Arc<RunDir>,
        index: usize,
        host_key: &super::hostkeys::HostKey,
    ) -> Result<OpenSsh> {
        if let Some(k) = &settings.key_file {
            if !k.exists() {
                return Err(anyhow::anyhow!("ssh key file {} does not exist", k.display()))
                    .hint("set ssh.key_file in the inventory to the private key whose public half is in the nodes' authorized_keys");
            }
        }
        Ok(OpenSsh {
            node: node.into(),
            address: address.into(),
            settings,
            run_dir,
            index,
            algorithms: host_key.algorithms(),
            master: Mutex::new(None),
        })
    }

    fn password(&self) -> bool {
        self.settings.password_env.as_ref().is_some_and(|v| std::env::var_os(v).is_some())
    }

    /// The options every ssh of this node gets (no secret among them: see [`askpass_main`]).
    pub fn base_args(&self) -> Vec<String> {
        let s = &self.settings;
        let mut a: Vec<String> = vec!["-F".into(), "/dev/null".into()];
        let mut o = |opt: String| a.extend(["-o".to_string(), opt]);
        o(format!("ControlPath={}", self.run_dir.socket(self.index).display()));
        o("StrictHostKeyChecking=yes".into());
        o(format!("UserKnownHostsFile={}", self.run_dir.known_hosts().display()));
        o("GlobalKnownHostsFile=/dev/null".into());
        o(format!("HostKeyAlias={}", self.node));
        o(format!("HostKeyAlgorithms={}", self.algorithms));
        o("CheckHostIP=no".into());
        o("UpdateHostKeys=no".into());
        o(format!("ConnectTimeout={}", s.connect_timeout));
        o("ServerAliveInterval=10".into());
        o("ServerAliveCountMax=3".into());
        o("LogLevel=ERROR".into());
        o(format!("BatchMode={}", if self.password() { "no" } else { "yes" }));
        if self.password() {
            o("NumberOfPasswordPrompts=1".into());
        }
        if let Some(k) = &s.key_file {
            o("IdentitiesOnly=yes".into());
            a.extend(["-i".into(), k.display().to_string()]);
        }
        a.extend(["-p".into(), s.port.to_string(), "-l".into(), s.user.clone(), "-T".into()]);
        a
    }

    fn command(&self, extra: &[&str], remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.base_args()).args(extra).arg(&self.address).arg("--").arg(remote);
        if let Some(v) = &self.settings.password_env {
            if std::env::var_os(v).is_some() {
                if let Ok(exe) = std::env::current_exe() {
                    c.env("SSH_ASKPASS", exe).env("SSH_ASKPASS_REQUIRE", "force").env(ASKPASS_VAR, v);
                    // OpenSSH before 8.4 uses SSH_ASKPASS only when DISPLAY is set
                    if std::env::var_os("DISPLAY").is_none() {
                        c.env("DISPLAY", "airgap");
                    }
                }
            }
        }
        c
    }

    /// Start the node's ControlMaster (once) and wait until it is authenticated.
    fn ensure_master(&self) -> Result<()> {
        let mut m = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(master) = m.as_mut() {
            if master.child.try_wait().ok().flatten().is_none() {
                return Ok(());
            }
        }
        *m = None;
        let mut cmd = self.command(
            &["-M", "-o", "ControlMaster=yes", "-o", "ControlPersist=no"],
            &format!("echo {READY}; exec cat >/dev/null"),
        );
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        process::die_with_parent(&mut cmd);
        let mut child = process::spawn_long_lived(cmd).with_context(|| format!("failed to run ssh for {}", self.node))?;
        let (stdin, stdout, mut stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = false;
            if let Some(out) = stdout {
                let mut lines = std::io::BufReader::new(out).lines();
                ready = lines.by_ref().map_while(Result::ok).any(|l| l.trim() == READY);
                let _ = tx.send(ready);
                // keep draining (nothing more is expected)
                for _ in lines {}
            } else {
                let _ = tx.send(ready);
            }
        });
        let limit = Duration::from_secs(u64::from(self.settings.connect_timeout) + 60);
        let ready = rx.recv_timeout(limit).unwrap_or(false);
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(e) = stderr.as_mut() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            if err.trim().is_empty() {
                err = format!("no answer within {} s", limit.as_secs());
            }
            return Err(unreachable(&self.node, &self.address, self.settings.port, classify(&err)));
        }
        // the master's stderr is not read any more: ssh logs at level ERROR only, and a full pipe is unlikely;
        // drain it anyway so that ssh never blocks on it
        if let Some(mut e) = stderr {
            std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::sink()));
        }
        *m = Some(Master { child, _stdin: stdin.context("ssh master without stdin")? });
        Ok(())
    }
}

impl Transport for OpenSsh {
    fn node(&self) -> &str {
        &self.node
    }

    fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CmdOutput> {
        self.ensure_master()?;
        let (input, copy_bytes) = stdin.open()?;
        let kind = timeouts::kind_of(argv, copy_bytes);
        let (limit, setting) = self.settings.timeouts.limit(kind);
        let mut cmd = self.command(&["-o", "ControlMaster=no"], &timeouts::remote_command(argv, limit));
        let out = process::run(&mut cmd, input, limit + super::LOCAL_GRACE, false)
            .with_context(|| format!("failed to run ssh for {}", self.node))?;
        let code = out.code.unwrap_or(-1);
        if out.timed_out || (timeouts::is_timeout_exit(out.code) && out.elapsed >= limit) {
            return Err(timeouts::TimedOut {
                node: self.node.clone(),
                command: super::shell_join(argv),
                after: limit,
                setting,
                last_lines: out.last_lines(5),
            }
            .into_error());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if code == 255
            && (stderr.starts_with("ssh:")
                || stderr.contains("Permission denied")
                || stderr.contains("Host key")
                || stderr.contains("host key"))
        {
            return Err(unreachable(&self.node, &self.address, self.settings.port, classify(&stderr)));
        }
        Ok(CmdOutput { code, stdout: out.stdout, stderr })
    }

    fn close(&self) {
        let master = self.master.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut m) = master {
            // closing stdin ends the master's own session; the master is killed anyway: nothing runs any more
            drop(m._stdin);
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

impl Drop for OpenSsh {
    fn drop(&mut self) {
        self.close();
    }
}

/// Why a node could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    Refused,
    TimedOut,
    NoRoute,
    AuthFailed,
    HostKey,
    Other(String),
}

/// ssh's own failure (exit 255) read from its stderr.
pub fn classify(stderr: &str) -> Unreachable {
    let low = stderr.to_lowercase();
    if low.contains("connection refused") {
        Unreachable::Refused
    } else if low.contains("timed out") {
        Unreachable::TimedOut
    } else if low.contains("no route to host") || low.contains("network is unreachable") {
        Unreachable::NoRoute
    } else if low.contains("permission denied") {
        Unreachable::AuthFailed
    } else if low.contains("host key verification failed") || low.contains("remote host identification has changed") || low.contains("host key for") {
        Unreachable::HostKey
    } else {
        Unreachable::Other(stderr.trim().lines().last().unwrap_or("ssh failed").to_string())
    }
}

/// "failed to reach NODE (ADDR:PORT): REASON", with a hint.
pub fn unreachable(node: &str, address: &str, port: u16, why: Unreachable) -> anyhow::Error {
    let (reason, hint) = match &why {
        Unreachable::Refused => (
            "connection refused".to_string(),
            "is sshd running on the node and listening on this port? (ssh.port in the inventory)",
        ),
        Unreachable::TimedOut => (
            "connection timed out".to_string(),
            "check the address, the cable and any firewall between this machine and the node",
        ),
        Unreachable::NoRoute => ("no route to host".to_string(), "check the address and that this machine is on the nodes' network"),
        Unreachable::AuthFailed => (
            "authentication failed".to_string(),
            "put the public half of ssh.key_file in the node's ~/.ssh/authorized_keys, or set ssh.password_env",
        ),
        Unreachable::HostKey => (
            "the node presented another host key than the one checked a moment ago".to_string(),
            "someone may be intercepting the connection; run the install again to see both fingerprints",
        ),
        Unreachable::Other(detail) => (format!("ssh failed ({detail})"), "run the ssh command with -v by hand to see why"),
    };
    crate::error::with_hint(anyhow::anyhow!("failed to reach {node} ({address}:{port}): {reason}"), hint)
}

/// Started by ssh as SSH_ASKPASS: print the password from the variable named in [`ASKPASS_VAR`], for a
/// password prompt only (never as the answer to a yes/no question).
pub fn askpass_main(var: &std::ffi::OsStr) -> std::process::ExitCode {
    let prompt = std::env::args().nth(1).unwrap_or_default().to_lowercase();
    if !prompt.contains("password") {
        eprintln!("airgap: not answering ssh's question {prompt:?}");
        return std::process::ExitCode::FAILURE;
    }
    match std::env::var_os(var) {
        Some(p) => {
            println!("{}", p.to_string_lossy());
            std::process::ExitCode::SUCCESS
        }
        None => std::process::ExitCode::FAILURE,
    }
}

/// Ask for a password on the controlling terminal with echo off. `None` when there is no terminal (scripts, CI).
pub fn prompt_password(prompt: &str) -> Result<Option<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let Ok(tty) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty") else {
        return Ok(None);
    };
    let saved = tcgetattr(&tty).context("failed to read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&tty, SetArg::TCSANOW, &quiet).context("failed to turn the terminal's echo off")?;
    let mut line = String::new();
    let read = (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|_| std::io::BufReader::new(&tty).read_line(&mut line));
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &saved);
    let _ = (&tty).write_all(b"\n");
    read.context("failed to read the password from the terminal")?;
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(password_env: Option<&str>) -> SshSettings {
        SshSettings {
            user: "root".into(),
            port: 22,
            key_file: None,
            password_env: password_env.map(String::from),
            connect_timeout: 5,
            timeouts: Timeouts::default(),
        }
    }

    fn key() -> super::super::hostkeys::HostKey {
        super::super::hostkeys::HostKey::parse(
            "ssh-ed25519",
            "AAAAC3NzaC1lZDI1NTE5AAAAIPuT34h1sklu+yQWauWeD+D+0JyeQLt5d5Ednz8saX6U",
        )
        .unwrap()
    }

    #[test]
    fn control_paths_are_short_whatever_the_cluster_and_state_dir() {
        // the state dir plays no part any more; TMPDIR with a space or a long path falls back to /tmp
        let d = tempfile::tempdir().unwrap();
        let long = d.path().join("a state dir with spaces").join("x".repeat(120));
        std::fs::create_dir_all(&long).unwrap();
        let run = RunDir::new_in(&long, "").unwrap();
        let t = OpenSsh::new(&"n".repeat(63), "10.0.0.1", settings(None), run.clone(), 999, &key()).unwrap();
        let args = t.base_args();
        let cp = args.iter().find_map(|a| a.strip_prefix("ControlPath=")).unwrap();
        assert!(cp.len() + 17 < 108, "{cp}");
        assert!(!cp.contains(' '), "{cp}");
        let kh = args.iter().find_map(|a| a.strip_prefix("UserKnownHostsFile=")).unwrap();
        assert!(!kh.contains(' '), "{kh}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(run.path()).unwrap().permissions().mode() & 0o777, 0o700);
        for o in ["StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null", "HostKeyAlgorithms=ssh-ed25519", "UpdateHostKeys=no"] {
            assert!(args.iter().any(|a| a == o), "{o} missing: {args:?}");
        }
        assert_eq!(args[..2], ["-F", "/dev/null"]);
        assert!(!args.iter().any(|a| a.contains("accept-new")));
    }

    #[test]
    fn the_password_goes_through_askpass_never_the_command_line() {
        let secret = "pw-in-env-3f9c";
        std::env::set_var("AIRGAP_TEST_PW_ARGV", secret);
        let run = RunDir::new("").unwrap();
        let t = OpenSsh::new("master1", "10.0.0.1", settings(Some("AIRGAP_TEST_PW_ARGV")), run, 0, &key()).unwrap();
        let c = t.command(&["-M"], "echo hi");
        assert!(!c.get_args().any(|a| a.to_string_lossy().contains(secret)));
        let envs: Vec<(String, String)> = c
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
            .collect();
        assert!(envs.contains(&(ASKPASS_VAR.to_string(), "AIRGAP_TEST_PW_ARGV".to_string())), "{envs:?}");
        assert!(!envs.iter().any(|(_, v)| v.contains(secret)), "the password itself is set by the command: {envs:?}");
        assert!(t.base_args().iter().any(|a| a == "BatchMode=no"));
    }
}
