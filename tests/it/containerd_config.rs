//! The containerd config the `runtime` step writes, exactly as `airgap plan` shows it for the example site,
//! loaded by the containerd it is written for: containerd 2.x (the default bundle's static release 2.3.6:
//! config version 3) run as Debian sid's 2.x (scripts/fetch-containerd2.sh puts it in
//! /var/cache/airgap-test/containerd2), and Debian 12's containerd 1.6 package (config version 2) run as this
//! host's 1.6. For each: `containerd config dump` succeeds and puts the systemd cgroup driver, the sandbox
//! image, the CNI dirs and the registry `config_path` where the CRI plugin reads them; a private containerd
//! started with the file (its paths moved under a temp dir) logs no warning, reports no deprecation, and pulls
//! an image through the CRI (the kubelet's call) by its ORIGINAL name via the plan's `hosts.toml` files from a
//! local registry standing in for the site registry, with the digest that registry serves.

use crate::support::bundle::Fixture;
use crate::support::containerd::Containerd;
use crate::support::images::{make_image, ImageSpec};
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap, repo, run_ok};
use airgap::bundle::format::{FileEntry, PackageEntry};
use airgap::bundle::write::FileSource;
use airgap::digest::Digest;
use airgap::node::components::Component;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where scripts/fetch-containerd2.sh (run by scripts/setup-debian.sh) unpacks sid's containerd 2.x.
pub const CONTAINERD2_BIN: &str = "/var/cache/airgap-test/containerd2/bin";
/// The workers' VIP of manifests/site.example.yaml: the site registry the plan's files name.
const SITE_REGISTRY: &str = "10.20.0.200:5000";

/// The containerd a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundled {
    /// The static release of manifests/k8s-ha.yaml (containerd 2.3.6), as `install: containerd`.
    Static2,
    /// Debian 12's containerd 1.6 package, for nodes without a static release.
    Debian16,
}

/// A bundle of the test fixture with that containerd (the file's bytes do not matter to `plan`).
pub fn bundle_with(fx: &Fixture, bundled: Bundled, out: &str) -> airgap::bundle::write::Written {
    let mut content = fx.content(1_000);
    let data = format!("{bundled:?} stand-in\n").into_bytes();
    let sha = Digest::of_bytes(&data);
    let src = fx.path().join(format!("{out}-containerd"));
    fs_err::write(&src, &data).unwrap();
    let path = match bundled {
        Bundled::Static2 => "archives/linux-amd64/containerd-static-2.3.6.tar.gz",
        Bundled::Debian16 => "packages/debian-12/containerd_1.6.20~ds1-1+deb12u3_amd64.deb",
    };
    let size = data.len() as u64;
    content.files.push(FileSource { path: path.into(), sha256: sha.clone(), size, mode: 0o644, source: src });
    match bundled {
        Bundled::Static2 => content.root.files.push(FileEntry {
            path: path.into(),
            url: "https://github.com/containerd/containerd/releases/download/v2.3.6/containerd-static-2.3.6-linux-amd64.tar.gz".into(),
            sha256: sha.hex().into(),
            size,
            mode: 0o644,
            install: Some(Component::Containerd),
            platform: Some("linux/amd64".into()),
            manifest: None,
        }),
        Bundled::Debian16 => content.root.packages.push(PackageEntry {
            os: "debian-12".into(),
            name: "containerd".into(),
            path: path.into(),
            url: "debian/pool/main/c/containerd/containerd_1.6.20~ds1-1+deb12u3_amd64.deb".into(),
            sha256: sha.hex().into(),
            size,
        }),
    }
    fx.write(&content, out, None, 2)
}

/// `airgap plan --only runtime` on the example site with that bundle (`--json` or text).
pub fn plan_runtime(fx: &Fixture, bundled: Bundled, json: bool) -> String {
    let w = bundle_with(fx, bundled, &format!("{bundled:?}").to_lowercase());
    let mut cmd = airgap();
    cmd.args(["plan", "--only", "runtime"]);
    if json {
        cmd.arg("--json");
    }
    cmd.arg("--inventory")
        .arg(repo().join("manifests/site.example.yaml"))
        .arg("--bundle")
        .arg(&w.archive)
        .arg("--pubkey")
        .arg(&fx.public)
        .arg("--state-dir")
        .arg(fx.path().join("state"));
    String::from_utf8(run_ok(&mut cmd).stdout).unwrap()
}

/// The files the runtime step writes on master1, by path.
fn planned_files(fx: &Fixture, bundled: Bundled) -> BTreeMap<String, String> {
    let plan: serde_json::Value = serde_json::from_str(&plan_runtime(fx, bundled, true)).unwrap();
    let node = plan["steps"][0]["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "master1").unwrap().clone();
    node["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "file")
        .map(|a| (a["path"].as_str().unwrap().to_string(), a["content"].as_str().unwrap().to_string()))
        .collect()
}

fn containerd2() -> PathBuf {
    let bin = PathBuf::from(CONTAINERD2_BIN);
    assert!(
        bin.join("containerd").is_file(),
        "no containerd 2.x in {CONTAINERD2_BIN}: run `bash scripts/fetch-containerd2.sh` (scripts/setup-debian.sh runs it)"
    );
    bin
}

/// `containerd --config FILE config dump` with `bin`'s containerd: the effective config, parsed.
fn config_dump(bin: &Path, config: &str) -> toml::Table {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("config.toml");
    fs_err::write(&file, config).unwrap();
    let out = Command::new(bin.join("containerd")).arg("--config").arg(&file).args(["config", "dump"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} config dump failed:\n{stderr}", bin.display());
    assert!(stderr.trim().is_empty(), "{} config dump complained:\n{stderr}", bin.display());
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or_else(|e| panic!("the dump is not TOML: {e}"))
}

/// The value at a dotted path of TOML keys (`["plugins", "io.containerd.cri.v1.images", "snapshotter"]`).
fn at<'a>(t: &'a toml::Table, path: &[&str]) -> &'a toml::Value {
    let mut v = t.get(path[0]).unwrap_or_else(|| panic!("no {}", path[0]));
    for k in &path[1..] {
        v = v.get(k).unwrap_or_else(|| panic!("no {path:?} in the effective config (stopped at {k})"));
    }
    v
}

/// The rendered config with the node's paths moved under `dir` (root, state, socket, hosts dir, and what else
/// a containerd writes: the opt dir, NRI's socket on 2.x) so that it runs next to anything else.
fn relocated(config: &str, dir: &Path, containerd2: bool) -> String {
    let d = dir.display();
    let mut c = config.to_string();
    for (from, to) in [
        ("\"/var/lib/containerd\"", format!("\"{d}/root\"")),
        ("state = \"/run/containerd\"", format!("state = \"{d}/state\"")),
        ("\"/run/containerd/containerd.sock\"", format!("\"{d}/c.sock\"")),
        ("\"/etc/containerd/certs.d\"", format!("\"{d}/certs.d\"")),
    ] {
        assert_eq!(c.matches(from).count(), 1, "{from} in\n{config}");
        c = c.replace(from, &to);
    }
    c.push_str(&format!("\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"{d}/opt\"\n"));
    if containerd2 {
        c.push_str("\n  [plugins.\"io.containerd.nri.v1.nri\"]\n    disable = true\n");
    }
    c
}

/// The plan's hosts.toml files under `dir/certs.d`, the site registry's address replaced by `registry`'s.
fn write_hosts(files: &BTreeMap<String, String>, dir: &Path, registry: &str) -> usize {
    let mut n = 0;
    for (path, content) in files {
        let Some(host) = path.strip_prefix("/etc/containerd/certs.d/").and_then(|p| p.strip_suffix("/hosts.toml")) else { continue };
        let d = dir.join("certs.d").join(host.replace(SITE_REGISTRY, registry));
        fs_err::create_dir_all(&d).unwrap();
        assert!(content.contains(&format!("http://{SITE_REGISTRY}")), "{path}:\n{content}");
        fs_err::write(d.join("hosts.toml"), content.replace(SITE_REGISTRY, registry)).unwrap();
        n += 1;
    }
    n
}

/// A private containerd of `bin` with `config`; a CRI pull of `registry.k8s.io/pause:3.10` (upstream's name,
/// unreachable here) through the plan's hosts.toml from `reg`; returns the containerd (for its log) after
/// checking the digest.
fn pull_through_hosts_toml(bin: &Path, files: &BTreeMap<String, String>, reg: &Registry, expected: &Digest, containerd2: bool) -> Containerd {
    let config = &files["/etc/containerd/config.toml"];
    let ctd = Containerd::start_with(bin, |dir| {
        assert!(write_hosts(files, dir, &reg.addr) >= 5, "the plan wrote no hosts.toml files");
        relocated(config, dir, containerd2)
    });
    let image = "registry.k8s.io/pause:3.10";
    let image_ref = crate::support::cri::pull_image(&ctd.socket, image)
        .unwrap_or_else(|e| panic!("CRI PullImage {image} under {}: {e}\n{}", bin.display(), ctd.log()));
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    assert_eq!(ctd.image_digest_in("k8s.io", image), expected.to_string(), "{}", ctd.log());
    ctd
}

#[test]
fn the_runtime_steps_containerd_config_works_under_the_containerd_it_is_written_for() {
    let c2 = containerd2();
    let fx = Fixture::new();
    let v3_files = planned_files(&fx, Bundled::Static2);
    let v2_files = planned_files(&fx, Bundled::Debian16);
    let (v3, v2) = (&v3_files["/etc/containerd/config.toml"], &v2_files["/etc/containerd/config.toml"]);
    assert!(v3.contains("\nversion = 3\n") && v3.contains("containerd 2.3.6 (the bundle's archives/linux-amd64/containerd-static-2.3.6.tar.gz)"), "{v3}");
    assert!(v2.contains("\nversion = 2\n") && v2.contains("containerd 1.6.20 (the bundle's packages/debian-12/"), "{v2}");

    // containerd 2.x reads the version-3 file where kubelet and the CRI expect each setting
    let dump = config_dump(&c2, v3);
    assert_eq!(at(&dump, &["version"]).as_integer(), Some(3));
    let images = ["plugins", "io.containerd.cri.v1.images"];
    let runtime = ["plugins", "io.containerd.cri.v1.runtime"];
    let k = |base: &[&'static str; 2], rest: &[&'static str]| [&base[..], rest].concat();
    assert_eq!(at(&dump, &k(&runtime, &["containerd", "runtimes", "runc", "options", "SystemdCgroup"])).as_bool(), Some(true));
    assert_eq!(at(&dump, &k(&runtime, &["containerd", "default_runtime_name"])).as_str(), Some("runc"));
    assert_eq!(at(&dump, &k(&images, &["pinned_images", "sandbox"])).as_str(), Some("10.20.0.200:5000/pause:3.10"));
    assert_eq!(at(&dump, &k(&images, &["registry", "config_path"])).as_str(), Some("/etc/containerd/certs.d"));
    assert_eq!(at(&dump, &k(&images, &["snapshotter"])).as_str(), Some("overlayfs"));
    let bin_dirs: Vec<&str> = at(&dump, &k(&runtime, &["cni", "bin_dirs"])).as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(bin_dirs, ["/opt/cni/bin"]);
    assert_eq!(at(&dump, &k(&runtime, &["cni", "conf_dir"])).as_str(), Some("/etc/cni/net.d"));

    // containerd 1.6 reads the version-2 file (the one for Debian 12's package) the same way
    let dump = config_dump(Path::new("/usr/bin"), v2);
    let cri = ["plugins", "io.containerd.grpc.v1.cri"];
    assert_eq!(at(&dump, &k(&cri, &["containerd", "runtimes", "runc", "options", "SystemdCgroup"])).as_bool(), Some(true));
    assert_eq!(at(&dump, &k(&cri, &["sandbox_image"])).as_str(), Some("10.20.0.200:5000/pause:3.10"));
    assert_eq!(at(&dump, &k(&cri, &["registry", "config_path"])).as_str(), Some("/etc/containerd/certs.d"));
    assert_eq!(at(&dump, &k(&cri, &["cni", "bin_dir"])).as_str(), Some("/opt/cni/bin"));
    assert_eq!(at(&dump, &k(&cri, &["cni", "conf_dir"])).as_str(), Some("/etc/cni/net.d"));
    assert_eq!(at(&dump, &k(&cri, &["containerd", "snapshotter"])).as_str(), Some("overlayfs"));

    // the site registry: an image made here, served as pause:3.10
    let reg = Registry::start(Mode::Plain);
    let layout = fx.path().join("layout");
    let made = make_image(&layout, "pause", &ImageSpec::single(91));
    reg.push_layout(&layout, "pause", "pause:3.10");
    let served = String::from_utf8(
        run_ok(reg.curl().args(["-I", "-H", &format!("Accept: {}", made.media_type)]).arg(format!("{}/v2/pause/manifests/3.10", reg.base_url()))).stdout,
    )
    .unwrap();
    assert!(served.to_lowercase().contains(&format!("docker-content-digest: {}", made.digest)), "{served}");

    // under 2.x: no warning, no deprecation; the CRI pulls by the upstream name through hosts.toml
    let ctd = pull_through_hosts_toml(&c2, &v3_files, &reg, &made.digest, true);
    let log = ctd.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("level=warning")).collect();
    assert!(warnings.is_empty(), "containerd 2.x warned about the version-3 config:\n{}", warnings.join("\n"));
    let deprecations = String::from_utf8_lossy(&ctd.ctr(&["deprecations", "list"]).stdout).to_string();
    assert!(deprecations.lines().skip(1).all(|l| l.trim().is_empty()), "containerd 2.x reports deprecations:\n{deprecations}");
    drop(ctd);
    // (why version 3: 2.x loads the version-2 file too, but migrates it with a warning at every start)
    let ctd = pull_through_hosts_toml(&c2, &v2_files, &reg, &made.digest, true);
    assert!(ctd.log().contains("Configuration migrated from version 2"), "{}", ctd.log());
    drop(ctd);

    // under 1.6 with its version-2 file: the same pull
    let ctd = pull_through_hosts_toml(Path::new(""), &v2_files, &reg, &made.digest, false);
    let log = ctd.log();
    // (1.6 always warns that the devmapper snapshotter is not configured: nothing a config should change)
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("level=warning") && !l.contains("devmapper")).collect();
    assert!(warnings.is_empty(), "containerd 1.6 warned about its config:\n{}", warnings.join("\n"));
}
