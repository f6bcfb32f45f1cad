//! The image closure check of `airgap build` (every image a bundled Kubernetes manifest references, and
//! kubeadm's for `kubernetes.version`, must be in the bundle) against the real docker-registry and an HTTP file
//! server; and the shipped manifests: no placeholder anywhere in `manifests/`, `k8s-ha.yaml` parses and passes
//! the closure check offline with the upstream manifests it pins (their exact bytes, in tests/fixtures).

use crate::build::{failed, ok, Env};
use crate::support::fileserver::FileServer;
use crate::support::registry::{Mode, Registry};
use crate::support::run_ok;
use airgap::build::closure;
use airgap::build::manifest::{self, Checksum};
use airgap::digest::Digest;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A Deployment whose init container pins `multi` by digest and whose container wants `single`.
fn workload(reg: &str, md: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: web\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: init\n          image: {reg}/test/multi:1@{md}\n      containers:\n        - name: app\n          image: \"{reg}/test/single:3\"\n"
    )
}

#[test]
fn a_build_lacking_an_image_that_a_bundled_manifest_references_fails_naming_it() {
    let env = Env::new();
    let reg = Registry::start(Mode::Plain);
    env.push(&reg);
    let md = env.multi.digest.to_string();
    let app = workload(&reg.addr, &md);
    fs_err::create_dir_all(env.files.join("k8s")).unwrap();
    fs_err::write(env.files.join("k8s/app.yaml"), &app).unwrap();
    let fs = FileServer::start(&env.files);
    let manifest = |images: &[String], extra: &str| {
        let mut t = format!("name: closure\nversion: 1.0.0-1\n{extra}images:\n");
        for i in images {
            t.push_str(&format!("  - \"{i}\"\n"));
        }
        t.push_str(&format!(
            "files:\n  - url: http://{}/k8s/app.yaml\n    sha256: {}\n    path: manifests/app.yaml\n    manifest: other\n",
            fs.addr,
            Digest::of_bytes(app.as_bytes()).hex()
        ));
        let p = env.tmp.path().join("closure.yaml");
        fs_err::write(&p, t).unwrap();
        p
    };
    let multi_tag = format!("{}/test/multi:1", reg.addr);
    let single = format!("{}/test/single:3", reg.addr);
    let pinned = format!("{}/test/multi:1@{md}", reg.addr);
    let out = env.tmp.path().join("out");
    let cache = env.tmp.path().join("cache");
    let insecure = ["--insecure-registry", reg.addr.as_str()];

    // the tag of the digest-pinned image is not enough, and `single` is missing: both named, with file:line
    let m = manifest(std::slice::from_ref(&multi_tag), "");
    let err = failed(&env.build(&m, &out, &cache, &insecure));
    assert!(err.contains("closure.yaml: the bundle lacks 2 images that its contents need"), "{err}");
    assert!(err.contains(&format!("{pinned} (digest-pinned: list it with exactly this digest)\n    wanted by manifests/app.yaml:16 (Deployment web/app, container init), bundled by closure.yaml:6")), "{err}");
    assert!(err.contains(&format!("{single}\n    wanted by manifests/app.yaml:19 (Deployment web/app, container app), bundled by closure.yaml:6")), "{err}");
    assert!(err.contains("hint: add each reference, exactly as written, under `images:` in closure.yaml"), "{err}");
    assert!(!out.join("closure-1.0.0-1.tar.zst").exists(), "no bundle is written");

    // kubeadm's images for the bundle's Kubernetes are wanted too, named with the line of `kubernetes.version`
    let m = manifest(&[pinned.clone(), single.clone()], "kubernetes:\n  version: v1.36.5\n");
    let err = failed(&env.build(&m, &out, &cache, &insecure));
    assert!(err.contains("the bundle lacks 7 images"), "{err}");
    for r in ["kube-apiserver:v1.36.5", "kube-proxy:v1.36.5", "coredns/coredns:v1.14.2", "pause:3.10.2", "etcd:3.6.8-0"] {
        assert!(err.contains(&format!("registry.k8s.io/{r}\n    wanted by closure.yaml:4 (kubeadm v1.36.5)")), "{r}: {err}");
    }

    // with every image listed the build passes, and the root document says which file is a manifest
    let m = manifest(&[multi_tag, pinned, single], "");
    ok(&env.build(&m, &out, &cache, &insecure));
    let x = env.tmp.path().join("x");
    crate::build::extract_and_check(&out.join("closure-1.0.0-1.tar.zst"), &x);
    let doc: serde_json::Value = serde_json::from_slice(&fs_err::read(x.join("airgap.json")).unwrap()).unwrap();
    assert_eq!(doc["files"][0]["manifest"], "other");
    assert!(doc.get("kubernetes").is_none(), "no kubernetes section: none in the root document");
    let inspect = run_ok(Command::new(crate::support::airgap_bin()).arg("inspect").arg(out.join("closure-1.0.0-1.tar.zst")).arg("--pubkey").arg(&env.pubkey));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("(manifest: other)"));
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs_err::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_shipped_manifests_hold_no_placeholder_and_k8s_ha_passes_the_closure_check_offline() {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    files_under(&root.join("manifests"), &mut files);
    let zero = "0".repeat(64);
    for f in &files {
        let text = fs_err::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", f.display(), i + 1);
            assert!(!line.contains(&zero), "{at}: an all-zero sha256");
            for p in ["<mirror>", "<64 hex>", "<64 hex", "@REGISTRY@", "@FILES@", "XXXX", "TODO"] {
                assert!(!line.contains(p), "{at}: placeholder {p}");
            }
        }
    }

    let m = manifest::load(&root.join("manifests/k8s-ha.yaml")).unwrap();
    assert_eq!(m.kubernetes.as_ref().unwrap().version.to_string(), "v1.36.5");
    assert!(!m.packages.is_empty());
    for p in &m.packages {
        assert!(manifest::is_mirror_relative(&p.url), "{}: the manifests name no mirror host", p.url);
    }
    // the example inventory is for the default bundle
    let inv = airgap::site::inventory::Inventory::load(&root.join("manifests/site.example.yaml")).unwrap();
    assert_eq!(inv.cluster.kubernetes_version, "v1.36.5");

    // the pinned manifests are the upstream bytes kept in tests/fixtures (same sha256)
    let mut texts = Vec::new();
    for f in m.files.iter().filter(|f| f.manifest.is_some()) {
        let Checksum::Fixed(want) = &f.checksum else { panic!("{}: Kubernetes manifests are pinned by sha256", f.url) };
        let fixture = root.join("tests/fixtures").join(&f.path);
        let bytes = fs_err::read(&fixture).unwrap();
        assert_eq!(&Digest::of_bytes(&bytes), want, "{} is not the file {} pins", fixture.display(), f.url);
        texts.push((f, String::from_utf8(bytes).unwrap()));
    }
    assert_eq!(texts.len(), 5, "flannel, ingress and the 3 files of the NFS provisioner");
    closure::check(&m, "k8s-ha.yaml", &texts).unwrap();
    let wanted = closure::wanted(&m, "k8s-ha.yaml", &texts).unwrap();
    assert_eq!(wanted.len(), 7 + 3 + 3 + 1, "kubeadm's 7, flannel's 3 containers, ingress-nginx's 3, the NFS provisioner");

    // one image less: named, with the line of the upstream file that wants it
    let mut less = m.clone();
    less.images.retain(|i| !i.as_written.contains("flannel-cni-plugin"));
    let err = closure::check(&less, "k8s-ha.yaml", &texts).unwrap_err().to_string();
    assert!(err.contains("lacks 1 image"), "{err}");
    assert!(err.contains("ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3\n    wanted by manifests/kube-flannel-v0.28.9.yml:136 (DaemonSet kube-flannel/kube-flannel-ds, container install-cni-plugin)"), "{err}");
}

/// `airgap build` on the shipped manifest, minus one kubeadm image, with nothing reachable: the closure check
/// runs before any image or checksum is fetched (the two Kubernetes manifests come from the download cache,
/// seeded with their pinned bytes) and names the missing image.
#[test]
fn the_shipped_manifest_minus_one_image_fails_before_anything_is_fetched() {
    let root = Path::new(ROOT);
    let t = tempfile::tempdir().unwrap();
    let text = fs_err::read_to_string(root.join("manifests/k8s-ha.yaml")).unwrap();
    let without: String = text.lines().filter(|l| !l.contains("registry.k8s.io/etcd:")).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, text);
    fs_err::create_dir_all(t.path().join("m/packages")).unwrap();
    fs_err::write(t.path().join("m/k8s-ha.yaml"), &without).unwrap();
    fs_err::copy(root.join("manifests/packages/debian-12.yaml"), t.path().join("m/packages/debian-12.yaml")).unwrap();
    let cache = t.path().join("cache");
    fs_err::create_dir_all(cache.join("blobs/sha256")).unwrap();
    // every pinned Kubernetes manifest in the cache (the build reads them before the closure check)
    for f in [
        "kube-flannel-v0.28.9.yml",
        "ingress-nginx-baremetal-controller-v1.15.1.yaml",
        "nfs-subdir-external-provisioner/rbac.yaml",
        "nfs-subdir-external-provisioner/deployment.yaml",
        "nfs-subdir-external-provisioner/class.yaml",
    ] {
        let bytes = fs_err::read(root.join("tests/fixtures/manifests").join(f)).unwrap();
        fs_err::write(cache.join("blobs/sha256").join(Digest::of_bytes(&bytes).hex()), bytes).unwrap();
    }
    let keys = airgap::sign::generate_keypair(&t.path().join("keys"), None).unwrap();
    let out = Command::new(crate::support::airgap_bin())
        .arg("build")
        .arg(t.path().join("m/k8s-ha.yaml"))
        .arg("--out")
        .arg(t.path().join("out"))
        .arg("--key")
        .arg(&keys.secret)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--mirror", "debian-12=http://127.0.0.1:1/", "--retries", "1", "--color", "never"])
        .env("HOME", t.path())
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains("k8s-ha.yaml: the bundle lacks 1 image that its contents need"), "{err}");
    assert!(err.contains("registry.k8s.io/etcd:3.6.8-0\n    wanted by k8s-ha.yaml:61 (kubeadm v1.36.5)"), "{err}");
}
