//! A private containerd daemon for tests: its own config, root, state and sockets under a temp dir (`start`: the CRI
//! plugin disabled; `start_with`: any release and config), driven with the `ctr` of its release.

use super::{require_tool, run_ok, ChildGuard};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub struct Containerd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    /// The `ctr` of the same release (`ctr` on the PATH for the system's containerd).
    ctr: PathBuf,
    _child: ChildGuard,
}

impl Containerd {
    pub fn start() -> Containerd {
        require_tool("containerd");
        require_tool("ctr");
        Self::start_with(Path::new(""), |d| {
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
                root = d.join("root").display(),
                state = d.join("state").display(),
                sock = d.join("c.sock").display(),
                opt = d.join("opt").display(),
            )
        })
    }

    /// The `containerd` and `ctr` of `bin_dir` (empty: the PATH's) with the config `config(DIR)` returns for a
    /// fresh temp dir DIR, whose gRPC socket must be `DIR/c.sock` (root, state and everything else it writes
    /// belong under DIR too).
    pub fn start_with(bin_dir: &Path, config: impl FnOnce(&Path) -> String) -> Containerd {
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("ctd").tempdir_in("/tmp").unwrap();
        let d = dir.path();
        let socket = d.join("c.sock");
        fs_err::write(d.join("config.toml"), config(d)).unwrap();
        let log = fs_err::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new(bin_dir.join("containerd"))
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap().into_parts().0)
            .stderr(log.into_parts().0)
            .spawn()
            .expect("failed to start containerd");
        let c = Containerd { socket, ctr: bin_dir.join("ctr"), _child: ChildGuard(child), dir };
        let up = super::try_wait_until(Duration::from_secs(20), || {
            Command::new(&c.ctr).arg("--address").arg(&c.socket).arg("version").output().is_ok_and(|o| o.status.success())
        });
        assert!(up.is_some(), "containerd did not start:\n{}", c.log());
        c
    }

    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address SOCK ARGS...`, not checked.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new(&self.ctr).arg("--address").arg(&self.socket).args(args).output().expect("failed to run ctr")
    }

    /// `ctr images pull` (unpacks for the host platform with the `native` snapshotter); panics on failure.
    pub fn pull(&self, extra: &[&str], reference: &str) -> Output {
        let mut cmd = Command::new(&self.ctr);
        cmd.arg("--address").arg(&self.socket).args(["images", "pull", "--snapshotter", "native"]).args(extra).arg(reference);
        run_ok(&mut cmd)
    }

    /// The digest containerd recorded for an image (`ctr images ls`).
    pub fn image_digest(&self, reference: &str) -> String {
        self.image_digest_in("default", reference)
    }

    /// The digest containerd recorded for an image in a namespace (`k8s.io`: the CRI's).
    pub fn image_digest_in(&self, namespace: &str, reference: &str) -> String {
        let out = self.ctr(&["--namespace", namespace, "images", "ls"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(reference))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
            .unwrap_or_else(|| panic!("{reference} not in `ctr images ls`:\n{text}"))
            .to_string()
    }

    /// Write `hosts.toml` for `upstream` (host:port) pointing at a plain-HTTP mirror; returns the hosts dir.
    pub fn mirror_hosts_dir(&self, upstream: &str, mirror: &str) -> PathBuf {
        let hosts = self.dir.path().join("certs.d");
        let d = hosts.join(upstream);
        fs_err::create_dir_all(&d).unwrap();
        fs_err::write(
            d.join("hosts.toml"),
            format!("server = \"http://{upstream}\"\n\n[host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
        )
        .unwrap();
        hosts
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}
