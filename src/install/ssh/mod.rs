//! Reaching nodes: a small [`Transport`] trait (run a command, copy a file, read a file) with the real
//! implementation over the system's OpenSSH client (connection reuse through ControlMaster) and a local one
//! (runs on this machine: tests, and `--dry-run` without nodes).

use crate::error::HintExt;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The result of a command on a node.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// The first line of stderr worth showing (or the exit code).
    pub fn reason(&self) -> String {
        let e = self.stderr.trim();
        if e.is_empty() {
            format!("exit code {}", self.code)
        } else {
            e.lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        }
    }
}

/// What a command reads on stdin.
#[derive(Clone, Copy)]
pub enum Stdin<'a> {
    Null,
    Bytes(&'a [u8]),
    /// Streamed from a local file (never read into memory).
    File(&'a Path),
}

/// A way to run commands on one node. Side effects on nodes go through this trait only.
pub trait Transport: Send + Sync {
    /// The node's name (for messages).
    fn node(&self) -> &str;

    /// Run `argv` on the node (no shell in between on the local side; the remote side gets each argument
    /// quoted). Returns the exit code and output; errors only when the node cannot be reached.
    fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CmdOutput>;

    /// Copy a local file to `remote` with `mode`, atomically (a partial file under a fixed name next to it,
    /// then a rename): a kill leaves either the old file or the new one. The caller verifies the content.
    fn copy(&self, local: &Path, remote: &str, mode: u32) -> Result<()> {
        let script = r#"set -e; d=$(dirname "$1"); b=$(basename "$1"); mkdir -p "$d"; t="$d/.$b.airgap-partial"; cat > "$t"; chmod "$2" "$t"; mv -f "$t" "$1""#;
        let argv = sv(&["sh", "-c", script, "sh", remote, &format!("{mode:o}")]);
        let out = self.run(&argv, Stdin::File(local))?;
        if !out.success() {
            bail!(
                "failed to copy {} to {}:{remote}: {}",
                local.display(),
                self.node(),
                out.reason()
            );
        }
        Ok(())
    }

    /// Read a file on the node; `None` when it does not exist.
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let argv = sv(&[
            "sh",
            "-c",
            r#"if [ -e "$1" ]; then exec cat "$1"; else exit 66; fi"#,
            "sh",
            path,
        ]);
        let out = self.run(&argv, Stdin::Null)?;
        match out.code {
            0 => Ok(Some(out.stdout)),
            66 => Ok(None),
            _ => bail!("failed to read {}:{path}: {}", self.node(), out.reason()),
        }
    }

    /// Close any shared connection (best effort).
    fn close(&self) {}
}

pub fn sv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Quote one argument for a POSIX shell (unchanged when it needs no quoting).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./=:,@+-%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command line a person can copy and paste.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// How to reach the nodes over OpenSSH.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub key_file: Option<PathBuf>,
    /// Environment variable holding a password (used through SSH_ASKPASS; see [`askpass_main`]).
    pub password_env: Option<String>,
    pub connect_timeout: u32,
    /// ControlMaster sockets and known_hosts live here (the state dir).
    pub state_dir: PathBuf,
}

/// The system OpenSSH client, one shared connection per node (ControlMaster/ControlPersist).
pub struct OpenSsh {
    node: String,
    address: String,
    settings: SshSettings,
}

/// Environment variable telling the airgap binary that ssh started it as SSH_ASKPASS.
pub const ASKPASS_VAR: &str = "AIRGAP_ASKPASS_FROM";

impl OpenSsh {
    pub fn new(node: &str, address: &str, settings: SshSettings) -> Result<OpenSsh> {
        let dir = settings.state_dir.join("ssh");
        fs_err::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
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
        })
    }

    fn base_args(&self) -> Vec<String> {
        let s = &self.settings;
        let dir = s.state_dir.join("ssh");
        let mut a = sv(&[
            "-o",
            "ControlMaster=auto",
            "-o",
            "ControlPersist=60",
            "-o",
            "ServerAliveInterval=10",
        ]);
        a.extend(["-o".into(), format!("ControlPath={}/%C", dir.display())]);
        a.extend(["-o".into(), format!("UserKnownHostsFile={}/known_hosts", dir.display())]);
        a.extend(sv(&["-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR"]));
        a.extend(["-o".into(), format!("ConnectTimeout={}", s.connect_timeout)]);
        let password = s.password_env.as_ref().is_some_and(|v| std::env::var_os(v).is_some());
        a.extend(sv(&["-o", if password { "BatchMode=no" } else { "BatchMode=yes" }]));
        if let Some(k) = &s.key_file {
            a.extend([
                "-i".into(),
                k.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        a.extend(["-p".into(), s.port.to_string(), "-l".into(), s.user.clone()]);
        a
    }

    fn command(&self, extra: &[&str], remote: Option<&str>) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.base_args()).args(extra).arg(&self.address);
        if let Some(r) = remote {
            c.arg("--").arg(r);
        }
        if let Some(v) = &self.settings.password_env {
            if std::env::var_os(v).is_some() {
                if let Ok(exe) = std::env::current_exe() {
                    c.env("SSH_ASKPASS", exe)
                        .env("SSH_ASKPASS_REQUIRE", "force")
                        .env(ASKPASS_VAR, v);
                }
            }
        }
        c
    }

    /// Turn ssh's own failure (exit 255) into "failed to reach NODE (ADDR:PORT): REASON" with a hint.
    fn unreachable(&self, stderr: &str) -> anyhow::Error {
        let low = stderr.to_lowercase();
        let (reason, hint, known) = if low.contains("connection refused") {
            (
                "connection refused",
                "is sshd running on the node and listening on this port? (ssh.port in the inventory)",
                true,
            )
        } else if low.contains("timed out") {
            (
                "connection timed out",
                "check the address, the cable and any firewall between this machine and the node",
                true,
            )
        } else if low.contains("no route to host") || low.contains("network is unreachable") {
            (
                "no route to host",
                "check the address and that this machine is on the nodes' network",
                true,
            )
        } else if low.contains("permission denied") {
            (
                "authentication failed",
                "put the public half of ssh.key_file in the node's ~/.ssh/authorized_keys, or set ssh.password_env",
                true,
            )
        } else if low.contains("host key verification failed") || low.contains("remote host identification has changed")
        {
            (
                "the node's host key changed",
                "if the node was reinstalled, remove its line from <state-dir>/ssh/known_hosts",
                true,
            )
        } else {
            ("ssh failed", "run the ssh command with -v by hand to see why", false)
        };
        let detail = stderr.trim().lines().last().unwrap_or("").to_string();
        crate::error::with_hint(
            anyhow::anyhow!(
                "failed to reach {} ({}:{}): {reason}{}",
                self.node,
                self.address,
                self.settings.port,
                if detail.is_empty() || known {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ),
            hint,
        )
    }
}

impl Transport for OpenSsh {
    fn node(&self) -> &str {
        &self.node
    }

    fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CmdOutput> {
        let remote = shell_join(argv);
        let mut cmd = self.command(&[], Some(&remote));
        let out = run_process(&mut cmd, stdin).with_context(|| format!("failed to run ssh for {}", self.node))?;
        if out.code == 255
            && (out.stderr.starts_with("ssh:")
                || out.stderr.contains("Permission denied")
                || out.stderr.contains("Host key"))
        {
            return Err(self.unreachable(&out.stderr));
        }
        Ok(out)
    }

    fn close(&self) {
        let _ = self
            .command(&["-O", "exit"], None)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs commands on this machine: for tests and for a node that is the deploy machine itself.
pub struct Local {
    pub name: String,
}

impl Transport for Local {
    fn node(&self) -> &str {
        &self.name
    }
    fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CmdOutput> {
        let (prog, args) = argv.split_first().context("empty command")?;
        let mut cmd = Command::new(prog);
        cmd.args(args);
        run_process(&mut cmd, stdin).with_context(|| format!("failed to run {prog} on {}", self.name))
    }
}

fn run_process(cmd: &mut Command, stdin: Stdin<'_>) -> Result<CmdOutput> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(match stdin {
        Stdin::Null => Stdio::null(),
        Stdin::Bytes(_) => Stdio::piped(),
        Stdin::File(p) => Stdio::from(fs_err::File::open(p)?.into_parts().0),
    });
    let mut child = cmd.spawn()?;
    let writer = match (stdin, child.stdin.take()) {
        (Stdin::Bytes(b), Some(mut w)) => {
            let b = b.to_vec();
            Some(std::thread::spawn(move || {
                let _ = w.write_all(&b);
            }))
        }
        _ => None,
    };
    let out = child.wait_with_output()?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(CmdOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Started by ssh as SSH_ASKPASS: print the password from the variable named in [`ASKPASS_VAR`].
pub fn askpass_main(var: &std::ffi::OsStr) -> std::process::ExitCode {
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
    use std::io::{BufRead, IsTerminal, Write};
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

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/opt/airgap/bin/airgap"), "/opt/airgap/bin/airgap");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn local_copy_and_read() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"hello").unwrap();
        let t = Local { name: "here".into() };
        let dst = d.path().join("sub/dst");
        t.copy(&src, dst.to_str().unwrap(), 0o640).unwrap();
        assert_eq!(t.read_file(dst.to_str().unwrap()).unwrap().unwrap(), b"hello");
        assert!(t.read_file(d.path().join("nope").to_str().unwrap()).unwrap().is_none());
    }
}
