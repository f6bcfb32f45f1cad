//! Hostile bundles against every command that reads one (`verify`, `inspect`, `unpack`, `load`, `plan`,
//! `install`): unsigned, signed by another key, signed by the trusted key but holding absolute / `..` values in
//! every field of the root document, a huge declared size, decompression bombs, a blob named for another
//! digest. Each must fail with an error that says what is wrong, and a sentinel directory tree around the
//! state dir, the store and the unpack target must be byte-identical afterwards.
//!
//! (Before the verify-first reader, an unsigned root document whose `sha256sums` was `../..` made `install`
//! delete every sibling of the state dir, and a 74 KB long-name bomb drove `inspect` to 8.5 GB of memory.)

use crate::support::bundle::{airgap, craft, entries_of, run, Fixture, RawEntry};
use crate::support::repo;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every path under `dir` with its type, mode and content hash.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.is_dir() {
                out.insert(rel, format!("dir {mode:o}"));
                walk(root, &p, out);
            } else if m.file_type().is_symlink() {
                out.insert(rel, format!("link {}", std::fs::read_link(&p).unwrap().display()));
            } else {
                let d = airgap::digest::Digest::of_file(&p).unwrap().0;
                out.insert(rel, format!("file {mode:o} {d}"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// A minisign signature (text) of `data` by the fixture's key, made as the writer makes it.
fn sign(fx: &Fixture, data: &[u8], comment: &str) -> Vec<u8> {
    let mut p = airgap::sign::Prehasher::new();
    p.update(data);
    airgap::sign::sign_prehashed(&fx.sk(), &p.finish(), comment).unwrap().into_bytes()
}

/// The sentinel tree: a state dir holding a journal and a kit, a loaded store, an existing unpack target, a
/// log dir and files beside them. Returns (sentinel, state, store, log).
struct Site {
    sentinel: tempfile::TempDir,
}

impl Site {
    fn new(fx: &Fixture, good: &Path) -> Site {
        let sentinel = tempfile::Builder::new().prefix("airgap-sentinel-").tempdir().unwrap();
        let s = sentinel.path();
        std::fs::write(s.join("keep.txt"), b"do not delete\n").unwrap();
        std::fs::create_dir_all(s.join("state/kit").join("ab".repeat(32)).join("files")).unwrap();
        std::fs::write(s.join("state/journal.json"), b"{}\n").unwrap();
        std::fs::write(s.join("state/install.lock"), b"").unwrap();
        std::fs::write(s.join("state/kit").join("ab".repeat(32)).join("files/x"), b"x\n").unwrap();
        std::fs::create_dir_all(s.join("log")).unwrap();
        std::fs::create_dir_all(s.join("target")).unwrap();
        std::fs::write(s.join("target/old.txt"), b"old\n").unwrap();
        let (code, _, err) = run(airgap().arg("load").arg(good).arg("--store").arg(s.join("store")).arg("--pubkey").arg(&fx.public));
        assert_eq!(code, 0, "{err}");
        Site { sentinel }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.sentinel.path().join(p)
    }
}

/// Run every reading command on `bundle`; each must exit 1 within `limit`, say `want` (any one of them), and
/// leave the sentinel tree exactly as it was. Returns the errors.
fn refused_everywhere(fx: &Fixture, site: &Site, bundle: &Path, want: &[&str]) -> Vec<String> {
    refused(fx, site, bundle, want, true)
}

/// [`refused_everywhere`] but for a bundle whose signed head is genuine: `inspect` and `plan`, which read only
/// the head, show it; every command that reads past it refuses it.
fn refused_past_the_head(fx: &Fixture, site: &Site, bundle: &Path, want: &[&str]) -> Vec<String> {
    refused(fx, site, bundle, want, false)
}

fn refused(fx: &Fixture, site: &Site, bundle: &Path, want: &[&str], bad_head: bool) -> Vec<String> {
    let before = tree(site.sentinel.path());
    let pubkey = fx.public.as_os_str();
    let inv = repo().join("manifests/site.example.yaml");
    let mut cmds: Vec<(&str, Command)> = Vec::new();
    let mut c = airgap();
    c.arg("verify").arg(bundle).arg("--pubkey").arg(pubkey);
    cmds.push(("verify", c));
    let mut c = airgap();
    c.arg("inspect").arg(bundle).arg("--pubkey").arg(pubkey);
    cmds.push(("inspect", c));
    let mut c = airgap();
    c.arg("unpack").arg(bundle).arg("--to").arg(site.path("unpacked")).arg("--pubkey").arg(pubkey);
    cmds.push(("unpack", c));
    let mut c = airgap();
    c.arg("load").arg(bundle).arg("--store").arg(site.path("store")).arg("--pubkey").arg(pubkey);
    cmds.push(("load", c));
    let mut c = airgap();
    c.arg("load").arg(bundle).arg("--store").arg(site.path("newstore")).arg("--pubkey").arg(pubkey);
    cmds.push(("load into a new store", c));
    let mut c = airgap();
    c.arg("plan").arg("--inventory").arg(&inv).arg("--bundle").arg(bundle).arg("--pubkey").arg(pubkey);
    cmds.push(("plan", c));
    let mut c = airgap();
    c.arg("install").arg("--inventory").arg(&inv).arg("--bundle").arg(bundle).arg("--pubkey").arg(pubkey);
    c.arg("--state-dir").arg(site.path("state")).arg("--log-dir").arg(site.path("log"));
    cmds.push(("install", c));
    if !bad_head {
        cmds.retain(|(what, _)| !["inspect", "plan"].contains(what));
    }
    let mut errors = Vec::new();
    for (what, mut cmd) in cmds {
        let t = Instant::now();
        let (code, out, err) = run(&mut cmd);
        let took = t.elapsed();
        assert_eq!(code, 1, "{what} {}: exit {code}\nstdout:\n{out}\nstderr:\n{err}", bundle.display());
        assert!(want.iter().any(|w| err.contains(w)), "{what} {}: expected one of {want:?} in:\n{err}", bundle.display());
        assert!(took < Duration::from_secs(20), "{what} took {took:?}");
        assert!(!out.contains("testbundle") && !out.contains("evil"), "{what} printed bundle content:\n{out}");
        assert_eq!(tree(site.sentinel.path()), before, "{what} changed the sentinel tree\nstderr:\n{err}");
        errors.push(err);
    }
    errors
}

/// The good bundle's entries, the root document parsed.
fn parts(fx: &Fixture) -> (PathBuf, Vec<RawEntry>, Value) {
    let w = fx.write(&fx.content(20_000), "out", None, 2);
    let entries = entries_of(&w.archive);
    let root: Value = serde_json::from_slice(&entries[0].data).unwrap();
    (w.archive, entries, root)
}

/// Entries with `root` as the root document, signed by the fixture's key (the trusted one).
fn with_signed_root(fx: &Fixture, entries: &[RawEntry], root: &Value) -> Vec<RawEntry> {
    let mut e = entries.to_vec();
    let mut bytes = serde_json::to_vec_pretty(root).unwrap();
    bytes.push(b'\n');
    e[1].data = sign(fx, &bytes, "airgap root document");
    e[0].data = bytes;
    e
}

fn write_bundle(fx: &Fixture, name: &str, entries: &[RawEntry]) -> PathBuf {
    let p = fx.path().join(format!("{name}.tar.zst"));
    craft(fx, &p, entries);
    p
}

/// The hostile values of the issue, one field at a time.
fn hostile_roots(root: &Value) -> Vec<(&'static str, Value)> {
    let mut v = Vec::new();
    let mut set = |label: &'static str, f: &dyn Fn(&mut Value)| {
        let mut r = root.clone();
        f(&mut r);
        v.push((label, r));
    };
    set("sha256sums", &|r| r["sha256sums"] = "../../..".into());
    set("sha256sums", &|r| r["sha256sums"] = "/".into());
    set("name", &|r| r["name"] = "../../evil".into());
    set("version", &|r| r["version"] = "/etc/evil".into());
    set("platforms[0]", &|r| r["platforms"][0] = "linux/../../evil".into());
    set("images[0].reference", &|r| r["images"][0]["reference"] = "../../evil".into());
    set("files[0].path", &|r| r["files"][0]["path"] = "/tmp/airgap-evil".into());
    set("files[0].path", &|r| r["files"][0]["path"] = "../../../evil".into());
    set("files[0].sha256", &|r| r["files"][0]["sha256"] = "../../evil".into());
    set("files[0].url", &|r| r["files"][0]["url"] = "http://x/\u{1b}[2J".into());
    set("packages[0].os", &|r| r["packages"][0]["os"] = "../..".into());
    set("packages[0].path", &|r| r["packages"][0]["path"] = "packages/debian-12/../../../../evil".into());
    set("packages[0].name", &|r| r["packages"][0]["name"] = "keepalived;rm -rf /".into());
    set("sizes", &|r| r["sizes"]["../evil"] = 1.into());
    v
}

#[test]
fn hostile_unsigned_and_wrongly_signed_bundles_change_nothing() {
    let fx = Fixture::new();
    let (good, entries, root) = parts(&fx);
    let site = Site::new(&fx, &good);
    for (i, (field, hostile)) in hostile_roots(&root).into_iter().enumerate() {
        let mut bytes = serde_json::to_vec_pretty(&hostile).unwrap();
        bytes.push(b'\n');
        // 1. unsigned: the root document's own signature entry is missing (the archive's .minisig is by the
        //    trusted key: a "borrowed" signature does not help)
        let mut e = entries.clone();
        e[0].data = bytes.clone();
        e.remove(1);
        let b = write_bundle(&fx, &format!("unsigned-{i}"), &e);
        refused_everywhere(&fx, &site, &b, &["its root document is not signed"]);
        // 2. the root document signed by another key
        let other = Fixture::new();
        let mut e = entries.clone();
        e[1].data = sign(&other, &bytes, "airgap root document");
        e[0].data = bytes.clone();
        let b = write_bundle(&fx, &format!("otherkey-{i}"), &e);
        refused_everywhere(&fx, &site, &b, &["is signed by key ID"]);
        // 3. signed by the trusted key (a faulty or hostile packaging run): every value is still validated
        let e = with_signed_root(&fx, &entries, &hostile);
        let b = write_bundle(&fx, &format!("signed-{i}"), &e);
        let errs = refused_everywhere(&fx, &site, &b, &["holds values airgap refuses to act on"]);
        assert!(errs.iter().all(|e| e.contains(field)), "{field} not named:\n{}", errs[0]);
    }
    assert!(!Path::new("/tmp/airgap-evil").exists());
}

#[test]
fn hostile_sizes_and_bombs_are_refused_before_they_cost_anything() {
    let fx = Fixture::new();
    let (good, entries, root) = parts(&fx);
    let site = Site::new(&fx, &good);
    let two_gib = 2u64 << 30;

    // A GNU long-name header declaring 2 GiB as the very first header (the 74 KB bomb of the issue).
    let b = fx.path().join("longname.tar.zst");
    {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(two_gib);
        h.set_mode(0o644);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend(std::iter::repeat_n(b'a', 74_000));
        std::fs::write(&b, zstd::encode_all(&raw[..], 3).unwrap()).unwrap();
        std::fs::copy(good.with_extension("zst.minisig"), fx.path().join("longname.tar.zst.minisig")).unwrap();
    }
    let errs = refused_everywhere(&fx, &site, &b, &["declares a 2147483648-byte long name"]);
    assert!(errs.iter().all(|e| e.contains("is not a bundle signed by the given key")), "{}", errs[0]);
    for cmd in ["inspect", "verify"] {
        let rss = crate::bundle::peak_rss_kib_of(airgap().arg(cmd).arg(&b).arg("--pubkey").arg(&fx.public), true);
        assert!(rss < 64 * 1024, "{cmd} peaked at {rss} KiB on the long-name bomb");
    }

    // A root document declaring 8 GiB of zeros (a decompression bomb: 1 GiB of them compress to a few KB).
    let b = fx.path().join("bomb.tar.zst");
    {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..11].copy_from_slice(b"airgap.json");
        h.set_size(8 << 30);
        h.set_mode(0o644);
        h.set_cksum();
        let f = std::fs::File::create(&b).unwrap();
        let mut enc = zstd::stream::write::Encoder::new(f, 3).unwrap();
        std::io::Write::write_all(&mut enc, h.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            std::io::Write::write_all(&mut enc, &zeros).unwrap();
        }
        enc.finish().unwrap();
        assert!(std::fs::metadata(&b).unwrap().len() < 1 << 20);
        craft_sig(&fx, &b);
    }
    refused_everywhere(&fx, &site, &b, &["entry airgap.json is too large (8589934592 bytes"]);
    let rss = crate::bundle::peak_rss_kib_of(airgap().arg("unpack").arg(&b).arg("--to").arg(fx.path().join("u")).arg("--pubkey").arg(&fx.public), true);
    assert!(rss < 64 * 1024, "unpack peaked at {rss} KiB on the zstd bomb");

    // The genuine signed head and SHA256SUMS, then gigabytes of zeros after the end-of-archive marker.
    let b = fx.path().join("trailer.tar.zst");
    {
        let mut tarred = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tarred);
            for e in entries.iter().take(3) {
                let mut h = airgap::bundle::write::file_header(e.data.len() as u64, 0o644);
                builder.append_data(&mut h, e.path_str(), &e.data[..]).unwrap();
            }
            builder.finish().unwrap();
        }
        let f = std::fs::File::create(&b).unwrap();
        let mut enc = zstd::stream::write::Encoder::new(f, 3).unwrap();
        std::io::Write::write_all(&mut enc, &tarred).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            std::io::Write::write_all(&mut enc, &zeros).unwrap();
        }
        enc.finish().unwrap();
        craft_sig(&fx, &b);
    }
    // (inspect only reads the head: it succeeds on this one, so it is run separately)
    let (code, out, err) = run(airgap().arg("inspect").arg(&b).arg("--pubkey").arg(&fx.public));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("testbundle"), "{out}");
    let t = Instant::now();
    let (code, _, err) = run(airgap().arg("verify").arg(&b).arg("--pubkey").arg(&fx.public));
    assert_eq!(code, 1);
    assert!(err.contains("missing entry") || err.contains("data after the end of its tar stream"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "verify read the bomb: {:?}", t.elapsed());

    // The signed head names kubeadm with its real size; its header declares 2 GiB (and a whole-archive
    // signature by the trusted key over other bytes lies beside it): refused from the header alone.
    let mut e = entries.clone();
    let k = e.iter().position(|x| x.path_str() == "files/bin/kubeadm").unwrap();
    e[k].data = vec![0u8; 4096];
    let b = write_bundle(&fx, "bigfile", &e);
    patch_declared_size(&b, "files/bin/kubeadm", two_gib);
    std::fs::copy(good.with_extension("zst.minisig"), fx.path().join("bigfile.tar.zst.minisig")).unwrap();
    let errs = refused_past_the_head(&fx, &site, &b, &["entry files/bin/kubeadm declares 2147483648 bytes, but the signed airgap.json says 50000"]);
    assert!(errs.len() >= 5);
    let _ = root;
}

#[test]
fn a_blob_named_for_another_digest_is_refused_even_when_signed() {
    let fx = Fixture::new();
    let (good, entries, root) = parts(&fx);
    let site = Site::new(&fx, &good);
    // rename the small layer's entry to the config's name: SHA256SUMS (rewritten, signed) lists the renamed
    // path with the layer's true digest
    let mut e = entries.clone();
    let blob_paths: Vec<String> =
        e.iter().map(|x| x.path_str()).filter(|p| p.starts_with("images/blobs/sha256/")).collect();
    let victim = e.iter().position(|x| x.data == b"small layer\n").unwrap();
    let old_path = e[victim].path_str();
    let true_hex = old_path.rsplit('/').next().unwrap().to_string();
    let other_hex = blob_paths.iter().find(|p| **p != old_path).unwrap().rsplit('/').next().unwrap().to_string();
    let fake = "f".repeat(64);
    let new_path = format!("images/blobs/sha256/{fake}");
    e[victim].path = new_path.clone().into_bytes();
    let sums = String::from_utf8(e[2].data.clone()).unwrap().replace(&format!("  {old_path}"), &format!("  {new_path}"));
    let mut lines: Vec<&str> = sums.lines().collect();
    lines.sort_by_key(|l| l.split_once("  ").unwrap().1);
    let sums = lines.join("\n") + "\n";
    e[2].data = sums.clone().into_bytes();
    let mut r = root.clone();
    r["sha256sums"] = airgap::digest::Digest::of_bytes(sums.as_bytes()).hex().into();
    let size = r["sizes"].as_object_mut().unwrap().remove(&old_path).unwrap();
    r["sizes"][&new_path] = size;
    r["sizes"]["SHA256SUMS"] = sums.len().into();
    let e = with_signed_root(&fx, &e, &r);
    let b = write_bundle(&fx, "renamed-blob", &e);
    let errs = refused_past_the_head(&fx, &site, &b, &["a blob's name must be its digest"]);
    assert!(errs[0].contains(&format!("has digest sha256:{true_hex}")), "{}", errs[0]);
    let _ = other_hex;
}

/// Sign a crafted file's whole archive with the fixture's key (the `.minisig` beside it).
fn craft_sig(fx: &Fixture, archive: &Path) {
    airgap::sign::sign_file(&fx.sk(), archive, "airgap bundle crafted").unwrap();
}

/// Rewrite the tar header of `path` inside a crafted archive to declare `size` (checksum fixed), re-compress.
fn patch_declared_size(archive: &Path, path: &str, size: u64) {
    let raw = zstd::decode_all(std::fs::File::open(archive).unwrap()).unwrap();
    let mut out = raw.clone();
    let mut off = 0;
    while off + 512 <= raw.len() {
        let h = tar::Header::from_byte_slice(&raw[off..off + 512]);
        if h.as_bytes().iter().all(|b| *b == 0) {
            break;
        }
        let n = h.entry_size().unwrap();
        if h.path_bytes().as_ref() == path.as_bytes() {
            let mut h2 = h.clone();
            h2.set_size(size);
            h2.set_cksum();
            out[off..off + 512].copy_from_slice(h2.as_bytes());
            out.truncate(off + 512 + n as usize);
            break;
        }
        off += 512 + (n as usize).div_ceil(512) * 512;
    }
    std::fs::write(archive, zstd::encode_all(&out[..], 3).unwrap()).unwrap();
}
