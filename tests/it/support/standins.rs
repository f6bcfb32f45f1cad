//! Harness for the kubeadm/kubelet/kubectl stand-ins (tests/standins, the `k8s-standin` example that
//! `cargo test` builds): "nodes" as directories on this machine (`K8S_STANDIN_ROOT`), each with its own
//! loopback address 127.X.Y.N, the upstream kubelet unit + 10-kubeadm.conf drop-in, and the stand-in as
//! kubelet/kubeadm/kubectl in /usr/local/bin; a TCP forwarder as the masters' VIP (haproxy's `:16443`);
//! the kubeadm images pushed to a test registry.

use super::registry::Registry;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// The upstream kubelet.service (kubernetes/release cmd/krel/templates/latest/kubelet/kubelet.service,
/// pins.md §3.3) with the binary where airgap installs it.
pub const KUBELET_SERVICE: &str = "[Unit]\nDescription=kubelet: The Kubernetes Node Agent\nDocumentation=https://kubernetes.io/docs/\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nExecStart=/usr/local/bin/kubelet\nRestart=always\nStartLimitInterval=0\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n";

/// The upstream 10-kubeadm.conf (pins.md §3.4), Debian's /etc/default/kubelet, /usr/local/bin.
pub const KUBEADM_DROPIN: &str = "# Note: This dropin only works with kubeadm and kubelet v1.11+\n[Service]\nEnvironment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\nEnvironment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n# This is a file that \"kubeadm init\" and \"kubeadm join\" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically\nEnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use\n# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.\nEnvironmentFile=-/etc/default/kubelet\nExecStart=\nExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n";

/// The stand-in binary (`target/<profile>/examples/k8s-standin`, next to this test binary's `deps/`).
pub fn standin_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples/k8s-standin");
    assert!(p.is_file(), "{} is missing: `cargo test` builds it (or run `cargo build --example k8s-standin`)", p.display());
    // `cargo test --test it` does not rebuild examples: refuse to test an old build of the stand-ins
    let built = fs_err::metadata(&p).unwrap().modified().unwrap();
    let mut stack = vec![super::repo().join("tests/standins"), super::repo().join("src/kube")];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") && e.metadata().unwrap().modified().unwrap() > built {
                panic!("{} is older than {}: run `cargo test` (it builds examples) or `cargo build --example k8s-standin`", p.display(), path.display());
            }
        }
    }
    p
}

/// A /24 of 127.0.0.0/8 no other test (of this process or another) uses: 127.<pid>.<counter>.0, skipping
/// one whose first master or VIP address is taken.
pub fn loopback_net() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let net = format!("127.{}.{}", 20 + std::process::id() % 200, n % 250);
        if TcpListener::bind(format!("{net}.11:6443")).is_ok() && TcpListener::bind(format!("{net}.100:16443")).is_ok() {
            return net;
        }
    }
}

pub struct Node {
    pub name: String,
    pub ip: String,
    pub root: PathBuf,
}

impl Node {
    /// A node under `base` with the kubelet unit installed and enabled, KUBELET_EXTRA_ARGS=--node-ip.
    pub fn new(base: &Path, name: &str, ip: &str) -> Node {
        let root = base.join(name);
        let n = Node { name: name.into(), ip: ip.into(), root };
        n.write("/etc/hostname", &format!("{name}\n"));
        n.write("/etc/systemd/system/kubelet.service", KUBELET_SERVICE);
        n.write("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN);
        n.write("/etc/default/kubelet", &format!("KUBELET_EXTRA_ARGS=--node-ip={ip}\n"));
        let wants = n.path("/etc/systemd/system/multi-user.target.wants");
        fs_err::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink("/etc/systemd/system/kubelet.service", wants.join("kubelet.service")).unwrap();
        fs_err::create_dir_all(n.path("/usr/local/bin")).unwrap();
        for tool in ["kubeadm", "kubelet", "kubectl"] {
            std::os::unix::fs::symlink(standin_bin(), n.path(&format!("/usr/local/bin/{tool}"))).unwrap();
        }
        n
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub fn write(&self, p: &str, content: &str) {
        let p = self.path(p);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, content).unwrap();
    }

    pub fn read(&self, p: &str) -> String {
        fs_err::read_to_string(self.path(p)).unwrap()
    }

    pub fn exists(&self, p: &str) -> bool {
        self.path(p).exists()
    }

    /// Run `tool args` on this node.
    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(standin_bin()).arg(tool).args(args).env("K8S_STANDIN_ROOT", &self.root).env_remove("KUBECONFIG").output().unwrap()
    }

    /// Every line of the node's call log.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("/var/log/k8s-standin/calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Move the cluster clock of this node (the state holder's) `secs` ahead.
    pub fn age_clock(&self, secs: i64) {
        self.write("/var/lib/k8s-standin/clock-offset", &secs.to_string());
    }

    pub fn log(&self, unit: &str) -> String {
        std::fs::read_to_string(self.path(&format!("/var/log/k8s-standin/{unit}.log"))).unwrap_or_default()
    }
}

impl Drop for Node {
    /// Stop the node's services (the processes the stand-in started, by the pids it recorded).
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(self.path("/run/k8s-standin")) {
            for e in rd.flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path()).unwrap_or_default().trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
}

/// A TCP forwarder `listen` -> `target` (the masters' VIP and haproxy), stopped when dropped.
pub struct Vip {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl Vip {
    pub fn start(listen: &str, target: &str) -> Vip {
        let l = TcpListener::bind(listen).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, target) = (stop.clone(), target.to_string());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                let Ok(up) = TcpStream::connect(&target) else { continue };
                let pipe = |mut a: TcpStream, mut b: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Write);
                    })
                };
                pipe(c.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, c);
            }
        });
        Vip { addr: listen.into(), stop }
    }
}

impl Drop for Vip {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Push a tiny image under every name in `refs` (`HOST:PORT/PATH:TAG`) to `reg`.
pub fn push_images(reg: &Registry, refs: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = super::images::ImageSpec { layers: vec![256], gzip: false, ..super::images::ImageSpec::single(7) };
    super::images::make_image(&layout, "img", &spec);
    for r in refs {
        let path = r.split_once('/').unwrap().1;
        reg.push_layout(&layout, "img", path);
    }
}

/// stdout + stderr of a run, for assertion messages.
pub fn out(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Read one process's stdout fully (helper for tools that print JSON).
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", out(o));
    let mut s = String::new();
    (&o.stdout[..]).read_to_string(&mut s).unwrap();
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}
