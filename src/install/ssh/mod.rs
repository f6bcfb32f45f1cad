//! Reaching nodes: a small [`Transport`] trait (run a command, copy a file, read a file) with the real
//! implementation over the system's OpenSSH client ([`openssh`]) and a local one (runs on this machine:
//! tests, and `--dry-run` without nodes).
//!
//! What "SSH you can trust" means here, and where each part lives:
//! - [`hostkeys`]: every node's host key is checked (pinned in the inventory, else recorded on first contact)
//!   before anything authenticates, and ssh enforces exactly that key;
//! - [`process`]: every ssh airgap starts (ControlMaster included) dies with airgap, SIGKILL included;
//! - [`timeouts`]: every remote command has a deadline per kind, enforced here and on the node;
//! - [`openssh`]: the transport itself, its private run directory (short control socket paths, this run's
//!   known_hosts) and the password through `SSH_ASKPASS` only;
//! - copies ([`Transport::copy`] here, `airgap node receive` in `node::files`) go to a unique temporary name,
//!   are checked by sha256 before a rename under the destination directory's lock, and only a verified
//!   receive writes the stamp that lets a later check skip hashing.

pub mod hostkeys;
pub mod openssh;
pub mod process;
pub mod timeouts;

pub use openssh::{askpass_main, prompt_password, OpenSsh, RunDir, SshSettings, ASKPASS_VAR};

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long after a command's remote deadline its ssh here is killed (the node's `timeout` gets the first go).
pub const LOCAL_GRACE: Duration = Duration::from_secs(15);

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

    /// Copy a local file to `remote` with `mode` when the node has no airgap binary yet (the binary itself):
    /// streamed into a temporary file of its own (`.NAME.airgap-partial.XXXXXXXX`), checked against `sha256`,
    /// then renamed into place under the directory's lock. A cut transfer never replaces the file, and two
    /// copies never write into the same temporary file.
    fn copy(&self, local: &Path, remote: &str, mode: u32, sha256: &crate::digest::Digest) -> Result<()> {
        let argv = sv(&["sh", "-c", COPY_SCRIPT, "sh", remote, &format!("{mode:o}"), sha256.hex()]);
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

/// The node side of [`Transport::copy`] (POSIX sh + coreutils; `flock` from util-linux when present).
/// Once the file is in place, its stamp (see [`HASH_SCRIPT`]) is written under the lock. Partial files of
/// earlier copies cut short untidily (not touched for an hour) are removed.
const COPY_SCRIPT: &str = r#"set -e
f=$1; mode=$2; want=$3
d=$(dirname "$f"); b=$(basename "$f")
mkdir -p "$d"
t=$(mktemp "$d/.$b.airgap-partial.XXXXXXXX")
trap 'rm -f "$t"' EXIT
trap 'rm -f "$t"; exit 1' HUP INT TERM PIPE
cat > "$t"
h=$(sha256sum "$t" | cut -d' ' -f1)
if [ "$h" != "$want" ]; then echo "received content with sha256 $h, expected $want (transfer cut short?)" >&2; exit 1; fi
chmod "$mode" "$t"
exec 9>"$d/.airgap.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
mv -f "$t" "$f"
s="$d/.$b.sha256"
echo "v2 $want $(stat -c '%d %i %s %y %z' "$f")" > "$s.$$" && mv -f "$s.$$" "$s"
find "$d" -maxdepth 1 -name ".$b.airgap-partial.*" -mmin +60 -exec rm -f {} + 2>/dev/null || true"#;

/// The sha256 of a file on a node that may not have airgap yet (`$1`; nothing when it does not exist), using
/// its stamp `.NAME.sha256` when the stamp names the expected sha256 (`$2`) and the file's identity now:
/// device, inode, size, mtime and ctime to the nanosecond (any write, rename over, chmod or touch changes
/// the inode or the ctime). The stamp is written only by [`COPY_SCRIPT`] after a verified copy, or here when
/// a full hash matched and the file's identity was the same before and after hashing.
pub const HASH_SCRIPT: &str = r#"f=$1; want=$2; s="$(dirname "$f")/.$(basename "$f").sha256"
[ -f "$f" ] || exit 0
id() { stat -c '%d %i %s %y %z' "$1"; }
before=$(id "$f")
if [ -f "$s" ] && [ "$(cat "$s")" = "v2 $want $before" ]; then echo "$want"; exit 0; fi
h=$(sha256sum "$f" | cut -d' ' -f1); echo "$h"
if [ "$h" = "$want" ] && [ "$(id "$f")" = "$before" ]; then echo "v2 $want $before" > "$s.$$" && mv -f "$s.$$" "$s"; fi
exit 0"#;

/// The sha256 of `path` on the node (`None`: no such file), by [`HASH_SCRIPT`].
pub fn remote_sha256(t: &dyn Transport, path: &str, want: &crate::digest::Digest) -> Result<Option<String>> {
    let out = t.run(&sv(&["sh", "-c", HASH_SCRIPT, "sh", path, want.hex()]), Stdin::Null)?;
    if !out.success() {
        bail!("failed to hash {path} on {}: {}", t.node(), out.reason());
    }
    Ok(out.stdout_str().split_whitespace().next().map(String::from))
}

/// What a command reads on stdin, opened for a child: the input and, for a file, its size.
impl Stdin<'_> {
    pub fn open(&self) -> Result<(process::Input, Option<u64>)> {
        Ok(match self {
            Stdin::Null => (process::Input::Null, None),
            Stdin::Bytes(b) => (process::Input::Bytes(b.to_vec()), None),
            Stdin::File(p) => {
                let f = fs_err::File::open(p)?.into_parts().0;
                let size = f.metadata()?.len();
                (process::Input::File(f), Some(size))
            }
        })
    }
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

/// Runs commands on this machine: for tests and for a node that is the deploy machine itself. The same
/// deadlines apply (the command's whole process group is killed at its deadline).
pub struct Local {
    pub name: String,
    pub timeouts: timeouts::Timeouts,
}

impl Local {
    pub fn new(name: &str) -> Local {
        Local { name: name.into(), timeouts: timeouts::Timeouts::default() }
    }
}

impl Transport for Local {
    fn node(&self) -> &str {
        &self.name
    }
    fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CmdOutput> {
        let (prog, args) = argv.split_first().context("empty command")?;
        let (input, copy_bytes) = stdin.open()?;
        let (limit, setting) = self.timeouts.limit(timeouts::kind_of(argv, copy_bytes));
        let mut cmd = Command::new(prog);
        cmd.args(args);
        let out = process::run(&mut cmd, input, limit, true).with_context(|| format!("failed to run {prog} on {}", self.name))?;
        if out.timed_out {
            return Err(timeouts::TimedOut {
                node: self.name.clone(),
                command: shell_join(argv),
                after: limit,
                setting,
                last_lines: out.last_lines(5),
            }
            .into_error());
        }
        Ok(CmdOutput {
            code: out.code.unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
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
        let t = Local::new("here");
        let dst = d.path().join("sub/dst");
        let sha = crate::digest::Digest::of_bytes(b"hello");
        t.copy(&src, dst.to_str().unwrap(), 0o640, &sha).unwrap();
        assert_eq!(t.read_file(dst.to_str().unwrap()).unwrap().unwrap(), b"hello");
        assert!(t.read_file(d.path().join("nope").to_str().unwrap()).unwrap().is_none());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777, 0o640);
        // content that does not match (a transfer cut short) never replaces the file, and leaves no partial
        let err = t.copy(&src, dst.to_str().unwrap(), 0o640, &crate::digest::Digest::of_bytes(b"hell")).unwrap_err();
        assert!(format!("{err:#}").contains("transfer cut short"), "{err:#}");
        assert_eq!(std::fs::read(&dst).unwrap(), b"hello");
        let left: Vec<_> = std::fs::read_dir(d.path().join("sub")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().contains("airgap-partial")), "{left:?}");
    }

    #[test]
    fn the_binary_stamp_vouches_only_for_the_copied_file() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"binary v1").unwrap();
        let sha = crate::digest::Digest::of_bytes(b"binary v1");
        let t = Local::new("here");
        let dst = d.path().join("bin/airgap");
        let dst_s = dst.to_str().unwrap();
        assert_eq!(remote_sha256(&t, dst_s, &sha).unwrap(), None);
        t.copy(&src, dst_s, 0o755, &sha).unwrap();
        assert!(std::fs::read_to_string(d.path().join("bin/.airgap.sha256")).unwrap().starts_with(&format!("v2 {} ", sha.hex())));
        assert_eq!(remote_sha256(&t, dst_s, &sha).unwrap().as_deref(), Some(sha.hex()));
        // the same size written in place and the mtime set back: hashed again, not vouched for by the stamp
        let run = |c: &str| assert!(Command::new("sh").args(["-c", c, "sh", dst_s]).status().unwrap().success());
        run(r#"m=$(stat -c %y "$1"); printf 'binary v2' > "$1"; touch -d "$m" "$1""#);
        assert_ne!(remote_sha256(&t, dst_s, &sha).unwrap().as_deref(), Some(sha.hex()));
        // a partial file renamed over it, with the same size and times
        std::fs::write(&dst, b"binary v1").unwrap();
        assert_eq!(remote_sha256(&t, dst_s, &sha).unwrap().as_deref(), Some(sha.hex()));
        run(r#"printf 'binary\0\0\0' > "$1.p"; touch -r "$1" "$1.p"; mv "$1.p" "$1""#);
        assert_ne!(remote_sha256(&t, dst_s, &sha).unwrap().as_deref(), Some(sha.hex()));
    }

    #[test]
    fn a_local_command_past_its_deadline_fails_naming_it() {
        let mut t = Local::new("here");
        t.timeouts.install = Duration::from_millis(300);
        let err = t.run(&sv(&["sh", "-x", "-c", "echo preparing; echo almost >&2; sleep 60"]), Stdin::Null).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("`sh -x -c 'echo preparing; echo almost >&2; sleep 60'` timed out on here after 0 s (ssh.timeouts.install)"), "{msg}");
        assert!(msg.contains("almost"), "{msg}");
        assert!(crate::error::hints(&err)[0].contains("raise ssh.timeouts.install"));
    }
}
