//! Manifest rejections: every error names the file and line (insta snapshots of the CLI's stderr).

use crate::support::airgap_bin;
use std::process::Command;

const H: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// Run `airgap build manifest.yaml` in a temp dir (relative paths keep snapshots stable); returns (code, stderr).
fn build_with(manifest: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("manifest.yaml"), manifest).unwrap();
    let out = Command::new(airgap_bin())
        .current_dir(dir.path())
        .args(["build", "manifest.yaml", "--out", "out", "--key", "missing.key", "--cache-dir", "cache", "--color", "never"])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(!dir.path().join("out").exists(), "a rejected manifest must write nothing");
    (out.status.code().unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn rejected(manifest: &str) -> String {
    let (code, stderr) = build_with(manifest);
    assert_eq!(code, 1, "{stderr}");
    stderr
}

#[test]
fn unknown_field_names_line_and_column() {
    let m = format!("name: demo\nversion: '1'\nfiles:\n  - url: http://127.0.0.1:1/a\n    sha265: {H}\n    path: a\n");
    insta::assert_snapshot!(rejected(&m));
}

#[test]
fn unknown_top_level_field() {
    insta::assert_snapshot!(rejected("name: demo\nversion: '1'\nimage:\n  - nginx\n"));
}

#[test]
fn bad_image_reference_names_line() {
    let m = "name: demo\nversion: '1'\nimages:\n  - nginx:1.27\n  # a comment\n  - Registry.example/UPPER:tag\n";
    insta::assert_snapshot!(rejected(m));
}

#[test]
fn bad_image_digest_names_line() {
    let m = "name: demo\nversion: '1'\nimages:\n  - nginx@sha256:1234\n";
    insta::assert_snapshot!(rejected(m));
}

#[test]
fn missing_sha256_names_line() {
    let m = format!("name: demo\nversion: '1'\nfiles:\n  - url: http://127.0.0.1:1/a\n    sha256: {H}\n    path: a\n  - url: http://127.0.0.1:1/b\n    path: b\n");
    insta::assert_snapshot!(rejected(&m));
}

#[test]
fn malformed_sha256_names_line() {
    let m = "name: demo\nversion: '1'\nfiles:\n  - url: http://127.0.0.1:1/a\n    path: a\n    sha256: abc123\n";
    insta::assert_snapshot!(rejected(m));
}

#[test]
fn duplicate_path_names_line() {
    let m = format!("name: demo\nversion: '1'\nfiles:\n  - url: http://127.0.0.1:1/a\n    sha256: {H}\n    path: bin/x\n  - url: http://127.0.0.1:1/b\n    sha256: {H}\n    path: bin//x\n");
    insta::assert_snapshot!(rejected(&m));
}

#[test]
fn dotdot_path_names_line() {
    let m = format!("name: demo\nversion: '1'\nfiles:\n  - url: http://127.0.0.1:1/a\n    sha256: {H}\n    path: ../../etc/cron.d/x\n");
    insta::assert_snapshot!(rejected(&m));
}

#[test]
fn absolute_path_names_line() {
    let m = format!("name: demo\nversion: '1'\nfiles:\n  - url: http://127.0.0.1:1/a\n    sha256: {H}\n    path: /etc/passwd\n");
    insta::assert_snapshot!(rejected(&m));
}

#[test]
fn bad_platform_names_line() {
    let m = "name: demo\nversion: '1'\nplatforms:\n  - linux/amd64\n  - linux\nimages:\n  - nginx\n";
    insta::assert_snapshot!(rejected(m));
}

#[test]
fn per_platform_url_needs_placeholder_in_path() {
    let m = "name: demo\nversion: '1'\nplatforms: [linux/amd64, linux/arm64]\nfiles:\n  - url: http://127.0.0.1:1/{arch}/kubectl\n    sha256_url: http://127.0.0.1:1/{arch}/kubectl.sha256\n    path: bin/kubectl\n";
    insta::assert_snapshot!(rejected(m));
}

#[test]
fn package_without_sha256_and_bad_mode() {
    let m = "name: demo\nversion: '1'\npackages:\n  - os: debian-12\n    url: http://127.0.0.1:1/pool/k/keepalived_2.2.7-1_amd64.deb\n";
    insta::assert_snapshot!(rejected(m));
    let m = format!("name: demo\nversion: '1'\nfiles:\n  - url: http://127.0.0.1:1/a\n    sha256: {H}\n    path: a\n    mode: '0777'\n");
    insta::assert_snapshot!("bad_mode", rejected(&m));
}

#[test]
fn yaml_syntax_error_names_line() {
    insta::assert_snapshot!(rejected("name: demo\nversion: '1'\nimages:\n  - nginx\n bad indent: [\n"));
}

#[test]
fn valid_manifest_gets_past_parsing() {
    // A valid manifest fails later, on the missing key: proves the parser accepted it.
    let m = format!("name: demo\nversion: 1.0.0-1\nplatforms: [linux/amd64, linux/arm/v7]\nimages:\n  - nginx\n  - 127.0.0.1:5000/a/b:1@sha256:{H}\nfiles:\n  - url: http://127.0.0.1:1/x/{{arch}}/k\n    sha256_url: http://127.0.0.1:1/x/{{arch}}/k.sha256\n    path: bin/{{platform}}/k\n    executable: true\npackages:\n  - os: el7\n    url: http://127.0.0.1:1/haproxy-1.5.18-9.el7.x86_64.rpm\n    sha256: {H}\n");
    let (code, stderr) = build_with(&m);
    assert_eq!(code, 1);
    assert!(stderr.contains("failed to read the secret key"), "{stderr}");
}

#[test]
fn sample_manifests_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let m = airgap::build::manifest::load(&root.join("manifests/k8s-ha.yaml")).unwrap();
    assert_eq!(m.images.len(), 14);
    assert_eq!(m.images[0].normalized(), "registry.k8s.io/kube-apiserver:v1.31.4");
    assert_eq!(m.files.len(), 15, "6 per-platform files x 2 platforms + the NFS provisioner's 3 manifests");
    assert_eq!(m.files[14].path, "manifests/nfs-subdir-external-provisioner/class.yaml");
    assert_eq!(m.files[1].path, "bin/linux-arm64/kubeadm");
    assert_eq!(m.packages[2].path, "packages/el7/keepalived-1.3.5-19.el7.x86_64.rpm");
    let text = fs_err::read_to_string(root.join("manifests/demo.yaml")).unwrap().replace("@REGISTRY@", "127.0.0.1:5000").replace("@FILES@", "http://127.0.0.1:8000");
    let m = airgap::build::manifest::parse(&text, "demo.yaml").unwrap();
    assert_eq!(m.files[0].url, "http://127.0.0.1:8000/kubectl-amd64");
}
