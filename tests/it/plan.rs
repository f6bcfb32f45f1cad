//! `airgap plan` on the documented example site (insta snapshots).

use super::support::{airgap, repo};

/// Replace what changes with every build (this binary's path, size and hash) and temp paths.
fn stable(text: &str, extra: &[(&str, &str)]) -> String {
    let exe = env!("CARGO_BIN_EXE_airgap");
    let (sha, size) = airgap::digest::Digest::of_file(std::path::Path::new(exe)).unwrap();
    let human = airgap::install::actions::human_size(size);
    let mut t = text
        .replace(exe, "[airgap]")
        .replace(sha.hex(), "[airgap-sha256]")
        .replace(
            &format!("({human}, sha256:[airgap-sha256])"),
            "([airgap-size], sha256:[airgap-sha256])",
        )
        .replace(&format!("\"size\": {size}"), "\"size\": \"[airgap-size]\"");
    for (a, b) in extra {
        t = t.replace(a, b);
    }
    t
}

#[test]
fn plan_text_for_the_example_site() {
    let out = airgap()
        .args(["plan", "--inventory"])
        .arg(repo().join("manifests/site.example.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!(stable(&String::from_utf8_lossy(&out.stdout), &[]));
}

#[test]
fn plan_json_with_a_bundle() {
    let d = tempfile::tempdir().unwrap();
    let bundle = d.path().join("site-1.31.4.tar.zst");
    std::fs::write(&bundle, vec![7u8; 1 << 20]).unwrap();
    std::fs::write(
        d.path().join("site-1.31.4.tar.zst.minisig"),
        b"untrusted comment: test\n",
    )
    .unwrap();
    let out = airgap()
        .args(["plan", "--json", "--only", "distribute", "--inventory"])
        .arg(repo().join("manifests/site.example.yaml"))
        .arg("--bundle")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // the bundle goes to worker1 and worker2 only; the binary everywhere
    let nodes = v["steps"][0]["nodes"].as_array().unwrap();
    let counts: Vec<(String, usize)> = nodes
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["actions"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(counts.iter().map(|c| c.1).collect::<Vec<_>>(), vec![1, 1, 1, 3, 3]);
    let dir = d.path().display().to_string();
    insta::assert_snapshot!(stable(&text, &[(&dir, "[tmp]")]));
}

#[test]
fn plan_rejects_an_unknown_step() {
    let out = airgap()
        .args(["plan", "--only", "no-such-step", "--inventory"])
        .arg(repo().join("manifests/site.example.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}
