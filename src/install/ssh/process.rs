//! The processes the transport starts (every `ssh`, `ssh-keyscan`, and the local commands of [`super::Local`]):
//! they die with airgap, SIGKILL of airgap included, and none of them runs past its deadline.
//!
//! - **Dying with airgap**: each child asks the kernel for `PR_SET_PDEATHSIG(SIGKILL)` between fork and exec
//!   ([`die_with_parent`]). The kernel sends it when the *thread* that forked the child exits, so a child that
//!   must outlive the thread asking for it (an ssh ControlMaster, started from a worker thread and used by
//!   the others) is forked by one thread that lives as long as the process ([`spawn_long_lived`]). OpenSSH's
//!   own forking is kept out of the way: the ControlMaster runs in the foreground (`ControlPersist=no`, no
//!   `-f`), so it stays our child instead of daemonizing out of reach (a forked child does not inherit the
//!   parent-death signal).
//! - **Deadlines**: [`run`] waits for the child (with `waitid(WNOWAIT)` in a helper thread, so the child is
//!   not reaped before we are done with its PID: a kill never hits a reused PID) and for its output, up to a
//!   deadline; then it kills the child (its whole process group for local commands) and says it timed out,
//!   with the output collected so far.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Make the child die (SIGKILL) when airgap dies. See the module documentation for the thread rule.
pub fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and only makes two system calls (no allocation, no lock).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)?;
            // airgap may have died between the fork and the prctl: then nobody would send the signal
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` (already set up with [`die_with_parent`]) from a thread that lives as long as the process, so
/// that the parent-death signal fires only when airgap itself exits.
pub fn spawn_long_lived(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("airgap-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("failed to start the spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer.recv().map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// What a command reads on stdin (see [`super::Stdin`]), resolved to something a child can take.
pub enum Input {
    Null,
    Bytes(Vec<u8>),
    File(std::fs::File),
}

/// A finished (or stopped) child.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Killed at the deadline.
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Finished {
    /// The last non-empty lines of the output (stderr, else stdout), for error messages.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        last_lines(&self.stdout, &self.stderr, n)
    }
}

/// The last `n` non-empty lines of stderr, else of stdout.
pub fn last_lines(stdout: &[u8], stderr: &[u8], n: usize) -> Vec<String> {
    let pick = |b: &[u8]| -> Vec<String> {
        let text = String::from_utf8_lossy(b);
        let lines: Vec<String> = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).map(String::from).collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    };
    let e = pick(stderr);
    if e.is_empty() {
        pick(stdout)
    } else {
        e
    }
}

enum Event {
    Exited,
    Stdout,
    Stderr,
}

/// How long the output readers may lag behind the child's exit (an ssh mux client's output is written by its
/// ControlMaster, which closes its copies of the pipes when the session ends).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// Run `cmd` to completion or until `limit` has passed, whichever comes first. The child dies with airgap;
/// with `own_group` it gets its own process group, killed whole at the deadline (local commands whose
/// children would otherwise keep the output pipes open).
pub fn run(cmd: &mut Command, input: Input, limit: Duration, own_group: bool) -> io::Result<Finished> {
    let started = Instant::now();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let bytes = match input {
        Input::Null => {
            cmd.stdin(Stdio::null());
            None
        }
        Input::Bytes(b) => {
            cmd.stdin(Stdio::piped());
            Some(b)
        }
        Input::File(f) => {
            cmd.stdin(Stdio::from(f));
            None
        }
    };
    die_with_parent(cmd);
    if own_group {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn()?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    for (pipe, buf, ev) in [
        (child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), stdout.clone(), Event::Stdout),
        (child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), stderr.clone(), Event::Stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut chunk = [0u8; 64 * 1024];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]),
                    }
                }
            }
            let _ = tx.send(ev);
        });
    }
    if let (Some(b), Some(mut w)) = (bytes, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = w.write_all(&b);
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use nix::sys::wait::{waitid, Id, WaitPidFlag};
            // wait for the exit without reaping: the PID stays ours until `child.wait()` below
            while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {}
            let _ = tx.send(Event::Exited);
        });
    }
    drop(tx);
    let deadline = started + limit;
    let (mut exited, mut out_done, mut err_done, mut timed_out) = (false, false, false, false);
    let mut grace_until: Option<Instant> = None;
    while !(exited && out_done && err_done) {
        let until = grace_until.unwrap_or(deadline);
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Event::Exited) => {
                exited = true;
                grace_until.get_or_insert_with(|| Instant::now() + OUTPUT_GRACE);
            }
            Ok(Event::Stdout) => out_done = true,
            Ok(Event::Stderr) => err_done = true,
            Err(mpsc::RecvTimeoutError::Timeout) if exited => break, // output still held by a grandchild
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let target = if own_group { nix::unistd::Pid::from_raw(-pid.as_raw()) } else { pid };
                let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
                // the child dies now; its output readers get what is left within the grace period
                grace_until = Some(Instant::now() + OUTPUT_GRACE);
                while !exited {
                    match rx.recv() {
                        Ok(Event::Exited) => exited = true,
                        Ok(Event::Stdout) => out_done = true,
                        Ok(Event::Stderr) => err_done = true,
                        Err(_) => break,
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    if own_group && timed_out {
        // what the group's other members may still hold
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pid.as_raw()), nix::sys::signal::Signal::SIGKILL);
    }
    let take = |b: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Finished {
        code: status.code(),
        stdout: take(&stdout),
        stderr: take(&stderr),
        timed_out,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn output_and_exit_code() {
        let f = run(&mut sh("echo out; echo err >&2; exit 3"), Input::Null, Duration::from_secs(30), false).unwrap();
        assert_eq!((f.code, f.timed_out), (Some(3), false));
        assert_eq!(f.stdout, b"out\n");
        assert_eq!(f.stderr, b"err\n");
        let f = run(&mut Command::new("cat"), Input::Bytes(b"piped".to_vec()), Duration::from_secs(30), false).unwrap();
        assert_eq!(f.stdout, b"piped");
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        // the grandchild (sleep) holds the output pipes: without the group kill this would wait 60 s
        let f = run(&mut sh("echo started; echo working >&2; sleep 60; echo never"), Input::Null, Duration::from_millis(300), true).unwrap();
        assert!(f.timed_out);
        assert!(f.elapsed < Duration::from_secs(10), "{:?}", f.elapsed);
        assert_eq!(f.stdout, b"started\n");
        assert_eq!(f.last_lines(5), ["working"]);
    }

    #[test]
    fn last_lines_prefer_stderr() {
        assert_eq!(last_lines(b"a\nb\n", b"", 1), ["b"]);
        assert_eq!(last_lines(b"a\n", b"x\n\ny\n", 5), ["x", "y"]);
    }

    #[test]
    fn children_die_with_the_thread_that_spawned_them_unless_long_lived() {
        // a child started from a short-lived thread gets SIGKILL when that thread ends (the kernel's rule);
        // spawn_long_lived's children do not
        let short = std::thread::spawn(|| {
            let mut c = Command::new("sleep");
            c.arg("60");
            die_with_parent(&mut c);
            c.spawn().unwrap()
        })
        .join()
        .unwrap();
        let mut c = Command::new("sleep");
        c.arg("60");
        die_with_parent(&mut c);
        let long = std::thread::spawn(move || spawn_long_lived(c).unwrap()).join().unwrap();
        let mut short = short;
        let st = short.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(9), "{st:?}");
        let mut long = long;
        assert!(long.try_wait().unwrap().is_none(), "the long-lived child died with its requesting thread");
        long.kill().unwrap();
        long.wait().unwrap();
    }
}
