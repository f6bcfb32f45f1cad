//! `airgap load` of real signed bundles (made with the bundle writer from test image layouts) and
//! `airgap images`: blob sharing, no-op reloads, moved tags, all-or-nothing failures.

use super::Served;
use crate::support::images::{make_image, ImageSpec};
use crate::support::{airgap_bin, require_tool};
use airgap::bundle::format::{ImageEntry, RootDoc, SCHEMA};
use airgap::bundle::write::{write_bundle, BlobSource, BundleContent, WriteOptions};
use airgap::digest::Digest;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) struct Keys {
    _dir: tempfile::TempDir,
    pub(super) secret: PathBuf,
    pub(super) public: PathBuf,
}

pub(super) fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let k = airgap::sign::generate_keypair(&dir.path().join("k"), None).unwrap();
    Keys { secret: k.secret, public: k.public, _dir: dir }
}

/// A signed bundle holding every image of the OCI layout `layout`.
pub(super) fn bundle_from_layout(layout: &Path, name: &str, version: &str, out: &Path, keys: &Keys) -> PathBuf {
    let index_json = fs_err::read(layout.join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index_json).unwrap();
    let images = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ImageEntry {
            reference: m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string(),
            digest: m["digest"].as_str().unwrap().parse().unwrap(),
            media_type: m["mediaType"].as_str().unwrap().to_string(),
            size: m["size"].as_u64().unwrap(),
            platforms: vec![],
        })
        .collect();
    let blobs = fs_err::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            BlobSource {
                digest: Digest::from_hex(&e.file_name().to_string_lossy()).unwrap(),
                size: e.metadata().unwrap().len(),
                path: e.path(),
            }
        })
        .collect();
    let root = RootDoc {
        schema: SCHEMA.into(),
        name: name.into(),
        version: version.into(),
        base: None,
        platforms: vec!["linux/amd64".into()],
        kubernetes: None,
        images,
        files: vec![],
        packages: vec![],
        sha256sums: String::new(),
            sizes: Default::default(),
    };
    let sk = airgap::sign::load_secret_key(&keys.secret, None).unwrap();
    let opts = WriteOptions { out_dir: out.to_path_buf(), split_size: None, zstd_workers: 1 };
    write_bundle(&BundleContent { root, index_json, blobs, files: vec![] }, &sk, &opts).unwrap().archive
}

pub(super) fn airgap(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(airgap_bin()).args(args).env("NO_COLOR", "1").env_remove("RUST_LOG").output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

pub(super) fn load(bundle: &Path, store: &Path, pubkey: &Path) -> (bool, String, String) {
    airgap(&["load", bundle.to_str().unwrap(), "--store", store.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()])
}

/// Everything a failed load must leave untouched: the catalog's bytes, the blob file names, no staging left.
pub(super) fn store_state(store: &Path) -> (Vec<u8>, BTreeSet<String>, usize) {
    let catalog = fs_err::read(store.join("catalog.json")).unwrap_or_default();
    let blobs = fs_err::read_dir(store.join("blobs/sha256")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    let tmp = fs_err::read_dir(store.join("tmp")).map(|r| r.count()).unwrap_or(0);
    (catalog, blobs, tmp)
}

fn layout_blobs(layout: &Path) -> BTreeSet<String> {
    fs_err::read_dir(layout.join("blobs/sha256")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect()
}

/// Two layouts: v1 with `team/app:1` and Docker Hub's `base:1`; v2 moves `team/app:1`, adds `team/app:2`.
/// Every app image shares one layer.
fn two_layouts(dir: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join("layout-v1"), dir.join("layout-v2"));
    let shared = |seed| ImageSpec { shared_layer: Some((9_999, 60_000)), ..ImageSpec::single(seed) };
    make_image(&a, "registry.example.test/team/app:1", &shared(1));
    make_image(&a, "base:1", &ImageSpec::multi(&["linux/amd64", "linux/arm64"], 2));
    make_image(&b, "registry.example.test/team/app:1", &shared(3));
    make_image(&b, "registry.example.test/team/app:2", &shared(4));
    (a, b)
}

#[test]
fn load_shares_blobs_reloads_as_noop_moves_tags_and_lists_images() {
    require_tool("curl");
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let (la, lb) = two_layouts(dir.path());
    let v1 = bundle_from_layout(&la, "site", "1.0.0", &dir.path().join("out1"), &k);
    let v2 = bundle_from_layout(&lb, "site", "2.0.0", &dir.path().join("out2"), &k);
    let store = dir.path().join("store");

    let (ok, out, err) = load(&v1, &store, &k.public);
    assert!(ok, "{err}");
    assert!(out.contains("loaded site 1.0.0") && out.contains("2 images (2 added, 0 moved, 0 unchanged)"), "{out}");
    let after_v1 = store_state(&store);
    assert_eq!(after_v1.1, layout_blobs(&la));
    // the catalog is readable by a registry that does not run as root (it was tempfile's 0600)
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs_err::metadata(store.join("catalog.json")).unwrap().permissions().mode() & 0o777, 0o644);

    // The same bundle again: verified again, nothing written.
    let (ok, out, err) = load(&v1, &store, &k.public);
    assert!(ok, "{err}");
    assert!(out.contains("was already loaded") && out.contains("nothing changed"), "{out}");
    assert_eq!(store_state(&store), after_v1);

    // A damaged blob in the store (bytes no longer matching its name) is replaced by the bundle's verified
    // copy on the next load of a bundle that carries it, instead of being trusted by its name.
    let victim = store.join("blobs/sha256").join(layout_blobs(&la).into_iter().next().unwrap());
    let good_bytes = fs_err::read(&victim).unwrap();
    let mut bad_bytes = good_bytes.clone();
    bad_bytes[0] ^= 0xff;
    fs_err::write(&victim, &bad_bytes).unwrap();
    let (ok, out, err) = load(&v1, &store, &k.public);
    assert!(ok, "{err}");
    assert!(!out.contains("nothing changed"), "a damaged blob was kept: {out}");
    assert_eq!(fs_err::read(&victim).unwrap(), good_bytes, "the damaged blob was not repaired");
    assert_eq!(store_state(&store), after_v1);

    // The newer bundle: the shared layer is stored once, app:1 moves, app:2 is added, base:1 stays.
    let (ok, out, err) = load(&v2, &store, &k.public);
    assert!(ok, "{err}");
    assert!(out.contains("2 images (1 added, 1 moved, 0 unchanged)"), "{out}");
    assert!(out.contains("moved registry.example.test/team/app:1"), "{out}");
    let after_v2 = store_state(&store);
    let union: BTreeSet<String> = layout_blobs(&la).union(&layout_blobs(&lb)).cloned().collect();
    assert_eq!(after_v2.1, union, "each blob exactly once");
    assert!(layout_blobs(&la).intersection(&layout_blobs(&lb)).count() >= 1, "the layouts share no blob");
    assert_eq!(after_v2.2, 0, "staging left behind");

    let served = Served::start(&store);
    let head = |path: &str| {
        let o = Command::new("curl").args(["-sS", "-I", "-o", "/dev/null", "-w", "%{http_code} %header{docker-content-digest}"]).arg(served.url(path)).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let digest_in = |layout: &Path, tag: &str| {
        let v: serde_json::Value = serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
        v["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag).unwrap()["digest"].as_str().unwrap().to_string()
    };
    assert_eq!(head("/v2/team/app/manifests/1"), format!("200 {}", digest_in(&lb, "registry.example.test/team/app:1")));
    assert_eq!(head("/v2/team/app/manifests/2"), format!("200 {}", digest_in(&lb, "registry.example.test/team/app:2")));
    assert_eq!(head("/v2/library/base/manifests/1"), format!("200 {}", digest_in(&la, "base:1")));
    // The old app:1 is still pullable by digest (pinned references keep working).
    assert!(head(&format!("/v2/team/app/manifests/{}", digest_in(&la, "registry.example.test/team/app:1"))).starts_with("200 "));

    let (ok, table, err) = airgap(&["images", "--store", store.to_str().unwrap()]);
    assert!(ok, "{err}");
    insta::assert_snapshot!("images_table", table);
    let (ok, json, _) = airgap(&["images", "--store", store.to_str().unwrap(), "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 3);
    assert_eq!(v["bundles"].as_array().unwrap().len(), 2);
    let base = v["images"].as_array().unwrap().iter().find(|i| i["name"] == "library/base").unwrap();
    assert_eq!((base["host"].as_str(), base["tag"].as_str()), (Some("docker.io"), Some("1")));
    assert_eq!(base["platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
}

#[test]
fn failed_loads_leave_the_store_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let other = keys();
    let (la, lb) = two_layouts(dir.path());
    let v1 = bundle_from_layout(&la, "site", "1.0.0", &dir.path().join("out1"), &k);
    let v2 = bundle_from_layout(&lb, "site", "2.0.0", &dir.path().join("out2"), &k);
    let store = dir.path().join("store");
    assert!(load(&v1, &store, &k.public).0);
    let before = store_state(&store);

    // Signed by another key.
    let (ok, _, err) = load(&v2, &store, &other.public);
    eprintln!("wrong key load:\n{err}");
    assert!(!ok);
    assert!(err.contains("error:") && err.contains("the store is exactly as it was"), "{err}");
    assert_eq!(store_state(&store), before);

    // Damaged bytes near the end of the archive (after the new blobs were staged).
    let tampered = dir.path().join("tampered.tar.zst");
    let mut bytes = fs_err::read(&v2).unwrap();
    let at = bytes.len() - 200;
    bytes[at] ^= 0x55;
    fs_err::write(&tampered, &bytes).unwrap();
    fs_err::copy(format!("{}.minisig", v2.display()), format!("{}.minisig", tampered.display())).unwrap();
    let (ok, _, err) = load(&tampered, &store, &k.public);
    assert!(!ok, "a tampered bundle loaded");
    eprintln!("tampered load:\n{err}");
    assert!(err.contains("error:"), "{err}");
    assert_eq!(store_state(&store), before, "a failed load changed the store");

    // A good load still works afterwards.
    let (ok, out, err) = load(&v2, &store, &k.public);
    assert!(ok && out.contains("1 moved"), "{out}{err}");
}

#[test]
fn serve_chooses_the_host_by_ns_reloads_the_catalog_and_logs_json() {
    require_tool("curl");
    let dir = tempfile::tempdir().unwrap();
    let (lx, ly) = (dir.path().join("x"), dir.path().join("y"));
    let x = make_image(&lx, "one.example.test/shared/app:1", &ImageSpec::single(10));
    let y = make_image(&ly, "two.example.test/shared/app:1", &ImageSpec::single(11));
    make_image(&ly, "two.example.test/shared/app:only-two", &ImageSpec::single(12));
    let (_d, store) = super::new_store();
    airgap::registry::store::load_layout(&store, &lx).unwrap();
    let served = Served::start_with(store.root(), &["--json"]);
    let get = |path: &str| {
        let o = Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %header{docker-content-digest}"]).arg(served.url(path)).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(get("/v2/shared/app/manifests/1"), format!("200 {}", x.digest));
    assert!(get("/v2/shared/app/manifests/only-two").starts_with("404"));

    // A load into the served store is picked up without a restart.
    airgap::registry::store::load_layout(&store, &ly).unwrap();
    crate::support::wait_until("the served catalog reloaded", std::time::Duration::from_secs(5), || {
        get("/v2/shared/app/manifests/only-two").starts_with("200")
    });
    assert_eq!(get("/v2/shared/app/manifests/1?ns=one.example.test"), format!("200 {}", x.digest));
    assert_eq!(get("/v2/shared/app/manifests/1?ns=two.example.test"), format!("200 {}", y.digest));
    // Without ns: the most recently loaded host.
    assert_eq!(get("/v2/shared/app/manifests/1"), format!("200 {}", y.digest));
    assert!(get("/v2/shared/app/manifests/only-two?ns=one.example.test").starts_with("404"));
    let tags = |q: &str| {
        let o = Command::new("curl").args(["-sS"]).arg(served.url(&format!("/v2/shared/app/tags/list{q}"))).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["tags"].clone()
    };
    assert_eq!(tags("?ns=one.example.test"), serde_json::json!(["1"]));
    assert_eq!(tags(""), serde_json::json!(["1", "only-two"]));

    // --json: one JSON object per line, one per request at debug level.
    let log = served.log();
    let lines: Vec<serde_json::Value> = log.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let req = lines
        .iter()
        .find(|v| v["fields"]["path"].as_str().is_some_and(|p| p.contains("ns=two.example.test")))
        .unwrap_or_else(|| panic!("no JSON request line with ns=:\n{log}"));
    assert_eq!(req["level"], "DEBUG");
    assert_eq!(req["fields"]["status"], 200);
    assert_eq!(req["fields"]["method"], "GET");
    assert!(lines.iter().any(|v| v["fields"]["message"].as_str().is_some_and(|m| m.contains("catalog reloaded"))), "{log}");
}

/// Not a test: writes a signed bundle of every image in the OCI layout `$AIRGAP_BENCH_LAYOUT` into
/// `$AIRGAP_BENCH_OUT` (key pair in `$AIRGAP_BENCH_OUT/keys`), for `scripts/bench-registry.sh`.
#[test]
#[ignore = "helper of scripts/bench-registry.sh"]
fn bench_write_bundle_from_layout() {
    let (Some(layout), Some(out)) = (std::env::var_os("AIRGAP_BENCH_LAYOUT"), std::env::var_os("AIRGAP_BENCH_OUT")) else {
        panic!("set AIRGAP_BENCH_LAYOUT and AIRGAP_BENCH_OUT");
    };
    let out = PathBuf::from(out);
    let k = airgap::sign::generate_keypair(&out.join("keys"), None).unwrap();
    let keys = Keys { secret: k.secret, public: k.public, _dir: tempfile::tempdir().unwrap() };
    let archive = bundle_from_layout(Path::new(&layout), "bench", "1.0.0", &out, &keys);
    println!("bundle: {}", archive.display());
}
