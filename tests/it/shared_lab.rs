//! The shared lab itself (`support::lab`): when a lab test runs, and that the lab never outlives the test
//! binary (a normal end, and SIGKILL: the reaper). The teardown test runs this very binary as a child, whose
//! `probe` boots a 1-node shared lab of its own.

use crate::support::lab::{self, Policy};
use crate::support::wait_until;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn lab_policy_runs_as_root_fails_in_ci_and_says_not_run_elsewhere() {
    // (root, CI, AIRGAP_SKIP_LAB): under root always run, whatever is asked
    for ci in [false, true] {
        for skip in [false, true] {
            assert_eq!(lab::policy(true, ci, skip), Policy::Run, "root, CI={ci}, skip={skip}");
        }
    }
    // not root under CI: a failure, with or without the skip flag (CI never passes a lab test untested)
    for skip in [false, true] {
        let Policy::Fail(why) = lab::policy(false, true, skip) else { panic!("not root under CI must fail") };
        assert!(why.contains("needs root") && why.contains("CI is set") && why.contains("run the suite as root"), "{why}");
    }
    // elsewhere: not run, and the reason says which
    let Policy::NotRun(why) = lab::policy(false, false, false) else { panic!() };
    assert!(why.contains("needs root") && why.contains("run the suite as root"), "{why}");
    let Policy::NotRun(why) = lab::policy(false, false, true) else { panic!() };
    assert!(why.contains("AIRGAP_SKIP_LAB=1"), "{why}");
}

/// Not root, CI set: a lab test fails (run as `nobody`, the real test binary, a real lab test).
#[test]
fn a_lab_test_fails_under_ci_when_not_root_and_says_not_run_elsewhere() {
    if !nix::unistd::geteuid().is_root() {
        // the policy above covers it; running as another user needs root
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let run = |ci: bool| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&exe)
            .args(["shared_lab::probe", "--exact", "--include-ignored", "--test-threads=1"])
            .env_remove("CI")
            .env("AIRGAP_TEST_LAB_NODES", "1")
            .current_dir("/")
            .stdin(Stdio::null());
        if ci {
            c.env("CI", "true");
        }
        c.output().unwrap()
    };
    let o = run(true);
    let err = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(101), "{err}");
    assert!(err.contains("shared_lab::probe: the multi-host lab needs root") && err.contains("CI is set"), "{err}");
    let o = run(false);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(err.contains("*** NOT RUN: shared_lab::probe: the multi-host lab needs root"), "{err}");
}

/// The lab test the teardown test runs in a child test binary: boots (a 1-node) shared lab, and with
/// AIRGAP_LAB_PROBE_READY=FILE writes FILE once the lab is up and waits to be killed.
#[test]
#[ignore = "run by the_shared_lab_never_outlives_the_test_binary in a child process"]
fn probe() {
    let Some(lab) = lab::shared() else { return };
    assert_eq!(lab.exec("master1", "hostname").trim(), "master1");
    if let Some(ready) = std::env::var_os("AIRGAP_LAB_PROBE_READY") {
        std::fs::write(ready, &lab.id).unwrap();
        loop {
            std::thread::park(); // until SIGKILL
        }
    }
}

fn leftovers(id: &str) -> Vec<String> {
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let mut left: Vec<String> = String::from_utf8_lossy(&netns.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{id}-")))
        .map(String::from)
        .collect();
    for h in ["systemd", "unified"] {
        let cg = format!("/sys/fs/cgroup/{h}/airgap-lab-{id}");
        if std::path::Path::new(&cg).exists() {
            left.push(cg);
        }
    }
    if std::path::Path::new(&format!("/sys/class/net/{id}-host")).exists() {
        left.push(format!("{id}-host"));
    }
    left
}

#[test]
fn the_shared_lab_never_outlives_the_test_binary() {
    if !lab::should_run() {
        return;
    }
    // the lab tests' turn: no failover is being timed while these labs boot
    let _turn = lab::exclusive();
    let exe = std::env::current_exe().unwrap();
    let child = |ready: Option<&std::path::Path>| {
        let mut c = Command::new(&exe);
        c.args(["shared_lab::probe", "--exact", "--include-ignored", "--test-threads=1"])
            .env("AIRGAP_TEST_LAB_NODES", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(r) = ready {
            c.env("AIRGAP_LAB_PROBE_READY", r);
        }
        c.spawn().unwrap()
    };

    // 1. the binary ends normally: the lab is down when it has exited (the exit hook waits for the teardown)
    let c = child(None);
    let id = format!("t{}", c.id() % 100_000);
    let o = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("*** shared lab: 1 lab tests; boot ") && !err.contains("TEARDOWN FAILED"), "{err}");
    assert_eq!(leftovers(&id), Vec::<String>::new(), "the lab outlived its test binary");

    // 2. the binary is SIGKILLed with the lab up: the reaper takes it down
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut c = child(Some(&ready));
    let id = format!("t{}", c.id() % 100_000);
    wait_until("the child's lab up", Duration::from_secs(120), || ready.exists() || c.try_wait().unwrap().is_some());
    assert!(ready.exists(), "the probe ended without its lab: {:?}", c.wait_with_output());
    assert!(!leftovers(&id).is_empty(), "no lab to take down?");
    c.kill().unwrap();
    c.wait().unwrap();
    let t = Instant::now();
    wait_until("the reaper to take the killed binary's lab down", Duration::from_secs(60), || leftovers(&id).is_empty());
    eprintln!("lab of a SIGKILLed test binary down {:.1} s after the kill", t.elapsed().as_secs_f64());
}
