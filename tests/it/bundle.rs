//! Bundle format: writer, reader, signatures, and the keygen / verify / inspect / unpack commands, checked
//! with the real binary and stock tools (minisign, sha256sum, zstd, tar).

use crate::support::bundle::{airgap, craft, entries_of, run, Fixture, RawEntry};
use std::path::Path;
use std::process::Command;

fn stock(cmd: &str, args: &[&str], dir: &Path) -> (i32, String, String) {
    run(Command::new(cmd).args(args).current_dir(dir))
}

fn verify_cmd(fx: &Fixture, bundle: &Path) -> (i32, String, String) {
    run(airgap().arg("verify").arg(bundle).arg("--pubkey").arg(&fx.public))
}

fn unpack_cmd(fx: &Fixture, bundle: &Path, to: &Path) -> (i32, String, String) {
    run(airgap().arg("unpack").arg(bundle).arg("--to").arg(to).arg("--pubkey").arg(&fx.public))
}

/// Replace temp paths and key IDs so error output can be snapshotted.
fn scrub(s: &str, fx: &Fixture) -> String {
    s.replace(&fx.path().display().to_string(), "[TMP]").replace(&fx.key_id, "[KEYID]")
}

/// Files in `dir` (names), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn bundle_roundtrip_with_stock_tools() {
    let fx = Fixture::new();
    let content = fx.content(300_000);
    let w = fx.write(&content, "out", None, 2);
    let dir = w.archive.parent().unwrap();
    assert_eq!(names(dir), ["testbundle-1.0.0.tar.zst", "testbundle-1.0.0.tar.zst.minisig"]);

    // The stock minisign tool accepts the signature.
    let (code, out, err) = stock("minisign", &["-Vm", "testbundle-1.0.0.tar.zst", "-p", fx.public.to_str().unwrap()], dir);
    assert_eq!(code, 0, "minisign rejected the signature: {out}{err}");
    assert!(out.contains("Trusted comment: airgap bundle testbundle 1.0.0 testbundle-1.0.0.tar.zst"), "{out}");

    // zstd + tar list the entries in the format's order.
    let (code, list, err) = run(Command::new("sh").arg("-c").arg("zstd -dc testbundle-1.0.0.tar.zst | tar -tv").current_dir(dir));
    assert_eq!(code, 0, "{err}");
    let paths: Vec<&str> = list.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(&paths[..5], ["airgap.json", "airgap.json.minisig", "SHA256SUMS", "images/oci-layout", "images/index.json"]);
    assert!(paths[5..9].iter().all(|p| p.starts_with("images/blobs/sha256/")), "{list}");
    let blobs = &paths[5..9];
    assert!(blobs.windows(2).all(|w| w[0] < w[1]), "blobs not sorted: {blobs:?}");
    assert!(paths[9..].iter().all(|p| p.starts_with("files/")), "{list}");
    assert!(list.lines().all(|l| l.contains("0/0") && l.contains("1970-01-01")), "headers not fixed:\n{list}");
    assert!(list.contains("-rwxr-xr-x 0/0") && list.contains("files/bin/kubeadm"), "{list}");

    // airgap verify.
    let (code, out, err) = verify_cmd(&fx, &w.archive);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("OK testbundle 1.0.0 is intact and signed by key {}", fx.key_id)), "{out}");
    assert!(out.contains("entries: 13"), "{out}");
    let (code, out, _) = run(airgap().arg("verify").arg(&w.archive).arg("--pubkey").arg(&fx.public).arg("--json"));
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["name"], "testbundle");
    assert_eq!(j["key_id"], fx.key_id.as_str());
    assert_eq!(j["entries"], 13);

    // airgap unpack, then sha256sum -c inside it; content and modes as given.
    let to = fx.path().join("unpacked");
    let (code, _, err) = unpack_cmd(&fx, &w.archive, &to);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = stock("sha256sum", &["-c", "--strict", "SHA256SUMS"], &to);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 10, "{out}");
    // ...and the stock minisign tool checks the root document's own signature there.
    let (code, out, err) = stock("minisign", &["-Vm", "airgap.json", "-p", fx.public.to_str().unwrap()], &to);
    assert_eq!(code, 0, "minisign rejected the root document's signature: {out}{err}");
    assert!(out.contains("Trusted comment: airgap root document testbundle 1.0.0"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    for f in &content.files {
        let p = to.join("files").join(&f.path);
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&f.source).unwrap(), "{}", f.path);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, f.mode, "{}", f.path);
    }
    let root: airgap::bundle::format::RootDoc =
        serde_json::from_slice(&std::fs::read(to.join("airgap.json")).unwrap()).unwrap();
    assert_eq!(root.name, "testbundle");
    assert_eq!(std::fs::read(to.join("images/oci-layout")).unwrap(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    // Nothing left beside the target.
    assert_eq!(names(fx.path()), ["cache", "keys", "out", "unpacked"]);
    // Unpacking again into the now non-empty dir is refused.
    let (code, _, err) = unpack_cmd(&fx, &w.archive, &to);
    assert_eq!(code, 1);
    assert!(err.contains("already exists and is not an empty directory"), "{err}");
}

#[test]
fn bundle_is_reproducible_across_runs_and_worker_counts() {
    let fx = Fixture::new();
    let content = fx.content(2_000_000);
    let a = fx.write(&content, "a", None, 1);
    let b = fx.write(&content, "b", None, 4);
    let c = fx.write(&content, "c", None, 2);
    let bytes = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(bytes(&a.archive), bytes(&b.archive), "archive differs between 1 and 4 zstd workers");
    assert_eq!(bytes(&a.archive), bytes(&c.archive));
    assert_eq!(bytes(&a.signature), bytes(&b.signature), "signature not deterministic");
    assert_eq!(a.sha256, airgap::digest::Digest::of_file(&a.archive).unwrap().0);
    // Rewriting into the same directory replaces the bundle with identical bytes.
    let again = fx.write(&content, "a", None, 2);
    assert_eq!(bytes(&again.archive), bytes(&b.archive));
    assert_eq!(names(a.archive.parent().unwrap()).len(), 2, "stale files in the output dir");
}

#[test]
fn bundle_split_parts_with_stock_tools() {
    let fx = Fixture::new();
    let content = fx.content(300_000);
    let whole = fx.write(&content, "whole", None, 2);
    let split = fx.write(&content, "split", Some(100_000), 2);
    let dir = split.archive.parent().unwrap();
    assert!(split.parts.len() >= 4, "{:?}", split.parts);
    assert!(!split.archive.exists());
    for p in &split.parts {
        assert!(std::fs::metadata(p).unwrap().len() <= 100_000);
    }
    assert_eq!(split.sha256, whole.sha256);
    // sha256sum -c on the parts list, minisign on the list.
    let (code, out, err) = stock("sha256sum", &["-c", "testbundle-1.0.0.tar.zst.parts"], dir);
    assert_eq!(code, 0, "{out}{err}");
    let pubkey = fx.public.to_str().unwrap();
    let (code, out, err) = stock("minisign", &["-Vm", "testbundle-1.0.0.tar.zst.parts", "-p", pubkey], dir);
    assert_eq!(code, 0, "{out}{err}");
    // every published file is 0644, the parts list and its signature too (they were tempfile's 0600)
    use std::os::unix::fs::PermissionsExt;
    for name in ["testbundle-1.0.0.tar.zst.parts", "testbundle-1.0.0.tar.zst.parts.minisig", "testbundle-1.0.0.tar.zst.minisig"] {
        let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{name}");
    }
    // cat parts > whole gives the unsplit archive, and the whole signature verifies it.
    let (code, _, err) = run(Command::new("sh")
        .arg("-c")
        .arg("cat testbundle-1.0.0.tar.zst.[0-9][0-9][0-9] > joined.tar.zst")
        .current_dir(dir));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(dir.join("joined.tar.zst")).unwrap(), std::fs::read(&whole.archive).unwrap());
    let (code, out, err) = stock(
        "minisign",
        &["-Vm", "joined.tar.zst", "-x", "testbundle-1.0.0.tar.zst.minisig", "-p", pubkey],
        dir,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read(&split.signature).unwrap(), std::fs::read(&whole.signature).unwrap());
    std::fs::remove_file(dir.join("joined.tar.zst")).unwrap();

    // airgap reads the parts by the first part, by the base name, and unpacks them.
    let (code, _, err) = verify_cmd(&fx, &split.parts[0]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = verify_cmd(&fx, &split.archive);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("in {} parts", split.parts.len())), "{out}");
    let to = fx.path().join("from-parts");
    let (code, _, err) = unpack_cmd(&fx, &split.parts[0], &to);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = stock("sha256sum", &["-c", "SHA256SUMS"], &to);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn bundle_damaged_and_missing_parts_are_named() {
    let fx = Fixture::new();
    let content = fx.content(300_000);
    let split = fx.write(&content, "split", Some(100_000), 2);
    // Damage part 002 in its middle.
    let p2 = &split.parts[2];
    let mut data = std::fs::read(p2).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(p2, &data).unwrap();
    let (code, _, err) = verify_cmd(&fx, &split.parts[0]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("part testbundle-1.0.0.tar.zst.002 is damaged: sha256 "), "{err}");
    let to = fx.path().join("u");
    let (code, _, err) = unpack_cmd(&fx, &split.parts[0], &to);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("part testbundle-1.0.0.tar.zst.002 is damaged"), "{err}");
    assert!(!to.exists());
    assert_eq!(names(fx.path()), ["cache", "keys", "split"], "unpack left something behind");

    // A missing part.
    data[mid] ^= 0x55;
    std::fs::write(p2, &data).unwrap();
    std::fs::remove_file(&split.parts[3]).unwrap();
    let (code, _, err) = verify_cmd(&fx, &split.parts[0]);
    assert_eq!(code, 1);
    assert!(err.contains("part testbundle-1.0.0.tar.zst.003 is missing"), "{err}");
    insta::assert_snapshot!("missing_part", scrub(&err, &fx));
}

#[test]
fn bundle_wrong_key_and_missing_signature() {
    let fx = Fixture::new();
    let other = Fixture::new();
    let w = fx.write(&fx.content(10_000), "out", None, 2);
    let (code, _, err) = run(airgap().arg("verify").arg(&w.archive).arg("--pubkey").arg(&other.public));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("is signed by key ID {}, but the public key given is {}", fx.key_id, other.key_id)),
        "{err}"
    );
    let to = fx.path().join("u");
    let (code, _, err) = run(airgap().arg("unpack").arg(&w.archive).arg("--to").arg(&to).arg("--pubkey").arg(&other.public));
    assert_eq!(code, 1);
    assert!(err.contains("but the public key given is"), "{err}");
    assert!(!to.exists());
    assert_eq!(names(fx.path()), ["cache", "keys", "out"]);
    let scrubbed = scrub(&err, &fx).replace(&other.key_id, "[OTHERKEYID]");
    insta::assert_snapshot!("wrong_key_unpack", scrubbed);

    std::fs::remove_file(&w.signature).unwrap();
    let (code, _, err) = verify_cmd(&fx, &w.archive);
    assert_eq!(code, 1);
    assert!(err.contains("testbundle-1.0.0.tar.zst.minisig is missing"), "{err}");
    assert!(err.contains("hint: copy testbundle-1.0.0.tar.zst.minisig"), "{err}");
    insta::assert_snapshot!("missing_signature", scrub(&err, &fx));
    let (code, _, err) = unpack_cmd(&fx, &w.archive, &to);
    assert_eq!(code, 1);
    assert!(err.contains("is missing"), "{err}");
    assert!(!to.exists());
}

#[test]
fn bundle_flipped_byte_and_truncation() {
    let fx = Fixture::new();
    let w = fx.write(&fx.content(300_000), "out", None, 2);
    let good = std::fs::read(&w.archive).unwrap();
    let bad = fx.path().join("out/bad.tar.zst");

    // A flipped byte in the middle of the archive (re-signed copy not possible: the signature is the original).
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&bad, &flipped).unwrap();
    std::fs::copy(&w.signature, fx.path().join("out/bad.tar.zst.minisig")).unwrap();
    let (code, _, err) = verify_cmd(&fx, &bad);
    assert_eq!(code, 1);
    // one pass: the damaged entry (or the zstd frame's checksum) is noticed before the archive's end
    assert!(err.contains(" is damaged") || err.contains("does not match its content"), "{err}");
    let to = fx.path().join("u");
    let (code, _, err) = unpack_cmd(&fx, &bad, &to);
    assert_eq!(code, 1);
    assert!(err.contains(" is damaged") || err.contains("does not match its content"), "{err}");
    assert!(!to.exists());

    // Truncated.
    std::fs::write(&bad, &good[..good.len() * 2 / 3]).unwrap();
    let (code, _, err) = unpack_cmd(&fx, &bad, &to);
    assert_eq!(code, 1);
    assert!(err.contains("the bundle bad.tar.zst is truncated"), "{err}");
    assert!(!to.exists());
    let (code, _, err) = verify_cmd(&fx, &bad);
    assert_eq!(code, 1);
    assert!(err.contains("the bundle bad.tar.zst is truncated"), "{err}");
    assert_eq!(names(fx.path()), ["cache", "keys", "out"], "unpack left something behind");
}

/// Build a crafted archive from the valid bundle's entries changed by `f`, signed with the right key, and
/// check that verify and unpack both reject it with `msg`.
fn reject(fx: &Fixture, label: &str, msg: &str, f: impl FnOnce(&mut Vec<RawEntry>)) -> String {
    let w = fx.write(&fx.content(20_000), "out", None, 2);
    let mut entries = entries_of(&w.archive);
    f(&mut entries);
    let bad = fx.path().join(format!("{label}.tar.zst"));
    craft(fx, &bad, &entries);
    let (code, _, err) = verify_cmd(fx, &bad);
    assert_eq!(code, 1, "{label}: verify accepted it");
    assert!(err.contains(msg), "{label}: verify said:\n{err}");
    let to = fx.path().join(format!("{label}-unpacked"));
    let (code, _, err) = unpack_cmd(fx, &bad, &to);
    assert_eq!(code, 1, "{label}: unpack accepted it");
    assert!(err.contains(msg), "{label}: unpack said:\n{err}");
    assert!(!to.exists(), "{label}: unpack left the target");
    let leftovers: Vec<String> = names(fx.path()).into_iter().filter(|n| n.contains("unpacked")).collect();
    assert!(leftovers.is_empty(), "{label}: left {leftovers:?}");
    assert!(!fx.path().join("evil").exists() && !Path::new("/tmp/airgap-evil").exists(), "{label}: wrote outside");
    err
}

#[test]
fn bundle_rejects_tampered_archives() {
    let fx = Fixture::new();
    // The crafted copy of a valid bundle is accepted (so the rejections below are each about one change).
    let ok = reject_none(&fx);
    assert!(ok.contains("OK testbundle"), "{ok}");

    reject(&fx, "missing", "missing entry files/manifests/flannel.yaml", |e| {
        e.retain(|x| x.path_str() != "files/manifests/flannel.yaml")
    });
    reject(&fx, "extra", "unexpected entry \"files/extra.sh\": it is not listed in SHA256SUMS", |e| {
        e.push(RawEntry::file("files/extra.sh", b"rm -rf /\n"))
    });
    reject(&fx, "duplicate", "duplicate entry files/bin/kubeadm", |e| {
        let d = e.iter().find(|x| x.path_str() == "files/bin/kubeadm").unwrap().clone();
        e.push(d)
    });
    let err = reject(&fx, "dotdot", "entry \"../evil\" has an unsafe path", |e| e.insert(5, RawEntry::file("../evil", b"x")));
    insta::assert_snapshot!("dotdot_entry", scrub(&err, &fx));
    reject(&fx, "absolute", "entry \"/tmp/airgap-evil\" has an unsafe path", |e| {
        e.insert(5, RawEntry::file("/tmp/airgap-evil", b"x"))
    });
    reject(&fx, "symlink", "entry \"files/evil\" is a symbolic link pointing outside the bundle (to \"../../../etc/passwd\")", |e| {
        e.insert(5, RawEntry::link("files/evil", tar::EntryType::Symlink, "../../../etc/passwd"))
    });
    reject(&fx, "hardlink", "entry \"files/hl\" is a hard link (to \"files/bin/kubeadm\")", |e| {
        e.insert(5, RawEntry::link("files/hl", tar::EntryType::Link, "files/bin/kubeadm"))
    });
    reject(&fx, "damaged-entry", "entry files/manifests/flannel.yaml is damaged: sha256 ", |e| {
        let x = e.iter_mut().find(|x| x.path_str() == "files/manifests/flannel.yaml").unwrap();
        assert_eq!(x.data.len(), 16);
        x.data = b"kind: Deploymen\n".to_vec();
    });
    reject(&fx, "sums-changed", "entry SHA256SUMS declares ", |e| {
        e[2].data.push(b'\n')
    });
    reject(&fx, "sums-same-size", "entry SHA256SUMS is damaged", |e| e[2].data[0] ^= 1);
    reject(&fx, "root-not-first", "its first entry is \"airgap.json.minisig\", not airgap.json", |e| e.swap(0, 1));
    reject(&fx, "root-unsigned", "its second entry is \"SHA256SUMS\", not airgap.json.minisig", |e| {
        e.remove(1);
    });
    reject(&fx, "root-edited", "its root document's signature does not verify", |e| {
        e[0].data = String::from_utf8(e[0].data.clone()).unwrap().replace("testbundle", "tampered").into_bytes()
    });
    reject(&fx, "size-changed", "entry files/bin/kubeadm declares 4 bytes, but the signed airgap.json says", |e| {
        e.iter_mut().find(|x| x.path_str() == "files/bin/kubeadm").unwrap().data = b"evil".to_vec()
    });
}

/// The crafted, re-signed copy of a valid bundle verifies: returns verify's stdout.
fn reject_none(fx: &Fixture) -> String {
    let w = fx.write(&fx.content(20_000), "out", None, 2);
    let entries = entries_of(&w.archive);
    let same = fx.path().join("same.tar.zst");
    craft(fx, &same, &entries);
    let (code, out, err) = verify_cmd(fx, &same);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_file(&same).unwrap();
    std::fs::remove_file(fx.path().join("same.tar.zst.minisig")).unwrap();
    out
}

#[test]
fn bundle_inspect_output() {
    let fx = Fixture::new();
    let w = fx.write(&fx.content(20_000), "out", Some(10_000), 2);
    let (code, out, err) = run(airgap().arg("inspect").arg(&w.parts[0]).arg("--pubkey").arg(&fx.public));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("checked the signed root document only"), "{err}");
    insta::assert_snapshot!("inspect_human", scrub(&out, &fx));
    let (code, out, _) = run(airgap().arg("inspect").arg(&w.archive).arg("--json").arg("--pubkey").arg(&fx.public));
    assert_eq!(code, 0);
    let mut j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["root_signature_verified"], true);
    assert_eq!(j["entries_verified"], false);
    assert_eq!(j["signature"]["key_id"], fx.key_id.as_str());
    // the sizes are the files' (the last part's varies by a few bytes with the fixture's random key: its
    // signatures are in the archive and compress differently), so they are checked here, not snapshotted
    let on_disk = |name: &str| std::fs::metadata(w.archive.parent().unwrap().join(name)).unwrap().len();
    let parts = j["archive"]["parts"].as_array_mut().unwrap();
    let mut total = 0;
    for p in parts.iter_mut() {
        assert_eq!(p["size"].as_u64().unwrap(), on_disk(p["name"].as_str().unwrap()), "{p}");
        total += p["size"].as_u64().unwrap();
    }
    parts.last_mut().unwrap()["size"] = "[size of the last part]".into();
    assert_eq!(j["archive"]["size"].as_u64(), Some(total));
    j["archive"]["size"] = "[size]".into();
    insta::assert_snapshot!("inspect_json", scrub(&serde_json::to_string_pretty(&j).unwrap(), &fx));
    // inspect shows nothing of a bundle its key did not sign
    let other = Fixture::new();
    let (code, bad_out, err) = run(airgap().arg("inspect").arg(&w.archive).arg("--pubkey").arg(&other.public));
    assert_eq!(code, 1);
    assert!(bad_out.is_empty(), "{bad_out}");
    assert!(err.contains("is signed by key ID"), "{err}");

}

#[test]
fn bundle_write_rejects_corrupted_cache_and_leaves_nothing() {
    let fx = Fixture::new();
    let content = fx.content(20_000);
    let victim = content.files.iter().find(|f| f.path == "bin/kubeadm").unwrap().source.clone();
    let mut data = std::fs::read(&victim).unwrap();
    data[100] ^= 1;
    std::fs::write(&victim, &data).unwrap();
    let opts = airgap::bundle::write::WriteOptions { out_dir: fx.path().join("out"), split_size: None, zstd_workers: 2 };
    let err = airgap::bundle::write::write_bundle(&content, &fx.sk(), &opts).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("{} is corrupted", victim.display())), "{msg}");
    assert!(names(&fx.path().join("out")).is_empty(), "a failed build left files");
}

#[test]
fn keygen_command() {
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("k");
    let (code, out, err) = run(airgap().arg("keygen").arg("--out-dir").arg(&keys));
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    assert_eq!(id.len(), 16, "{out}");
    assert!(std::fs::read_to_string(keys.join("airgap.pub")).unwrap().contains(&id));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(keys.join("airgap.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(keys.join("airgap.key")).unwrap();
    let (code, _, err) = run(airgap().arg("keygen").arg("--out-dir").arg(&keys));
    assert_eq!(code, 1);
    assert!(err.contains("refusing to overwrite an existing key"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(before, std::fs::read(keys.join("airgap.key")).unwrap());

    // With a password file: the key is encrypted, and loads only with the password (never prompts).
    let pw = d.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let enc = d.path().join("enc");
    let (code, _, err) = run(airgap().arg("keygen").arg("--out-dir").arg(&enc).arg("--password-file").arg(&pw));
    assert_eq!(code, 0, "{err}");
    assert!(airgap::sign::load_secret_key(&enc.join("airgap.key"), None).is_err());
    assert!(airgap::sign::load_secret_key(&enc.join("airgap.key"), Some("correct horse")).is_ok());
    // The stock minisign tool signs with it and our public key verifies it.
    let data = d.path().join("data");
    std::fs::write(&data, b"payload").unwrap();
    let (code, out, err) = run(Command::new("sh").arg("-c").arg(format!(
        "printf 'correct horse\\n' | minisign -S -s {} -m {} && minisign -Vm {} -p {}",
        enc.join("airgap.key").display(),
        data.display(),
        data.display(),
        enc.join("airgap.pub").display()
    )));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn bundle_unpacks_into_an_empty_existing_dir_only() {
    let fx = Fixture::new();
    let w = fx.write(&fx.content(10_000), "out", None, 2);
    let to = fx.path().join("empty");
    std::fs::create_dir(&to).unwrap();
    let (code, _, err) = unpack_cmd(&fx, &w.archive, &to);
    assert_eq!(code, 0, "{err}");
    assert!(to.join("files/bin/kubeadm").is_file());
    // A file in the way is refused and left alone.
    let file = fx.path().join("afile");
    std::fs::write(&file, b"keep").unwrap();
    let (code, _, err) = unpack_cmd(&fx, &w.archive, &file);
    assert_eq!(code, 1);
    assert!(err.contains("already exists and is not an empty directory"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}

/// Peak RSS (KiB) of a command (which must succeed unless `expect_fail`), measured by GNU time.
pub(crate) fn peak_rss_kib_of(cmd: &mut Command, expect_fail: bool) -> u64 {
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-f").arg("PEAK_RSS_KIB=%M").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let (code, _, err) = run(&mut timed);
    assert_eq!(code != 0, expect_fail, "{err}");
    let line = err.lines().find_map(|l| l.strip_prefix("PEAK_RSS_KIB=")).expect("no RSS from /usr/bin/time");
    line.trim().parse().unwrap()
}

fn peak_rss_kib(cmd: &mut Command) -> u64 {
    peak_rss_kib_of(cmd, false)
}

#[test]
fn bundle_memory_stays_flat_for_a_large_layer() {
    // A 48 MiB incompressible layer: a reader holding a blob (or the archive) in memory would show it.
    let fx = Fixture::new();
    let w = fx.write(&fx.content(48 << 20), "out", None, 2);
    assert!(std::fs::metadata(&w.archive).unwrap().len() > 48 << 20);
    let verify = peak_rss_kib(airgap().arg("--quiet").arg("verify").arg(&w.archive).arg("--pubkey").arg(&fx.public));
    let to = fx.path().join("u");
    let unpack =
        peak_rss_kib(airgap().arg("--quiet").arg("unpack").arg(&w.archive).arg("--to").arg(&to).arg("--pubkey").arg(&fx.public));
    assert!(to.join("files/bin/kubeadm").is_file());
    assert!(verify < 32 * 1024, "verify peaked at {verify} KiB for a 48 MiB bundle");
    assert!(unpack < 32 * 1024, "unpack peaked at {unpack} KiB for a 48 MiB bundle");
}
