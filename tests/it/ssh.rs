//! SSH you can trust, against real sshd on three nodes of the shared lab (scenarios in order): host
//! keys recorded on first contact and required after, a changed key refused naming both fingerprints and
//! accepted again with `airgap hostkey forget`, a pinned key refused before any authentication (sshd's own
//! debug log shows no auth request, and the password never shows up), remote command timeouts, SIGKILL of
//! `install` in the middle of a copy leaving no ssh process, all with a 60-character cluster name and a state
//! dir with spaces (the ControlPath must still fit a unix socket path).

use super::support::lab::{self, Lab};
use super::support::{airgap, wait_until};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "airgap failed ({:?}):\nstdout:\n{}\nstderr:\n{}", o.status, text(&o.stdout), text(&o.stderr));
    text(&o.stderr)
}

fn failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected a failure:\nstdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stderr)
}

struct Site {
    inventory: PathBuf,
    state: PathBuf,
    logs: PathBuf,
}

impl Site {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = airgap();
        c.args(args).arg("--inventory").arg(&self.inventory).arg("--state-dir").arg(&self.state);
        c
    }
    fn install(&self, extra: &[&str]) -> Output {
        let mut c = self.command(&["install", "--only", "os-prepare"]);
        c.arg("--log-dir").arg(&self.logs).args(extra);
        c.output().unwrap()
    }
    fn journal(&self) -> Option<Vec<u8>> {
        std::fs::read(self.state.join("journal.json")).ok()
    }
}

/// An inventory for the lab's nodes (`nodes`), with `ssh` as the ssh block and host keys pinned by node.
fn inventory(lab: &Lab, cluster: &str, ssh: &str, nodes: &[&str], pins: &[(&str, &str)]) -> String {
    let mut s = format!("cluster:\n  name: {cluster}\n  kubernetes_version: 1.36.3\n  allow_single_master: true\nssh:\n{ssh}nodes:\n");
    for n in nodes {
        s.push_str(&format!("  - name: {n}\n    address: {}\n    role: master\n", lab.address(n)));
        if let Some((_, fp)) = pins.iter().find(|(p, _)| p == n) {
            s.push_str(&format!("    host_key: {fp}\n"));
        }
    }
    s.push_str(&format!(
        "vips:\n  masters: {net}.100\n  workers: {net}.200\nnetwork:\n  node_subnet: {net}.0/24\n",
        net = lab.net
    ));
    s
}

/// The node's ED25519 host key fingerprint, as the node's own ssh-keygen prints it.
fn fingerprint(lab: &Lab, node: &str) -> String {
    let out = lab.exec(node, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
    out.split_whitespace().nth(1).unwrap().to_string()
}

/// ssh processes on this machine that belong to this test's lab: their command line names a lab address
/// or `mark` (the state dir: a ControlMaster that daemonized shows its control path there).
fn lab_ssh_processes(lab: &Lab, mark: &str) -> Vec<String> {
    let addresses: Vec<String> = lab.nodes.iter().map(|n| lab.address(n)).collect();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // "PID (comm) STATE ...": zombies are dead already
        let Some(rest) = stat.rsplit_once(") ") else { continue };
        if !rest.0.ends_with("(ssh") || rest.1.starts_with('Z') {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = text(&cmdline).replace('\0', " ");
        if addresses.iter().any(|a| cmdline.contains(a.as_str())) || cmdline.contains(mark) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

#[test]
fn ssh_you_can_trust_on_a_three_node_lab() {
    let Some(lab) = lab::shared() else { return };
    let work = tempfile::tempdir().unwrap();
    let key = lab.dir.path().join("id_lab");
    let key_ssh = format!("  user: root\n  key_file: {}\n", key.display());
    // 60 characters: the old ControlPath (<state dir>/ssh/<40 hex>) did not fit a unix socket path with it
    let cluster = format!("site-{}abcde", "0123456789".repeat(5));
    assert_eq!(cluster.len(), 60);
    let nodes = ["master1", "master2", "master3"];
    let site = Site {
        inventory: work.path().join("site.yaml"),
        state: work.path().join("state dir with spaces").join(&cluster),
        logs: work.path().join("logs"),
    };
    std::fs::write(&site.inventory, inventory(&lab, &cluster, &key_ssh, &nodes, &[])).unwrap();
    let fps: Vec<String> = nodes.iter().map(|n| fingerprint(&lab, n)).collect();

    // 1. first contact: each node's fingerprint printed (as the node itself computes it), recorded, and the
    //    inventory lines that pin them
    let t = Instant::now();
    let err = ok(&site.install(&[]));
    eprintln!("first install (binary copied to 3 nodes): {:.1} s", t.elapsed().as_secs_f64());
    assert!(err.contains("trust on first use"), "{err}");
    for (n, fp) in nodes.iter().zip(&fps) {
        assert!(err.contains(&format!("  {n} ({}:22): {fp} (ED25519)", lab.address(n))), "{err}");
        assert!(err.contains(&format!("  - name: {n}\n    host_key: {fp}")), "{err}");
    }
    let records = std::fs::read_to_string(site.state.join("ssh/known_hosts")).unwrap();
    assert_eq!(records.lines().count(), 3, "{records}");
    let o = site.command(&["hostkey", "list"]).output().unwrap();
    let (listed, said) = (text(&o.stdout), ok(&o));
    for (n, fp) in nodes.iter().zip(&fps) {
        assert!(listed.lines().any(|l| l.starts_with(n) && l.contains(&format!("{fp} (ED25519)"))), "{listed}");
        assert!(said.contains(&format!("  - name: {n}\n    host_key: {fp}")), "{said}");
    }

    // 2. known now: nothing to say, same keys required
    let t = Instant::now();
    let err = ok(&site.install(&[]));
    eprintln!("second install (all done): {:.1} s", t.elapsed().as_secs_f64());
    assert!(!err.contains("trust on first use"), "{err}");
    assert!(err.contains("0 node-steps applied, 3 already done"), "{err}");

    // 3. master2 gets new host keys (re-installed, or someone in between): a hard error naming both
    //    fingerprints; nothing ran on any node
    lab.exec(
        "master2",
        "rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -t ed25519 -N '' -C master2 -f /etc/ssh/ssh_host_ed25519_key; systemctl restart ssh",
    );
    let new2 = fingerprint(&lab, "master2");
    assert_ne!(new2, fps[1]);
    let journal = site.journal();
    let err = failed(&site.install(&[]));
    assert!(
        err.contains(&format!(
            "master2 ({}:22) presents {new2} (ED25519), not the key recorded on first contact: {} (ED25519)",
            lab.address("master2"),
            fps[1]
        )),
        "{err}"
    );
    assert!(err.contains("nothing was sent to any node"), "{err}");
    assert!(err.contains("airgap hostkey forget master2 --inventory"), "{err}");
    assert!(!err.contains("master1 ("), "{err}");
    assert_eq!(journal, site.journal(), "the journal changed: something ran");

    // 4. accepted again: forget master2's record; the next install trusts its new key on first use (and
    //    says so for master2 only)
    let out = ok(&site.command(&["hostkey", "forget", "master2"]).output().unwrap());
    assert!(out.contains(&format!("master2: forgot {} (ED25519)", fps[1])), "{out}");
    let err = ok(&site.install(&[]));
    assert!(err.contains(&format!("  master2 ({}:22): {new2} (ED25519)", lab.address("master2"))), "{err}");
    assert!(!err.contains("  master1 ("), "{err}");
    let listed = text(&site.command(&["hostkey", "list"]).output().unwrap().stdout);
    assert!(listed.lines().any(|l| l.starts_with("master2 ") && l.contains(&new2)), "{listed}");

    // 5. a remote command that hangs (a check reading a FIFO) times out: the error names the node and the
    //    command, and the command is stopped on the node too
    let slow = work.path().join("slow.yaml");
    let slow_ssh = format!("{key_ssh}  timeouts:\n    command: 2\n");
    std::fs::write(&slow, inventory(&lab, &cluster, &slow_ssh, &nodes, &[])).unwrap();
    lab.exec("master1", "rm -f /etc/sysctl.d/99-airgap.conf && mkfifo /etc/sysctl.d/99-airgap.conf");
    let t = Instant::now();
    let o = Site { inventory: slow, state: site.state.clone(), logs: site.logs.clone() }.install(&[]);
    let took = t.elapsed();
    let err = failed(&o);
    assert!(
        err.contains("`/opt/airgap/bin/airgap node check-file --path /etc/sysctl.d/99-airgap.conf")
            && err.contains("timed out on master1 after 2 s (ssh.timeouts.command)"),
        "{err}"
    );
    assert!(err.contains("raise ssh.timeouts.command"), "{err}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    eprintln!("install with a hanging check (2 s timeout): {:.1} s", took.as_secs_f64());
    assert_eq!(lab.exec("master1", "pgrep -fc '[n]ode check-file' || true").trim(), "0", "the timed-out command still runs on master1");
    lab.exec("master1", "rm -f /etc/sysctl.d/99-airgap.conf");

    // 6. SIGKILL of install in the middle of copying the binary: no ssh process of that run is left (the
    //    ControlMasters included), no partial file stays on the nodes, and the next run converges
    for n in nodes {
        lab.exec(n, "rm -f /opt/airgap/bin/airgap /opt/airgap/bin/.airgap.sha256");
    }
    let logs = work.path().join("logs-kill");
    let mut child = {
        let mut c = site.command(&["install", "--only", "os-prepare"]);
        c.arg("--log-dir").arg(&logs).stderr(std::process::Stdio::null()).spawn().unwrap()
    };
    let mark = site.state.display().to_string();
    let exe = airgap::digest::Digest::of_file(Path::new(env!("CARGO_BIN_EXE_airgap"))).unwrap().0;
    wait_until("a partial copy of the binary on a node", Duration::from_secs(120), || {
        nodes.iter().any(|n| {
            lab.exec(n, "find /opt/airgap/bin -name '.airgap.airgap-partial.*' -size +0 2>/dev/null").contains("airgap-partial")
        })
    });
    let before = lab_ssh_processes(&lab, &mark);
    assert!(before.len() >= 2, "no ssh running mid-copy? {before:#?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = wait_until("ssh processes of the killed install to end", Duration::from_secs(10), || {
        lab_ssh_processes(&lab, &mark).is_empty()
    });
    eprintln!("{} ssh processes mid-copy; none left {:.0} ms after SIGKILL", before.len(), gone.as_secs_f64() * 1000.0);
    for n in nodes {
        wait_until(&format!("{n}: the cut copy's partial file removed"), Duration::from_secs(30), || {
            !lab.exec(n, "ls -A /opt/airgap/bin").contains("airgap-partial")
        });
        // either no binary or the whole one: a cut copy never lands in place
        let h = lab.exec(n, "sha256sum /opt/airgap/bin/airgap 2>/dev/null || true");
        assert!(h.is_empty() || h.starts_with(exe.hex()), "{n}: a partial binary in place: {h}");
    }
    let killed = child.id();
    let run_dirs = || -> Vec<String> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("airgap-ssh-{killed}-")))
            .collect()
    };
    assert_eq!(run_dirs().len(), 1, "the killed run's ssh directory (sockets, known_hosts)");
    let err = ok(&site.install(&[]));
    assert!(err.contains("install finished"), "{err}");
    assert!(run_dirs().is_empty(), "the killed run's ssh directory is still there: {:?}", run_dirs());
    for n in nodes {
        assert_eq!(lab.exec(n, "sha256sum /opt/airgap/bin/airgap").split_whitespace().next(), Some(exe.hex()));
    }

    // 7. password authentication with pinned keys, from a fresh state dir: a wrong pin stops before any
    //    authentication (sshd, at debug level, logs no auth request at all); the right pin connects with the
    //    password, which shows up in no command line, log or output
    let password = "airgap-lab-pw-5b1e7";
    lab.exec(
        "master3",
        &format!(
            "echo root:{password} | chpasswd && printf 'PasswordAuthentication yes\\nPermitRootLogin yes\\nLogLevel DEBUG1\\n' > /etc/ssh/sshd_config.d/airgap-test.conf && systemctl restart ssh"
        ),
    );
    let auth_requests = || lab.exec("master3", "journalctl -u ssh -o cat --no-pager | grep -c 'userauth-request' || true").trim().parse::<u32>().unwrap();
    let connections = || lab.exec("master3", "journalctl -u ssh -o cat --no-pager | grep -c 'Connection from' || true").trim().parse::<u32>().unwrap();
    let pw_ssh = "  user: root\n  password_env: AIRGAP_TEST_SSH_PASSWORD\n";
    let wrong = "SHA256:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    let pinned = Site {
        inventory: work.path().join("pinned.yaml"),
        state: work.path().join("fresh state"),
        logs: work.path().join("logs-pw"),
    };
    std::fs::write(&pinned.inventory, inventory(&lab, "pw", pw_ssh, &["master3"], &[("master3", wrong)])).unwrap();
    let (auth0, conn0) = (auth_requests(), connections());
    let run = |s: &Site| {
        let mut c = s.command(&["install", "--only", "os-prepare"]);
        c.arg("--log-dir").arg(&s.logs).env("AIRGAP_TEST_SSH_PASSWORD", password);
        let child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let done = std::thread::spawn(move || child.wait_with_output().unwrap());
        // meanwhile, sampled: no command line on this machine holds the password
        let mut seen = Vec::new();
        while !done.is_finished() {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                    if text(&c).contains(password) {
                        seen.push(text(&c).replace('\0', " "));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10)); // a sampling period, not a synchronisation
        }
        assert!(seen.is_empty(), "the password is on a command line: {seen:?}");
        done.join().unwrap()
    };
    let err = failed(&run(&pinned));
    assert!(
        err.contains(&format!(
            "master3 ({}:22) presents {} (ED25519), not the host_key pinned in the inventory: {wrong}",
            lab.address("master3"),
            fps[2]
        )),
        "{err}"
    );
    assert!(err.contains(&format!("master3: host_key: {}", fps[2])), "{err}");
    assert!(connections() > conn0, "the node was never contacted (sshd logs no connection)");
    assert_eq!(auth_requests(), auth0, "an authentication was attempted on a node with the wrong host key");
    assert!(!pinned.state.join("ssh/known_hosts").exists(), "a key was recorded");
    std::fs::write(&pinned.inventory, inventory(&lab, "pw", pw_ssh, &["master3"], &[("master3", &fps[2])])).unwrap();
    let out = run(&pinned);
    let err = ok(&out);
    assert!(!err.contains("trust on first use"), "{err}");
    assert!(auth_requests() > auth0);
    assert!(lab.exec("master3", "journalctl -u ssh -o cat --no-pager").contains(&format!("Accepted password for root from {}.1", lab.net)));
    for log in std::fs::read_dir(&pinned.logs).unwrap().flatten() {
        assert!(!std::fs::read_to_string(log.path()).unwrap().contains(password), "the password is in the log");
    }
    assert!(!err.contains(password) && !text(&out.stdout).contains(password));
}

/// `airgap` started as SSH_ASKPASS answers a password prompt with the password, and nothing else.
#[test]
fn askpass_answers_password_prompts_only() {
    let ask = |prompt: &str| {
        airgap()
            .arg(prompt)
            .env(airgap::install::ssh::ASKPASS_VAR, "AIRGAP_TEST_ASK")
            .env("AIRGAP_TEST_ASK", "s3cret")
            .output()
            .unwrap()
    };
    let o = ask("root@10.0.0.1's password: ");
    assert!(o.status.success());
    assert_eq!(o.stdout, b"s3cret\n");
    let o = ask("Are you sure you want to continue connecting (yes/no/[fingerprint])? ");
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
}

/// Inventory pins are validated like every other field: each bad one named with its line.
#[test]
fn pinned_host_keys_are_validated_with_their_line() {
    let d = tempfile::tempdir().unwrap();
    let mut inv = String::from("cluster:\n  name: lo\n  kubernetes_version: 1.36.3\n  allow_single_master: true\nnodes:\n");
    for (i, key) in [
        "SHA256:E/riCNVqGK1RiG+NjiHkRkf4+bfFCp/K0zSKR0cq8WI",
        "SHA256:E/riCNVqGK1RiG+NjiHkRkf4+bfFCp/K0zSKR0cq8WI",
        "SHA256:tooshort",
        "MD5:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00",
    ]
    .iter()
    .enumerate()
    {
        inv.push_str(&format!("  - name: m{i}\n    address: 127.0.0.{}\n    role: master\n    host_key: {key}\n", 11 + i));
    }
    inv.push_str("vips:\n  masters: 127.0.0.100\n  workers: 127.0.0.200\nnetwork:\n  node_subnet: 127.0.0.0/24\n");
    let p = d.path().join("site.yaml");
    std::fs::write(&p, inv).unwrap();
    let o = airgap().args(["plan", "--inventory"]).arg(&p).output().unwrap();
    let err = failed(&o);
    assert!(err.contains("site.yaml:13: nodes[1].host_key SHA256:E/riCNVqGK1RiG+NjiHkRkf4+bfFCp/K0zSKR0cq8WI is also the host key of m0"), "{err}");
    assert!(err.contains("site.yaml:17: nodes[2].host_key \"SHA256:tooshort\" is not a SHA256 fingerprint"), "{err}");
    assert!(err.contains("site.yaml:21: nodes[3].host_key \"MD5:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00\" is an MD5 fingerprint"), "{err}");
}
