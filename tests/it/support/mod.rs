//! Test harness shared by the integration tests: real daemons started on loopback, test images, helpers.
#![allow(dead_code)]

pub mod bundle;
pub mod attack;
pub mod containerd;
pub mod cri;
pub mod fileserver;
pub mod images;
pub mod kubepki;
pub mod lab;
pub mod registry;
pub mod standins;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The airgap binary under test.
pub fn airgap_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airgap"))
}

/// A free TCP port on 127.0.0.1 (bound then released; the caller starts its server right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Run a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Wait until a TCP port accepts connections.
pub fn wait_for_port(addr: &str, timeout: Duration) {
    wait_until(&format!("something to listen on {addr}"), timeout, || std::net::TcpStream::connect(addr).is_ok());
}

/// Whether a program is on PATH (tests needing it fail loudly with an install hint otherwise).
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "{name} is not installed: run `bash .ci/run` or scripts/setup-debian.sh first");
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// sha256 hex of a file, computed by the stock `sha256sum`.
pub fn sha256sum(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The airgap binary built for these tests, as a command.
pub fn airgap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airgap"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Kept so that lab tests written before the lab was shared compile: `lab::shared()` / `Lab::up(n)` serialise
/// the lab tests themselves now. Never taken while holding the lab (the order is: this slot, then the lab).
pub fn lab_slot() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SLOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wait until `cond` holds, polling every 20 ms, failing with `what` after `limit`;
/// returns how long it took. The tests' one way to wait: on a condition, never for a fixed time.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    try_wait_until(limit, &mut cond).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// As [`wait_until`], but `None` on timeout (the caller says what went wrong).
pub fn try_wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if cond() {
            return Some(t.elapsed());
        }
        if t.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20)); // the poll period
    }
}
