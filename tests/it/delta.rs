//! Delta bundles (`airgap build --base PREVIOUS.lock.json`) end to end: a base release and a new one where one
//! image and one file changed, both built from the reference docker-registry and a real HTTP file server; the
//! delta is reproducible, carries only what changed, verifies, and loads only onto its base: `serve` then gives
//! skopeo every image of the new release with upstream's digests. Loads that must fail leave the store
//! byte-identical.

use crate::build::{extract_and_check as extract, failed, ok};
use crate::registry::{assert_pulled, skopeo_copy, Served};
use crate::support::fileserver::FileServer;
use crate::support::images::{make_image, pseudo_random, ImageSpec, MadeImage};
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap_bin, run_ok};
use airgap::digest::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Site {
    tmp: tempfile::TempDir,
    reg: Registry,
    fs: FileServer,
    www: PathBuf,
    key: PathBuf,
    pubkey: PathBuf,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let www = tmp.path().join("www");
        fs_err::create_dir_all(www.join("bin")).unwrap();
        let keys = airgap::sign::generate_keypair(&tmp.path().join("keys"), None).unwrap();
        Site { reg: Registry::start(Mode::Plain), fs: FileServer::start(&www), www, key: keys.secret, pubkey: keys.public, tmp }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Make an image in its own layout and push it to the upstream registry as `repo:tag`.
    fn image(&self, layout: &str, repo_and_tag: &str, spec: &ImageSpec) -> MadeImage {
        let img = make_image(&self.p(layout), "img", spec);
        self.reg.push_layout(&self.p(layout), "img", repo_and_tag);
        img
    }

    fn file(&self, name: &str, data: &[u8]) -> String {
        fs_err::write(self.www.join("bin").join(name), data).unwrap();
        Digest::of_bytes(data).hex().to_string()
    }

    fn manifest(&self, version: &str, helper_sha: &str, kubectl_sha: &str) -> PathBuf {
        let (reg, fs) = (&self.reg.addr, &self.fs.addr);
        let text = format!(
            "name: site\nversion: {version}\nplatforms: [linux/amd64, linux/arm64]\nimages:\n  - {reg}/test/app:1\n  - {reg}/test/tool:1\nfiles:\n  - url: http://{fs}/bin/kubectl\n    sha256: {kubectl_sha}\n    path: bin/kubectl\n    executable: true\n  - url: http://{fs}/bin/helper\n    sha256: {helper_sha}\n    path: bin/helper\n"
        );
        let p = self.p(&format!("manifest-{version}.yaml"));
        fs_err::write(&p, text).unwrap();
        p
    }

    fn build(&self, manifest: &Path, out: &str, cache: &str, extra: &[&str]) -> Output {
        Command::new(airgap_bin())
            .arg("build")
            .arg(manifest)
            .arg("--out")
            .arg(self.p(out))
            .arg("--key")
            .arg(&self.key)
            .arg("--cache-dir")
            .arg(self.p(cache))
            .args(["--color", "never", "--insecure-registry", &self.reg.addr])
            .args(extra)
            .env("HOME", self.tmp.path())
            .output()
            .unwrap()
    }
}

fn airgap(args: &[&str]) -> Output {
    Command::new(airgap_bin()).args(args).env("NO_COLOR", "1").env_remove("RUST_LOG").output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every file and directory under `dir` (relative path → sha256 of the content, or `dir`); empty when absent.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs_err::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                m.insert(rel, "dir".into());
                stack.push(p);
            } else {
                m.insert(rel, crate::support::sha256sum(&p));
            }
        }
    }
    m
}

/// The paths `SHA256SUMS` of an extracted bundle lists.
fn listed(dir: &Path) -> Vec<String> {
    fs_err::read_to_string(dir.join("SHA256SUMS")).unwrap().lines().map(|l| l.split_once("  ").unwrap().1.to_string()).collect()
}

#[test]
fn a_delta_carries_only_what_changed_and_loads_only_onto_its_base() {
    let site = Site::new();
    // release 1.0.0: app (two platforms) and tool (one), sharing a layer; two files
    let shared = Some((777, 80_000));
    let app = site.image("l-app", "test/app:1", &ImageSpec { shared_layer: shared, layers: vec![4096, 400_000], ..ImageSpec::multi(&["linux/amd64", "linux/arm64"], 1) });
    let tool1 = site.image("l-tool1", "test/tool:1", &ImageSpec { shared_layer: shared, layers: vec![300_000], ..ImageSpec::single(2) });
    let kubectl = site.file("kubectl", &pseudo_random(11, 600_000));
    let helper1 = site.file("helper", &pseudo_random(12, 100_000));
    let m1 = site.manifest("1.0.0", &helper1, &kubectl);
    ok(&site.build(&m1, "out1", "cache", &[]));
    let (full1, lock1) = (site.p("out1/site-1.0.0.tar.zst"), site.p("out1/site-1.0.0.lock.json"));

    // release 1.1.0: tool moved to a new image (still sharing the layer), helper changed
    let tool2 = site.image("l-tool2", "test/tool:1", &ImageSpec { shared_layer: shared, layers: vec![300_000], ..ImageSpec::single(3) });
    let helper2 = site.file("helper", &pseudo_random(13, 100_000));
    let m2 = site.manifest("1.1.0", &helper2, &kubectl);
    ok(&site.build(&m2, "full2", "cache", &[]));
    let stdout = ok(&site.build(&m2, "delta2", "cache", &["--base", s(&lock1)]));
    assert!(stdout.contains("delta of site 1.0.0: left out"), "{stdout}");
    let (full2, delta) = (site.p("full2/site-1.1.0.tar.zst"), site.p("delta2/site-1.1.0.tar.zst"));

    // Reproducible: a rebuild with an empty cache gives the same bytes (archive, signature, lock file).
    ok(&site.build(&m2, "delta2b", "cache-b", &["--base", s(&lock1)]));
    for f in ["site-1.1.0.tar.zst", "site-1.1.0.tar.zst.minisig", "site-1.1.0.lock.json"] {
        assert_eq!(fs_err::read(site.p("delta2").join(f)).unwrap(), fs_err::read(site.p("delta2b").join(f)).unwrap(), "{f} differs");
    }

    // The figure for the README: the delta against the full bundle of the same release.
    let (full_size, delta_size) = (fs_err::metadata(&full2).unwrap().len(), fs_err::metadata(&delta).unwrap().len());
    eprintln!("delta bundle figure: full 1.1.0 bundle {full_size} bytes, delta against 1.0.0 {delta_size} bytes ({:.1}%)", delta_size as f64 * 100.0 / full_size as f64);
    assert!(delta_size * 3 < full_size, "the delta ({delta_size} bytes) is not much smaller than the full bundle ({full_size} bytes)");

    // What the delta holds: the changed image's manifest, config and own layer, the changed file, and the
    // whole release's index; nothing the base has. Its signed root document names the base.
    let (x1, xd) = (site.p("x1"), site.p("xd"));
    extract(&full1, &x1);
    extract(&delta, &xd);
    let held = listed(&xd);
    let blob = |d: &Digest| format!("images/{}", d.blob_path());
    let base_blobs: Vec<String> = listed(&x1).into_iter().filter(|p| p.starts_with("images/blobs/")).collect();
    assert!(held.iter().all(|p| !base_blobs.contains(p)), "the delta carries a blob of its base: {held:?}");
    let new_blobs: Vec<&String> = held.iter().filter(|p| p.starts_with("images/blobs/")).collect();
    assert_eq!(new_blobs.len(), 3, "{held:?}"); // tool2's manifest, config and own layer
    assert!(held.contains(&blob(&tool2.digest)));
    assert!(!held.contains(&blob(&app.digest)));
    assert!(held.contains(&"files/bin/helper".to_string()) && !held.contains(&"files/bin/kubectl".to_string()), "{held:?}");
    let root: serde_json::Value = serde_json::from_slice(&fs_err::read(xd.join("airgap.json")).unwrap()).unwrap();
    let base_root = Digest::of_file(&x1.join("airgap.json")).unwrap().0;
    assert_eq!(root["base"], serde_json::json!({"name": "site", "version": "1.0.0", "root_sha256": base_root.hex()}));
    let images: BTreeMap<&str, &str> = root["images"].as_array().unwrap().iter().map(|i| (i["reference"].as_str().unwrap(), i["digest"].as_str().unwrap())).collect();
    let want_app = app.digest.to_string();
    let want_tool = tool2.digest.to_string();
    assert_eq!(images.values().copied().collect::<Vec<_>>(), [want_app.as_str(), want_tool.as_str()]);
    let lock: serde_json::Value = serde_json::from_slice(&fs_err::read(&lock1).unwrap()).unwrap();
    assert_eq!(lock["bundle"]["root_sha256"], base_root.hex());

    // verify, inspect, unpack say what it is; a wrong key is refused
    let pk = s(&site.pubkey);
    let v = airgap(&["verify", s(&delta), "--pubkey", pk]);
    assert!(v.status.success() && text(&v).contains(&format!("delta of: site 1.0.0 (root document sha256:{})", base_root.hex())), "{}", text(&v));
    let v = airgap(&["verify", "--json", s(&delta), "--pubkey", pk]);
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["delta_of"]["root_sha256"], base_root.hex());
    let i = airgap(&["inspect", s(&delta), "--pubkey", pk]);
    assert!(i.status.success() && text(&i).contains("delta of:  site 1.0.0"), "{}", text(&i));
    let u = airgap(&["unpack", s(&delta), "--to", s(&site.p("unpacked")), "--pubkey", pk]);
    assert!(u.status.success() && text(&u).contains("is a delta bundle of site 1.0.0"), "{}", text(&u));
    let other = airgap::sign::generate_keypair(&site.p("other-keys"), None).unwrap();
    let v = airgap(&["verify", s(&delta), "--pubkey", s(&other.public)]);
    assert!(!v.status.success(), "{}", text(&v));

    plan_of_a_delta(&site, &delta, &base_root);

    // into no store / a store of another bundle / with the wrong key: refused, naming the base, nothing changed
    let load = |store: &Path, key: &str| airgap(&["load", s(&delta), "--store", s(store), "--pubkey", key]);
    let none = site.p("store-none");
    let e = load(&none, pk);
    let needs = format!("it needs the store {} to hold its base site 1.0.0 (root document sha256:{})", none.display(), base_root.hex());
    assert!(!e.status.success() && text(&e).contains(&needs), "{}", text(&e));
    assert!(!none.exists(), "a failed delta load created the store");
    let other_store = site.p("store-other");
    assert!(airgap(&["load", s(&full2), "--store", s(&other_store), "--pubkey", pk]).status.success());
    let before = tree(&other_store);
    let e = load(&other_store, pk);
    assert!(text(&e).contains("but the store holds site-1.1.0"), "{}", text(&e));
    assert_eq!(tree(&other_store), before, "a refused delta changed the store");
    let store = site.p("store");
    assert!(airgap(&["load", s(&full1), "--store", s(&store), "--pubkey", pk]).status.success());
    let before = tree(&store);
    let e = load(&store, s(&other.public));
    assert!(!e.status.success(), "{}", text(&e));
    assert_eq!(tree(&store), before, "a delta with the wrong key changed the store");

    // the registry step's check on a node (`airgap node registry-loaded`): the base's store lacks the delta
    let loaded = |store: &Path| airgap(&["node", "registry-loaded", "--store", s(store), "--bundle", s(&delta), "--pubkey", pk]);
    let c = loaded(&store);
    assert!(!c.status.success() && text(&c).contains("does not hold bundle site-1.1.0"), "{}", text(&c));

    // onto its base: every image of the new release is served with upstream's bytes
    let l = load(&store, pk);
    assert!(l.status.success() && text(&l).contains("loaded site 1.1.0 (delta of site 1.0.0)"), "{}", text(&l));
    let served = Served::start(&store);
    for (path, img) in [("test/app:1", &app), ("test/tool:1", &tool2)] {
        let dir = site.p(&format!("pulled-{}", path.replace(['/', ':'], "_")));
        skopeo_copy(&served.addr, path, &dir).unwrap();
        assert_pulled(&dir, img);
        let upstream = run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{}/{path}", site.reg.addr))).stdout;
        assert_eq!(Digest::of_bytes(&upstream), img.digest, "{path}: upstream moved");
    }
    assert_ne!(tool1.digest, tool2.digest);
    assert!(loaded(&store).status.success(), "{}", text(&loaded(&store)));
    // loading it again changes nothing
    let again = load(&store, pk);
    assert!(again.status.success() && text(&again).contains("nothing changed"), "{}", text(&again));

    // after gc freed the blobs of the moved tag, a delta of the same base that needs them again (1.2.0 moves
    // tool back) is refused, naming what is missing, and the store is unchanged
    let gc = airgap(&["gc", "--store", s(&store), "--apply"]);
    assert!(gc.status.success() && !store.join("blobs/sha256").join(tool1.digest.hex()).exists(), "{}", text(&gc));
    site.reg.push_layout(&site.p("l-tool1"), "img", "test/tool:1");
    ok(&site.build(&site.manifest("1.2.0", &helper1, &kubectl), "delta3", "cache", &["--base", s(&lock1)]));
    let before = tree(&store);
    let e = airgap(&["load", s(&site.p("delta3/site-1.2.0.tar.zst")), "--store", s(&store), "--pubkey", pk]);
    assert!(!e.status.success() && text(&e).contains(&format!("its manifest {} is neither in the bundle nor in the store", tool1.digest)), "{}", text(&e));
    assert_eq!(tree(&store), before, "a refused delta changed the store");

    // a store filled by an airgap that did not record root documents: told to load the base again, which
    // records it; then the delta loads
    let old_store = site.p("store-old");
    assert!(airgap(&["load", s(&full1), "--store", s(&old_store), "--pubkey", pk]).status.success());
    let catalog_path = old_store.join("catalog.json");
    let mut catalog: serde_json::Value = serde_json::from_slice(&fs_err::read(&catalog_path).unwrap()).unwrap();
    catalog["bundles"][0].as_object_mut().unwrap().remove("root_sha256").unwrap();
    fs_err::write(&catalog_path, serde_json::to_vec_pretty(&catalog).unwrap()).unwrap();
    let e = load(&old_store, pk);
    assert!(!e.status.success() && text(&e).contains("load that bundle again"), "{}", text(&e));
    let again = airgap(&["load", s(&full1), "--store", s(&old_store), "--pubkey", pk]);
    assert!(again.status.success() && text(&again).contains("nothing changed"), "{}", text(&again));
    let l = load(&old_store, pk);
    assert!(l.status.success(), "{}", text(&l));
}

#[test]
fn a_base_lock_without_its_bundle_record_is_refused() {
    let site = Site::new();
    let kubectl = site.file("kubectl", b"k");
    let m = site.manifest("2.0.0", &kubectl, &kubectl);
    let lock = site.p("old.lock.json");
    fs_err::write(&lock, r#"{"schema":"airgap.lock/v1","name":"site","version":"1.0.0","images":{},"files":{}}"#).unwrap();
    let err = failed(&site.build(&m, "out", "cache", &["--base", s(&lock)]));
    assert!(err.contains("does not record the bundle its build wrote"), "{err}");
    assert!(!site.p("out").exists());
}

/// `plan --bundle DELTA`: only distribute and registry, and the registry step says it loads a delta onto its base.
fn plan_of_a_delta(site: &Site, delta: &Path, base_root: &Digest) {
    let inv = crate::support::repo().join("manifests/site.example.yaml");
    let state = site.p("state");
    let o = airgap(&["plan", "--inventory", s(&inv), "--bundle", s(delta), "--pubkey", s(&site.pubkey), "--state-dir", s(&state)]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let steps: Vec<&str> = t.lines().filter(|l| l.starts_with("## ")).map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(steps, ["## 1. distribute", "## 2. registry"], "{t}");
    let why = format!("the store must hold its base site 1.0.0 (root document sha256:{})", base_root.hex());
    assert!(t.contains("load the delta bundle's images into the registry store") && t.contains(&why), "{t}");
    // a delta cannot run the other steps
    let o = airgap(&["plan", "--only", "runtime", "--inventory", s(&inv), "--bundle", s(delta), "--pubkey", s(&site.pubkey), "--state-dir", s(&state)]);
    assert!(!o.status.success() && text(&o).contains("it only updates the registry"), "{}", text(&o));
}

/// `install --bundle DELTA` on a lab site whose registry workers were installed from the base: only distribute
/// and registry run, and the workers' registry then serves the moved image with its new digest.
#[test]
fn install_with_a_delta_brings_the_lab_registry_up_to_date() {
    let _slot = crate::support::lab_slot();
    let Some(lab) = crate::support::lab::Lab::up(5) else { return };
    delta_install_on(&lab);
    lab.down();
}

fn delta_install_on(lab: &crate::support::lab::Lab) {
    let site = Site::new();
    let rootfs = Path::new("/var/cache/airgap-lab/rootfs-bookworm");
    let closure = run_ok(Command::new("bash").arg(crate::support::repo().join("scripts/deb-closure.sh")).arg("--rootfs").arg(rootfs).arg("keepalived"));
    let manifest = |version: &str| {
        let p = site.p(&format!("lab-{version}.yaml"));
        let text = format!("name: lab\nversion: {version}\nimages:\n  - {}/airgap/app:v1\n{}", site.reg.addr, String::from_utf8_lossy(&closure.stdout));
        fs_err::write(&p, text).unwrap();
        p
    };
    site.image("l-a1", "airgap/app:v1", &ImageSpec::single(51));
    ok(&site.build(&manifest("1.0.0"), "lab1", "cache", &[]));
    let app2 = site.image("l-a2", "airgap/app:v1", &ImageSpec::single(52));
    ok(&site.build(&manifest("1.0.1"), "lab2", "cache", &["--base", s(&site.p("lab1/lab-1.0.0.lock.json"))]));

    let inv = site.p("site.yaml");
    lab.inventory(&inv, "");
    let text_inv = fs_err::read_to_string(&inv).unwrap().replace("    role: worker\n", "    role: worker\n    interface: eth0\n").replace("    role: master\n", "    role: master\n    interface: eth0\n");
    fs_err::write(&inv, text_inv).unwrap();
    let install = |bundle: &str, extra: &[&str]| {
        let mut c = Command::new(airgap_bin());
        c.args(["install", "--inventory", s(&inv), "--bundle", s(&site.p(bundle)), "--pubkey", s(&site.pubkey)])
            .args(["--state-dir", s(&site.p("state")), "--log-dir", s(&site.p("logs"))])
            .args(extra)
            .env("NO_COLOR", "1");
        c.output().unwrap()
    };
    let o = install("lab1/lab-1.0.0.tar.zst", &["--only", "preflight,os-prepare,distribute,registry"]);
    assert!(o.status.success(), "base install: {}", text(&o));
    let o = install("lab2/lab-1.0.1.tar.zst", &[]);
    let t = text(&o);
    assert!(o.status.success() && t.contains("the bundle is a delta of lab 1.0.0"), "delta install: {t}");
    for w in ["worker1", "worker2"] {
        let addr = format!("{}:5000", lab.address(w));
        let raw = run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{addr}/airgap/app:v1"))).stdout;
        assert_eq!(Digest::of_bytes(&raw), app2.digest, "{w} serves another airgap/app:v1");
    }

    // a registry worker whose store lacks the base: the registry step fails there, naming the base it needs
    lab.exec("worker2", "systemctl stop airgap-registry && rm -rf /var/lib/airgap/registry");
    let o = install("lab2/lab-1.0.1.tar.zst", &[]);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("worker2: registry:") && t.contains("to hold its base lab 1.0.0"), "{t}");
    // and the site converges again: base, then delta
    let o = install("lab1/lab-1.0.0.tar.zst", &["--only", "registry"]);
    assert!(o.status.success(), "base again: {}", text(&o));
    let o = install("lab2/lab-1.0.1.tar.zst", &[]);
    assert!(o.status.success(), "delta again: {}", text(&o));
}
