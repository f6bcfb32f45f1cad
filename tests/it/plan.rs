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
        .replace(&format!("\"size\": {size}"), "\"size\": \"[airgap-size]\"")
        // without a bundle, only this binary lands under /opt/airgap (preflight's disk check)
        .replace(&format!("/opt/airgap ({human})"), "/opt/airgap ([airgap-size])");
    for (a, b) in extra {
        t = t.replace(a, b);
    }
    t
}

/// `kit/<64 hex>` as `kit/[root-sha256]`.
fn kit_hex(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("kit/") {
        let (head, tail) = rest.split_at(i + 4);
        out.push_str(head);
        if tail.len() >= 64 && tail[..64].bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("[root-sha256]");
            rest = &tail[64..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
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
    let fx = crate::support::bundle::Fixture::new();
    let w = fx.write(&fx.content(20_000), "out", None, 2);
    let out = airgap()
        .args(["plan", "--json", "--only", "distribute", "--inventory"])
        .arg(repo().join("manifests/site.example.yaml"))
        .arg("--bundle")
        .arg(&w.archive)
        .arg("--pubkey")
        .arg(&fx.public)
        .arg("--state-dir")
        .arg(fx.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // the kit is where `install --state-dir` extracts it (plan used to ignore --state-dir); it is keyed by the
    // sha256 of the root document, which names the fixture's temporary paths
    let text = kit_hex(&text);
    assert!(text.contains(&format!("from {}/state/kit/[root-sha256]/files/>", fx.path().display())), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // the bundle goes to worker1 and worker2 only (+ the public key); the binary everywhere; every node gets
    // its packages and components (placeholders: plan has no facts)
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
    assert_eq!(counts.iter().map(|c| c.1).collect::<Vec<_>>(), vec![2, 2, 2, 5, 5]);
    // the fixture's key is new on every run, and with it the bundle's and the signatures' bytes
    let dir = fx.path().display().to_string();
    let sha = |p: &std::path::Path| airgap::digest::Digest::of_file(p).unwrap().0.hex().to_string();
    let (bundle_sha, sig_sha, key_sha) = (sha(&w.archive), sha(&w.signature), sha(&fx.public));
    // and its compressed size by a few bytes
    let bundle_size = format!("\"size\": {}", std::fs::metadata(&w.archive).unwrap().len());
    insta::assert_snapshot!(stable(
        &text,
        &[
            (&dir, "[tmp]"),
            (&fx.key_id, "[KEYID]"),
            (&bundle_sha, "[bundle-sha256]"),
            (&sig_sha, "[signature-sha256]"),
            (&key_sha, "[pubkey-sha256]"),
            (&bundle_size, "\"size\": \"[bundle-size]\"")
        ]
    ));
}

#[test]
fn plan_refuses_a_bundle_it_cannot_verify() {
    let fx = crate::support::bundle::Fixture::new();
    let w = fx.write(&fx.content(20_000), "out", None, 2);
    let plan = |extra: &[&std::ffi::OsStr]| {
        airgap()
            .args(["plan", "--only", "distribute", "--inventory"])
            .arg(repo().join("manifests/site.example.yaml"))
            .arg("--bundle")
            .arg(&w.archive)
            .args(extra)
            .output()
            .unwrap()
    };
    // no --pubkey: nothing of the bundle is shown
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was given without --pubkey") && err.contains("hint: pass --pubkey"), "{err}");
    // another key
    let other = crate::support::bundle::Fixture::new();
    let out = plan(&["--pubkey".as_ref(), other.public.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is signed by key ID"), "{err}");
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

/// With the cluster secrets made (as the first install makes them in the state dir), the plan of the
/// Kubernetes steps shows the files holding them with `<secret>`, the CA pin (public), and no value.
#[test]
fn plan_masks_the_cluster_secrets() {
    let state = tempfile::tempdir().unwrap();
    let secrets = airgap::install::secrets::ClusterSecrets::load_or_create(state.path()).unwrap();
    for json in [false, true] {
        let mut c = airgap();
        c.args(["plan", "--only", "kubelet,kubeadm-init,kubeadm-join", "--inventory"])
            .arg(repo().join("manifests/site.example.yaml"))
            .arg("--state-dir")
            .arg(state.path());
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        for v in secrets.values() {
            assert!(!text.contains(&v), "the plan shows a secret:\n{text}");
        }
        assert!(text.contains("<secret>"), "{text}");
        assert!(text.contains(&secrets.ca.cert_hash().unwrap().to_string()), "{text}");
        assert!(json || text.contains("--skip-token-print --skip-certificate-key-print"), "{text}");
    }
}

#[test]
fn plan_refuses_a_bundle_for_another_kubernetes_than_the_inventorys() {
    let fx = crate::support::bundle::Fixture::new();
    let plan = |version: &str, out: &str| {
        let mut content = fx.content(1_000);
        content.root.kubernetes = Some(airgap::bundle::format::KubernetesEntry { version: version.into() });
        let w = fx.write(&content, out, None, 2);
        airgap()
            .args(["plan", "--only", "flannel", "--inventory"])
            .arg(repo().join("manifests/site.example.yaml"))
            .arg("--bundle")
            .arg(&w.archive)
            .arg("--pubkey")
            .arg(&fx.public)
            .arg("--state-dir")
            .arg(fx.path().join("state"))
            .output()
            .unwrap()
    };
    let out = plan("v1.35.2", "a");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: the inventory's cluster.kubernetes_version v1.36.5 is not the bundle's Kubernetes v1.35.2"), "{stderr}");
    assert!(stderr.contains("hint: set `kubernetes_version: v1.35.2` under `cluster:` in the inventory"), "{stderr}");
    // inspect shows the bundle's release
    let w = fx.write(&{
        let mut c = fx.content(1_000);
        c.root.kubernetes = Some(airgap::bundle::format::KubernetesEntry { version: "v1.35.2".into() });
        c
    }, "c", None, 2);
    let inspect = airgap().arg("inspect").arg(&w.archive).arg("--pubkey").arg(&fx.public).output().unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("kubernetes: v1.35.2"), "{}", String::from_utf8_lossy(&inspect.stderr));
    // the same release: the plan goes on (this bundle has no flannel manifest, and plan shows what is missing)
    let out = plan("v1.36.5", "b");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the bundle carries no flannel manifest"), "{stderr}");
}

/// master1's part of `plan --only runtime` with a bundle carrying `bundled`'s containerd.
fn runtime_plan_of_master1(bundled: crate::containerd_config::Bundled) -> String {
    let fx = crate::support::bundle::Fixture::new();
    let text = kit_hex(&crate::containerd_config::plan_runtime(&fx, bundled, false));
    let start = text.find("### master1 ").expect("master1 in the plan");
    let end = text[start..].find("\n### master2 ").map_or(text.len(), |i| start + i);
    stable(&text[start..end], &[(&fx.path().display().to_string(), "[tmp]")])
}

#[test]
fn plan_runtime_with_the_bundled_static_containerd_2_writes_config_version_3() {
    let text = runtime_plan_of_master1(crate::containerd_config::Bundled::Static2);
    assert!(text.contains("\nversion = 3\n"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn plan_runtime_with_debians_containerd_1_6_package_writes_config_version_2() {
    let text = runtime_plan_of_master1(crate::containerd_config::Bundled::Debian16);
    assert!(text.contains("\nversion = 2\n"), "{text}");
    insta::assert_snapshot!(text);
}
