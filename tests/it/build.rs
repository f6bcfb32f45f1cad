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

    // airgap verify, then airgap unpack, then the stock sha256sum in the unpacked tree.
    run_ok(Command::new(airgap_bin()).arg("verify").arg(&archive).arg("--pubkey").arg(&env.pubkey));
    let root = env.tmp.path().join("x1");
    run_ok(Command::new(airgap_bin()).arg("unpack").arg(&archive).arg("--to").arg(&root).arg("--pubkey").arg(&env.pubkey));
    run_ok(Command::new("sha256sum").args(["--quiet", "--strict", "-c", "SHA256SUMS"]).current_dir(&root));
    // The stock tar + zstd read the same archive.
    extract_and_check(&archive, &env.tmp.path().join("x1-tar"));
    // skopeo reads every image back with its upstream digest.
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
    // A filtered index cannot be copied whole (`skopeo copy --all` wants every child manifest)...
    let all = Command::new("skopeo").args(["copy", "--all"]).arg(format!("oci:{}/images:{}/test/multi:1", root.display(), reg.addr)).arg(format!("oci:{}:all", env.tmp.path().join("copy-all").display())).output().unwrap();
    assert!(!all.status.success(), "skopeo copy --all of a filtered index unexpectedly worked");
    // ...but its platforms can be copied out one by one.
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

/// Resolved image digests in a lock file.
fn lock_images(out: &Path) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&fs_err::read(out.join("demo-1.0.0-1.lock.json")).unwrap()).unwrap();
    v["images"].clone()
}

#[test]
fn tls_registry_with_ca_cert() {
    let env = Env::new();
    let reg = Registry::start(Mode::Tls);
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    let m = env.manifest(&reg.addr, &format!("http://{}", fs.addr), "[linux/amd64, linux/arm64]", "");
    let cache = env.tmp.path().join("cache");
    // Without the CA: a clear TLS error naming the registry, with the hint.
    let err = failed(&env.build(&m, &env.tmp.path().join("bad"), &cache, &["--retries", "1"]));
    assert!(err.contains(&format!("failed to fetch the manifest of {}/test/multi:1 from {}", reg.addr, reg.addr)), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
    assert!(!env.tmp.path().join("bad/demo-1.0.0-1.tar.zst").exists());
    let out = env.tmp.path().join("out");
    ok(&env.build(&m, &out, &cache, &["--ca-cert", reg.ca_cert.as_ref().unwrap().to_str().unwrap()]));
    let images = lock_images(&out);
    assert_eq!(images[format!("{}/library/docker:2", reg.addr)], env.docker.digest.to_string());
    let root = env.tmp.path().join("x");
    extract_and_check(&out.join("demo-1.0.0-1.tar.zst"), &root);
    assert_eq!(skopeo_raw_digest(&root, &format!("{}/test/single:3", reg.addr)), env.single.digest.to_string());
}

#[test]
fn basic_auth_registry_with_authfile() {
    let env = Env::new();
    let reg = Registry::start(Mode::BasicAuth { user: "builder".into(), password: "s3cret:x".into() });
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    let m = env.manifest(&reg.addr, &format!("http://{}", fs.addr), "[linux/amd64, linux/arm64]", "");
    let ca = reg.ca_cert.as_ref().unwrap().to_str().unwrap().to_string();
    let cache = env.tmp.path().join("cache");
    // No credentials: refused, nothing written.
    let err = failed(&env.build(&m, &env.tmp.path().join("anon"), &cache, &["--ca-cert", &ca]));
    assert!(err.contains(&format!("failed to fetch the manifest of {}/test/multi:1", reg.addr)), "{err}");
    assert!(err.contains("Not authorized"), "{err}");
    assert!(err.contains("hint: the registry") && err.contains("refused the credentials"), "{err}");
    // Wrong password: refused too.
    let bad = env.tmp.path().join("bad.json");
    let enc = |s: &str| base64_encode(s.as_bytes());
    fs_err::write(&bad, format!(r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#, reg.addr, enc("builder:wrong"))).unwrap();
    failed(&env.build(&m, &env.tmp.path().join("anon"), &cache, &["--ca-cert", &ca, "--authfile", bad.to_str().unwrap()]));
    // The right credentials, from a docker-style auth file in the default place (~/.docker/config.json).
    let docker_dir = env.tmp.path().join(".docker");
    fs_err::create_dir_all(&docker_dir).unwrap();
    fs_err::write(docker_dir.join("config.json"), format!(r#"{{"auths":{{"https://{}":{{"auth":"{}"}}}}}}"#, reg.addr, enc("builder:s3cret:x"))).unwrap();
    let out = env.tmp.path().join("out");
    ok(&env.build(&m, &out, &cache, &["--ca-cert", &ca]));
    assert_eq!(lock_images(&out)[format!("{}/test/multi:1", reg.addr)], env.multi.digest.to_string());
    run_ok(Command::new("minisign").arg("-Vm").arg(out.join("demo-1.0.0-1.tar.zst")).arg("-p").arg(&env.pubkey));
    // A named auth file that does not exist is an error (not silently anonymous).
    let err = failed(&env.build(&m, &env.tmp.path().join("o3"), &cache, &["--ca-cert", &ca, "--authfile", "/nonexistent/auth.json"]));
    assert!(err.contains("failed to read the auth file"), "{err}");
}

/// `--registry-mirror docker.io=https://MIRROR/PREFIX`: Docker Hub's images come from a mirror (here a
/// Harbor-style proxy-cache project behind TLS and basic auth, the auth file's entry for the mirror's host)
/// while the bundle names them as written, with the digests the mirror served (the same content).
#[test]
fn images_of_a_registry_come_from_its_mirror_under_their_original_names() {
    let env = Env::new();
    let mirror = Registry::start(Mode::BasicAuth { user: "proxy".into(), password: "pw".into() });
    mirror.push_layout(&env.layout, "docker", "hub-proxy/library/docker:2");
    mirror.push_layout(&env.layout, "single", "hub-proxy/bitnami/single:3");
    let m = env.tmp.path().join("hub.yaml");
    fs_err::write(&m, "name: demo\nversion: 1.0.0-1\nplatforms: [linux/amd64, linux/arm64]\nimages:\n  - docker:2\n  - docker.io/bitnami/single:3\n").unwrap();
    let ca = mirror.ca_cert.as_ref().unwrap().to_str().unwrap().to_string();
    let flag = format!("docker.io=https://{}/hub-proxy", mirror.addr);
    let cache = env.tmp.path().join("cache");
    // no credentials for the mirror's host: refused, naming the mirror
    let err = failed(&env.build(&m, &env.tmp.path().join("anon"), &cache, &["--ca-cert", &ca, "--registry-mirror", &flag]));
    assert!(err.contains(&format!("from {} (the mirror of docker.io)", mirror.addr)) && err.contains("refused the credentials"), "{err}");
    let auth = env.tmp.path().join("auth.json");
    fs_err::write(&auth, format!(r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#, mirror.addr, base64_encode(b"proxy:pw"))).unwrap();
    let out = env.tmp.path().join("out");
    ok(&env.build(&m, &out, &cache, &["--ca-cert", &ca, "--registry-mirror", &flag, "--authfile", auth.to_str().unwrap()]));
    let images = lock_images(&out);
    assert_eq!(images["docker:2"], env.docker.digest.to_string(), "{images}");
    assert_eq!(images["docker.io/bitnami/single:3"], env.single.digest.to_string(), "{images}");
    let root = env.tmp.path().join("x");
    extract_and_check(&out.join("demo-1.0.0-1.tar.zst"), &root);
    assert_eq!(skopeo_raw_digest(&root, "docker:2"), env.docker.digest.to_string());
    let index = fs_err::read_to_string(root.join("images/index.json")).unwrap();
    assert!(!index.contains(&mirror.addr) && !index.contains("hub-proxy"), "the bundle names the mirror: {index}");
    // a bad flag is a usage error that says how to write it
    let err = failed(&env.build(&m, &env.tmp.path().join("bad"), &cache, &["--registry-mirror", "docker.io"]));
    assert!(err.contains("HOST=URL"), "{err}");
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn wrong_file_sha256_fails_and_keeps_nothing() {
    let env = Env::new();
    let reg = Registry::start(Mode::Plain);
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    let fs_url = format!("http://{}", fs.addr);
    let wrong = "0".repeat(64);
    let extra = format!("  - url: {fs_url}/big.bin\n    sha256: {wrong}\n    path: big.bin\n");
    let m = env.manifest(&reg.addr, &fs_url, "[linux/amd64]", &extra);
    let out = env.tmp.path().join("out");
    let cache = env.tmp.path().join("cache");
    let err = failed(&env.build(&m, &out, &cache, &["--insecure-registry", &reg.addr]));
    assert!(err.contains(&format!("sha256 mismatch for {fs_url}/big.bin: expected {wrong}, got {} (2500000 bytes)", env.sha("big.bin"))), "{err}");
    assert!(err.contains("hint: if the file changed upstream on purpose, update its sha256"), "{err}");
    assert!(!out.join("demo-1.0.0-1.tar.zst").exists() && !out.join("demo-1.0.0-1.tar.zst.minisig").exists());
    assert!(!cache.join("blobs/sha256").join(env.sha("big.bin")).exists(), "a mismatching download must not enter the cache");
    assert_eq!(fs_err::read_dir(cache.join("tmp")).unwrap().count(), 0, "temp files left in the cache");
}

#[test]
fn registry_down_is_a_clear_error() {
    let env = Env::new();
    let mut reg = Registry::start(Mode::Plain);
    let fs = FileServer::start(&env.files);
    let addr = reg.addr.clone();
    reg.stop();
    let m = env.manifest(&addr, &format!("http://{}", fs.addr), "[linux/amd64]", "");
    let out = env.tmp.path().join("out");
    let start = std::time::Instant::now();
    let err = failed(&env.build(&m, &out, &env.tmp.path().join("cache"), &["--insecure-registry", &addr, "--retries", "2"]));
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    insta::assert_snapshot!(err.replace(&addr, "REGISTRY").lines().filter(|l| !l.contains("Caused by: error sending") && !l.contains("client error (Connect)")).collect::<Vec<_>>().join("\n"));
    assert!(!out.join("demo-1.0.0-1.tar.zst").exists());
}

#[test]
fn retries_transient_failures_of_registry_and_file_server() {
    let env = Env::new();
    let reg = Registry::start(Mode::Plain);
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    // The registry answers 503 to its first 3 connections, the file server drops its first 2.
    let reg_proxy = FaultProxy::start(&reg.addr, Fault::Status503, 3);
    let fs_proxy = FaultProxy::start(&fs.addr, Fault::Reset, 2);
    let m = env.manifest(&reg_proxy.addr, &format!("http://{}", fs_proxy.addr), "[linux/amd64, linux/arm64]", "");
    let out = env.tmp.path().join("out");
    let o = env.build(&m, &out, &env.tmp.path().join("cache"), &["--insecure-registry", &reg_proxy.addr, "--jobs", "2"]);
    ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("503"), "retries must be logged:\n{stderr}");
    assert_eq!(reg_proxy.faults.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(fs_proxy.faults.load(std::sync::atomic::Ordering::SeqCst), 2);
    let root = env.tmp.path().join("x");
    extract_and_check(&out.join("demo-1.0.0-1.tar.zst"), &root);
    assert_eq!(skopeo_raw_digest(&root, &format!("{}/library/docker:2", reg_proxy.addr)), env.docker.digest.to_string());

    // Too many failures: gives up with a clear error after the configured attempts.
    let always = FaultProxy::start(&reg.addr, Fault::Status503, usize::MAX);
    let m = env.manifest(&always.addr, &format!("http://{}", fs.addr), "[linux/amd64]", "");
    let err = failed(&env.build(&m, &env.tmp.path().join("o2"), &env.tmp.path().join("cache2"), &["--insecure-registry", &always.addr, "--retries", "3"]));
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert!(err.contains("503"), "{err}");
}

#[test]
fn cache_and_lock_rebuild_without_the_registry() {
    let env = Env::new();
    let mut reg = Registry::start(Mode::Plain);
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    let m = env.manifest(&reg.addr, &format!("http://{}", fs.addr), "[linux/amd64, linux/arm64]", "");
    let cache = env.tmp.path().join("cache");
    let out1 = env.tmp.path().join("out1");
    ok(&env.build(&m, &out1, &cache, &["--insecure-registry", &reg.addr]));
    // Move the tag upstream: a pinned rebuild still gets the locked digest.
    reg.push_layout(&env.layout, "single", "test/multi:1");
    // Registry and file server gone: with the lock, everything comes from the cache, byte-identical.
    reg.stop();
    drop(fs);
    let lock = out1.join("demo-1.0.0-1.lock.json");
    let out2 = env.tmp.path().join("out2");
    let o = env.build(&m, &out2, &cache, &["--insecure-registry", &reg.addr, "--lock", lock.to_str().unwrap(), "--retries", "1"]);
    let stdout = ok(&o);
    assert!(stdout.contains("(fetched 0 B in"), "{stdout}");
    assert_eq!(sha256sum(&out1.join("demo-1.0.0-1.tar.zst")), sha256sum(&out2.join("demo-1.0.0-1.tar.zst")));
    // Without the lock the tag must be resolved: the registry is needed.
    failed(&env.build(&m, &env.tmp.path().join("out3"), &cache, &["--insecure-registry", &reg.addr, "--retries", "1"]));
    // With the registry back, the lock pins the old digest although the tag moved: fetched by digest (the
    // image's blobs are removed from a copy of the cache; the files stay, their server is gone).
    reg.restart();
    let cache4 = env.tmp.path().join("cache4");
    run_ok(Command::new("cp").arg("-a").arg(&cache).arg(&cache4));
    for (d, _) in env.multi.blobs.iter().chain(&env.single.blobs) {
        let _ = fs_err::remove_file(cache4.join("blobs/sha256").join(d.hex()));
    }
    let out4 = env.tmp.path().join("out4");
    let o = env.build(&m, &out4, &cache4, &["--insecure-registry", &reg.addr, "--lock", lock.to_str().unwrap()]);
    let stdout = ok(&o);
    assert!(!stdout.contains("(fetched 0 B in"), "{stdout}");
    assert_eq!(lock_images(&out4)[format!("{}/test/multi:1", reg.addr)], env.multi.digest.to_string());
    assert_eq!(sha256sum(&out1.join("demo-1.0.0-1.tar.zst")), sha256sum(&out4.join("demo-1.0.0-1.tar.zst")));
    // A manifest entry the lock does not know is an error when pinned.
    let fs = FileServer::start(&env.files);
    let m2 = env.manifest(&reg.addr, &format!("http://{}", fs.addr), "[linux/amd64, linux/arm64]", "");
    let err = failed(&env.build(&m2, &env.tmp.path().join("o6"), &cache, &["--insecure-registry", &reg.addr, "--lock", lock.to_str().unwrap()]));
    assert!(err.contains("the lock file has no sha256 for"), "{err}");
    let out5 = env.tmp.path().join("out5");
    ok(&env.build(&m2, &out5, &cache, &["--insecure-registry", &reg.addr]));
    assert_eq!(lock_images(&out5)[format!("{}/test/multi:1", reg.addr)], env.single.digest.to_string(), "unpinned build follows the tag");
}

#[test]
fn split_size_writes_parts() {
    let env = Env::new();
    let reg = Registry::start(Mode::Plain);
    env.push(&reg);
    let fs = FileServer::start(&env.files);
    let fs_url = format!("http://{}", fs.addr);
    let extra = format!("  - url: {fs_url}/big.bin\n    sha256: {}\n    path: big.bin\n", env.sha("big.bin"));
    let m = env.manifest(&reg.addr, &fs_url, "[linux/amd64]", &extra);
    let out = env.tmp.path().join("out");
    let stdout = ok(&env.build(&m, &out, &env.tmp.path().join("cache"), &["--insecure-registry", &reg.addr, "--split-size", "1M", "--quiet"]));
    let lines: Vec<&str> = stdout.lines().collect();
    let parts: Vec<&&str> = lines.iter().filter(|l| l.contains(".tar.zst.0")).collect();
    assert!(parts.len() >= 3, "{stdout}");
    for p in &parts {
        assert!(fs_err::metadata(p).unwrap().len() <= 1024 * 1024);
    }
    assert!(lines.iter().any(|l| l.ends_with(".tar.zst.parts")), "{stdout}");
    assert!(lines.iter().all(|l| l.starts_with('/')), "--quiet prints only paths: {stdout}");
    // The concatenated parts are the signed archive.
    let whole = env.tmp.path().join("whole.tar.zst");
    let mut f = fs_err::File::create(&whole).unwrap();
    for p in &parts {
        std::io::copy(&mut fs_err::File::open(p).unwrap(), &mut f).unwrap();
    }
    drop(f);
    fs_err::copy(out.join("demo-1.0.0-1.tar.zst.minisig"), env.tmp.path().join("whole.tar.zst.minisig")).unwrap();
    run_ok(Command::new("minisign").arg("-Vm").arg(&whole).arg("-p").arg(&env.pubkey));
    extract_and_check(&whole, &env.tmp.path().join("x"));
    // airgap verify and unpack take the parts directly.
    run_ok(Command::new(airgap_bin()).arg("verify").arg(parts[0]).arg("--pubkey").arg(&env.pubkey));
    let root = env.tmp.path().join("unpacked");
    run_ok(Command::new(airgap_bin()).arg("unpack").arg(parts[0]).arg("--to").arg(&root).arg("--pubkey").arg(&env.pubkey));
    assert_eq!(sha256sum(&root.join("files/big.bin")), env.sha("big.bin"));
}
