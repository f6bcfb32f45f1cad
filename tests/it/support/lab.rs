//! The multi-host lab of the tests: ONE `scripts/lab.sh` lab of 5 nodes for the whole `it` binary, booted
//! lazily by the first lab test, handed out one test at a time, every node reset to a fresh boot
//! (`lab.sh reset`) before the next test, and taken down when the binary ends (an exit hook, and a reaper
//! process that also does it when the binary is killed). Its id, state dir and subnet derive from the PID,
//! so that labs (a person's, other test binaries') never collide.
//!
//! ```ignore
//! let Some(lab) = lab::shared() else { return };   // None only where the policy says so (not root, not CI)
//! ```
//!
//! Whether a lab test runs is [`policy`]: as root always; not root under CI a failure; elsewhere a loud
//! "NOT RUN".

use std::io::Write;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many nodes the shared lab has (master1-3, worker1-2).
pub const NODES: usize = 5;

/// The lab's state dir (SSH key, overlays, PIDs, logs); removed when the lab goes down.
#[derive(Clone, Debug)]
pub struct LabDir(PathBuf);

impl LabDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// A lab as one test sees it: the shared lab, or its first `n` nodes (`Lab::up(n)`).
#[derive(Clone, Debug)]
pub struct Lab {
    pub id: String,
    pub net: String,
    pub dir: LabDir,
    pub nodes: Vec<String>,
}

/// What a lab test does on this machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Policy {
    Run,
    /// Not run, and it says so loudly (the test passes without having tested anything).
    NotRun(String),
    /// The test fails: under CI a lab test that cannot run is a failure, never a pass.
    Fail(String),
}

/// Under root a lab test always runs (AIRGAP_SKIP_LAB is ignored: no skip under root). Not root: under CI a
/// failure; elsewhere "NOT RUN", with AIRGAP_SKIP_LAB=1 as the stated reason when it is set.
pub fn policy(root: bool, ci: bool, skip_requested: bool) -> Policy {
    const NEEDS: &str = "the multi-host lab needs root (network namespaces, mounts, cgroups, systemd-nspawn)";
    match (root, ci, skip_requested) {
        (true, _, _) => Policy::Run,
        (false, true, _) => Policy::Fail(format!(
            "{NEEDS}, and CI is set: a lab test must run in CI, not pass untested; run the suite as root"
        )),
        (false, false, true) => Policy::NotRun("AIRGAP_SKIP_LAB=1 (and not root): the lab test was skipped".into()),
        (false, false, false) => Policy::NotRun(format!("{NEEDS}; run the suite as root")),
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The policy on this machine, applied: true when the test should run. Prints (uncaptured) or panics.
pub fn should_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let test = std::thread::current().name().unwrap_or("a lab test").to_string();
    match policy(root, env_flag("CI"), env_flag("AIRGAP_SKIP_LAB")) {
        Policy::Run => {
            if env_flag("AIRGAP_SKIP_LAB") {
                loud(&format!("AIRGAP_SKIP_LAB ignored for {test}: under root the lab tests always run"));
            }
            true
        }
        Policy::NotRun(why) => {
            loud(&format!("NOT RUN: {test}: {why}"));
            false
        }
        Policy::Fail(why) => panic!("{test}: {why}"),
    }
}

/// A line on the real stderr, past libtest's output capture (a passing test's `eprintln!` is never shown).
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "\n*** {line} ***");
}

struct Shared {
    lab: Option<Lab>,
    /// A test had the lab since its last reset.
    dirty: bool,
    /// The boot failed once: later tests fail at once instead of booting (and racing its reaper) again.
    boot_failed: bool,
    boot: Duration,
    resets: Vec<Duration>,
    tests: usize,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared { lab: None, dirty: false, boot_failed: false, boot: Duration::ZERO, resets: Vec::new(), tests: 0 });
/// The reaper: its stdin is a pipe whose only writer is this process; at EOF (exit, crash, SIGKILL) it runs
/// `lab.sh down` and removes the lab's dir.
static REAPER: Mutex<Option<std::process::Child>> = Mutex::new(None);

/// The shared lab for this test (all its nodes), held until the guard drops; `None` (said loudly) when the
/// [`policy`] says not to run. Lab tests run one at a time; other tests run alongside.
pub fn shared() -> Option<Guard> {
    if !should_run() {
        return None;
    }
    let mut s = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match &s.lab {
        None => {
            assert!(!s.boot_failed, "the shared lab failed to boot in an earlier test: see its output");
            s.boot_failed = true;
            let n = std::env::var("AIRGAP_TEST_LAB_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(NODES);
            let t = Instant::now();
            let lab = Lab::boot(n);
            s.boot = t.elapsed();
            eprintln!("shared lab {} ({} nodes) up in {:.1} s", lab.id, n, s.boot.as_secs_f64());
            s.lab = Some(lab);
            s.boot_failed = false;
        }
        Some(lab) if s.dirty => {
            let t = Instant::now();
            let out = lab.script(&["reset"]);
            assert!(out.status.success(), "lab reset failed:\n{}", String::from_utf8_lossy(&out.stderr));
            eprintln!("shared lab {} reset in {:.1} s", lab.id, t.elapsed().as_secs_f64());
            s.resets.push(t.elapsed());
        }
        Some(_) => {}
    }
    s.dirty = true;
    s.tests += 1;
    let view = s.lab.clone().unwrap();
    Some(Guard { view, _slot: s })
}

/// The lab tests' turn without the lab (booted or not, it stays as it is): for a test that boots labs of
/// its own and must not share the machine with a lab test meanwhile.
pub fn exclusive() -> MutexGuard<'static, impl Sized> {
    SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shared lab, lent to one test. Derefs to [`Lab`].
pub struct Guard {
    view: Lab,
    _slot: MutexGuard<'static, Shared>,
}

impl Guard {
    /// Only the first `n` nodes (the others keep running, untouched).
    fn first(mut self, n: usize) -> Guard {
        assert!(n <= self.view.nodes.len(), "the shared lab has {} nodes, not {n}", self.view.nodes.len());
        self.view.nodes.truncate(n);
        self
    }
}

impl Deref for Guard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.view
    }
}

/// The lab's rootfs (built once under a lock by `lab.sh rootfs`), without taking the lab: e.g. for the
/// package closure of a bundle made before the test takes the shared lab.
pub fn rootfs() -> PathBuf {
    let out = Command::new(script()).arg("rootfs").stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "lab.sh rootfs failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from("/var/cache/airgap-lab/rootfs-bookworm")
}

fn script() -> PathBuf {
    super::repo().join("scripts/lab.sh")
}

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

/// At the end of the test binary: close the reaper's pipe and wait until it has taken the lab down.
extern "C" fn take_down_at_exit() {
    let reaper = REAPER.lock().map(|mut r| r.take()).unwrap_or(None);
    let Some(mut reaper) = reaper else { return };
    let t = Instant::now();
    drop(reaper.stdin.take());
    let status = reaper.wait();
    let s = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    let resets: Duration = s.resets.iter().sum();
    let max = s.resets.iter().max().copied().unwrap_or_default();
    loud(&format!(
        "shared lab: {} lab tests; boot {:.1} s; {} resets, {:.1} s in all (longest {:.1} s); down in {:.1} s{}",
        s.tests,
        s.boot.as_secs_f64(),
        s.resets.len(),
        resets.as_secs_f64(),
        max.as_secs_f64(),
        t.elapsed().as_secs_f64(),
        match status {
            Ok(st) if st.success() => String::new(),
            other => format!(" -- TEARDOWN FAILED: {other:?}"),
        }
    ));
}

impl Lab {
    /// The shared lab's first `n` nodes, for tests written before the lab was shared (`None` as [`shared`]).
    pub fn up(n: usize) -> Option<Guard> {
        shared().map(|g| g.first(n))
    }

    /// Boot a lab of `n` nodes with its reaper and exit hook (once per test binary).
    fn boot(n: usize) -> Lab {
        let pid = std::process::id();
        let id = format!("t{}", pid % 100_000);
        // a /24 unused on this host, derived from the PID (lab.sh refuses one already in use); 10.200-239.x:
        // never inside the default pod subnet 10.244.0.0/16 (the inventory would be refused)
        let net = format!("10.{}.{}", 200 + (pid / 250) % 40, pid % 250);
        let dir = tempfile::Builder::new().prefix("airgap-lab-").tempdir_in("/var/tmp").unwrap().keep();
        let lab = Lab { id, net, dir: LabDir(dir), nodes: Vec::new() };
        // the reaper first: whatever happens from here on, the lab goes down when this process ends
        let mut reaper = Command::new("bash");
        reaper
            .args(["-c", "cat >/dev/null; \"$0\" down; rc=$?; rm -rf --one-file-system \"$LAB_DIR\"; exit $rc"])
            .arg(script())
            .env("LAB_ID", &lab.id)
            .env("LAB_DIR", lab.dir.path())
            .env("LAB_NET", &lab.net)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        // its own session: a Ctrl-C to the test run's process group does not stop it before the teardown
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut reaper, || {
                nix::unistd::setsid().map(drop).map_err(std::io::Error::from)
            });
        }
        *REAPER.lock().unwrap() = Some(reaper.spawn().expect("start the lab's reaper"));
        assert_eq!(unsafe { atexit(take_down_at_exit) }, 0, "atexit");
        let out = lab.script(&["up", &n.to_string()]);
        assert!(out.status.success(), "lab up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let nodes = std::fs::read_to_string(lab.dir.path().join("nodes.list")).unwrap();
        Lab { nodes: nodes.lines().map(String::from).collect(), ..lab }
    }

    pub fn script(&self, args: &[&str]) -> Output {
        Command::new(script())
            .args(args)
            .env("LAB_ID", &self.id)
            .env("LAB_DIR", self.dir.path())
            .env("LAB_NET", &self.net)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run a command inside a node without SSH (nsenter); panics on failure; returns stdout.
    pub fn exec(&self, node: &str, cmd: &str) -> String {
        let out = self.script(&["exec", node, "sh", "-c", cmd]);
        assert!(out.status.success(), "{node}: `{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The node's root file system as this machine sees it (its overlay's merged directory).
    pub fn root(&self, node: &str) -> PathBuf {
        self.dir.path().join("nodes").join(node).join("merged")
    }

    pub fn address(&self, node: &str) -> String {
        let i = self.nodes.iter().position(|n| n == node).unwrap();
        format!("{}.{}", self.net, 11 + i)
    }

    /// An inventory of this lab's nodes (from `lab.sh inventory`), with `extra` YAML appended.
    pub fn inventory(&self, path: &Path, extra: &str) {
        let out = self.script(&["inventory", &self.nodes.len().to_string()]);
        assert!(out.status.success());
        std::fs::write(path, format!("{}{extra}", String::from_utf8_lossy(&out.stdout))).unwrap();
    }

    /// The nodes that hold `vip` on eth0, read from their network namespaces (not over the VIP).
    pub fn vip_holders(&self, vip: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| {
                let out = Command::new("ip").args(["-n", &format!("{}-{n}", self.id), "-br", "addr", "show", "eth0"]).output().unwrap();
                String::from_utf8_lossy(&out.stdout).split_whitespace().any(|a| a == format!("{vip}/24"))
            })
            .cloned()
            .collect()
    }

    pub fn stop_node(&self, node: &str) {
        assert!(self.script(&["stop-node", node]).status.success());
    }

    pub fn start_node(&self, node: &str) {
        let out = self.script(&["start-node", node]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Nothing to do: the shared lab is reset before the next test and taken down when the test binary ends
    /// (`lab.sh down` then checks that no namespace, cgroup or link of it is left). Kept for older tests.
    pub fn down(&self) {}
}
