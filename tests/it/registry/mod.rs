//! The built-in registry (`airgap load`, `airgap serve`, `airgap images`) against real clients: skopeo,
//! containerd's `ctr` (direct and through a hosts.toml mirror), curl; compared with the reference registry.

mod gc;
mod hostile;
mod load;
mod unprivileged;

use crate::support::containerd::Containerd;
use crate::support::images::{make_image, Format, ImageSpec, MadeImage};
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap_bin, free_port, require_tool, run_ok, wait_for_port, ChildGuard};
use airgap::digest::Digest;
use airgap::registry::store::{load_layout, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `airgap serve` on a free loopback port, debug request log in a file.
pub struct Served {
    pub addr: String,
    pub log: PathBuf,
    child: ChildGuard,
    _logdir: tempfile::TempDir,
}

impl Served {
    pub fn start(store: &Path) -> Served {
        Served::start_with(store, &[])
    }

    pub fn start_with(store: &Path, extra: &[&str]) -> Served {
        Served::start_limited(store, extra, None)
    }

    /// With the server's open-file limit (soft and hard) set to `nofile`.
    pub fn start_limited(store: &Path, extra: &[&str], nofile: Option<u64>) -> Served {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("serve.log");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let f = fs_err::File::create(&log).unwrap();
        let mut cmd = Command::new(airgap_bin());
        cmd.args(["-v", "serve", "--listen", &addr, "--store"])
            .arg(store)
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f.into_parts().0);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n).map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().unwrap();
        wait_for_port(&addr, Duration::from_secs(10));
        Served { addr, log, child: ChildGuard(child), _logdir: logdir }
    }

    /// The server process is still running (not crashed, not exited).
    pub fn alive(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }

    /// Wait (at most `timeout`) until the log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        crate::support::try_wait_until(timeout, || self.log().contains(needle)).is_some()
    }

    pub fn log(&self) -> String {
        fs_err::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then wait: the exit must be clean.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.0.wait().unwrap()
    }
}

/// The upstream registry with a few test images pushed, and the same images in one OCI layout whose
/// `ref.name` annotations are the full upstream references (as a bundle's index.json has them).
pub struct Fixture {
    pub upstream: Registry,
    pub layout: tempfile::TempDir,
    /// (path:tag served by airgap, the image)
    pub images: Vec<(String, MadeImage)>,
}

impl Fixture {
    pub fn new(seed: u64) -> Fixture {
        let upstream = Registry::start(Mode::Plain);
        let layout = tempfile::tempdir().unwrap();
        let specs: Vec<(&str, ImageSpec)> = vec![
            ("test/multi:1", ImageSpec::multi(&["linux/amd64", "linux/arm64"], seed)),
            (
                "test/docker:2",
                ImageSpec { format: Format::Docker, ..ImageSpec::multi(&["linux/amd64", "linux/arm/v7"], seed + 1) },
            ),
            ("single:3", ImageSpec::single(seed + 2)),
        ];
        let mut images = Vec::new();
        for (path, spec) in specs {
            let reference = format!("{}/{path}", upstream.addr);
            let img = make_image(layout.path(), &reference, &spec);
            upstream.push_layout(layout.path(), &reference, path);
            images.push((path.to_string(), img));
        }
        Fixture { upstream, layout, images }
    }
}

pub fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    require_tool("skopeo");
    run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", reference])).stdout
}

/// Files of a `dir:` copy written by `skopeo copy --all` (blobs named by digest, manifests by digest): name → sha256.
fn dir_files(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in fs_err::read_dir(dir).unwrap() {
        let e = e.unwrap();
        m.insert(e.file_name().to_string_lossy().to_string(), crate::support::sha256sum(&e.path()));
    }
    m
}

#[test]
fn registry_serves_what_upstream_serves_to_skopeo() {
    let fx = Fixture::new(100);
    let (_d, store) = new_store();
    load_layout(&store, fx.layout.path()).unwrap();
    let served = Served::start(store.root());
    let work = tempfile::tempdir().unwrap();
    for (path, img) in &fx.images {
        let raw = skopeo_raw(&format!("docker://{}/{path}", served.addr));
        assert_eq!(Digest::of_bytes(&raw), img.digest, "{path}: manifest bytes differ from upstream");
        assert_eq!(raw, skopeo_raw(&format!("docker://{}/{path}", fx.upstream.addr)));
        let ours = work.path().join(format!("ours-{}", path.replace(['/', ':'], "_")));
        let theirs = work.path().join(format!("theirs-{}", path.replace(['/', ':'], "_")));
        for (src, dst) in [(&served.addr, &ours), (&fx.upstream.addr, &theirs)] {
            run_ok(
                Command::new("skopeo")
                    .args(["copy", "--all", "--preserve-digests", "--src-tls-verify=false"])
                    .arg(format!("docker://{src}/{path}"))
                    .arg(format!("dir:{}", dst.display())),
            );
        }
        let (a, b) = (dir_files(&ours), dir_files(&theirs));
        assert!(a.len() >= 4, "{path}: too few files copied: {a:?}");
        assert_eq!(a, b, "{path}: skopeo copy --all from airgap and from upstream differ");
        for (name, sum) in &a {
            if name.len() == 64 {
                assert_eq!(name, sum, "{path}: blob {name} corrupted");
            }
        }
    }
    let log = served.log();
    assert!(log.contains("serving 3 images from"), "{log}");
    assert!(log.contains("/manifests/"), "no request log lines:\n{log}");
    assert!(served.terminate().success(), "serve did not exit cleanly on SIGTERM");
}

/// `curl` one request: (status, lower-cased headers, body).
fn http(method: &str, url: &str, headers: &[&str]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let (hf, bf) = (d.path().join("h"), d.path().join("b"));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D"]).arg(&hf).arg("-o").arg(&bf).args(["-w", "%{http_code}"]);
    if method == "HEAD" {
        // -I: a real HEAD (curl then writes the headers as the body; the body of a HEAD is empty by definition).
        cmd.arg("-I");
    } else {
        cmd.args(["-X", method]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = run_ok(cmd.arg(url));
    let status: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let mut map = BTreeMap::new();
    for l in fs_err::read_to_string(&hf).unwrap().lines().skip(1) {
        if let Some((k, v)) = l.split_once(':') {
            map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let body = if method == "HEAD" { Vec::new() } else { fs_err::read(&bf).unwrap_or_default() };
    (status, map, body)
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

#[test]
fn registry_http_api_headers_ranges_errors_and_pagination() {
    require_tool("curl");
    let fx = Fixture::new(200);
    // More tags for pagination, on the same path.
    let host = fx.upstream.addr.clone();
    for t in ["b", "a", "c"] {
        make_image(fx.layout.path(), &format!("{host}/test/multi:{t}"), &ImageSpec::single(300));
    }
    let (_d, store) = new_store();
    load_layout(&store, fx.layout.path()).unwrap();
    let s = Served::start(store.root());

    let (st, h, body) = http("GET", &s.url("/v2/"), &[]);
    assert_eq!(st, 200);
    assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
    assert_eq!(body, b"{}");

    let (path, img) = &fx.images[0];
    let (name, tag) = path.rsplit_once(':').unwrap();
    let accept = "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    for method in ["GET", "HEAD"] {
        let (st, h, body) = http(method, &s.url(&format!("/v2/{name}/manifests/{tag}")), &[accept]);
        assert_eq!(st, 200, "{method}");
        assert_eq!(h["content-type"], img.media_type);
        assert_eq!(h["docker-content-digest"], img.digest.to_string());
        assert_eq!(h["etag"], format!("\"{}\"", img.digest));
        let size = img.blobs.iter().find(|(d, _)| d == &img.digest).unwrap().1;
        assert_eq!(h["content-length"], size.to_string(), "{method}");
        if method == "GET" {
            assert_eq!(Digest::of_bytes(&body), img.digest);
        } else {
            assert!(body.is_empty());
        }
    }
    // By digest, a platform manifest, with its own media type.
    let (_, child) = &img.manifests[1];
    let (st, h, body) = http("GET", &s.url(&format!("/v2/{name}/manifests/{child}")), &[]);
    assert_eq!((st, h["content-type"].as_str()), (200, "application/vnd.oci.image.manifest.v1+json"));
    assert_eq!(&Digest::of_bytes(&body), child);

    // Blobs: full, HEAD, ranges, unsatisfiable.
    let (big, big_size) = img.blobs.iter().max_by_key(|(_, s)| *s).unwrap().clone();
    let full = fs_err::read(img.layout.join("blobs/sha256").join(big.hex())).unwrap();
    let blob_url = s.url(&format!("/v2/{name}/blobs/{big}"));
    let (st, h, body) = http("GET", &blob_url, &[]);
    assert_eq!((st, body.len() as u64), (200, big_size));
    assert_eq!(body, full);
    assert_eq!(h["docker-content-digest"], big.to_string());
    assert_eq!(h["accept-ranges"], "bytes");
    let (st, h, body) = http("HEAD", &blob_url, &[]);
    assert_eq!((st, h["content-length"].clone(), body.len()), (200, big_size.to_string(), 0));
    let (st, h, body) = http("GET", &blob_url, &["Range: bytes=10-19"]);
    assert_eq!(st, 206);
    assert_eq!(h["content-range"], format!("bytes 10-19/{big_size}"));
    assert_eq!(body, &full[10..20]);
    let (st, h, body) = http("GET", &blob_url, &["Range: bytes=100-"]);
    assert_eq!((st, h["content-range"].clone()), (206, format!("bytes 100-{}/{big_size}", big_size - 1)));
    assert_eq!(body, &full[100..]);
    let (st, _, body) = http("GET", &blob_url, &["Range: bytes=-7"]);
    assert_eq!((st, body.as_slice()), (206, &full[full.len() - 7..]));
    let (st, h, _) = http("GET", &blob_url, &[&format!("Range: bytes={big_size}-")]);
    assert_eq!((st, h["content-range"].clone()), (416, format!("bytes */{big_size}")));

    // 404s with the spec's codes.
    let zero = format!("sha256:{}", "0".repeat(64));
    for (url, code) in [
        (format!("/v2/nope/manifests/{tag}"), "NAME_UNKNOWN"),
        (format!("/v2/{name}/manifests/no-such-tag"), "MANIFEST_UNKNOWN"),
        (format!("/v2/{name}/manifests/{zero}"), "MANIFEST_UNKNOWN"),
        (format!("/v2/{name}/blobs/{zero}"), "BLOB_UNKNOWN"),
        ("/v2/nope/tags/list".to_string(), "NAME_UNKNOWN"),
        // the host is not part of the served name
        (format!("/v2/{host}/{name}/manifests/{tag}"), "NAME_UNKNOWN"),
    ] {
        let (st, h, body) = http("GET", &s.url(&url), &[]);
        assert_eq!(st, 404, "{url}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(error_code(&body), code, "{url}");
        let (st, _, _) = http("HEAD", &s.url(&url), &[]);
        assert_eq!(st, 404, "HEAD {url}");
    }
    let (st, _, _) = http("PUT", &s.url(&format!("/v2/{name}/manifests/x")), &[]);
    assert_eq!(st, 405);

    // tags/list: lexical order, n/last with Link.
    let tags = |q: &str| {
        let (st, h, body) = http("GET", &s.url(&format!("/v2/{name}/tags/list{q}")), &[]);
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["name"], name);
        (v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>(), h.get("link").cloned())
    };
    assert_eq!(tags(""), (vec!["1".into(), "a".into(), "b".into(), "c".into()], None));
    let (page, link) = tags("?n=2");
    assert_eq!(page, vec!["1", "a"]);
    assert_eq!(link.unwrap(), format!("</v2/{name}/tags/list?n=2&last=a>; rel=\"next\""));
    assert_eq!(tags("?n=2&last=a"), (vec!["b".into(), "c".into()], None));
    assert_eq!(tags("?last=c").0, Vec::<String>::new());

    let (st, _, body) = http("GET", &s.url("/v2/_catalog"), &[]);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["single", "test/docker", "test/multi"]));
    let (_, h, body) = http("GET", &s.url("/v2/_catalog?n=1&last=single"), &[]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["test/docker"]));
    assert_eq!(h["link"], "</v2/_catalog?n=1&last=test/docker>; rel=\"next\"");
    assert!(s.log().contains("status=404"), "request log lacks statuses:\n{}", s.log());
}

#[test]
fn registry_64_concurrent_blob_downloads() {
    require_tool("curl");
    let layout = tempfile::tempdir().unwrap();
    let spec = ImageSpec { layers: vec![8 << 20], gzip: false, ..ImageSpec::single(400) };
    let img = make_image(layout.path(), "example.test/big/image:1", &spec);
    let (_d, store) = new_store();
    load_layout(&store, layout.path()).unwrap();
    let s = Served::start(store.root());
    let (big, size) = img.blobs.iter().max_by_key(|(_, s)| *s).unwrap().clone();
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--parallel", "--parallel-immediate", "--parallel-max", "64"]);
    for i in 0..64 {
        cmd.arg("-o").arg(out.path().join(format!("b{i}"))).arg(s.url(&format!("/v2/big/image/blobs/{big}")));
    }
    run_ok(&mut cmd);
    for i in 0..64 {
        let p = out.path().join(format!("b{i}"));
        assert_eq!(fs_err::metadata(&p).unwrap().len(), size);
        assert_eq!(crate::support::sha256sum(&p), big.hex());
    }
    // A range across several of the 1 MiB slices the body is streamed in.
    let full = fs_err::read(out.path().join("b0")).unwrap();
    let (st, h, body) = http("GET", &s.url(&format!("/v2/big/image/blobs/{big}")), &["Range: bytes=1000000-3500000"]);
    assert_eq!((st, h["content-range"].clone()), (206, format!("bytes 1000000-3500000/{size}")));
    assert_eq!(body, &full[1_000_000..=3_500_000]);
}

#[test]
fn registry_serves_containerd_directly_and_as_mirror_of_stopped_upstream() {
    let mut fx = Fixture::new(500);
    let (_d, store) = new_store();
    load_layout(&store, fx.layout.path()).unwrap();
    let s = Served::start(store.root());
    let ctd = Containerd::start();
    let upstream = fx.upstream.addr.clone();
    // Directly: what kubeadm's imageRepository: <vip>:5000 does.
    for (path, img) in &fx.images {
        let r = format!("{}/{path}", s.addr);
        ctd.pull(&["--plain-http"], &r);
        assert_eq!(ctd.image_digest(&r), img.digest.to_string(), "{r}");
    }
    // Through a hosts.toml mirror of the upstream host, the upstream stopped: how kubelet pulls.
    fx.upstream.stop();
    let hosts = ctd.mirror_hosts_dir(&upstream, &s.addr);
    for (path, img) in &fx.images {
        let r = format!("{upstream}/{path}");
        ctd.pull(&["--hosts-dir", hosts.to_str().unwrap()], &r);
        assert_eq!(ctd.image_digest(&r), img.digest.to_string(), "{r}");
    }
    let log = s.log();
    let ns = format!("ns={}", upstream.replace(':', "%3A"));
    assert!(log.contains(&ns) || log.contains(&format!("ns={upstream}")), "no ?ns= in the request log:\n{log}");
    // Unpacked for this platform: the snapshot exists.
    let snaps = ctd.ctr(&["snapshots", "--snapshotter", "native", "ls"]);
    assert!(String::from_utf8_lossy(&snaps.stdout).lines().count() > 1, "nothing unpacked");
}

/// `skopeo copy --all --preserve-digests` of `docker://ADDR/REF` into a `dir:` copy (bounded in time).
pub fn skopeo_copy(addr: &str, reference: &str, dst: &Path) -> Result<(), String> {
    require_tool("skopeo");
    let out = Command::new("skopeo")
        .args(["--command-timeout", "120s", "copy", "--all", "--preserve-digests", "--src-tls-verify=false"])
        .arg(format!("docker://{addr}/{reference}"))
        .arg(format!("dir:{}", dst.display()))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("skopeo copy {reference} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

/// A `dir:` copy holds exactly the image that was made: the same top-level digest, every child manifest and
/// every config and layer, each file's content matching its name.
pub fn assert_pulled(dir: &Path, img: &MadeImage) {
    let files = dir_files(dir);
    let top = crate::support::sha256sum(&dir.join("manifest.json"));
    assert_eq!(format!("sha256:{top}"), img.digest.to_string(), "{}: top-level manifest digest differs", img.tag);
    let children: std::collections::BTreeSet<String> =
        img.manifests.iter().map(|(_, d)| d.hex().to_string()).filter(|h| h != img.digest.hex()).collect();
    let mut blobs = std::collections::BTreeSet::new();
    for (name, sum) in &files {
        if let Some(hex) = name.strip_suffix(".manifest.json") {
            assert_eq!(hex, sum, "{}: child manifest {name} corrupted", img.tag);
            assert!(children.contains(hex), "{}: unexpected child manifest {name}", img.tag);
        } else if name.len() == 64 {
            assert_eq!(name, sum, "{}: blob {name} corrupted", img.tag);
            blobs.insert(name.clone());
        }
    }
    let want: std::collections::BTreeSet<String> = img
        .blobs
        .iter()
        .map(|(d, _)| d.hex().to_string())
        .filter(|h| h != img.digest.hex() && !children.contains(h))
        .collect();
    assert_eq!(blobs, want, "{}: the copied configs and layers differ from the image's", img.tag);
}
