//! The reference registry (`docker-registry`, CNCF distribution) on loopback: plain HTTP, basic auth
//! (htpasswd, over TLS as distribution requires), or TLS with a self-signed CA made by `openssl`.

use super::{require_tool, run_ok, wait_for_port, ChildGuard};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tls,
    /// Basic auth with this user and password (served over TLS).
    BasicAuth { user: String, password: String },
}

pub struct Registry {
    pub mode: Mode,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM) clients must trust, for TLS modes.
    pub ca_cert: Option<PathBuf>,
    child: Option<ChildGuard>,
}

impl Registry {
    pub fn start(mode: Mode) -> Registry {
        Self::start_on(mode, "127.0.0.1")
    }

    /// A registry listening on `host` (an address of this machine, e.g. a lab's host leg).
    pub fn start_on(mode: Mode, host: &str) -> Registry {
        require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry { mode, addr: format!("{host}:0"), dir, ca_cert: None, child: None };
        let port = std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
        reg.spawn(port);
        reg
    }

    /// A registry on `host:port` (e.g. the workers' VIP `:5000` of a lab, an address of this machine).
    pub fn start_at(mode: Mode, host: &str, port: u16) -> Registry {
        require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry { mode, addr: format!("{host}:{port}"), dir, ca_cert: None, child: None };
        reg.spawn(port);
        reg
    }

    fn spawn(&mut self, port: u16) {
        let d = self.dir.path();
        let host = self.addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_else(|| "127.0.0.1".into());
        let addr = format!("{host}:{port}");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            d.join("data").display()
        );
        if self.mode != Mode::Plain {
            let (cert, key, ca) = make_tls(d, &host);
            cfg.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
            self.ca_cert = Some(ca);
        }
        if let Mode::BasicAuth { user, password } = &self.mode {
            require_tool("htpasswd");
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
            fs_err::write(d.join("htpasswd"), &out.stdout).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: airgap-test\n    path: {}\n",
                d.join("htpasswd").display()
            ));
        }
        fs_err::write(d.join("config.yml"), cfg).unwrap();
        let log = fs_err::File::create(d.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap().into_parts().0)
            .stderr(log.into_parts().0)
            .spawn()
            .expect("failed to start docker-registry");
        self.child = Some(ChildGuard(child));
        self.addr = addr;
        wait_for_port(&self.addr, Duration::from_secs(10));
    }

    /// Stop the registry (the data stays); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        self.child = None;
    }

    pub fn restart(&mut self) {
        let port: u16 = self.addr.rsplit(':').next().unwrap().parse().unwrap();
        self.spawn(port);
    }

    /// Flags for skopeo to reach this registry: prefix `dest` or `src` for `skopeo copy`, `""` for
    /// `skopeo inspect`.
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}-") };
        let mut f = Vec::new();
        match &self.mode {
            Mode::Plain => f.push(format!("--{prefix}tls-verify=false")),
            Mode::Tls => {
                f.push(format!("--{prefix}cert-dir={}", self.cert_dir().display()));
            }
            Mode::BasicAuth { user, password } => {
                f.push(format!("--{prefix}cert-dir={}", self.cert_dir().display()));
                f.push(format!("--{prefix}creds={user}:{password}"));
            }
        }
        f
    }

    /// A directory holding `ca.crt` in the layout skopeo's `--cert-dir` expects.
    pub fn cert_dir(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d");
        if let Some(ca) = &self.ca_cert {
            fs_err::create_dir_all(&d).unwrap();
            fs_err::copy(ca, d.join("ca.crt")).unwrap();
        }
        d
    }

    /// `docker://127.0.0.1:PORT/<repo>`
    pub fn docker_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{}", self.addr, repo_and_tag)
    }

    /// Push the image tagged `tag` in the OCI layout `layout` to `repo:tag_or_ref` here, byte for byte (every
    /// blob, every child manifest, then the top-level manifest or index), with the stock `curl` speaking the
    /// distribution push API. Works for OCI and Docker media types alike (skopeo's layout reader only knows OCI).
    pub fn push_layout(&self, layout: &Path, tag: &str, repo_and_tag: &str) {
        let (repo, dest_tag) = repo_and_tag.rsplit_once(':').expect("repo:tag");
        let index: serde_json::Value = serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
        let top = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no image tagged {tag} in {}", layout.display()))
            .clone();
        self.push_manifest_tree(layout, repo, &top, Some(dest_tag));
    }

    fn push_manifest_tree(&self, layout: &Path, repo: &str, desc: &serde_json::Value, tag: Option<&str>) {
        let digest = desc["digest"].as_str().unwrap();
        let media_type = desc["mediaType"].as_str().unwrap();
        let path = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        let body: serde_json::Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
        if let Some(children) = body["manifests"].as_array() {
            for c in children {
                self.push_manifest_tree(layout, repo, c, None);
            }
        } else {
            let mut blobs = vec![body["config"].clone()];
            blobs.extend(body["layers"].as_array().unwrap().iter().cloned());
            for b in blobs {
                let d = b["digest"].as_str().unwrap();
                self.push_blob(repo, d, &layout.join("blobs/sha256").join(d.trim_start_matches("sha256:")));
            }
        }
        let url = format!("{}/v2/{repo}/manifests/{}", self.base_url(), tag.unwrap_or(digest));
        let mut cmd = self.curl();
        cmd.args(["-X", "PUT", "-H", &format!("Content-Type: {media_type}"), "--data-binary"]).arg(format!("@{}", path.display())).arg(&url);
        run_ok(&mut cmd);
    }

    fn push_blob(&self, repo: &str, digest: &str, path: &Path) {
        let mut head = self.curl();
        head.args(["-o", "/dev/null", "-w", "%{http_code}", "-I"]).arg(format!("{}/v2/{repo}/blobs/{digest}", self.base_url()));
        let head = head.output().unwrap();
        if String::from_utf8_lossy(&head.stdout) == "200" {
            return;
        }
        let mut post = self.curl();
        post.args(["-X", "POST", "-D", "-", "-o", "/dev/null"]).arg(format!("{}/v2/{repo}/blobs/uploads/", self.base_url()));
        let headers = String::from_utf8(run_ok(&mut post).stdout).unwrap();
        let location = headers
            .lines()
            .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
            .expect("upload location")
            .trim()
            .to_string();
        let location = if location.starts_with("http") { location } else { format!("{}{location}", self.base_url()) };
        let sep = if location.contains('?') { '&' } else { '?' };
        let mut put = self.curl();
        put.args(["-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary"])
            .arg(format!("@{}", path.display()))
            .arg(format!("{location}{sep}digest={digest}"));
        run_ok(&mut put);
    }

    /// `http://127.0.0.1:PORT` or `https://...`
    pub fn base_url(&self) -> String {
        match self.mode {
            Mode::Plain => format!("http://{}", self.addr),
            _ => format!("https://{}", self.addr),
        }
    }

    /// A `curl` preset for this registry (fail on HTTP errors, silent, CA and credentials).
    pub fn curl(&self) -> Command {
        require_tool("curl");
        let mut c = Command::new("curl");
        c.args(["-sS", "--fail-with-body"]);
        if let Some(ca) = &self.ca_cert {
            c.arg("--cacert").arg(ca);
        }
        if let Mode::BasicAuth { user, password } = &self.mode {
            c.arg("-u").arg(format!("{user}:{password}"));
        }
        c
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost (and `host`), made with the stock `openssl`.
fn make_tls(d: &Path, host: &str) -> (PathBuf, PathBuf, PathBuf) {
    require_tool("openssl");
    let ca_key = d.join("ca.key");
    let ca = d.join("ca.pem");
    let key = d.join("server.key");
    let csr = d.join("server.csr");
    let cert = d.join("server.pem");
    let ext = d.join("ext.cnf");
    run_ok(Command::new("openssl").args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=airgap test CA"]).arg("-keyout").arg(&ca_key).arg("-out").arg(&ca));
    run_ok(Command::new("openssl").args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1"]).arg("-keyout").arg(&key).arg("-out").arg(&csr));
    let extra = if host != "127.0.0.1" { format!(",IP:{host}") } else { String::new() };
    fs_err::write(&ext, format!("subjectAltName=IP:127.0.0.1,DNS:localhost{extra}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")).unwrap();
    run_ok(Command::new("openssl").args(["x509", "-req", "-days", "2"]).arg("-in").arg(&csr).arg("-CA").arg(&ca).arg("-CAkey").arg(&ca_key).arg("-CAcreateserial").arg("-extfile").arg(&ext).arg("-out").arg(&cert));
    (cert, key, ca)
}
