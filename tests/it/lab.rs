//! `airgap install` over real SSH against a lab of 5 systemd-nspawn nodes (master1-3, worker1-2) that boot
//! their own systemd: the shared lab (`support::lab`), every scenario in order (each leaves the lab converged).

use super::support::lab::{self, Lab};
use super::support::{airgap, wait_until};
use std::path::{Path, PathBuf};
use std::process::Output;

const STEPS: &str = "preflight,os-prepare,distribute";

struct Site {
    inventory: PathBuf,
    bundle: PathBuf,
    pubkey: PathBuf,
    state: PathBuf,
    logs: PathBuf,
}

impl Site {
    fn install(&self, extra: &[&str]) -> Output {
        let mut c = airgap();
        c.args(["install", "--inventory"])
            .arg(&self.inventory)
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--pubkey")
            .arg(&self.pubkey);
        c.arg("--state-dir")
            .arg(&self.state)
            .arg("--log-dir")
            .arg(&self.logs)
            .args(extra);
        c.output().unwrap()
    }
    fn status(&self, json: bool) -> Output {
        let mut c = airgap();
        c.args(["status", "--inventory"])
            .arg(&self.inventory)
            .arg("--state-dir")
            .arg(&self.state);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    }
    fn journal(&self) -> Vec<u8> {
        std::fs::read(self.state.join("journal.json")).unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "airgap failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stderr)
}

fn sha256_local(p: &Path) -> String {
    airgap::digest::Digest::of_file(p).unwrap().0.hex().to_string()
}

/// A real signed bundle (`testbundle-1.0.0.tar.zst`, its layer `mib` MiB of incompressible bytes) in
/// `fx`'s directory `out`.
fn signed_bundle(fx: &crate::support::bundle::Fixture, out: &str, mib: usize) -> PathBuf {
    fx.write(&fx.content(mib << 20), out, None, 2).archive
}

/// The name the bundle has on the nodes.
const BUNDLE_NAME: &str = "testbundle-1.0.0.tar.zst";

/// Everything the assertions look at on a node, in one `nsenter` (sections split by `@@@`).
const PROBE: &str = "hostname; echo @@@; cat /etc/hostname; echo @@@; cat /etc/hosts; echo @@@; \
    cat /etc/sysctl.d/99-airgap.conf; echo @@@; cat /proc/sys/net/ipv4/ip_forward; echo @@@; \
    cat /proc/sys/net/bridge/bridge-nf-call-iptables; echo @@@; cat /etc/modules-load.d/airgap.conf; echo @@@; \
    cat /etc/fstab; echo @@@; swapon --show --noheadings; echo @@@; $HASH_BINARY /opt/airgap/bin/airgap; echo @@@; \
    ls -A /opt/airgap/bundles 2>/dev/null; echo @@@; sha256sum /opt/airgap/bundles/testbundle-1.0.0.tar.zst 2>/dev/null; true";

/// What every node must look like after preflight,os-prepare,distribute (nodes probed in parallel).
fn assert_converged(lab: &Lab, bundle: &Path, hash_binary: bool) {
    let exe_sha = sha256_local(Path::new(env!("CARGO_BIN_EXE_airgap")));
    let bundle_sha = sha256_local(bundle);
    let probes: Vec<String> = std::thread::scope(|s| {
        let probe = PROBE.replace("$HASH_BINARY", if hash_binary { "sha256sum" } else { "ls" });
        let hs: Vec<_> = lab
            .nodes
            .iter()
            .map(|n| {
                let probe = probe.clone();
                s.spawn(move || lab.exec(n, &probe))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (node, probe)) in lab.nodes.iter().zip(&probes).enumerate() {
        let p: Vec<&str> = probe.split("@@@\n").collect();
        assert_eq!(p.len(), 12, "{node}: probe output:\n{probe}");
        assert_eq!(p[0].trim(), node, "hostname");
        assert_eq!(p[1].trim(), node, "/etc/hostname");
        for other in &lab.nodes {
            assert!(
                p[2].contains(&format!("{}\t{other}\n", lab.address(other))),
                "{node}: /etc/hosts lacks {other}:\n{}",
                p[2]
            );
        }
        assert_eq!(p[3], airgap::install::steps::os_prepare::sysctl_conf(), "{node}: sysctl.d file");
        assert_eq!(p[4].trim(), "1", "{node}: ip_forward");
        assert_eq!(p[5].trim(), "1", "{node}: bridge-nf-call-iptables");
        assert_eq!(
            p[6],
            airgap::install::steps::os_prepare::modules_conf(),
            "{node}: modules-load.d"
        );
        assert!(
            !p[7]
                .lines()
                .any(|l| !l.starts_with('#') && l.split_whitespace().nth(2) == Some("swap")),
            "{node}: swap in fstab:\n{}",
            p[7]
        );
        assert_eq!(p[8].trim(), "", "{node}: swap on");
        if hash_binary {
            assert_eq!(
                p[9].split_whitespace().next(),
                Some(exe_sha.as_str()),
                "{node}: airgap binary"
            );
        }
        assert!(
            !p[10].contains("airgap-partial"),
            "{node}: partial file left: {}",
            p[10]
        );
        if i == 3 || i == 4 {
            assert_eq!(
                p[11].split_whitespace().next(),
                Some(bundle_sha.as_str()),
                "{node}: bundle"
            );
        } else {
            assert!(!p[10].contains(BUNDLE_NAME), "{node} (a master) got the bundle");
        }
    }
}

#[test]
fn install_over_ssh_on_a_five_node_lab() {
    let t0 = std::time::Instant::now();
    let Some(lab) = lab::shared() else { return };
    let mut last = std::time::Instant::now();
    let mut phase = |name: &str| {
        eprintln!("  {name}: {:.1} s", last.elapsed().as_secs_f64());
        last = std::time::Instant::now();
    };
    let work = tempfile::tempdir().unwrap();
    let fx = crate::support::bundle::Fixture::new();
    let mut site = Site {
        inventory: work.path().join("site.yaml"),
        bundle: signed_bundle(&fx, "out", 8),
        pubkey: fx.public.clone(),
        state: work.path().join("state"),
        logs: work.path().join("logs"),
    };
    lab.inventory(&site.inventory, "");
    // a node set up the way real ones are: a swap line in fstab, a hosts file with other entries
    lab.exec(
        "master1",
        "printf 'UUID=0 / ext4 defaults 0 1\\n/swapfile none swap sw 0 0\\n' > /etc/fstab",
    );
    lab.exec(
        "master2",
        "printf '127.0.0.1\\tlocalhost\\n10.1.2.3\\tntp.plant\\n' > /etc/hosts",
    );

    // 1. a first install converges every node
    let t = std::time::Instant::now();
    let err = ok(&site.install(&["--only", STEPS]));
    eprintln!("first install: {:.1} s", t.elapsed().as_secs_f64());
    assert!(err.contains("install finished"), "{err}");
    assert_converged(&lab, &site.bundle, true);
    assert!(lab
        .exec("master1", "cat /etc/fstab")
        .contains("# /swapfile none swap sw 0 0"));
    assert!(lab
        .exec("master2", "cat /etc/hosts")
        .starts_with("127.0.0.1\tlocalhost\n10.1.2.3\tntp.plant\n# BEGIN airgap"));
    assert!(
        std::fs::read_dir(&site.logs).unwrap().count() >= 1,
        "no log under --log-dir"
    );

    phase("first install + asserts");
    // 2. the same command again: everything already done, journal unchanged
    let before = site.journal();
    let t = std::time::Instant::now();
    let err = ok(&site.install(&["--only", STEPS]));
    eprintln!("second install (all skipped): {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(err.matches(": already done").count(), 15, "{err}");
    assert!(err.contains("0 node-steps applied, 15 already done"), "{err}");
    assert_eq!(before, site.journal(), "journal changed by a run that did nothing");

    phase("second install");
    // 3. status, text and JSON
    let st = site.status(false);
    let out = text(&st.stdout);
    assert!(st.status.success());
    assert_eq!(
        out.lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("done"))
            .count(),
        15,
        "{out}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&site.status(true).stdout).unwrap();
    // the steps run here are done; the later steps (runtime, registry...) are pending
    let ran: Vec<&str> = STEPS.split(',').collect();
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .all(|r| (r["status"] == "done") == ran.contains(&r["step"].as_str().unwrap())));

    phase("status");
    // 4. a node changed by hand: the dry run shows the diff and changes nothing; the next run repairs it
    lab.exec(
        "worker1",
        &format!(
            "sed -i 's/^{}\\tmaster3$/10.0.0.99\\tmaster3/' /etc/hosts",
            lab.address("master3")
        ),
    );
    let dry = site.install(&["--only", "os-prepare", "--dry-run"]);
    ok(&dry);
    let plan = text(&dry.stdout);
    assert!(
        plan.contains("## os-prepare on worker1") && plan.contains("-10.0.0.99\tmaster3"),
        "{plan}"
    );
    assert!(!plan.contains("on master1"), "{plan}");
    assert!(
        lab.exec("worker1", "cat /etc/hosts").contains("10.0.0.99\tmaster3"),
        "dry run changed the node"
    );
    ok(&site.install(&["--only", "os-prepare"]));
    assert_converged(&lab, &site.bundle, false);

    phase("dry run + repair");
    // 5. SIGKILL in the middle of distribute (a new bundle), then the same command converges
    site.bundle = signed_bundle(&fx, "out2", 64);
    let mut child = {
        let mut c = airgap();
        c.args(["install", "--only", STEPS, "--inventory"])
            .arg(&site.inventory)
            .arg("--bundle")
            .arg(&site.bundle)
            .arg("--pubkey")
            .arg(&site.pubkey);
        c.arg("--state-dir").arg(&site.state).arg("--log-dir").arg(&site.logs);
        c.stderr(std::process::Stdio::null()).spawn().unwrap()
    };
    // killed once a worker holds part of the new bundle (a partial file with bytes in it)
    let partial = |node: &str| {
        std::fs::read_dir(lab.root(node).join("opt/airgap/bundles")).into_iter().flatten().flatten().any(|e| {
            e.file_name().to_string_lossy().contains("airgap-partial") && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    };
    let mut finished_early = false;
    wait_until("a partial copy of the bundle on a worker", std::time::Duration::from_secs(120), || {
        finished_early = child.try_wait().unwrap().is_some();
        finished_early || partial("worker1") || partial("worker2")
    });
    assert!(!finished_early, "install finished before it could be killed in distribute");
    child.kill().unwrap();
    let _ = child.wait();
    let journal: serde_json::Value = serde_json::from_slice(&site.journal()).expect("journal consistent after SIGKILL");
    assert_eq!(journal["steps"]["os-prepare"]["master1"]["status"], "done");
    let err = ok(&site.install(&["--only", STEPS]));
    assert!(
        err.contains("worker1: distribute: done: copied /opt/airgap/bundles/testbundle-1.0.0.tar.zst")
            || err.contains("worker2: distribute: done"),
        "{err}"
    );
    assert_converged(&lab, &site.bundle, false);

    phase("kill + converge");
    // 6. an unreachable node: a clear error naming it; the other nodes' results are kept
    lab.stop_node("worker2");
    let fresh = Site {
        state: work.path().join("state2"),
        inventory: site.inventory.clone(),
        bundle: site.bundle.clone(),
        pubkey: site.pubkey.clone(),
        logs: site.logs.clone(),
    };
    let o = fresh.install(&["--only", "os-prepare,distribute"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "failed to reach worker2 ({}:22): connection refused",
            lab.address("worker2")
        )),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    let st = text(&fresh.status(false).stdout);
    let row = |step: &str, node: &str| {
        st.lines()
            .find(|l| l.starts_with(step) && l.contains(&format!(" {node} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        row("os-prepare", "worker2").contains("failed")
            && row("os-prepare", "worker2").contains("failed to reach worker2"),
        "{st}"
    );
    for n in ["master1", "master2", "master3", "worker1"] {
        assert!(row("os-prepare", n).contains(" done "), "{st}");
    }
    assert!(row("distribute", "master1").contains("pending"), "{st}");
    lab.start_node("worker2");
    let err = ok(&fresh.install(&["--only", "os-prepare,distribute"]));
    assert!(err.contains("master1: os-prepare: already done"), "{err}");
    assert_converged(&lab, &fresh.bundle, true);

    phase("unreachable node + restart");
    // 7. preflight reports every problem at once and changes nothing
    let strict = Site {
        state: work.path().join("state3"),
        inventory: work.path().join("strict.yaml"),
        bundle: fresh.bundle.clone(),
        pubkey: fresh.pubkey.clone(),
        logs: fresh.logs.clone(),
    };
    lab.inventory(&strict.inventory, "preflight:\n  master_min_memory_mb: 99999999\n");
    lab.exec(
        "master1",
        "systemd-run --unit=occupy-6443 /usr/sbin/sshd -D -p 6443 -o PidFile=none",
    );
    wait_until("sshd on master1:6443", std::time::Duration::from_secs(5), || {
        lab.exec("master1", "cat /proc/net/tcp /proc/net/tcp6").contains(":192B ")
    });
    lab.exec("master3", "rm /etc/sysctl.d/99-airgap.conf");
    let o = strict.install(&["--only", STEPS]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("preflight found 4 problems on 3 nodes; nothing was changed"),
        "{err}"
    );
    assert!(err.contains("master1: TCP port already in use: 6443 by `sshd` (pid ") && err.contains(", occupy-6443.service)"), "{err}");
    for m in ["master1", "master2", "master3"] {
        assert!(
            err.contains(&format!("{m}: ")) && err.contains("a master needs at least 99999999 MB"),
            "{err}"
        );
    }
    assert!(!err.contains("worker1:  "), "{err}");
    assert_eq!(
        lab.exec("master3", "ls /etc/sysctl.d/ | grep -c airgap || true").trim(),
        "0",
        "os-prepare ran after a failed preflight"
    );
    let journal: serde_json::Value = serde_json::from_slice(&strict.journal()).unwrap();
    assert!(journal["steps"].get("os-prepare").is_none(), "{journal}");
    assert_eq!(journal["steps"]["preflight"]["master2"]["status"], "failed");
    lab.exec("master1", "systemctl stop occupy-6443");

    phase("preflight problems");
    eprintln!("lab test total: {:.1} s", t0.elapsed().as_secs_f64());
}

/// Without a lab (and without root): nodes that refuse connections on 127.0.0.x are named, with a hint, and
/// the journal records the failure per node.
#[test]
fn unreachable_nodes_are_named() {
    let d = tempfile::tempdir().unwrap();
    let mut inv = String::from(
        "cluster:\n  name: lo\n  kubernetes_version: 1.36.3\nssh:\n  port: 1\n  connect_timeout: 2\nnodes:\n",
    );
    for (i, n) in ["master1", "master2", "master3", "worker1", "worker2"]
        .iter()
        .enumerate()
    {
        let role = if i < 3 { "master" } else { "worker" };
        inv.push_str(&format!(
            "  - name: {n}\n    address: 127.0.0.{}\n    role: {role}\n",
            11 + i
        ));
    }
    inv.push_str("vips:\n  masters: 127.0.0.100\n  workers: 127.0.0.200\nnetwork:\n  node_subnet: 127.0.0.0/24\n");
    std::fs::write(d.path().join("site.yaml"), inv).unwrap();
    let site = Site {
        inventory: d.path().join("site.yaml"),
        bundle: d.path().join("none.tar.zst"),
        pubkey: d.path().join("none.pub"),
        state: d.path().join("state"),
        logs: d.path().join("logs"),
    };
    let mut c = airgap();
    c.args(["--quiet", "install", "--only", "preflight,os-prepare", "--inventory"])
        .arg(&site.inventory);
    c.arg("--state-dir").arg(&site.state).arg("--log-dir").arg(&site.logs);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let mut err = text(&o.stderr).replace(&d.path().display().to_string(), "[tmp]");
    if let Some(a) = err.find("install-lo-") {
        let b = a + err[a..].find(".log").unwrap();
        err.replace_range(a..b, "install-lo-[time]");
    }
    insta::assert_snapshot!(err);
    let st = text(&site.status(false).stdout);
    assert_eq!(
        st.lines()
            .filter(|l| l.starts_with("preflight") && l.contains("failed   ") && l.contains("failed to reach"))
            .count(),
        5,
        "{st}"
    );
    assert_eq!(
        st.lines()
            .filter(|l| l.starts_with("os-prepare") && l.contains("pending"))
            .count(),
        5,
        "{st}"
    );
}
