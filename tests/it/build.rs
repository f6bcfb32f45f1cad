//! `airgap build` against the real docker-registry (plain, TLS, basic auth) and a real HTTP file server:
//! signature checked by the stock minisign, checksums by the stock sha256sum, images read back by skopeo.

use crate::fault::{Fault, FaultProxy};
use crate::support::fileserver::FileServer;
use crate::support::images::{make_image, pseudo_random, Format, ImageSpec, MadeImage};
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap_bin, run_ok, sha256sum};
use airgap::digest::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Test images, files and a key pair, shared by the tests below (each test starts its own servers).
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub layout: PathBuf,
    pub multi: MadeImage,
    pub docker: MadeImage,
    pub single: MadeImage,
    pub files: PathBuf,
    pub key: PathBuf,
    pub pubkey: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("layout");
        let shared = Some((4242, 50_000));
        let multi = make_image(&layout, "multi", &ImageSpec { shared_layer: shared, ..ImageSpec::multi(&["linux/amd64", "linux/arm64"], 1) });
        let docker = make_image(&layout, "docker", &ImageSpec { format: Format::Docker, shared_layer: shared, ..ImageSpec::multi(&["linux/amd64", "linux/arm64"], 2) });
        let single = make_image(&layout, "single", &ImageSpec::single(3));
        let files = tmp.path().join("www");
        let tool = pseudo_random(10, 300_000);
        write(&files.join("bin/tool"), &tool);
        for arch in ["amd64", "arm64"] {
            let k = pseudo_random(if arch == "amd64" { 11 } else { 12 }, 200_000);
            write(&files.join(format!("{arch}/kubectl")), &k);
            write(&files.join(format!("{arch}/kubectl.sha256")), Digest::of_bytes(&k).hex().as_bytes());
        }
        write(&files.join("pool/k/keepalived_2.2.7-1+b2_amd64.deb"), &pseudo_random(13, 100_000));
        write(&files.join("big.bin"), &pseudo_random(14, 2_500_000));
        let keys = airgap::sign::generate_keypair(&tmp.path().join("keys"), None).unwrap();
        Env { layout, multi, docker, single, files, key: keys.secret, pubkey: keys.public, tmp }
    }

    pub fn push(&self, reg: &Registry) {
        reg.push_layout(&self.layout, "multi", "test/multi:1");
        reg.push_layout(&self.layout, "docker", "library/docker:2");
        reg.push_layout(&self.layout, "single", "test/single:3");
    }

    pub fn sha(&self, rel: &str) -> String {
        Digest::of_file(&self.files.join(rel)).unwrap().0.hex().to_string()
    }

    /// The demo manifest for a registry at `reg` and a file server at `fs` (`http://127.0.0.1:PORT`).
    pub fn manifest(&self, reg: &str, fs: &str, platforms: &str, extra_files: &str) -> PathBuf {
        let text = format!(
            "# test manifest\nname: demo\nversion: 1.0.0-1\nplatforms: {platforms}\nimages:\n  - {reg}/test/multi:1\n  - {reg}/library/docker:2\n  - {reg}/test/single:3\n  - {reg}/test/multi@{md}\n  - {reg}/test/multi:1@{md}\nfiles:\n  - url: {fs}/bin/tool\n    sha256: {tool}\n    path: bin/tool\n    executable: true\n  - url: {fs}/{{arch}}/kubectl\n    sha256_url: {fs}/{{arch}}/kubectl.sha256\n    path: bin/{{arch}}/kubectl\n    mode: \"0755\"\n{extra_files}packages:\n  - os: debian-12\n    url: {fs}/pool/k/keepalived_2.2.7-1+b2_amd64.deb\n    sha256: {deb}\n    name: keepalived\n",
            md = self.multi.digest,
            tool = self.sha("bin/tool"),
            deb = self.sha("pool/k/keepalived_2.2.7-1+b2_amd64.deb"),
        );
        let p = self.tmp.path().join(format!("manifest-{}.yaml", rand_suffix()));
        fs_err::write(&p, text).unwrap();
        p
    }

    /// `airgap build MANIFEST --out OUT --key KEY --cache-dir CACHE ARGS...`
    pub fn build(&self, manifest: &Path, out: &Path, cache: &Path, args: &[&str]) -> Output {
        Command::new(airgap_bin())
            .arg("build")
            .arg(manifest)
            .arg("--out")
            .arg(out)
            .arg("--key")
            .arg(&self.key)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--color", "never"])
            .args(args)
            .env("HOME", self.tmp.path())
            .output()
            .unwrap()
    }
}

fn write(p: &Path, data: &[u8]) {
    fs_err::create_dir_all(p.parent().unwrap()).unwrap();
    fs_err::write(p, data).unwrap();
}

fn rand_suffix() -> String {
    format!("{:x}", rand::random::<u64>())
}

pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "build failed ({}):\nstdout:\n{}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\nstdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Extract a bundle with the stock tar + zstd and check it with the stock sha256sum.
pub fn extract_and_check(archive: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    run_ok(Command::new("tar").arg("-I").arg("zstd").arg("-xf").arg(archive).arg("-C").arg(to));
    run_ok(Command::new("sha256sum").args(["--quiet", "--strict", "-c", "SHA256SUMS"]).current_dir(to));
}

/// Digest of `skopeo inspect --raw oci:DIR/images:REF`.
pub fn skopeo_raw_digest(root: &Path, reference: &str) -> String {
    let out = run_ok(Command::new("skopeo").arg("inspect").arg("--raw").arg(format!("oci:{}/images:{reference}", root.display())));
    Digest::of_bytes(&out.stdout).to_string()
}

fn blob_present(root: &Path, d: &Digest) -> bool {
    root.join("images").join(d.blob_path()).is_file()
}

#[test]
fn plain_registry_end_to_end_and_reproducible() {
    let env = Env::new();
    let reg = Registry::start(Mode::Plain);
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    let fs_url = format!("http://{}", fs.addr);
    let m = env.manifest(&reg.addr, &fs_url, "[linux/amd64, linux/arm64]", "");
    let out1 = env.tmp.path().join("out1");
    let cache1 = env.tmp.path().join("cache1");
    let stdout = ok(&env.build(&m, &out1, &cache1, &["--insecure-registry", &reg.addr]));
    let archive = out1.join("demo-1.0.0-1.tar.zst");
    let sig = out1.join("demo-1.0.0-1.tar.zst.minisig");
    let lock = out1.join("demo-1.0.0-1.lock.json");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..3], [archive.to_str().unwrap(), sig.to_str().unwrap(), lock.to_str().unwrap()], "{stdout}");
    assert!(lines[3].starts_with("built demo-1.0.0-1: 5 images, 3 files, 1 packages"), "{stdout}");

    // The stock minisign accepts the signature.
    run_ok(Command::new("minisign").arg("-Vm").arg(&archive).arg("-p").arg(&env.pubkey));

    // Stock tar + zstd + sha256sum, then skopeo reads every image back with its upstream digest.
    let root = env.tmp.path().join("x1");
    extract_and_check(&archive, &root);
    let r = |s: &str| format!("{}/{s}", reg.addr);
    let md = env.multi.digest.to_string();
    for (reference, want) in [
        (r("test/multi:1"), &env.multi.digest),
        (r("library/docker:2"), &env.docker.digest),
        (r("test/single:3"), &env.single.digest),
        (r(&format!("test/multi@{md}")), &env.multi.digest),
        (r(&format!("test/multi:1@{md}")), &env.multi.digest),
    ] {
        assert_eq!(skopeo_raw_digest(&root, &reference), want.to_string(), "{reference}");
    }
    // Every blob of every platform is there, each once; the shared layer once for both images.
    for img in [&env.multi, &env.docker, &env.single] {
        for (d, size) in &img.blobs {
            let p = root.join("images").join(d.blob_path());
            assert_eq!(fs_err::metadata(&p).unwrap().len(), *size, "{d}");
        }
    }
    // skopeo can copy the multi-arch image out of the bundle's layout (all platforms).
    let copy_dir = env.tmp.path().join("copy");
    run_ok(Command::new("skopeo").args(["copy", "--all"]).arg(format!("oci:{}/images:{}", root.display(), r("library/docker:2"))).arg(format!("oci:{}:x", copy_dir.display())));

    // Files, packages and the root document.
    assert_eq!(sha256sum(&root.join("files/bin/tool")), env.sha("bin/tool"));
    assert_eq!(sha256sum(&root.join("files/bin/arm64/kubectl")), env.sha("arm64/kubectl"));
    assert_eq!(sha256sum(&root.join("files/packages/debian-12/keepalived_2.2.7-1+b2_amd64.deb")), env.sha("pool/k/keepalived_2.2.7-1+b2_amd64.deb"));
    let doc: serde_json::Value = serde_json::from_slice(&fs_err::read(root.join("airgap.json")).unwrap()).unwrap();
    assert_eq!(doc["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
    assert_eq!(doc["files"][0]["mode"], 0o755);
    assert_eq!(doc["files"][1]["path"], "bin/amd64/kubectl");
    assert_eq!(doc["packages"][0]["name"], "keepalived");
    assert_eq!(doc["packages"][0]["path"], "packages/debian-12/keepalived_2.2.7-1+b2_amd64.deb");
    assert_eq!(doc["images"][1]["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
    assert_eq!(doc["images"][1]["media_type"], "application/vnd.docker.distribution.manifest.list.v2+json");
    let index: serde_json::Value = serde_json::from_slice(&fs_err::read(root.join("images/index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"].as_array().unwrap().iter().map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "index.json must be sorted by reference");
    assert_eq!(names.len(), 5);

    // The lock file records the resolved digests and file hashes.
    let lock_doc: serde_json::Value = serde_json::from_slice(&fs_err::read(&lock).unwrap()).unwrap();
    assert_eq!(lock_doc["images"][r("test/multi:1")], md);
    assert_eq!(lock_doc["files"][format!("{fs_url}/arm64/kubectl")], env.sha("arm64/kubectl"));

    // A rebuild from an empty cache is byte-identical (archive and signature).
    let out2 = env.tmp.path().join("out2");
    ok(&env.build(&m, &out2, &env.tmp.path().join("cache2"), &["--insecure-registry", &reg.addr, "--quiet", "--jobs", "3"]));
    assert_eq!(sha256sum(&archive), sha256sum(&out2.join("demo-1.0.0-1.tar.zst")), "rebuild differs");
    assert_eq!(fs_err::read(&sig).unwrap(), fs_err::read(out2.join("demo-1.0.0-1.tar.zst.minisig")).unwrap());
    assert_eq!(fs_err::read(&lock).unwrap(), fs_err::read(out2.join("demo-1.0.0-1.lock.json")).unwrap());
}

#[test]
fn platform_filtering_keeps_index_bytes_and_drops_other_blobs() {
    let env = Env::new();
    let reg = Registry::start(Mode::Plain);
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    let m = env.manifest(&reg.addr, &format!("http://{}", fs.addr), "[linux/amd64]", "");
    let out = env.tmp.path().join("out");
    ok(&env.build(&m, &out, &env.tmp.path().join("cache"), &["--insecure-registry", &reg.addr, "-q"]));
    let root = env.tmp.path().join("x");
    extract_and_check(&out.join("demo-1.0.0-1.tar.zst"), &root);
    for img in [&env.multi, &env.docker] {
        // The original index, under its upstream digest.
        assert!(blob_present(&root, &img.digest));
        assert_eq!(skopeo_raw_digest(&root, &format!("{}/test/multi:1", reg.addr)), env.multi.digest.to_string());
        let (_, amd) = img.manifests.iter().find(|(p, _)| p == "linux/amd64").unwrap();
        let (_, arm) = img.manifests.iter().find(|(p, _)| p == "linux/arm64").unwrap();
        assert!(blob_present(&root, amd));
        assert!(!blob_present(&root, arm), "arm64 manifest must not be bundled");
        let arm_manifest: serde_json::Value = serde_json::from_slice(&fs_err::read(env.layout.join(arm.blob_path())).unwrap()).unwrap();
        for l in arm_manifest["layers"].as_array().unwrap().iter().chain([&arm_manifest["config"]]) {
            let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
            let shared = l["size"].as_u64().unwrap() > 0 && img.manifests.iter().any(|(p, m)| p == "linux/amd64" && fs_err::read_to_string(env.layout.join(m.blob_path())).unwrap().contains(d.hex()));
            assert_eq!(blob_present(&root, &d), shared, "arm64 blob {d}");
        }
    }
    // The amd64 image of a filtered index can be copied out by platform.
    let copy_dir = env.tmp.path().join("copy");
    run_ok(Command::new("skopeo").args(["--override-arch", "amd64", "--override-os", "linux", "copy"]).arg(format!("oci:{}/images:{}/test/multi:1", root.display(), reg.addr)).arg(format!("oci:{}:x", copy_dir.display())));
    let doc: serde_json::Value = serde_json::from_slice(&fs_err::read(root.join("airgap.json")).unwrap()).unwrap();
    assert_eq!(doc["images"][0]["platforms"], serde_json::json!(["linux/amd64"]));

    // A platform an image lacks is a clear error with a hint.
    let m = env.manifest(&reg.addr, &format!("http://{}", fs.addr), "[linux/amd64, linux/s390x]", "");
    let err = failed(&env.build(&m, &env.tmp.path().join("out-s390x"), &env.tmp.path().join("cache"), &["--insecure-registry", &reg.addr]));
    assert!(err.contains("has no linux/s390x image (it has: linux/amd64, linux/arm64)"), "{err}");
    assert!(err.contains("hint: remove that platform from `platforms:`"), "{err}");
}
