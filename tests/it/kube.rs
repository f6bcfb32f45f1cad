//! The Kubernetes steps (`kubelet`, `kubeadm-init`, `kubeadm-join` and every step after them in
//! `steps::all()`) run by `airgap install` over SSH on the 5-node lab, with the stand-ins of tests/standins
//! as kubeadm, kubelet and kubectl (they enforce kubeadm's contract: flags, token / CA pin / certificate key
//! agreement, the 2 h life of the uploaded certificates, no second init or join). No real kubeadm runs here.
//!
//! What the earlier steps would have made is set up by [`site`]: the stand-in binary where the runtime step
//! installs the tools (/usr/local/bin), ip_forward on (os-prepare), the site registry on the workers' VIP
//! `:5000` holding every kubeadm image (a docker-registry on that address of this machine's lab bridge), and
//! the masters' VIP `:16443` forwarding to the first master's `:6443` (haproxy's job).
//!
//! The install is given a signed bundle ([`addons_bundle`]: Kubernetes v1.36.3 in its root document, upstream's
//! flannel and ingress-nginx manifests marked `manifest: flannel|ingress`), so the flannel and ingress-nginx
//! steps run too: kubectl apply from the first master, then the stand-ins' nodes Ready only once the flannel
//! DaemonSet's Network is kubeadm's podSubnet, and the ingress DaemonSet's pods on the nodes its nodeSelector
//! and tolerations admit (tests/standins/README.md, "What it enforces").

use super::support::airgap;
use super::support::bundle::Fixture;
use super::support::lab::Lab;
use super::support::registry::{Mode, Registry};
use super::support::standins::{push_images, standin_bin, Vip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const K8S_STEPS: &str = "kubelet";

/// What [`site`] set up; addresses removed from the bridge when dropped.
struct Site {
    inventory: PathBuf,
    state: PathBuf,
    logs: PathBuf,
    registry: Registry,
    /// The one kubeadm image [`site`] leaves out of the registry (pushed by [`Site::push_missing`]).
    missing: String,
    _vip: Vip,
    bridge_addrs: Vec<(String, String)>,
    bundle: PathBuf,
    fx: Fixture,
    _work: tempfile::TempDir,
}

impl Drop for Site {
    fn drop(&mut self) {
        for (addr, dev) in &self.bridge_addrs {
            let _ = Command::new("ip").args(["addr", "del", addr, "dev", dev]).output();
        }
    }
}

impl Site {
    fn push_missing(&self) {
        push_images(&self.registry, std::slice::from_ref(&self.missing));
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = airgap();
        c.args(["install", "--inventory"]).arg(&self.inventory).arg("--state-dir").arg(&self.state).arg("--log-dir").arg(&self.logs);
        c.arg("--bundle").arg(&self.bundle).arg("--pubkey").arg(&self.fx.public).args(args);
        c
    }
    fn install(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn ok(o: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "airgap failed ({:?}):\n{text}", o.status);
    text
}

/// The lab bridge of this machine (the interface holding `<net>.1`).
fn bridge(net: &str) -> String {
    let out = Command::new("ip").args(["-o", "-4", "addr", "show"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains(&format!(" {net}.1/"))).unwrap_or_else(|| panic!("no interface holds {net}.1:\n{text}"));
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// The upstream manifests the bundle carries (tests/fixtures/manifests).
const FLANNEL: &str = "kube-flannel-v0.28.9.yml";
const INGRESS: &str = "ingress-nginx-baremetal-controller-v1.15.1.yaml";

fn fixture(name: &str) -> String {
    fs_err::read_to_string(super::support::repo().join("tests/fixtures/manifests").join(name)).unwrap()
}

/// A bundle signed with `fx`'s key by the real writer: `kubernetes: {version: v1.36.3}` (the stand-ins'
/// version, the lab inventory's kubernetes_version) and the flannel and ingress-nginx manifests with their
/// roles; no images (the kubeadm images are in the site registry already) and no packages.
fn addons_bundle(fx: &Fixture) -> PathBuf {
    use airgap::bundle::format::{FileEntry, KubernetesEntry, ManifestRole, RootDoc, SCHEMA};
    use airgap::bundle::write::{BundleContent, FileSource};
    let dir = fx.path().join("manifests");
    fs_err::create_dir_all(&dir).unwrap();
    let (mut files, mut entries) = (Vec::new(), Vec::new());
    for (name, role) in [(FLANNEL, ManifestRole::Flannel), (INGRESS, ManifestRole::Ingress)] {
        let text = fixture(name);
        let sha = airgap::digest::Digest::of_bytes(text.as_bytes());
        let (source, path) = (dir.join(name), format!("manifests/{name}"));
        fs_err::write(&source, &text).unwrap();
        let size = text.len() as u64;
        files.push(FileSource { path: path.clone(), sha256: sha.clone(), size, mode: 0o644, source });
        let url = format!("http://127.0.0.1:1/{path}");
        entries.push(FileEntry { path, url, sha256: sha.hex().into(), size, mode: 0o644, install: None, platform: None, manifest: Some(role) });
    }
    let root = RootDoc {
        schema: SCHEMA.into(),
        name: "k8s-addons".into(),
        version: "1.0.0".into(),
        base: None,
        platforms: vec!["linux/amd64".into()],
        kubernetes: Some(KubernetesEntry { version: "v1.36.3".into() }),
        images: vec![],
        files: entries,
        packages: vec![],
        sha256sums: String::new(),
        sizes: Default::default(),
    };
    let content = BundleContent { root, index_json: br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(), blobs: vec![], files };
    fx.write(&content, "bundle", None, 1).archive
}

/// Everything the steps before `kubelet` would have left on the lab (see the module documentation).
fn site(lab: &Lab) -> Site {
    let work = tempfile::tempdir().unwrap();
    let dev = bridge(&lab.net);
    let (masters_vip, workers_vip) = (format!("{}.100", lab.net), format!("{}.200", lab.net));
    let mut bridge_addrs = Vec::new();
    for a in [&masters_vip, &workers_vip] {
        let cidr = format!("{a}/32");
        let o = Command::new("ip").args(["addr", "add", &cidr, "dev", &dev]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        bridge_addrs.push((cidr, dev.clone()));
    }
    let registry = Registry::start_at(Mode::Plain, &workers_vip, 5000);
    let version: airgap::kube::Version = "v1.36.3".parse().unwrap();
    let mut images = airgap::kube::images::images_for(&version).unwrap().at_site(&registry.addr);
    let missing = images.pop().unwrap();
    push_images(&registry, &images);
    let vip = Vip::start(&format!("{masters_vip}:16443"), &format!("{}:6443", lab.address("master1")));
    let bin = fs_err::read(standin_bin()).unwrap();
    for node in &lab.nodes {
        let root = lab.root(node);
        let dir = root.join("usr/local/bin");
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("k8s-standin"), &bin).unwrap();
        std::fs::set_permissions(dir.join("k8s-standin"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for tool in ["kubeadm", "kubelet", "kubectl"] {
            let _ = fs_err::remove_file(dir.join(tool));
            std::os::unix::fs::symlink("k8s-standin", dir.join(tool)).unwrap();
        }
        lab.exec(node, "sysctl -qw net.ipv4.ip_forward=1");
    }
    let inventory = work.path().join("site.yaml");
    lab.inventory(&inventory, "");
    let fx = Fixture::new();
    let bundle = addons_bundle(&fx);
    Site {
        inventory,
        state: work.path().join("state"),
        logs: work.path().join("logs"),
        registry,
        missing,
        _vip: vip,
        bridge_addrs,
        bundle,
        fx,
        _work: work,
    }
}

/// The argv of every call of `tool` on `node` (from the stand-ins' calls.jsonl), tool name first.
fn calls(lab: &Lab, node: &str, tool: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(lab.root(node).join("var/log/k8s-standin/calls.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["tool"] == tool)
        .map(|v| v["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect())
        .collect()
}

fn count(calls: &[Vec<String>], prefix: &[&str]) -> usize {
    calls.iter().filter(|a| a.len() > prefix.len() && a[1..=prefix.len()].iter().zip(prefix).all(|(x, y)| x == y)).count()
}

/// Every file under `dir` as text, for secret scans.
fn texts(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v = Vec::new();
    for e in fs_err::read_dir(dir).unwrap().flatten() {
        if e.path().is_file() {
            v.push((e.path(), String::from_utf8_lossy(&fs_err::read(e.path()).unwrap()).into_owned()));
        }
    }
    v
}

/// `kubectl ARGS -o json` on master1 with the admin kubeconfig.
fn kubectl_json(lab: &Lab, args: &str) -> serde_json::Value {
    let out = lab.exec("master1", &format!("kubectl --kubeconfig /etc/kubernetes/admin.conf {args} -o json"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args}: {e}\n{out}"))
}

/// The Ready condition of node `name` in a `get nodes` list.
fn ready_condition(nodes: &serde_json::Value, name: &str) -> serde_json::Value {
    let node = nodes["items"].as_array().unwrap().iter().find(|n| n["metadata"]["name"] == name).unwrap_or_else(|| panic!("no node {name}: {nodes}"));
    node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone()
}

/// The `kubectl apply` calls on master1, in order, without the tool name.
fn applies(lab: &Lab) -> Vec<String> {
    calls(lab, "master1", "kubectl").into_iter().filter(|a| a.iter().any(|x| x == "apply")).map(|a| a[1..].join(" ")).collect()
}

fn apply_of(file: &str) -> String {
    format!("--kubeconfig /etc/kubernetes/admin.conf apply -f /etc/kubernetes/airgap/manifests/{file}")
}

/// After the first complete install: flannel applied from master1 after every join, every node Ready only
/// after it, then ingress-nginx; the cluster as [`addons_converged_now`] checks it.
fn addons_converged(lab: &Lab, log: &str, pod_subnet: &str) {
    assert_eq!(applies(lab), [apply_of("flannel.yaml"), apply_of("ingress.yaml")]);
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("no {s:?} in the log:\n{log}"));
    let flannel = at(&format!("[master1] $ /usr/local/bin/kubectl {}", apply_of("flannel.yaml")));
    let ingress = at(&format!("[master1] $ /usr/local/bin/kubectl {}", apply_of("ingress.yaml")));
    for n in ["master2", "master3", "worker1", "worker2"] {
        assert!(at(&format!("[{n}] $ /usr/local/bin/kubeadm join")) < flannel, "flannel applied before {n} joined");
    }
    assert!(flannel < ingress);
    // between the two applies, master1's kubectl read the nodes (flannel's wait for every node Ready)
    let m1: Vec<String> = calls(lab, "master1", "kubectl").into_iter().map(|a| a[1..].join(" ")).collect();
    let (f, i) = (m1.iter().position(|a| *a == apply_of("flannel.yaml")).unwrap(), m1.iter().position(|a| *a == apply_of("ingress.yaml")).unwrap());
    assert!(m1[f..i].iter().any(|a| a.ends_with("get nodes -o json")), "{m1:?}");
    // the manifest on the node is upstream's with the inventory's pod subnet (the lab names no interface)
    let on_node = fs_err::read_to_string(lab.root("master1").join("etc/kubernetes/airgap/manifests/flannel.yaml")).unwrap();
    assert_eq!(on_node, airgap::kube::manifests::patch_flannel(&fixture(FLANNEL), pod_subnet, &[]).unwrap().text);
    addons_converged_now(lab, pod_subnet);
}

/// The cluster as the add-on steps leave it: flannel's Network = the pod subnet, flannel running and every
/// node Ready; the ingress controller a host-network DaemonSet with a ready pod on each master and none on
/// a worker.
fn addons_converged_now(lab: &Lab, pod_subnet: &str) {
    let cm = kubectl_json(lab, "get configmap -n kube-flannel kube-flannel-cfg");
    let net: serde_json::Value = serde_json::from_str(cm["data"]["net-conf.json"].as_str().unwrap()).unwrap();
    assert_eq!(net["Network"], pod_subnet, "{cm}");
    let nodes = kubectl_json(lab, "get nodes");
    for n in &lab.nodes {
        let c = ready_condition(&nodes, n);
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("True"), Some("KubeletReady")), "{n}: {c}");
    }
    let ready = |p: &serde_json::Value| p["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
    let on = |ns: &str, owner: &str| -> Vec<String> {
        let pods = kubectl_json(lab, &format!("get pods -n {ns}"));
        let mut v: Vec<String> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet" && p["metadata"]["ownerReferences"][0]["name"] == owner)
            .map(|p| {
                assert!(ready(p), "{p}");
                p["spec"]["nodeName"].as_str().unwrap().to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(on("kube-flannel", "kube-flannel-ds"), lab.nodes);
    let ds = kubectl_json(lab, "get daemonset -n ingress-nginx ingress-nginx-controller");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!((&spec["hostNetwork"], &spec["dnsPolicy"]), (&serde_json::json!(true), &serde_json::json!("ClusterFirstWithHostNet")), "{ds}");
    assert_eq!((&ds["status"]["numberReady"], &ds["status"]["desiredNumberScheduled"]), (&serde_json::json!(3), &serde_json::json!(3)), "{ds}");
    assert_eq!(kubectl_json(lab, "get deployments -n ingress-nginx")["items"], serde_json::json!([]), "the controller is still a Deployment");
    assert_eq!(on("ingress-nginx", "ingress-nginx-controller"), ["master1", "master2", "master3"], "the controller on the masters only");
}

#[test]
fn kubeadm_init_and_joins_over_ssh_with_the_standins() {
    let _slot = crate::support::lab_slot();
    let t0 = std::time::Instant::now();
    let Some(lab) = Lab::up(5) else { return };
    let site = site(&lab);
    let setup = t0.elapsed();

    let t = std::time::Instant::now();
    // 0. an image missing from the site registry stops the install before anything of Kubernetes changed
    let o = site.install(&["--only", "kubelet,kubeadm-init"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains(&site.missing) && err.contains("not in the registry"), "{err}");
    assert!(calls(&lab, "master1", "kubeadm").iter().all(|a| a[1] != "init"), "kubeadm init ran");
    assert!(!lab.root("master1").join("etc/kubernetes/pki/ca.key").exists(), "the CA key was written");
    site.push_missing();
    let refused = t.elapsed();

    // 1. install killed (SIGKILL) right after kubeadm init, before the joins
    let t = std::time::Instant::now();
    let mut child = site.command(&["--from", K8S_STEPS]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let inited = || calls(&lab, "master1", "kubeadm").iter().any(|a| a[1] == "init");
    while !inited() && child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20)); // poll period
    }
    assert!(inited(), "kubeadm init did not run");
    assert!(child.try_wait().unwrap().is_none(), "install finished before it could be killed after init");
    child.kill().unwrap();
    child.wait().unwrap();
    let first = t.elapsed();
    assert!(["master2", "worker1"].iter().all(|n| calls(&lab, n, "kubeadm").iter().all(|a| a[1] != "join")), "a join ran before the kill");
    let m1 = calls(&lab, "master1", "kubeadm");
    let init = m1.iter().find(|a| a[1] == "init").unwrap();
    assert_eq!(init[1..], ["init", "--config", "/etc/kubernetes/airgap/kubeadm-init.yaml", "--upload-certs", "--skip-token-print", "--skip-certificate-key-print"]);

    // 2. resumed two hours and more later: the certificates are uploaded again, so the control-plane joins work
    // the cluster's clock is the state holder's (master1) plus this offset (tests/standins/README.md)
    lab.exec("master1", "mkdir -p /var/lib/k8s-standin && echo 7260 > /var/lib/k8s-standin/clock-offset");
    let t = std::time::Instant::now();
    let out = ok(&site.install(&["--from", K8S_STEPS]));
    let rest = t.elapsed();
    let m1 = calls(&lab, "master1", "kubeadm");
    assert_eq!(count(&m1, &["init", "--config"]), 1, "no second init: {m1:?}");
    let uploads: Vec<&Vec<String>> = m1.iter().filter(|a| a[1..3] == ["init", "phase"]).collect();
    assert_eq!(uploads.len(), 1, "{m1:?}");
    assert_eq!(uploads[0][1..], ["init", "phase", "upload-certs", "--upload-certs", "--config", "/etc/kubernetes/airgap/kubeadm-init.yaml", "--skip-certificate-key-print"]);
    assert!(m1.iter().any(|a| a[1..] == ["version", "-o", "short"]), "{m1:?}");
    for n in ["master2", "master3", "worker1", "worker2"] {
        let c = calls(&lab, n, "kubeadm");
        assert_eq!(c.iter().filter(|a| a[1] == "join").map(|a| a[1..].to_vec()).collect::<Vec<_>>(), [["join", "--config", "/etc/kubernetes/airgap/kubeadm-join.yaml"]], "{n}");
    }
    // the control-plane joins one at a time, then the workers (the log's order)
    let mut logs = texts(&site.logs);
    logs.sort();
    let log = logs.last().unwrap().1.clone();
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("no {s:?} in the log:\n{log}"));
    let join_of = |n: &str| at(&format!("[{n}] $ /usr/local/bin/kubeadm join"));
    let upload = at("[master1] $ /usr/local/bin/kubeadm init phase upload-certs");
    assert!(upload < join_of("master2") && join_of("master2") < join_of("master3"));
    assert!(log[join_of("master2")..join_of("master3")].contains("[master2]   exit 0"), "master3 joined while master2 did");
    assert!(join_of("master3") < join_of("worker1") && join_of("master3") < join_of("worker2"));
    let nodes = lab.exec("master1", "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o name");
    assert_eq!(nodes.lines().count(), 5, "{nodes}\n{out}");
    for n in &lab.nodes {
        let unit = lab.exec(n, "systemctl is-enabled kubelet; cat /etc/default/kubelet");
        assert!(unit.starts_with("enabled\n"), "{n}: {unit}");
        assert!(unit.contains(&format!("KUBELET_EXTRA_ARGS=--node-ip={}\n", lab.address(n))), "{n}: {unit}");
        let file = if n == "master1" { "kubeadm-init.yaml /etc/kubernetes/pki/ca.key" } else { "kubeadm-join.yaml" };
        assert!(lab.exec(n, &format!("cd /etc/kubernetes/airgap && stat -c %a {file}")).lines().all(|l| l == "600"), "{n}");
    }
    // the pre-seeded CA is the one kubeadm used; admin.conf back, 0600, at the masters' VIP
    let secrets = airgap::install::secrets::ClusterSecrets::load(&site.state).unwrap().expect("secrets made by install");
    assert_eq!(lab.exec("master1", "cat /etc/kubernetes/pki/ca.crt"), secrets.ca.cert_pem());
    let admin = site.state.join("admin.conf");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs_err::metadata(&admin).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(fs_err::read_to_string(&admin).unwrap().contains(&format!("server: https://{}.100:16443", lab.net)));

    let pod_subnet = airgap::site::inventory::Inventory::load(&site.inventory).unwrap().network.pod_subnet.to_string();
    addons_converged(&lab, &log, &pod_subnet);

    // 3. a second install has nothing to do; without its journal it finds the same on the nodes
    let t = std::time::Instant::now();
    let again = ok(&site.install(&["--from", K8S_STEPS]));
    assert!(again.contains("install finished: 0 node-steps applied"), "{again}");
    fs_err::remove_file(site.state.join("journal.json")).unwrap();
    let again = ok(&site.install(&["--from", K8S_STEPS]));
    assert!(again.contains("install finished: 0 node-steps applied"), "{again}");
    assert_eq!(count(&calls(&lab, "master1", "kubeadm"), &["init", "--config"]), 1);
    assert_eq!(applies(&lab), [apply_of("flannel.yaml"), apply_of("ingress.yaml")], "a second install applied a manifest");
    let twice = t.elapsed();
    for n in ["master2", "worker1"] {
        assert_eq!(count(&calls(&lab, n, "kubeadm"), &["join"]), 1, "{n} joined twice");
    }

    // 4. no secret value in the logs, the journal, the calls' argv (the whole call logs), the plan
    let mut scanned: Vec<(String, String)> = texts(&site.logs).into_iter().map(|(p, t)| (p.display().to_string(), t)).collect();
    scanned.push(("journal.json".into(), fs_err::read_to_string(site.state.join("journal.json")).unwrap()));
    for n in &lab.nodes {
        scanned.push((format!("{n} calls.jsonl"), fs_err::read_to_string(lab.root(n).join("var/log/k8s-standin/calls.jsonl")).unwrap()));
    }
    let plan = airgap().args(["plan", "--inventory"]).arg(&site.inventory).arg("--state-dir").arg(&site.state).output().unwrap();
    scanned.push(("plan".into(), ok(&plan)));
    let dry = ok(&site.install(&["--from", K8S_STEPS, "--dry-run"]));
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    scanned.push(("install --dry-run".into(), dry));
    let status = airgap().args(["status", "--inventory"]).arg(&site.inventory).arg("--state-dir").arg(&site.state).output().unwrap();
    let status = ok(&status);
    for step in ["kubeadm-init", "kubeadm-join"] {
        let rows: Vec<&str> = status.lines().filter(|l| l.contains(step)).collect();
        assert!(!rows.is_empty() && rows.iter().all(|l| l.contains("done")), "{step}:\n{status}");
    }
    for (what, text) in &scanned {
        for v in secrets.values() {
            assert!(!text.contains(&v), "{what} holds a secret value");
        }
    }

    // 5. flannel's DaemonSet deleted behind the install's back: no node has a CNI config, every node NotReady
    // with the kubelet's reason; the next install applies the site's flannel manifest again
    let t = std::time::Instant::now();
    let not_ready = |lab: &Lab| {
        let nodes = kubectl_json(lab, "get nodes");
        for n in &lab.nodes {
            let c = ready_condition(&nodes, n);
            assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("KubeletNotReady")), "{n}: {c}");
            assert!(c["message"].as_str().unwrap().contains("NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"), "{n}: {c}");
        }
    };
    lab.exec("master1", "kubectl --kubeconfig /etc/kubernetes/admin.conf delete daemonset -n kube-flannel kube-flannel-ds");
    not_ready(&lab);
    let healed = ok(&site.install(&["--from", "flannel"]));
    assert_eq!(applies(&lab)[2..], [apply_of("flannel.yaml")], "{healed}");
    addons_converged_now(&lab, &pod_subnet);

    // 6. flannel's Network changed behind the install's back: flannel crash-loops, every node NotReady (the
    // dry run names each node with the kubelet's reason), and the next install applies the site's manifest again
    let wrong = airgap::kube::manifests::patch_flannel(&fixture(FLANNEL), "10.99.0.0/16", &[]).unwrap().text;
    fs_err::write(lab.root("master1").join("root/wrong-flannel.yaml"), wrong).unwrap();
    lab.exec("master1", "kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f /root/wrong-flannel.yaml");
    not_ready(&lab);
    let pods = kubectl_json(&lab, "get pods -n kube-flannel");
    assert_eq!(pods["items"].as_array().unwrap().len(), lab.nodes.len(), "{pods}");
    for p in pods["items"].as_array().unwrap() {
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        assert!(w["reason"] == "CrashLoopBackOff" && w["message"].as_str().unwrap().contains("Network 10.99.0.0/16 is not the cluster's pod subnet"), "{p}");
    }
    let dry = ok(&site.install(&["--only", "flannel", "--dry-run"]));
    for n in &lab.nodes {
        assert!(dry.contains(&format!("{n}: not Ready (KubeletNotReady: container runtime network not ready")), "{n}:\n{dry}");
    }
    let healed = ok(&site.install(&["--from", "flannel"]));
    let applied = applies(&lab);
    assert_eq!(applied[4..], [apply_of("flannel.yaml")], "{healed}");
    assert!(healed.contains("master1: flannel: done") && healed.contains("master1: ingress-nginx: already done"), "{healed}");
    addons_converged_now(&lab, &pod_subnet);
    let drift = t.elapsed();

    eprintln!(
        "kube lab: setup {:.1} s, refused for a missing image (first contact included) {:.1} s, install until killed after kubeadm init {:.1} s, resumed to the end {:.1} s, twice nothing to do {:.1} s, flannel deleted and then its Network changed, both seen and healed {:.1} s, total {:.1} s",
        setup.as_secs_f64(),
        refused.as_secs_f64(),
        first.as_secs_f64(),
        rest.as_secs_f64(),
        twice.as_secs_f64(),
        drift.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    drop(site);
    // `lab.sh down` (by Drop): not `Lab::down`, whose leftover check fails on this machine whenever a node's
    // systemd-shutdown stays a zombie (PID 1 here does not reap orphans), which is no outcome of these steps
    drop(lab);
}
