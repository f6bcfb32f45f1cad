//! `airgap push` into the reference registry (docker-registry) with htpasswd basic auth behind TLS with a CA
//! this test makes: digests read back by skopeo equal the source's, a second push uploads nothing, a push
//! killed halfway completes on re-run, transient 503s are retried, and bad input changes nothing.

use crate::build::{ok, Env};
use crate::fault::{Fault, FaultProxy};
use crate::support::fileserver::FileServer;
use crate::support::images::{make_image, ImageSpec};
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap_bin, run_ok};
use airgap::digest::Digest;
use base64::Engine;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "pusher";
const PASSWORD: &str = "s3cret-pass";

/// A signed bundle built from the Env's images (multi-arch OCI index, Docker manifest list, single manifest,
/// a digest-pinned reference and a tag+digest reference) plus `extra` images made here.
pub struct Source {
    pub env: Env,
    pub upstream: Registry,
    pub bundle: PathBuf,
}

impl Source {
    pub fn new(extra_layer: Option<usize>) -> Source {
        let env = Env::new();
        let upstream = Registry::start(Mode::Plain);
        env.push(&upstream);
        if let Some(size) = extra_layer {
            // an image with a few big layers: a push of it takes long enough to be killed halfway
            make_image(&env.layout, "big", &ImageSpec { layers: vec![size, size, size, size], gzip: false, ..ImageSpec::single(77) });
            upstream.push_layout(&env.layout, "big", "test/big:1");
        }
        let fs = FileServer::start(&env.files);
        let mut m = env.manifest(&upstream.addr, &format!("http://{}", fs.addr), "[linux/amd64, linux/arm64]", "");
        if extra_layer.is_some() {
            let text = fs_err::read_to_string(&m).unwrap().replace("images:\n", &format!("images:\n  - {}/test/big:1\n", upstream.addr));
            m = env.tmp.path().join("manifest-big.yaml");
            fs_err::write(&m, text).unwrap();
        }
        let out = env.tmp.path().join("out");
        ok(&env.build(&m, &out, &env.tmp.path().join("cache"), &["--insecure-registry", &upstream.addr]));
        Source { bundle: out.join("demo-1.0.0-1.tar.zst"), env, upstream }
    }

    pub fn references(&self) -> Vec<&'static str> {
        vec!["test/multi:1", "library/docker:2", "test/single:3"]
    }
}

/// An auth file for `host` with these credentials.
pub fn authfile(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let p = dir.join(format!("auth-{user}-{password}.json"));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs_err::write(&p, serde_json::json!({"auths": {host: {"auth": auth}}}).to_string()).unwrap();
    p
}

fn push(src: &Source, target: &str, auth: &Path, ca: Option<&Path>, extra: &[&str]) -> Output {
    let mut c = Command::new(airgap_bin());
    c.arg("push").arg(&src.bundle).arg("--pubkey").arg(&src.env.pubkey).arg("--to").arg(target).arg("--authfile").arg(auth);
    if let Some(ca) = ca {
        c.arg("--ca-cert").arg(ca);
    }
    c.args(["--color", "never", "--work-dir"]).arg(src.env.tmp.path()).args(extra).output().unwrap()
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `skopeo inspect --raw` of `docker://REF` on `reg`: the digest of the bytes it serves.
fn raw_digest(reg: &Registry, reference: &str) -> String {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw"]).args(reg.skopeo_flags("")).arg(format!("docker://{reference}"));
    Digest::of_bytes(&run_ok(&mut c).stdout).to_string()
}

/// Blob files in the registry's storage (what a push left there, whatever the API says).
fn stored_blobs(reg: &Registry) -> usize {
    let dir = reg.dir.path().join("data/docker/registry/v2/blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&dir) else { return 0 };
    prefixes.flatten().flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten()).filter(|b| b.path().join("data").is_file()).count()
}

/// Every image of the source reads back from the target with the same digests (top level and every child),
/// and skopeo copies each whole (all platforms, every blob checked) out of the target.
fn check_same(src: &Source, target: &Registry, prefix: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    for r in src.references() {
        let want = raw_digest(&src.upstream, &format!("{}/{r}", src.upstream.addr));
        assert_eq!(raw_digest(target, &format!("{}/{prefix}{r}", target.addr)), want, "{r}");
        let mut c = Command::new("skopeo");
        c.args(["copy", "--all", "--quiet"]).args(target.skopeo_flags("src")).arg(format!("docker://{}/{prefix}{r}", target.addr)).arg(format!("oci:{}/copy:{}", tmp.path().display(), r.replace(['/', ':'], "-")));
        run_ok(&mut c);
    }
    let md = src.env.multi.digest.to_string();
    assert_eq!(raw_digest(target, &format!("{}/{prefix}test/multi@{md}", target.addr)), md);
    for (_, child) in &src.env.multi.manifests {
        assert_eq!(raw_digest(target, &format!("{}/{prefix}test/multi@{child}", target.addr)), child.to_string());
    }
}

#[test]
fn push_over_tls_with_basic_auth_then_nothing_the_second_time() {
    let src = Source::new(None);
    let target = Registry::start(Mode::BasicAuth { user: USER.into(), password: PASSWORD.into() });
    let ca = target.ca_cert.clone().unwrap();
    let auth = authfile(src.env.tmp.path(), &target.addr, USER, PASSWORD);
    let to = format!("{}/site/k8s", target.addr);

    // bad input first: each is an error, and the registry holds nothing afterwards
    let wrong = authfile(src.env.tmp.path(), &target.addr, USER, "wrong");
    let e = failed(&push(&src, &to, &wrong, Some(&ca), &[]));
    assert!(e.contains("refused the credentials") && e.contains("hint:"), "{e}");
    assert!(!e.contains("wrong"), "the password must not be printed: {e}");
    let e = failed(&push(&src, &to, &auth, None, &[]));
    assert!(e.contains("cannot reach the registry") && e.contains("--ca-cert"), "{e}");
    let other = airgap::sign::generate_keypair(&src.env.tmp.path().join("other-keys"), None).unwrap();
    let mut c = Command::new(airgap_bin());
    c.arg("push").arg(&src.bundle).arg("--pubkey").arg(&other.public).arg("--to").arg(&to).arg("--authfile").arg(&auth).arg("--ca-cert").arg(&ca);
    let e = failed(&c.output().unwrap());
    assert!(e.contains("nothing was pushed"), "{e}");
    assert_eq!(stored_blobs(&target), 0, "a failed push left blobs behind");

    // the push
    let out = push(&src, &to, &auth, Some(&ca), &["--json"]);
    let r = report(&out);
    assert_eq!(r["images"].as_array().unwrap().len(), 5, "{r}");
    let pushed: Vec<(String, String)> = r["images"].as_array().unwrap().iter().map(|i| (i["original"].as_str().unwrap().to_string(), i["pushed"].as_str().unwrap().to_string())).collect();
    let up = &src.upstream.addr;
    assert!(pushed.contains(&(format!("{up}/test/multi:1"), format!("{to}/test/multi:1"))), "{pushed:?}");
    assert!(pushed.contains(&(format!("{up}/library/docker:2"), format!("{to}/library/docker:2"))), "{pushed:?}");
    let md = src.env.multi.digest.to_string();
    assert!(pushed.contains(&(format!("{up}/test/multi@{md}"), format!("{to}/test/multi@{md}"))), "{pushed:?}");
    assert!(r["bytes_uploaded"].as_u64().unwrap() > 100_000, "{r}");
    assert!(r["blobs_uploaded"].as_u64().unwrap() > 0, "{r}");
    // the layer test/multi and library/docker share is uploaded once, then mounted into the other repository
    assert_eq!(r["blobs_mounted"].as_u64(), Some(1), "{r}");
    check_same(&src, &target, "site/k8s");

    // again: nothing is sent, and it says so
    let out = push(&src, &to, &auth, Some(&ca), &[]);
    let text = ok(&out);
    assert!(text.contains("uploaded 0 bytes"), "{text}");
    let r = report(&push(&src, &to, &auth, Some(&ca), &["--json"]));
    assert_eq!((r["bytes_uploaded"].as_u64(), r["blobs_uploaded"].as_u64(), r["manifests_pushed"].as_u64()), (Some(0), Some(0), Some(0)), "{r}");
    assert!(r["images"].as_array().unwrap().iter().all(|i| i["unchanged"] == true), "{r}");

}

#[test]
fn push_from_a_loaded_store_through_transient_failures() {
    let src = Source::new(None);
    let store = src.env.tmp.path().join("store");
    let mut c = Command::new(airgap_bin());
    c.arg("load").arg(&src.bundle).arg("--pubkey").arg(&src.env.pubkey).arg("--store").arg(&store);
    run_ok(&mut c);
    let target = Registry::start(Mode::Plain);
    // the first requests answer 503: retried
    let proxy = FaultProxy::start(&target.addr, Fault::Status503, 3);
    let auth = src.env.tmp.path().join("none.json");
    fs_err::write(&auth, "{}").unwrap();
    let mut c = Command::new(airgap_bin());
    c.arg("push").arg("--from-store").arg(&store).arg("--to").arg(&proxy.addr).arg("--insecure-registry").arg("--authfile").arg(&auth).arg("--json").arg("--retries").arg("6");
    let r = report(&c.output().unwrap());
    assert!(proxy.faults.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    // the store's catalog: the tags and the pinned digest (`multi:1@sha256:...` is the tag multi:1 there)
    assert_eq!(r["images"].as_array().unwrap().len(), 4, "{r}");
    // plain HTTP without --insecure-registry is refused
    let mut c = Command::new(airgap_bin());
    c.arg("push").arg("--from-store").arg(&store).arg("--to").arg(&target.addr).arg("--authfile").arg(&auth);
    failed(&c.output().unwrap());
    for r in src.references() {
        assert_eq!(raw_digest(&target, &format!("{}/{r}", target.addr)), raw_digest(&src.upstream, &format!("{}/{r}", src.upstream.addr)), "{r}");
    }
}

/// A TCP proxy forwarding client → server at about `rate` bytes per second: makes a push slow enough to be
/// killed halfway.
fn slow_proxy(upstream: &str, rate: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let up = upstream.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let Ok(mut server) = TcpStream::connect(&up) else { continue };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if server.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64)); // pacing: the throttled link
                        }
                    }
                }
                let _ = server.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn a_push_killed_halfway_completes_on_rerun() {
    let src = Source::new(Some(1_500_000));
    let target = Registry::start(Mode::BasicAuth { user: USER.into(), password: PASSWORD.into() });
    let ca = target.ca_cert.clone().unwrap();
    let proxy = slow_proxy(&target.addr, 3_000_000);
    // the certificate names 127.0.0.1: the proxy on another port of it presents it unchanged
    let auth = authfile(src.env.tmp.path(), &proxy, USER, PASSWORD);
    let mut c = Command::new(airgap_bin());
    c.arg("push").arg(&src.bundle).arg("--pubkey").arg(&src.env.pubkey).arg("--to").arg(&proxy).arg("--authfile").arg(&auth).arg("--ca-cert").arg(&ca).args(["--jobs", "1", "--work-dir"]).arg(src.env.tmp.path());
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_blobs(&target) < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the push finished before it could be killed");
        assert!(Instant::now() < deadline, "no blob arrived");
        std::thread::sleep(Duration::from_millis(5)); // poll period
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let halfway = stored_blobs(&target);
    let r = report(&push(&src, &proxy, &auth, Some(&ca), &["--json"]));
    assert!(r["blobs_present"].as_u64().unwrap() >= 2, "the re-run did not reuse what the first run pushed: {r}");
    assert!(r["blobs_uploaded"].as_u64().unwrap() > 0, "the first run was not killed halfway: {r}");
    assert!(stored_blobs(&target) > halfway);
    let want = raw_digest(&src.upstream, &format!("{}/test/big:1", src.upstream.addr));
    assert_eq!(raw_digest(&target, &format!("{}/test/big:1", target.addr)), want);
    check_same(&src, &target, "");
}

#[test]
fn push_with_bearer_tokens_as_harbor_issues_them() {
    let src = Source::new(None);
    let tdir = tempfile::tempdir().unwrap();
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let token_addr = crate::token::token_server_for(tdir.path(), issued.clone(), Some((USER.into(), PASSWORD.into())));
    let data = tdir.path().join("data");
    let reg = crate::token::start_token_registry(&token_addr, &tdir.path().join("token.pem"), &data);
    let to = format!("{}/project", reg.addr);
    let push_to = |auth: &Path| {
        let mut c = Command::new(airgap_bin());
        c.arg("push").arg(&src.bundle).arg("--pubkey").arg(&src.env.pubkey).arg("--to").arg(&to).arg("--insecure-registry").arg("--authfile").arg(auth).arg("--json").arg("--work-dir").arg(src.env.tmp.path());
        c.output().unwrap()
    };
    // a wrong password is refused by the token service: an error naming it, nothing stored
    let e = failed(&push_to(&authfile(src.env.tmp.path(), &reg.addr, USER, "nope")));
    assert!(e.contains("refused the credentials") && e.contains("token service"), "{e}");
    assert!(!data.join("docker/registry/v2/blobs").exists(), "a refused push stored blobs");
    let auth = authfile(src.env.tmp.path(), &reg.addr, USER, PASSWORD);
    let r = report(&push_to(&auth));
    assert_eq!(r["images"].as_array().unwrap().len(), 5, "{r}");
    assert!(issued.load(std::sync::atomic::Ordering::SeqCst) >= 3, "one token per repository at least");
    let r = report(&push_to(&auth));
    assert_eq!((r["bytes_uploaded"].as_u64(), r["manifests_pushed"].as_u64()), (Some(0), Some(0)), "{r}");
    // read back through the same token flow by skopeo
    for reference in src.references() {
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--raw", "--tls-verify=false", "--creds", &format!("{USER}:{PASSWORD}")]).arg(format!("docker://{}/project/{reference}", reg.addr));
        let got = Digest::of_bytes(&run_ok(&mut c).stdout).to_string();
        assert_eq!(got, raw_digest(&src.upstream, &format!("{}/{reference}", src.upstream.addr)), "{reference}");
    }
}

/// Manifests the registry's storage holds under any repository (whatever the API says).
fn stored_manifests(reg: &Registry) -> usize {
    fn walk(dir: &Path, in_manifests: bool, n: &mut usize) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let inside = in_manifests || e.file_name() == "_manifests";
            if p.is_dir() {
                walk(&p, inside, n);
            } else if inside && e.file_name() == "link" {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&reg.dir.path().join("data/docker/registry/v2/repositories"), false, &mut n);
    n
}

/// The bundle's tar stream, rebuilt entry by entry (headers kept) with `change` applied to each entry's
/// bytes, compressed at zstd `level`, beside the original's signature (which then no longer verifies).
fn rewritten(src: &Source, name: &str, level: i32, change: impl Fn(&str, &mut Vec<u8>)) -> PathBuf {
    let raw = zstd::decode_all(fs_err::File::open(&src.bundle).unwrap()).unwrap();
    let mut ar = tar::Archive::new(raw.as_slice());
    let mut out = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        change(&path, &mut data);
        let mut h = e.header().clone();
        out.append_data(&mut h, &path, data.as_slice()).unwrap();
    }
    let tar = out.into_inner().unwrap();
    let dir = src.env.tmp.path().join(name);
    fs_err::create_dir_all(&dir).unwrap();
    let bundle = dir.join(src.bundle.file_name().unwrap());
    fs_err::write(&bundle, zstd::encode_all(tar.as_slice(), level).unwrap()).unwrap();
    let sig = format!("{}.minisig", src.bundle.display());
    fs_err::copy(&sig, format!("{}.minisig", bundle.display())).unwrap();
    bundle
}

#[test]
fn a_bundle_found_tampered_while_its_blobs_upload_pushes_no_manifest() {
    let src = Source::new(None);
    let auth = src.env.tmp.path().join("none.json");
    fs_err::write(&auth, "{}").unwrap();
    let push_bundle = |bundle: &Path, target: &Registry| {
        let mut c = Command::new(airgap_bin());
        c.arg("push").arg(bundle).arg("--pubkey").arg(&src.env.pubkey).arg("--to").arg(&target.addr).arg("--insecure-registry").arg("--authfile").arg(&auth).arg("--json").arg("--work-dir").arg(src.env.tmp.path());
        c.output().unwrap()
    };

    // every entry verifies, only the archive's own signature does not (same content, other compressed
    // bytes): blobs may have gone up while it was read (as many as the uploads got to before the read
    // ended), no manifest did, and it says so
    let recompressed = rewritten(&src, "recompressed", 1, |_, _| {});
    let target = Registry::start(Mode::Plain);
    let e = failed(&push_bundle(&recompressed, &target));
    let uploaded = stored_blobs(&target);
    assert!(e.contains("signature"), "{e}");
    let said = if uploaded > 0 { "no manifest was sent" } else { "nothing was pushed" };
    assert!(e.contains(said), "{uploaded} blobs stored, yet it does not say {said:?}:\n{e}");
    assert_eq!(stored_manifests(&target), 0, "a manifest was pushed from a bundle that failed verification");

    // the biggest layer's bytes changed in the stream: the read stops there, with no manifest pushed
    let last_layer = zstd::decode_all(fs_err::File::open(&src.bundle).unwrap()).unwrap();
    let mut biggest = (String::new(), 0u64);
    for e in tar::Archive::new(last_layer.as_slice()).entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        if path.starts_with("images/blobs/") && e.size() > biggest.1 {
            biggest = (path, e.size());
        }
    }
    let damaged = rewritten(&src, "damaged", 3, |path, data| {
        if path == biggest.0 {
            data[0] ^= 1;
        }
    });
    let target = Registry::start(Mode::Plain);
    let e = failed(&push_bundle(&damaged, &target));
    assert!(e.contains("damaged") && e.contains(biggest.0.rsplit('/').next().unwrap()), "{e}");
    assert!(e.contains("no manifest was sent") || e.contains("nothing was pushed"), "{e}");
    assert_eq!(stored_manifests(&target), 0, "a manifest was pushed from a damaged bundle");

    // the intact bundle into the same registry: everything, digests equal
    // (every blob was uploaded while the bundle was read: each one's repository is known by its end)
    let r = report(&push_bundle(&src.bundle, &target));
    assert_eq!(r["images"].as_array().unwrap().len(), 5, "{r}");
    assert!(r["blobs_uploaded"].as_u64() > Some(0) && r["blobs_uploaded_early"] == r["blobs_uploaded"], "{r}");
    check_same(&src, &target, "");
}
