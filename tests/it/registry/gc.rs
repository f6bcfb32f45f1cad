//! `airgap gc`: load a bundle, load a newer one that moves a tag, collect exactly the older image's blobs
//! (dry run first, then `--apply` while the store is served), and pull every image afterwards with skopeo.

use super::load::{airgap, bundle_from_layout, keys, load, store_state};
use super::{assert_pulled, skopeo_copy, Served};
use crate::support::images::{make_image, ImageSpec, MadeImage};
use crate::support::{airgap_bin, require_tool};
use airgap::digest::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

fn blob_set(imgs: &[&MadeImage]) -> BTreeMap<Digest, u64> {
    imgs.iter().flat_map(|i| i.blobs.iter().cloned()).collect()
}

#[test]
fn gc_frees_exactly_the_blobs_of_moved_tags_and_every_image_still_pulls() {
    require_tool("curl");
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let (la, lb) = (dir.path().join("layout-a"), dir.path().join("layout-b"));
    // Bundle A: team/app:1 and Docker Hub's base:1; bundle B moves team/app:1 and adds team/app:2. Every app
    // image shares one layer, which must survive.
    let shared = |seed| ImageSpec { shared_layer: Some((9_999, 60_000)), ..ImageSpec::single(seed) };
    let a_app1 = make_image(&la, "registry.example.test/team/app:1", &shared(21));
    let a_base = make_image(&la, "base:1", &ImageSpec::multi(&["linux/amd64", "linux/arm64"], 22));
    let b_app1 = make_image(&lb, "registry.example.test/team/app:1", &shared(23));
    let b_app2 = make_image(&lb, "registry.example.test/team/app:2", &shared(24));
    let bundle_a = bundle_from_layout(&la, "site", "1.0.0", &dir.path().join("out-a"), &k);
    let bundle_b = bundle_from_layout(&lb, "site", "2.0.0", &dir.path().join("out-b"), &k);
    let store = dir.path().join("store");
    let st = store.to_str().unwrap();
    assert!(load(&bundle_a, &store, &k.public).0);
    let (ok, _, stderr) = load(&bundle_b, &store, &k.public);
    assert!(ok && stderr.contains(&format!("`airgap gc --store {st}`")), "no hint about gc after a moved tag:\n{stderr}");

    let live = blob_set(&[&b_app1, &b_app2, &a_base]);
    let expected: BTreeMap<Digest, u64> = blob_set(&[&a_app1]).into_iter().filter(|(d, _)| !live.contains_key(d)).collect();
    assert!(expected.len() >= 3, "the old app:1 should leave its manifest, config and own layer: {expected:?}");
    assert!(a_app1.blobs.iter().any(|(d, _)| live.contains_key(d)), "the shared layer is missing from the test");
    let expected_bytes: u64 = expected.values().sum();

    // A staging directory left by a load that crashed.
    let stale = store.join("tmp/load-crashed");
    fs_err::create_dir_all(&stale).unwrap();
    fs_err::write(stale.join("partial"), b"half a blob").unwrap();

    // Dry run, as text: exactly A's unreachable blobs on stdout; nothing changes.
    let before = store_state(&store);
    let (ok, stdout, stderr) = airgap(&["gc", "--store", st]);
    assert!(ok, "{stderr}");
    let listed: BTreeSet<String> = stdout.lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
    assert_eq!(listed, expected.keys().map(|d| d.to_string()).collect::<BTreeSet<_>>(), "{stdout}");
    assert!(stderr.contains(&format!("{} blobs", expected.len())) && stderr.contains("dry run") && stderr.contains("--apply"), "{stderr}");
    assert!(stderr.contains("1 staging directories"), "{stderr}");
    assert_eq!(store_state(&store), before, "a dry run changed the store");

    // Dry run, as JSON.
    let (ok, json, stderr) = airgap(&["gc", "--store", st, "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let un: BTreeMap<Digest, u64> = v["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["digest"].as_str().unwrap().parse().unwrap(), u["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(un, expected);
    assert_eq!(v["unreachable_bytes"], expected_bytes);
    assert_eq!((v["applied"].as_bool(), v["freed_bytes"].as_u64()), (Some(false), Some(0)));
    assert_eq!(v["problems"], serde_json::json!([]));

    // Apply while the store is served: the server picks up the new catalog; every image still pulls.
    let s = Served::start(&store);
    let (ok, json, stderr) = airgap(&["gc", "--store", st, "--apply", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((v["applied"].as_bool(), v["freed_bytes"].as_u64()), (Some(true), Some(expected_bytes)));
    assert_eq!(v["catalog_manifests_dropped"], 1, "the old app:1 manifest record");
    let after = store_state(&store);
    let want: BTreeSet<String> = before.1.iter().filter(|h| !expected.keys().any(|d| d.hex() == h.as_str())).cloned().collect();
    assert_eq!(after.1, want, "gc deleted something else, or not everything");
    assert_eq!(after.2, 0, "the crashed load's staging directory is still there");
    let catalog: serde_json::Value = serde_json::from_slice(&after.0).unwrap();
    assert!(catalog["manifests"].get(a_app1.digest.to_string()).is_none(), "the catalog still names the old manifest");

    let work = tempfile::tempdir().unwrap();
    for (path, img) in [("team/app:1", &b_app1), ("team/app:2", &b_app2), ("library/base:1", &a_base)] {
        let dst = work.path().join(path.replace(['/', ':'], "_"));
        skopeo_copy(&s.addr, path, &dst).unwrap_or_else(|e| panic!("{e}"));
        assert_pulled(&dst, img);
    }
    // The old app:1 is gone (by digest too), once the server has re-read the catalog.
    let old = s.url(&format!("/v2/team/app/manifests/{}", a_app1.digest));
    crate::support::wait_until("the old manifest no longer served after gc", Duration::from_secs(10), || {
        let o = Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"]).arg(&old).output().unwrap();
        String::from_utf8_lossy(&o.stdout) == "404"
    });

    // Nothing left to collect.
    let (ok, stdout, stderr) = airgap(&["gc", "--store", st]);
    assert!(ok && stdout.is_empty() && stderr.contains("nothing to collect"), "{stdout}{stderr}");
    eprintln!("gc freed {} blobs, {expected_bytes} bytes", expected.len());
}

#[test]
fn gc_apply_waits_for_a_load_holding_the_store_lock() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let layout = dir.path().join("layout");
    make_image(&layout, "example.test/x:1", &ImageSpec::single(31));
    let bundle = bundle_from_layout(&layout, "x", "1", &dir.path().join("out"), &k);
    let store = dir.path().join("store");
    assert!(load(&bundle, &store, &k.public).0);

    // Hold the lock as a load does.
    let f = std::fs::OpenOptions::new().write(true).open(store.join("lock")).unwrap();
    let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
    let mut gc = Command::new(airgap_bin())
        .args(["gc", "--apply", "--store"])
        .arg(&store)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(gc.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("waits for it to finish"), "{line}");
    assert!(gc.try_wait().unwrap().is_none(), "gc did not wait for the lock");
    drop(lock);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(gc.wait().unwrap().success(), "{line}{rest}");
    assert!(rest.contains("deleted 0 blobs"), "{rest}");

    // A store whose catalog is gone: every blob looks unreachable; gc lists them and deletes nothing.
    let blobs = super::load::store_state(&store).1;
    fs_err::rename(store.join("catalog.json"), dir.path().join("catalog.json")).unwrap();
    let st = store.to_str().unwrap();
    let (ok, out, err) = super::load::airgap(&["gc", "--store", st]);
    assert!(ok && out.lines().count() == blobs.len() && err.contains("catalog.json is missing"), "{out}{err}");
    let (ok, _, err) = super::load::airgap(&["gc", "--store", st, "--apply"]);
    assert!(!ok && err.contains("catalog.json is missing") && err.contains("deletes nothing"), "{err}");
    assert_eq!(super::load::store_state(&store).1, blobs, "gc deleted blobs of a store without a catalog");
}
