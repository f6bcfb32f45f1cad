//! The flannel and ingress-nginx steps' check / apply / wait over a scripted node: what the node and the
//! cluster answer is played back, every command the steps run is recorded.

use super::flannel::Flannel;
use super::ingress::IngressNginx;
use crate::bundle::format::{FileEntry, ManifestRole, RootDoc, SCHEMA};
use crate::install::facts::Target;
use crate::install::kit::Kit;
use crate::install::ssh::{CmdOutput, Stdin, Transport};
use crate::install::{Ctx, Step};
use anyhow::Result;
use serde_json::json;
use std::sync::Mutex;

/// A node whose files appear once written and whose cluster answers `get` with the next scripted JSON
/// (the last one repeats).
struct Scripted {
    written: Mutex<Vec<String>>,
    ran: Mutex<Vec<String>>,
    answers: Mutex<Vec<(String, Vec<serde_json::Value>)>>,
}

impl Scripted {
    fn new(answers: Vec<(&str, Vec<serde_json::Value>)>) -> Scripted {
        let answers = answers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Scripted { written: Mutex::new(vec![]), ran: Mutex::new(vec![]), answers: Mutex::new(answers) }
    }
    fn out(code: i32, stdout: &str) -> CmdOutput {
        CmdOutput { code, stdout: stdout.as_bytes().to_vec(), stderr: String::new() }
    }
}

impl Transport for Scripted {
    fn node(&self) -> &str {
        "master1"
    }
    fn run(&self, argv: &[String], _stdin: Stdin<'_>) -> Result<CmdOutput> {
        let line = argv.join(" ");
        self.ran.lock().unwrap().push(line.clone());
        let path = argv.iter().position(|a| a == "--path").map(|i| argv[i + 1].clone()).unwrap_or_default();
        if line.contains(" node check-file ") {
            let there = self.written.lock().unwrap().contains(&path);
            return Ok(if there { Self::out(0, "") } else { Self::out(1, "missing") });
        }
        if line.contains(" node write-file ") {
            self.written.lock().unwrap().push(path);
            return Ok(Self::out(0, "written\n"));
        }
        if line.contains(" apply -f ") {
            return Ok(Self::out(0, "applied\n"));
        }
        let mut answers = self.answers.lock().unwrap();
        for (key, list) in answers.iter_mut() {
            if line.contains(key.as_str()) {
                let v = if list.len() > 1 { list.remove(0) } else { list[0].clone() };
                return Ok(Self::out(0, &v.to_string()));
            }
        }
        Ok(CmdOutput { code: 1, stdout: vec![], stderr: format!("unexpected: {line}") })
    }
}

fn node_json(name: &str, ready: bool) -> serde_json::Value {
    let (status, reason) = if ready { ("True", "KubeletReady") } else { ("False", "KubeletNotReady") };
    json!({"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": "cni plugin not initialized"}]}})
}

#[test]
fn flannel_and_ingress_apply_then_wait_for_the_cluster_and_name_what_is_missing() {
    let root_dir = env!("CARGO_MANIFEST_DIR");
    let inv = crate::site::inventory::Inventory::load(&std::path::Path::new(root_dir).join("manifests/site.example.yaml")).unwrap();
    let fixture = |n: &str| std::fs::read_to_string(format!("{root_dir}/tests/fixtures/manifests/{n}")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (path, role, text) in [
        ("manifests/flannel.yml", ManifestRole::Flannel, fixture("kube-flannel-v0.28.9.yml")),
        ("manifests/ingress.yaml", ManifestRole::Ingress, fixture("ingress-nginx-baremetal-controller-v1.15.1.yaml")),
    ] {
        let local = tmp.path().join("files").join(path);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, &text).unwrap();
        let sha256 = crate::digest::Digest::of_bytes(text.as_bytes()).hex().to_string();
        files.push(FileEntry { path: path.into(), url: "https://x/y".into(), sha256, size: 1, mode: 0o644, install: None, platform: None, manifest: Some(role) });
    }
    let root = RootDoc {
        schema: SCHEMA.into(),
        name: "k".into(),
        version: "1".into(),
        platforms: vec!["linux/amd64".into()],
        kubernetes: None,
        base: None,
        images: vec![],
        files,
        packages: vec![],
        sha256sums: "0".repeat(64),
        sizes: Default::default(),
    };
    let kit = Kit::from_root(root, tmp.path().to_path_buf());
    let target = Target { family: crate::node::OsFamily::Debian, os_tags: vec!["debian-12".into()], platform: "linux/amd64".into(), interface: None };
    let targets = inv.nodes.iter().map(|n| (n.name.clone(), target.clone())).collect();
    let warn = |_: &str| {};
    let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: Some(&kit), targets: &targets, warn: &warn, secrets: None };
    let master1 = inv.node("master1").unwrap();
    let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
    let all = |ready_but: Option<&str>| json!({"items": names.iter().map(|n| node_json(n, Some(*n) != ready_but)).collect::<Vec<_>>()});

    // flannel: not there yet; apply writes and applies the manifest, then waits until every node is Ready
    let node = Scripted::new(vec![("get nodes", vec![all(Some("worker2")), all(Some("worker2")), all(None)])]);
    let diff = Flannel.check(&ctx, master1, &node).unwrap();
    assert!(diff[0].contains("/etc/kubernetes/airgap/manifests/flannel.yaml"), "{diff:?}");
    let changed = Flannel.apply(&ctx, master1, &node, &|_| {}).unwrap();
    assert_eq!(changed, ["wrote /etc/kubernetes/airgap/manifests/flannel.yaml", "ran kubectl apply -f /etc/kubernetes/airgap/manifests/flannel.yaml, then wait (up to 0 s) until every node of the inventory is Ready"]);
    assert!(Flannel.check(&ctx, master1, &node).unwrap().is_empty(), "file there, every node Ready: done");
    let ran = node.ran.lock().unwrap().clone();
    assert!(ran.iter().any(|c| c == "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /etc/kubernetes/airgap/manifests/flannel.yaml"), "{ran:#?}");
    assert!(ran.iter().filter(|c| c.ends_with("get nodes -o json")).count() >= 3, "it waited: {ran:#?}");

    // a node that never becomes Ready: named with the cluster's reason
    let node = Scripted::new(vec![("get nodes", vec![all(Some("worker1"))])]);
    let err = Flannel.apply(&ctx, master1, &node, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("worker1: not Ready (KubeletNotReady: cni plugin not initialized)"), "{err}");
    assert!(crate::error::hints(&err)[0].contains("kubectl -n kube-flannel get pods -o wide"));

    // ingress-nginx: done when the DaemonSet has a ready pod on every master; master3's missing pod is named
    let ds = json!({"metadata": {"name": "ingress-nginx-controller", "uid": "u", "generation": 1}, "status": {"observedGeneration": 1}});
    let pod = |n: &str| json!({"metadata": {"name": format!("c-{n}"), "ownerReferences": [{"kind": "DaemonSet", "uid": "u"}]}, "spec": {"nodeName": n}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let pods = |ns: &[&str]| json!({"items": ns.iter().map(|n| pod(n)).collect::<Vec<_>>()});
    let node = Scripted::new(vec![
        ("get daemonset -n ingress-nginx ingress-nginx-controller", vec![ds.clone()]),
        ("get pods -n ingress-nginx", vec![pods(&["master1"]), pods(&["master1", "master2", "master3"])]),
    ]);
    IngressNginx.apply(&ctx, master1, &node, &|_| {}).unwrap();
    assert!(IngressNginx.check(&ctx, master1, &node).unwrap().is_empty());
    let node = Scripted::new(vec![
        ("get daemonset -n ingress-nginx ingress-nginx-controller", vec![ds]),
        ("get pods -n ingress-nginx", vec![pods(&["master1", "master2"])]),
    ]);
    let err = IngressNginx.apply(&ctx, master1, &node, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("master3: no pod of DaemonSet ingress-nginx-controller"), "{err}");
}
