//! Site infrastructure in the multi-host lab (scripts/lab.sh: systemd-nspawn nodes master1-3, worker1-2 on one
//! bridge, with real sshd and systemd, and NO keepalived, haproxy, nginx or containerd in their rootfs).
//!
//! The bundle is built by `airgap build` itself: the Debian packages (and their closure against the lab's
//! rootfs, from scripts/deb-closure.sh) come from the mirror of this machine's apt configuration, the static
//! runtime components (containerd, runc, CNI plugins) from a local file server, the images
//! from a local docker-registry. `airgap install` then installs everything offline, and the test proves:
//! the daemons accept their configs, containerd pulls through hosts.toml from the workers' VIP, both VIPs
//! move on registry/haproxy stop, keepalived crash and link cut (outages measured), and a second install
//! changes nothing.

use crate::support::registry::{Mode, Registry};
use crate::support::{airgap_bin, images, require_tool, run_ok, try_wait_until, wait_until};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::net::TcpStream;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct Lab {
    id: String,
    net: String,
    dir: PathBuf,
}

impl Lab {
    /// This test's view of the shared lab (whose guard the test holds).
    fn of(shared: &crate::support::lab::Lab) -> Lab {
        Lab { id: shared.id.clone(), net: shared.net.clone(), dir: shared.dir.path().to_path_buf() }
    }
    fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(format!("{REPO}/scripts/lab.sh"))
            .args(args)
            .env("LAB_ID", &self.id)
            .env("LAB_NET", &self.net)
            .env("LAB_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
    fn ip(&self, node: &str) -> String {
        let i = ["master1", "master2", "master3", "worker1", "worker2"].iter().position(|n| *n == node).unwrap();
        format!("{}.{}", self.net, 11 + i)
    }
    fn vip(&self, which: &str) -> String {
        format!("{}.{}", self.net, if which == "masters" { 100 } else { 200 })
    }
    /// Run a shell command on a node over SSH.
    fn sh(&self, node: &str, cmd: &str) -> Output {
        Command::new("ssh")
            .args(["-i", &format!("{}/id_lab", self.dir.display())])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"])
            .arg(format!("root@{}", self.ip(node)))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
    fn sh_ok(&self, node: &str, cmd: &str) -> String {
        let out = self.sh(node, cmd);
        assert!(out.status.success(), "{node}: `{cmd}` failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn netns(&self, node: &str) -> String {
        format!("/run/netns/{}-{node}", self.id)
    }
    /// Which nodes have `vip` on eth0 (read from the nodes' network namespaces, not over the VIP).
    fn holders(&self, vip: &str) -> Vec<&'static str> {
        ["master1", "master2", "master3", "worker1", "worker2"]
            .into_iter()
            .filter(|n| {
                let out = Command::new("ip").args(["-n", &format!("{}-{n}", self.id), "-br", "addr", "show", "eth0"]).output().unwrap();
                String::from_utf8_lossy(&out.stdout).split_whitespace().any(|a| a == format!("{vip}/{}", 24))
            })
            .collect()
    }
    /// What the nodes and the host see, printed when a failover assertion fails.
    fn diagnose(&self, vip: &str, port: u16) -> String {
        let mut d = format!("holders of {vip}: {:?}\n", self.holders(vip));
        let neigh = Command::new("ip").args(["neigh", "show", vip]).output().unwrap();
        d.push_str(&format!("host neighbour entry: {}", String::from_utf8_lossy(&neigh.stdout)));
        for n in ["master1", "master2", "master3", "worker1", "worker2"] {
            let direct = format!("{}:{port}", self.ip(n));
            let reach = TcpStream::connect_timeout(&direct.parse().unwrap(), Duration::from_millis(500)).is_ok();
            let apiserver = apiserver_answer(&format!("{}:6443", self.ip(n)));
            d.push_str(&format!("{n}:6443 (stand-in apiserver) answers {apiserver:?}\n"));
            let out = self.sh(n, "ip -br addr show eth0; ip -br link show eth0; systemctl is-active keepalived haproxy airgap-registry nginx 2>/dev/null | tr '\\n' ' '; echo; cat /run/airgap/keepalived-*.state 2>/dev/null; journalctl -u keepalived -n 25 --no-pager -o short-precise 2>/dev/null | tail -25");
            d.push_str(&format!("--- {n} (host connects to {direct}: {reach})\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
        }
        d
    }
    fn wait_holder(&self, vip: &str, node: &str, within: Duration) -> Duration {
        try_wait_until(within, || self.holders(vip) == [node]).unwrap_or_else(|| {
            panic!("{vip} is on {:?}, not only on {node}, after {within:?}\n{}", self.holders(vip), self.diagnose(vip, 22))
        })
    }
}

/// Probe `check` every 50 ms in a thread until stopped; returns the longest run of failures.
struct Probe {
    stop: Arc<AtomicBool>,
    /// Successful probes in a row, so far.
    streak: Arc<AtomicUsize>,
    handle: std::thread::JoinHandle<(Duration, usize, usize)>,
}

impl Probe {
    fn start(check: impl Fn() -> bool + Send + 'static) -> Probe {
        let (stop, streak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (s, k) = (stop.clone(), streak.clone());
        let handle = std::thread::spawn(move || {
            let (mut longest, mut ok, mut failed) = (Duration::ZERO, 0, 0);
            let mut last_ok = Instant::now();
            while !s.load(Ordering::Relaxed) {
                if check() {
                    ok += 1;
                    last_ok = Instant::now();
                    k.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed += 1;
                    longest = longest.max(last_ok.elapsed());
                    k.store(0, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50)); // the probe's sampling period
            }
            (longest, ok, failed)
        });
        Probe { stop, streak, handle }
    }
    /// Wait until the probe has seen `n` successes in a row (a baseline before breaking something, or the
    /// end of the outage as the probe sees it).
    fn wait_streak(&self, n: usize, what: &str) {
        wait_until(&format!("{n} successful probes in a row {what}"), Duration::from_secs(20), || {
            self.streak.load(Ordering::Relaxed) >= n
        });
    }
    fn finish(self) -> (Duration, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn airgap(args: &[&str]) -> Output {
    Command::new(airgap_bin()).args(args).stdin(Stdio::null()).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A stand-in apiserver on a master's :6443 (test fixture, in the node's network namespace): answers its name.
fn stand_in_apiserver(lab: &Lab, node: &str) -> crate::support::ChildGuard {
    let py = format!(
        // haproxy's health checks connect and reset at once: a send to a reset socket must not end the fixture
        "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', 6443)); s.listen(64)\nwhile True:\n  c,_=s.accept()\n  try:\n    c.sendall(b'{node}\\n')\n  except OSError:\n    pass\n  c.close()\n"
    );
    let child: Child = Command::new("nsenter")
        .arg(format!("--net={}", lab.netns(node)))
        .args(["python3", "-c", &py])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support::ChildGuard(child)
}

/// containerd's static release (`bin/...` tar.gz), runc's bare binary, the CNI plugins' tgz (`./NAME`), built
/// from this host's binaries; returns (file name, component).
pub(crate) fn static_runtime_releases(dir: &Path) -> Vec<(String, &'static str)> {
    fs_err::create_dir_all(dir.join("containerd/bin")).unwrap();
    for b in ["containerd", "containerd-shim-runc-v2", "ctr"] {
        fs_err::copy(format!("/usr/bin/{b}"), dir.join("containerd/bin").join(b)).unwrap();
    }
    run_ok(Command::new("tar").arg("-czf").arg(dir.join("containerd-static-linux-amd64.tar.gz")).arg("-C").arg(dir.join("containerd")).arg("bin"));
    fs_err::copy("/usr/sbin/runc", dir.join("runc.amd64")).unwrap();
    run_ok(Command::new("tar").args(["-C", "/usr/lib/cni", "-czf"]).arg(dir.join("cni-plugins-linux-amd64.tgz")).arg("."));
    vec![
        ("containerd-static-linux-amd64.tar.gz".into(), "containerd"),
        ("runc.amd64".into(), "runc"),
        ("cni-plugins-linux-amd64.tgz".into(), "cni-plugins"),
    ]
}

fn apiserver_answer(addr: &str) -> Option<String> {
    let sa = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let name = buf.trim().to_string();
    name.starts_with("master").then_some(name)
}

fn registry_answers(vip: &str) -> bool {
    airgap::node::checks::check_http(&format!("http://{vip}:5000/v2/"), Duration::from_millis(300)).is_ok()
}

/// Pull `reference` on master3 with containerd through its hosts.toml (in a fresh namespace: a real fetch).
fn pull_on_master3(lab: &Lab, reference: &str, ns: &str) -> String {
    let out = lab.sh_ok(
        "master3",
        &format!("ctr -n {ns} images pull --hosts-dir /etc/containerd/certs.d --snapshotter native {reference} >/dev/null && ctr -n {ns} images ls -q; ctr -n {ns} images ls | awk 'NR>1 {{print $3}}'"),
    );
    out
}

#[test]
fn infra_steps_install_offline_and_both_vips_fail_over_in_the_lab() {
    if !crate::support::lab::should_run() {
        return;
    }
    for t in ["systemd-nspawn", "debootstrap", "ssh", "skopeo", "docker-registry", "nsenter", "python3", "apt-get"] {
        require_tool(t);
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // images in a local docker-registry: the bundle's "upstream" (unreachable from the nodes, on purpose)
    let upstream = Registry::start(Mode::Plain);
    let mut refs = vec![];
    for (i, path) in ["airgap/pause:3.10", "airgap/app:v1"].iter().enumerate() {
        let made = images::make_image(&w.join("layout"), &format!("t{i}"), &images::ImageSpec::single(40 + i as u64));
        let dest = format!("{}/{path}", upstream.addr);
        run_ok(Command::new("skopeo").args(["copy", "--dest-tls-verify=false"]).arg(format!("oci:{}:t{i}", w.join("layout").display())).arg(format!("docker://{dest}")));
        refs.push((dest, made.digest.to_string()));
    }

    // the bundle is made before the test takes the shared lab (other lab tests use it meanwhile)
    let rootfs = &crate::support::lab::rootfs();
    for daemon in ["usr/sbin/keepalived", "usr/sbin/haproxy", "usr/sbin/nginx", "usr/bin/containerd"] {
        assert!(!rootfs.join(daemon).exists(), "the lab rootfs must not contain {daemon}");
    }

    // the manifest: packages = closure against the lab rootfs, from this machine's apt mirror
    let closure = run_ok(Command::new("bash").arg(format!("{REPO}/scripts/deb-closure.sh")).arg("--rootfs").arg(rootfs).args([
        "keepalived", "haproxy", "nginx", "libnginx-mod-stream",
    ]));
    let mut manifest = String::from("name: infra-lab\nversion: 1.0.0\nimages:\n");
    for (r, _) in &refs {
        manifest.push_str(&format!("  - {r}\n"));
    }
    // the runtime as static components in their upstream release layouts (upstream's release pages are not
    // reachable here: the archives are made from this host's containerd, runc and CNI plugins binaries)
    let rel = w.join("releases");
    let files = static_runtime_releases(&rel);
    let server = crate::support::fileserver::FileServer::start(&rel);
    manifest.push_str("files:\n");
    for (name, component) in files {
        let sha = crate::support::sha256sum(&rel.join(&name));
        manifest.push_str(&format!("  - url: {}\n    sha256: {sha}\n    path: runtime/{name}\n    install: {component}\n", server.url(&name)));
    }
    manifest.push_str(&String::from_utf8_lossy(&closure.stdout));
    fs_err::write(w.join("manifest.yaml"), &manifest).unwrap();
    ok(&airgap(&["keygen", "--out-dir", w.join("keys").to_str().unwrap()]));
    ok(&airgap(&[
        "build", w.join("manifest.yaml").to_str().unwrap(), "--out", w.join("out").to_str().unwrap(),
        "--key", w.join("keys/airgap.key").to_str().unwrap(), "--insecure-registry", &upstream.addr,
        "--cache-dir", w.join("cache").to_str().unwrap(),
    ]));
    let bundle = w.join("out/infra-lab-1.0.0.tar.zst");
    let Some(shared) = crate::support::lab::shared() else { return };
    let lab = Lab::of(&shared);

    // the lab's inventory, with the interface keepalived needs
    let inv = String::from_utf8_lossy(&lab.script(&["inventory"]).stdout).replace("    role: master\n", "    role: master\n    interface: eth0\n").replace("    role: worker\n", "    role: worker\n    interface: eth0\n");
    fs_err::write(w.join("site.yaml"), inv).unwrap();
    let install = |only: &str| {
        airgap(&[
            "install", "-i", w.join("site.yaml").to_str().unwrap(), "--bundle", bundle.to_str().unwrap(),
            "--pubkey", w.join("keys/airgap.pub").to_str().unwrap(), "--only", only,
            "--state-dir", w.join("state").to_str().unwrap(), "--log-dir", w.join("log").to_str().unwrap(),
        ])
    };
    let t0 = Instant::now();
    ok(&install("preflight,os-prepare,distribute"));
    let first = ok(&install("runtime,registry,apiserver-lb,nginx,housekeeping"));
    eprintln!("infra install took {:?}:\n{first}", t0.elapsed());

    // the runtime is the bundle's static containerd + runc + CNI plugins, not an OS package; only the registry
    // workers received the whole bundle, the others just their OS's packages and their platform's binaries
    for n in ["master1", "master3", "worker2"] {
        let out = lab.sh_ok(n, "systemctl show -p ExecStart --value containerd; command -v runc ctr; ls /opt/cni/bin | grep -cx 'bridge\\|host-local\\|loopback\\|portmap'; dpkg -s containerd >/dev/null 2>&1 && echo deb-containerd; ls /opt/airgap/packages; ls /opt/airgap/bundles 2>/dev/null | wc -l");
        assert!(out.contains("path=/usr/local/bin/containerd ;"), "{n}: containerd does not run from the bundle's binary:\n{out}");
        assert!(out.contains("/usr/local/sbin/runc\n/usr/local/bin/ctr\n4\n"), "{n}: runc, ctr, CNI plugins:\n{out}");
        assert!(!out.contains("deb-containerd"), "{n}: containerd came from a package:\n{out}");
        assert!(out.contains("debian-12\n"), "{n}: packages:\n{out}");
        let bundles: usize = out.lines().last().unwrap().trim().parse().unwrap();
        assert_eq!(bundles > 0, n.starts_with("worker") , "{n}: /opt/airgap/bundles holds {bundles} files");
    }

    // every rendered config passes the daemon's own check, on the nodes
    for m in ["master1", "master2", "master3"] {
        lab.sh_ok(m, "test -s /etc/keepalived/keepalived.conf && keepalived -t -f /etc/keepalived/keepalived.conf && haproxy -c -q -f /etc/haproxy/haproxy.cfg");
    }
    for wk in ["worker1", "worker2"] {
        lab.sh_ok(wk, "test -s /etc/keepalived/keepalived.conf && keepalived -t -f /etc/keepalived/keepalived.conf && nginx -t -q -c /etc/nginx/nginx.conf");
    }
    let (mvip, wvip) = (lab.vip("masters"), lab.vip("workers"));
    assert_eq!(lab.holders(&wvip), ["worker1"]);
    assert_eq!(lab.holders(&mvip), ["master1"]);

    // containerd pulls every bundle image through hosts.toml from the workers' VIP (upstream unreachable)
    for (i, (r, digest)) in refs.iter().enumerate() {
        let out = pull_on_master3(&lab, r, &format!("p{i}"));
        assert!(out.contains(digest.as_str()), "{r}: pulled {out}, expected {digest}");
    }
    let app = refs[1].0.clone();

    // workers' VIP: registry stop, keepalived crash, link cut
    let mut report = vec![];
    let scenarios: [(&str, &str, &str); 3] = [
        ("registry stopped on worker1", "systemctl stop airgap-registry", "systemctl start airgap-registry"),
        ("keepalived killed (SIGKILL) on worker1", "systemctl kill -s KILL keepalived", ""),
        ("worker1's link cut", "LINK-DOWN", "LINK-UP"),
    ];
    for (k, (what, break_it, fix_it)) in scenarios.iter().enumerate() {
        let v = wvip.clone();
        let probe = Probe::start(move || registry_answers(&v));
        probe.wait_streak(5, "before the break");
        if *break_it == "LINK-DOWN" {
            run_ok(Command::new("ip").args(["-n", &format!("{}-worker1", lab.id), "link", "set", "eth0", "down"]));
        } else {
            lab.sh_ok("worker1", break_it);
        }
        // the VIP answers from worker2 (worker1 may keep a dead copy only while its link is down)
        let moved = if *break_it == "LINK-DOWN" {
            wait_until("the workers' VIP on worker2", Duration::from_secs(10), || lab.holders(&wvip).contains(&"worker2"))
        } else if fix_it.is_empty() {
            // systemd restarts the killed keepalived; the VIP may come back: just require no double holder
            Duration::ZERO
        } else {
            lab.wait_holder(&wvip, "worker2", Duration::from_secs(10))
        };
        if try_wait_until(Duration::from_secs(15), || registry_answers(&wvip)).is_none() {
            panic!("the registry does not answer on {wvip} 15 s after {what}\n{}", lab.diagnose(&wvip, 5000));
        }
        probe.wait_streak(10, &format!("after {what}"));
        let out = pull_on_master3(&lab, &app, &format!("w{k}"));
        assert!(out.contains(refs[1].1.as_str()), "pull after {what}: {out}");
        let (outage, oks, fails) = probe.finish();
        report.push(format!("workers' VIP, {what}: VIP on worker2 after {moved:.2?}, longest /v2/ outage {outage:.2?} ({oks} ok, {fails} failed probes)"));
        if *fix_it == "LINK-UP" {
            run_ok(Command::new("ip").args(["-n", &format!("{}-worker1", lab.id), "link", "set", "eth0", "up"]));
        } else if !fix_it.is_empty() {
            lab.sh_ok("worker1", fix_it);
        }
        lab.wait_holder(&wvip, "worker1", Duration::from_secs(20));
        assert!(lab.holders(&wvip).len() == 1);
    }

    // masters' VIP: stand-in apiservers, then haproxy stop, keepalived crash, link cut on master1
    let _fixtures: Vec<_> = ["master1", "master2", "master3"].iter().map(|m| stand_in_apiserver(&lab, m)).collect();
    let lb = format!("{mvip}:16443");
    wait_until(&format!("an answer through {lb}"), Duration::from_secs(10), || apiserver_answer(&lb).is_some());
    let scenarios: [(&str, &str, &str); 3] = [
        ("haproxy stopped on master1", "systemctl stop haproxy", "systemctl start haproxy"),
        ("keepalived killed (SIGKILL) on master1", "systemctl kill -s KILL keepalived", ""),
        ("master1's link cut", "LINK-DOWN", "LINK-UP"),
    ];
    for (what, break_it, fix_it) in scenarios {
        let l = lb.clone();
        let probe = Probe::start(move || apiserver_answer(&l).is_some());
        probe.wait_streak(5, "before the break");
        if break_it == "LINK-DOWN" {
            run_ok(Command::new("ip").args(["-n", &format!("{}-master1", lab.id), "link", "set", "eth0", "down"]));
            if try_wait_until(Duration::from_secs(10), || lab.holders(&mvip).contains(&"master2")).is_none() {
                panic!("the masters' VIP did not move\n{}", lab.diagnose(&mvip, 16443));
            }
        } else {
            lab.sh_ok("master1", break_it);
            if !fix_it.is_empty() {
                lab.wait_holder(&mvip, "master2", Duration::from_secs(10));
            }
        }
        // new connections succeed again (a crashed keepalived takes ~3.5 s to be noticed by the backups)
        let mut answer = None;
        if try_wait_until(Duration::from_secs(15), || {
            answer = apiserver_answer(&lb);
            answer.is_some()
        })
        .is_none()
        {
            panic!("no live master through {lb} within 15 s after {what}\n{}", lab.diagnose(&mvip, 16443));
        }
        probe.wait_streak(10, &format!("after {what}"));
        let (outage, oks, fails) = probe.finish();
        report.push(format!("masters' VIP, {what}: new connections answered by {}, longest outage {outage:.2?} ({oks} ok, {fails} failed)", answer.unwrap()));
        if fix_it == "LINK-UP" {
            run_ok(Command::new("ip").args(["-n", &format!("{}-master1", lab.id), "link", "set", "eth0", "up"]));
        } else if !fix_it.is_empty() {
            lab.sh_ok("master1", fix_it);
        }
        lab.wait_holder(&mvip, "master1", Duration::from_secs(20));
    }
    for r in &report {
        eprintln!("MEASURED {r}");
    }
    fs_err::write(format!("{REPO}/target/infra-failover.txt"), report.join("\n") + "\n").unwrap();

    // install again: nothing to do anywhere
    let again = ok(&install("runtime,registry,apiserver-lb,nginx,housekeeping"));
    assert!(!again.contains(": done:"), "a second install changed something:\n{again}");
    assert!(again.contains("0 node-steps applied") || again.contains("0 node-step applied"), "{again}");
    // the plan against the nodes (install --dry-run) has nothing left to do
    let dry = airgap(&[
        "install", "-i", w.join("site.yaml").to_str().unwrap(), "--bundle", bundle.to_str().unwrap(),
        "--pubkey", w.join("keys/airgap.pub").to_str().unwrap(), "--dry-run",
        // the site infrastructure; the Kubernetes steps need kubeadm, which this bundle does not carry
        "--only", "preflight,os-prepare,distribute,runtime,registry,apiserver-lb,nginx,housekeeping",
        "--state-dir", w.join("state").to_str().unwrap(), "--log-dir", w.join("log").to_str().unwrap(),
    ]);
    let dry_text = ok(&dry);
    assert!(dry_text.contains("dry run: nothing changed (32 node-steps already done)"), "{dry_text}");
    // and status shows no pending work: every step of every node done
    let status = airgap(&[
        "status", "-i", w.join("site.yaml").to_str().unwrap(), "--state-dir", w.join("state").to_str().unwrap(), "--json",
    ]);
    ok(&status);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).unwrap();
    // the site infrastructure's rows (status also lists the Kubernetes steps, which this bundle cannot run)
    let infra_steps = ["preflight", "os-prepare", "distribute", "runtime", "registry", "apiserver-lb", "nginx", "housekeeping"];
    let (rows, k8s): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| infra_steps.iter().any(|s| r["step"] == *s));
    assert!(k8s.iter().all(|r| r["status"] != "done"), "a Kubernetes step reported done without kubeadm: {k8s:#?}");
    // preflight, os-prepare, distribute, runtime, housekeeping on 5 nodes; registry and nginx on 2 workers;
    // apiserver-lb on 3 masters (the lab inventory has no `redis:` section: no redis step)
    assert_eq!(rows.len(), 5 * 5 + 2 + 2 + 3, "{rows:#?}");
    let not_done: Vec<_> = rows.iter().filter(|r| r["status"] != "done").collect();
    assert!(not_done.is_empty(), "pending work after the installs: {not_done:#?}");
}
