//! Unit tests of the manifest parser.

use super::*;

const H: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[test]
fn expands_per_platform_files() {
    let text = format!("name: a\nversion: '1'\nplatforms: [linux/amd64, linux/arm/v7]\nfiles:\n  - url: http://h/{{arch}}/k\n    sha256_url: http://h/{{arch}}/k.sha256\n    path: bin/{{platform}}/k\n    executable: true\n  - url: http://h/x\n    sha256: {H}\n    path: x\n");
    let m = parse(&text, "m.yaml").unwrap();
    assert_eq!(m.files.len(), 3);
    assert_eq!(m.files[1].path, "bin/linux-arm-v7/k");
    assert_eq!(m.files[1].checksum, Checksum::Url("http://h/arm/k.sha256".into()));
    assert_eq!(m.files[0].mode, 0o755);
    assert_eq!(m.files[2].mode, 0o644);
}

#[test]
fn install_marks_components_per_platform() {
    let head = "name: a\nversion: '1'\nplatforms: [linux/amd64, linux/arm64]\nfiles:\n";
    let cd = "  - url: http://h/containerd-{arch}.tgz\n    sha256_url: http://h/c-{arch}.sha256\n    path: a/{arch}/c.tgz\n    install: containerd\n";
    let runc = |arch: &str| format!("  - url: http://h/runc.{arch}\n    sha256: {H}\n    path: bin/{arch}/runc\n    platform: linux/{arch}\n    install: runc\n");
    let m = parse(&format!("{head}{cd}{}{}", runc("amd64"), runc("arm64")), "m.yaml").unwrap();
    let got: Vec<(Option<Component>, Option<&str>)> = m.files.iter().map(|f| (f.install, f.platform.as_deref())).collect();
    assert_eq!(
        got,
        [
            (Some(Component::Containerd), Some("linux/amd64")),
            (Some(Component::Containerd), Some("linux/arm64")),
            (Some(Component::Runc), Some("linux/amd64")),
            (Some(Component::Runc), Some("linux/arm64")),
        ]
    );
    let err = |text: String| format!("{:#}", parse(&text, "m.yaml").unwrap_err());
    // runc only for amd64: arm64 nodes would have none
    let e = err(format!("{head}{}", runc("amd64")));
    assert!(e.contains("m.yaml:9") && e.contains("runc has no file for linux/arm64"), "{e}");
    // the same component twice for one platform
    let e = err(format!("{head}{}{}", runc("amd64"), runc("amd64").replace("bin/amd64", "bin/x")));
    assert!(e.contains("runc is already installed from \"bin/amd64/runc\" (linux/amd64)"), "{e}");
    // unknown component, unknown platform
    let e = err(format!("{head}  - url: http://h/d\n    sha256: {H}\n    path: d\n    install: docker\n"));
    assert!(e.contains("m.yaml:8") && e.contains("unknown component \"docker\"") && e.contains("cni-plugins"), "{e}");
    let e = err(format!("{head}{}", runc("amd64").replace("platform: linux/amd64", "platform: linux/s390x")));
    assert!(e.contains("platform linux/s390x is not in the bundle's platforms"), "{e}");
}

#[test]
fn kubernetes_section_and_manifest_roles() {
    let head = "name: a\nversion: '1'\nkubernetes:\n  version: v1.36.3\nfiles:\n";
    let file = |role: &str, path: &str| format!("  - url: http://h/{path}\n    sha256: {H}\n    path: {path}\n    manifest: {role}\n");
    let m = parse(&format!("{head}{}{}", file("flannel", "f.yml"), file("other", "o.yml")), "m.yaml").unwrap();
    assert_eq!(m.kubernetes, Some(KubernetesSpec { version: Version::new(1, 36, 3), line: 4 }));
    assert_eq!(m.files[0].manifest, Some(ManifestRole::Flannel));
    assert_eq!((m.files[1].manifest, m.files[1].line), (Some(ManifestRole::Other), 10));
    let err = |text: String| format!("{:#}", parse(&text, "m.yaml").unwrap_err());
    let e = err(head.replace("v1.36.3", "v1.99.0"));
    assert!(e.starts_with("m.yaml:4: ") && e.contains("not supported by airgap's table of kubeadm images"), "{e}");
    let e = err(head.replace("v1.36.3", "1.36.3"));
    assert!(e.starts_with("m.yaml:4: ") && e.contains("release tag: v1.36.3"), "{e}");
    let e = err(head.replace("v1.36.3", "latest"));
    assert!(e.starts_with("m.yaml:4: ") && e.contains("not a Kubernetes version"), "{e}");
    let e = err(format!("{head}{}{}", file("flannel", "f.yml"), file("flannel", "g.yml")));
    assert!(e.starts_with("m.yaml:13: ") && e.contains("the flannel manifest is already \"f.yml\""), "{e}");
    let e = err(format!("{head}{}", file("cni", "f.yml")));
    assert!(e.starts_with("m.yaml:9: ") && e.contains("unknown manifest role \"cni\"") && e.contains("flannel, ingress, storage, other"), "{e}");
    let e = err(format!("{head}  - url: http://h/{{arch}}/f.yml\n    sha256_url: http://h/{{arch}}/f.sha256\n    path: \"{{arch}}/f.yml\"\n    manifest: ingress\n"));
    assert!(e.contains("one file for every platform"), "{e}");
}

#[test]
fn package_names_and_paths() {
    assert_eq!(guess_package_name("keepalived_2.2.7-1+b2_amd64.deb"), "keepalived");
    assert_eq!(guess_package_name("haproxy-1.5.18-9.el7.x86_64.rpm"), "haproxy");
    assert_eq!(url_file_name("http://m/pool/a_1.deb?x=1"), Some("a_1.deb".into()));
    assert_eq!(url_file_name("http://m/pool/"), None);
}
