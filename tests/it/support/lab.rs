//! A multi-host lab for tests: `scripts/lab.sh` with this test's own id, state dir and subnet, so that labs
//! (a person's and the tests') never collide. `down` on drop stops every process by PID.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Lab {
    pub id: String,
    pub net: String,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<String>,
}

fn script() -> PathBuf {
    super::repo().join("scripts/lab.sh")
}

impl Lab {
    /// Boot a lab of `n` nodes, or `None` (with the reason printed) when not root.
    pub fn up(n: usize) -> Option<Lab> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: the multi-host lab needs root (network namespaces, mounts, cgroups, systemd-nspawn)");
            return None;
        }
        let pid = std::process::id();
        let id = format!("t{}", pid % 100_000);
        // a /24 unused on this host, derived from the PID (lab.sh refuses one already in use); 10.200-239.x:
        // never inside the default pod subnet 10.244.0.0/16 (the inventory would be refused)
        let net = format!("10.{}.{}", 200 + (pid / 250) % 40, pid % 250);
        let dir = tempfile::Builder::new()
            .prefix("airgap-lab-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let mut lab = Lab {
            id,
            net,
            dir,
            nodes: Vec::new(),
        };
        let t = std::time::Instant::now();
        let out = lab.script(&["up", &n.to_string()]);
        assert!(
            out.status.success(),
            "lab up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("lab {} up in {:.1} s", lab.id, t.elapsed().as_secs_f64());
        let nodes = std::fs::read_to_string(lab.dir.path().join("nodes.list")).unwrap();
        lab.nodes = nodes.lines().map(String::from).collect();
        Some(lab)
    }

    pub fn script(&self, args: &[&str]) -> Output {
        Command::new(script())
            .args(args)
            .env("LAB_ID", &self.id)
            .env("LAB_DIR", self.dir.path())
            .env("LAB_NET", &self.net)
            .output()
            .unwrap()
    }

    /// Run a command inside a node without SSH (nsenter); panics on failure; returns stdout.
    pub fn exec(&self, node: &str, cmd: &str) -> String {
        let out = self.script(&["exec", node, "sh", "-c", cmd]);
        assert!(
            out.status.success(),
            "{node}: `{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

    /// An inventory for this lab (from `lab.sh inventory`), with `extra` YAML appended.
    pub fn inventory(&self, path: &Path, extra: &str) {
        let out = self.script(&["inventory"]);
        assert!(out.status.success());
        std::fs::write(path, format!("{}{extra}", String::from_utf8_lossy(&out.stdout))).unwrap();
    }

    pub fn stop_node(&self, node: &str) {
        assert!(self.script(&["stop-node", node]).status.success());
    }

    pub fn start_node(&self, node: &str) {
        let out = self.script(&["start-node", node]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stop the lab and check that nothing of it is left.
    pub fn down(&self) {
        let out = self.script(&["down"]);
        assert!(
            out.status.success(),
            "lab down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let netns = String::from_utf8_lossy(&netns.stdout);
        assert!(
            !netns.lines().any(|l| l.starts_with(&format!("{}-", self.id))),
            "netns left behind: {netns}"
        );
        assert!(
            !Path::new(&format!("/sys/fs/cgroup/systemd/airgap-lab-{}", self.id)).exists(),
            "cgroup left behind"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}
