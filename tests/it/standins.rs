//! The kubeadm/kubelet/kubectl stand-ins (tests/standins) enforce the real tools' contract: each refusal
//! the install could run into, with the real tool's wording, and the happy path with configurations
//! rendered by airgap's own renderer (src/kube/kubeadm_config). Nodes are directories on this machine
//! with their own loopback address (fast); `standins_on_a_two_node_lab` runs them over a real network (two nodes of the shared lab).

use crate::support::registry::{Mode, Registry};
use crate::support::standins::{json, loopback_net, out, push_images, stderr, Node, Vip};
use airgap::kube::kubeadm_api::{parse_documents, to_yaml, Document};
use airgap::kube::kubeadm_config::{render_init, render_join, ClusterInput, JoinRole, JoinSecrets, NodeInput, Secrets};
use airgap::kube::pki::{BootstrapToken, CertificateAuthority, CertificateKey, KeyAlgorithm};
use serde_json::Value;

const VERSION: &str = "v1.36.3";
const INIT_CFG: &str = "/etc/kubernetes/airgap/kubeadm-init.yaml";
const JOIN_CFG: &str = "/etc/kubernetes/airgap/kubeadm-join.yaml";
const ADMIN: &str = "/etc/kubernetes/admin.conf";

struct Cluster {
    nodes: Vec<Node>,
    input: ClusterInput,
    secrets: JoinSecrets,
    ca: CertificateAuthority,
    _vip: Vip,
    _reg: Registry,
    _base: tempfile::TempDir,
}

impl Cluster {
    /// Masters then workers, the first master's CA pre-seeded and its init configuration written, every
    /// kubeadm image in the registry but `missing`.
    fn new(masters: &[&str], workers: &[&str], missing: Option<&str>) -> Cluster {
        let base = tempfile::tempdir().unwrap();
        let net = loopback_net();
        let reg = Registry::start(Mode::Plain);
        let ca = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let secrets = JoinSecrets { token: BootstrapToken::generate().unwrap(), certificate_key: CertificateKey::generate().unwrap(), ca_cert_hash: ca.cert_hash().unwrap() };
        let ip = |i: usize| format!("{net}.{i}");
        let master_inputs: Vec<NodeInput> = masters.iter().enumerate().map(|(i, m)| NodeInput { name: m.to_string(), address: ip(11 + i).parse().unwrap() }).collect();
        let mut input = ClusterInput::new(
            VERSION.parse().unwrap(),
            "standin-test",
            ip(100).parse().unwrap(),
            master_inputs,
            ip(200).parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
            "10.96.0.0/12".parse().unwrap(),
        );
        input.key_algorithm = KeyAlgorithm::EcdsaP256;
        input.image_repository = reg.addr.clone();
        let images: Vec<String> = airgap::kube::images::images_for(&input.kubernetes_version)
            .unwrap()
            .at_site(&reg.addr)
            .into_iter()
            .filter(|i| missing.is_none_or(|m| !i.contains(m)))
            .collect();
        push_images(&reg, &images);
        let mut nodes: Vec<Node> = masters.iter().enumerate().map(|(i, m)| Node::new(base.path(), m, &ip(11 + i))).collect();
        nodes.extend(workers.iter().enumerate().map(|(i, w)| Node::new(base.path(), w, &ip(21 + i))));
        nodes[0].write("/etc/kubernetes/pki/ca.crt", ca.cert_pem());
        nodes[0].write("/etc/kubernetes/pki/ca.key", ca.expose_key_pem());
        nodes[0].write(INIT_CFG, &render_init(&input, &secrets, Secrets::Real).unwrap());
        let vip = Vip::start(&format!("{}:16443", ip(100)), &format!("{}:6443", ip(11)));
        Cluster { nodes, input, secrets, ca, _vip: vip, _reg: reg, _base: base }
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    fn init(&self) -> std::process::Output {
        self.nodes[0].run("kubeadm", &["init", "--config", INIT_CFG, "--upload-certs"])
    }

    /// The node's rendered join configuration, changed by `edit`, written to JOIN_CFG.
    fn write_join(&self, name: &str, edit: impl FnOnce(&mut airgap::kube::kubeadm_api::v1beta4::JoinConfiguration)) {
        let n = self.node(name);
        let role = if self.input.masters.iter().any(|m| m.name == name) { JoinRole::ControlPlane } else { JoinRole::Worker };
        let yaml = render_join(&self.input, &NodeInput { name: name.into(), address: n.ip.parse().unwrap() }, role, &self.secrets, Secrets::Real).unwrap();
        let mut docs = parse_documents(&yaml).unwrap();
        if let Document::Join(j) = &mut docs[0] {
            edit(j);
        }
        n.write(JOIN_CFG, &to_yaml(&docs).unwrap());
    }

    fn join(&self, name: &str) -> std::process::Output {
        self.node(name).run("kubeadm", &["join", "--config", JOIN_CFG])
    }

    fn kubectl(&self, node: &str, args: &[&str]) -> std::process::Output {
        let mut a = vec!["--kubeconfig", ADMIN];
        a.extend_from_slice(args);
        self.node(node).run("kubectl", &a)
    }
}

fn discovery_timeout(j: &mut airgap::kube::kubeadm_api::v1beta4::JoinConfiguration, secs: i64) {
    j.timeouts.get_or_insert_with(Default::default).discovery = Some(airgap::kube::Duration::from_secs(secs));
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", out(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: &std::process::Output, code: i32, wording: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", out(o));
    assert!(stderr(o).contains(wording), "expected {wording:?} in:\n{}", out(o));
}

/// Poll `f` (every 100 ms, up to 10 s) until it is true: a joined kubelet registers its node right after
/// the TLS bootstrap that `kubeadm join` waits for, not before.
fn eventually(what: &str, f: impl FnMut() -> bool) {
    crate::support::wait_until(what, std::time::Duration::from_secs(10), f);
}

fn ready(node: &Value) -> (String, String) {
    let c = node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    (c["status"].as_str().unwrap().to_string(), c["reason"].as_str().unwrap().to_string())
}

#[test]
fn kubeadm_refuses_mixed_flags_and_bad_configurations() {
    let c = Cluster::new(&["master1"], &["worker1"], None);
    let (m, w) = (c.node("master1"), c.node("worker1"));
    c.write_join("worker1", |_| {});
    let key = c.secrets.certificate_key.expose_secret().to_string();
    let token = c.secrets.token.expose_secret();
    let hash = c.secrets.ca_cert_hash.to_string();
    // --config mixed with the flags its file carries (validation.go ValidateMixedArguments)
    refused(&m.run("kubeadm", &["init", "--config", INIT_CFG, "--certificate-key", &key]), 1, "can not mix '--config' with arguments [certificate-key]");
    refused(&m.run("kubeadm", &["init", "--config", INIT_CFG, "--upload-certs", "--pod-network-cidr=10.1.0.0/16", "--certificate-key", &key]), 1, "can not mix '--config' with arguments [certificate-key pod-network-cidr]");
    refused(&w.run("kubeadm", &["join", "--config", JOIN_CFG, "--token", &token, "--discovery-token-ca-cert-hash", &hash]), 1, "can not mix '--config' with arguments [discovery-token-ca-cert-hash token]");
    refused(&w.run("kubeadm", &["join", "--config", JOIN_CFG, "--control-plane"]), 1, "can not mix '--config' with arguments [control-plane]");
    refused(&m.run("kubeadm", &["token", "create", "--config", INIT_CFG, "--ttl", "1h"]), 1, "can not mix '--config' with arguments [ttl]");
    refused(&m.run("kubeadm", &["init", "phase", "upload-certs", "--upload-certs", "--config", INIT_CFG, "--certificate-key", &key]), 1, "can not mix '--config' with arguments [certificate-key]");
    // what may go with --config does, and then the file is read
    refused(&m.run("kubeadm", &["init", "--config", "/nope.yaml", "--upload-certs", "--ignore-preflight-errors=all", "--skip-phases=addon/kube-proxy", "--v=5", "--node-name", "x"]), 1, "unable to read config from \"/nope.yaml\"");
    refused(&m.run("kubeadm", &["init", "--config", INIT_CFG, "--bogus"]), 1, "unknown flag: --bogus");
    refused(&m.run("kubeadm", &["init", "--config", INIT_CFG, "--skip-phases=bogus"]), 1, "phase \"bogus\" not found");
    refused(&m.run("kubeadm", &["init", "--config", INIT_CFG, "--skip-phases=etcd"]), 1, "cannot skip the \"etcd\" phase");
    // strict parsing with airgap's typed mirrors (kubeadm itself only warns about unknown fields)
    let init = m.read(INIT_CFG);
    m.write("/tmp/unknown.yaml", &init.replacen("nodeRegistration:\n", "nodeRegistration:\n  nodeLabels: {a: b}\n", 1));
    refused(&m.run("kubeadm", &["init", "--config", "/tmp/unknown.yaml"]), 1, "unknown field `nodeLabels`");
    m.write("/tmp/badtoken.yaml", &init.replace(&token, "ABCDEF.0123456789abcdef"));
    refused(&m.run("kubeadm", &["init", "--config", "/tmp/badtoken.yaml"]), 3, "bootstrapTokens[0].token: Invalid value: \"ABCDEF.0123456789abcdef\": the bootstrap token is invalid");
    m.write("/tmp/badkey.yaml", &init.replace(&key, &key[..32]));
    refused(&m.run("kubeadm", &["init", "--config", "/tmp/badkey.yaml"]), 3, "invalid certificate key size 16, the key must be an AES key of size 32");
    m.write("/tmp/old.yaml", &init.replace("kubernetesVersion: v1.36.3", "kubernetesVersion: v1.34.2"));
    refused(&m.run("kubeadm", &["init", "--config", "/tmp/old.yaml"]), 1, "only supports deploying clusters with the control plane version >= 1.35.0. Current version: v1.34.2");
    c.write_join("worker1", |j| j.discovery.as_mut().unwrap().bootstrap_token.as_mut().unwrap().ca_cert_hashes = None);
    refused(&w.run("kubeadm", &["join", "--config", JOIN_CFG]), 3, "using token-based discovery without caCertHashes can be unsafe");
    // the kubelet checks its configuration, flags and node IP
    assert_eq!(ok(&w.run("kubelet", &["--version"])).trim(), format!("Kubernetes {VERSION}"));
    refused(&w.run("kubelet", &["--bogus"]), 1, "failed to parse kubelet flag: unknown flag: --bogus");
    w.write("/var/lib/kubelet/config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\n");
    let kubelet = |ip: &str| w.run("kubelet", &["--config=/var/lib/kubelet/config.yaml", "--kubeconfig=/etc/kubernetes/kubelet.conf", &format!("--node-ip={ip}")]);
    refused(&kubelet(&w.ip), 1, "cgroupDriver is \"cgroupfs\"");
    w.write("/var/lib/kubelet/config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n");
    refused(&kubelet("10.255.255.254"), 1, "node IP: \"10.255.255.254\" not found in the host's network interfaces");
    refused(&kubelet(&w.ip), 1, "unable to load bootstrap kubeconfig");
    // the images kubeadm pulls with the rendered configuration: every upstream path under the site registry
    let images = ok(&m.run("kubeadm", &["config", "images", "list", "--config", INIT_CFG]));
    let want = airgap::kube::images::images_for(&c.input.kubernetes_version).unwrap().at_site(&c.input.image_repository);
    assert_eq!(images.lines().collect::<Vec<_>>(), want);
    // every call is in the node's log, with its exit code and the sha256 of the configuration it read
    let calls = m.calls();
    assert!(calls.len() >= 10, "{calls:?}");
    let first = &calls[0];
    assert_eq!(first["tool"], "kubeadm");
    assert_eq!(first["exit_code"], 1);
    assert_eq!(first["argv"].as_array().unwrap()[1..].iter().map(|a| a.as_str().unwrap()).collect::<Vec<_>>(), ["kubeadm", "init", "--config", INIT_CFG, "--certificate-key", &key]);
    let read = calls.iter().find(|c| c["argv"].to_string().contains("\"images\"")).expect("config images list");
    assert_eq!((&read["exit_code"], &read["config_files"][0]["path"]), (&Value::from(0), &Value::from(INIT_CFG)));
    assert_eq!(read["config_files"][0]["sha256"], crate::support::sha256sum(&m.path(INIT_CFG)));
}

#[test]
fn kubeadm_init_and_join_enforce_tokens_ca_pins_certificate_keys_and_expiry() {
    let c = Cluster::new(&["master1", "master2"], &["worker1"], None);
    let (m1, m2, w1) = (c.node("master1"), c.node("master2"), c.node("worker1"));
    let init = ok(&c.init());
    assert!(init.contains("Your Kubernetes control-plane has initialized successfully!"), "{init}");
    // kubeadm's layout, the pre-seeded CA kept, kubeconfigs at the VIP
    assert_eq!(m1.read("/etc/kubernetes/pki/ca.crt"), c.ca.cert_pem());
    for f in ["admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf", "manifests/kube-apiserver.yaml", "manifests/etcd.yaml", "pki/apiserver.crt", "pki/sa.key", "pki/front-proxy-ca.crt", "pki/etcd/ca.key"] {
        assert!(m1.exists(&format!("/etc/kubernetes/{f}")), "{f}");
    }
    let endpoint = c.input.control_plane_endpoint.to_string();
    assert!(m1.read(ADMIN).contains(&format!("server: https://{endpoint}")));
    let sans = airgap::kube::pki::parse_certificates(&m1.read("/etc/kubernetes/pki/apiserver.crt")).unwrap().remove(0);
    assert!(sans.ip_addresses.contains(&c.input.control_plane_endpoint.ip()), "{sans:?}");
    let master1 = json(&c.kubectl("master1", &["get", "node", "master1", "-o", "json"]));
    assert!(master1["metadata"]["labels"]["node-role.kubernetes.io/control-plane"].is_string());
    assert_eq!(master1["spec"]["taints"][0]["key"], "node-role.kubernetes.io/control-plane");
    // no secret on any command line
    let token = c.secrets.token.expose_secret();
    assert!(m1.calls().iter().all(|l| !l["argv"].to_string().contains(&token)));

    // a second init on an initialized node
    let again = c.init();
    refused(&again, 2, "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already exists");
    refused(&again, 2, "[ERROR Port-6443]: Port 6443 is in use");

    // discovery: the CA pin and the token must be the cluster's
    let other = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap().cert_hash().unwrap().to_string();
    c.write_join("worker1", |j| j.discovery.as_mut().unwrap().bootstrap_token.as_mut().unwrap().ca_cert_hashes = Some(vec![other.clone()]));
    refused(&c.join("worker1"), 1, &format!("couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{}\" are pinned", c.secrets.ca_cert_hash));
    c.write_join("worker1", |j| {
        j.discovery.as_mut().unwrap().bootstrap_token.as_mut().unwrap().token = "zzzzzz.0123456789abcdef".into();
        discovery_timeout(j, 1);
    });
    refused(&c.join("worker1"), 1, "could not find a JWS signature in the cluster-info ConfigMap for token ID \"zzzzzz\"");
    assert!(!w1.exists("/etc/kubernetes/kubelet.conf"));

    // the worker joins, once
    c.write_join("worker1", |_| {});
    ok(&c.join("worker1"));
    assert!(w1.exists("/etc/kubernetes/kubelet.conf") && !w1.exists("/etc/kubernetes/bootstrap-kubelet.conf"));
    assert_eq!(w1.read("/etc/kubernetes/pki/ca.crt"), c.ca.cert_pem());
    eventually("worker1 registered", || c.kubectl("master1", &["get", "node", "worker1"]).status.success());
    let worker = json(&c.kubectl("master1", &["get", "node", "worker1", "-o", "json"]));
    assert_eq!(worker["status"]["addresses"][0]["address"], w1.ip.as_str());
    refused(&c.join("worker1"), 2, "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: /etc/kubernetes/kubelet.conf already exists");

    // control-plane join: the certificate key must decrypt the uploaded certificates...
    let wrong = CertificateKey::generate().unwrap();
    c.write_join("master2", |j| j.control_plane.as_mut().unwrap().certificate_key = Some(wrong.expose_secret().into()));
    refused(&c.join("master2"), 1, "error downloading certs: error decoding secret data with provided key: cipher: message authentication failed");
    // ... and they are gone 2 hours after the upload
    m1.age_clock(2 * 3600 + 60);
    c.write_join("master2", |_| {});
    refused(&c.join("master2"), 1, "Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one");
    let upload = ok(&m1.run("kubeadm", &["init", "phase", "upload-certs", "--upload-certs", "--config", INIT_CFG, "--skip-certificate-key-print"]));
    assert!(upload.contains("[upload-certs] Using certificate key:\n<value withheld>"), "{upload}");
    let joined = ok(&c.join("master2"));
    assert!(joined.contains("a new control plane instance was created"), "{joined}");
    assert_eq!(m2.read("/etc/kubernetes/pki/ca.key"), m1.read("/etc/kubernetes/pki/ca.key"));

    // every control-plane node answers the same (master2's apiserver proxies to the state holder)
    let via_m2 = m2.read(ADMIN).replace(&format!("https://{endpoint}"), &format!("https://{}:6443", m2.ip));
    m2.write("/tmp/local.conf", &via_m2);
    let names = || {
        let nodes = json(&m2.run("kubectl", &["--kubeconfig", "/tmp/local.conf", "get", "nodes", "-o", "json"]));
        let mut names: Vec<String> = nodes["items"].as_array().unwrap().iter().map(|n| n["metadata"]["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    eventually("three nodes through master2", || names() == ["master1", "master2", "worker1"]);

    // the bootstrap token lives 24 h; `kubeadm token create --config F` brings the same one back
    let id = c.secrets.token.id().to_string();
    assert!(ok(&m1.run("kubeadm", &["token", "list"])).contains(&token));
    m1.age_clock(25 * 3600);
    assert!(!ok(&m1.run("kubeadm", &["token", "list"])).contains(&id));
    assert_eq!(ok(&m1.run("kubeadm", &["token", "create", "--config", INIT_CFG])).trim(), token);
    refused(&m1.run("kubeadm", &["token", "create", "--config", INIT_CFG]), 1, &format!("a token with id \"{id}\" already exists"));
}

#[test]
fn init_fails_naming_an_image_missing_from_the_registry() {
    let c = Cluster::new(&["master1"], &[], Some("/etcd:"));
    let o = c.init();
    refused(&o, 2, &format!("[ERROR ImagePull]: failed to pull image {}/etcd:3.6.8-0", c.input.image_repository));
    assert!(!stderr(&o).contains("kube-apiserver:"), "only the missing image is named:\n{}", out(&o));
    assert!(!c.nodes[0].exists("/etc/kubernetes/admin.conf"), "init stops before writing anything");
}

const FLANNEL: &str = r#"---
kind: Namespace
apiVersion: v1
metadata:
  name: kube-flannel
  labels:
    pod-security.kubernetes.io/enforce: privileged
---
kind: ServiceAccount
apiVersion: v1
metadata:
  name: flannel
  namespace: kube-flannel
---
kind: ConfigMap
apiVersion: v1
metadata:
  name: kube-flannel-cfg
  namespace: kube-flannel
data:
  net-conf.json: |
    {
      "Network": "NETWORK",
      "Backend": {
        "Type": "vxlan"
      }
    }
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-flannel-ds
  namespace: kube-flannel
spec:
  selector:
    matchLabels:
      app: flannel
  template:
    metadata:
      labels:
        app: flannel
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions:
              - key: kubernetes.io/os
                operator: In
                values:
                - linux
      hostNetwork: true
      tolerations:
      - operator: Exists
        effect: NoSchedule
      initContainers:
      - name: install-cni-plugin
        image: ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3
      containers:
      - name: kube-flannel
        image: ghcr.io/flannel-io/flannel:v0.28.9
        args: ["--ip-masq", "--kube-subnet-mgr"]
      volumes:
      - name: flannel-cfg
        configMap:
          name: kube-flannel-cfg
"#;

const INGRESS: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: ingress-nginx
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ingress-nginx-controller
  namespace: ingress-nginx
spec:
  selector:
    matchLabels: {app.kubernetes.io/component: controller}
  template:
    metadata:
      labels: {app.kubernetes.io/component: controller}
    spec:
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      nodeSelector: {node-role.kubernetes.io/control-plane: ""}
      TOLERATIONS
      containers:
      - name: controller
        image: registry.k8s.io/ingress-nginx/controller:v1.15.1
"#;

#[test]
fn nodes_are_ready_only_with_flannel_on_the_pod_subnet() {
    let c = Cluster::new(&["master1"], &["worker1"], None);
    ok(&c.nodes[0].run("kubeadm", &["init", "--config", INIT_CFG, "--upload-certs", "--skip-phases=addon/kube-proxy"]));
    refused(&c.kubectl("master1", &["get", "daemonset", "-n", "kube-system", "kube-proxy"]), 1, "daemonsets.apps \"kube-proxy\" not found");
    c.write_join("worker1", |_| {});
    ok(&c.join("worker1"));
    let m1 = c.node("master1");
    let nodes = || json(&c.kubectl("master1", &["get", "nodes", "-o", "json"]))["items"].as_array().unwrap().clone();
    eventually("two nodes", || nodes().len() == 2);
    for n in nodes() {
        assert_eq!(ready(&n), ("False".into(), "KubeletNotReady".into()), "{n}");
    }
    // flannel with another Network: still NotReady, flannel crash-loops
    m1.write("/tmp/flannel-wrong.yml", &FLANNEL.replace("NETWORK", "10.99.0.0/16"));
    let applied = ok(&c.kubectl("master1", &["apply", "-f", "/tmp/flannel-wrong.yml"]));
    assert_eq!(applied, "namespace/kube-flannel created\nserviceaccount/flannel created\nconfigmap/kube-flannel-cfg created\ndaemonset.apps/kube-flannel-ds created\n");
    for n in nodes() {
        assert_eq!(ready(&n).0, "False", "{n}");
    }
    let pods = json(&c.kubectl("master1", &["get", "pods", "-n", "kube-flannel", "-o", "json"]));
    assert_eq!(pods["items"].as_array().unwrap().len(), 2);
    assert_eq!(pods["items"][0]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "CrashLoopBackOff");
    refused(&c.kubectl("master1", &["wait", "--for=condition=Ready", "node", "--all", "--timeout=1s"]), 1, "timed out waiting for the condition on nodes/");
    // the pod subnet: Ready
    m1.write("/tmp/flannel.yml", &FLANNEL.replace("NETWORK", "10.244.0.0/16"));
    let applied = ok(&c.kubectl("master1", &["apply", "-f", "/tmp/flannel.yml"]));
    assert!(applied.contains("configmap/kube-flannel-cfg configured\n") && applied.contains("daemonset.apps/kube-flannel-ds unchanged\n"), "{applied}");
    for n in nodes() {
        assert_eq!(ready(&n), ("True".into(), "KubeletReady".into()), "{n}");
    }
    assert!(ok(&c.kubectl("master1", &["wait", "--for=condition=Ready", "node", "--all", "--timeout=5s"])).contains("node/worker1 condition met"));
    // another machine joining under a registered, Ready node's name (kubeadm's kubelet-start check)
    let twin = Node::new(c._base.path(), "twin", &c.node("worker1").ip);
    twin.write(JOIN_CFG, &c.node("worker1").read(JOIN_CFG));
    refused(&twin.run("kubeadm", &["join", "--config", JOIN_CFG, "--ignore-preflight-errors=Port-10250"]), 1, "a Node with name \"worker1\" and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node");
    let ds = json(&c.kubectl("master1", &["get", "daemonset", "-n", "kube-flannel", "kube-flannel-ds", "-o", "json"]));
    assert_eq!((ds["status"]["desiredNumberScheduled"].as_i64(), ds["status"]["numberReady"].as_i64()), (Some(2), Some(2)));
    // masters carry the control-plane NoSchedule taint: a control-plane DaemonSet needs the toleration
    m1.write("/tmp/ingress.yml", &INGRESS.replace("TOLERATIONS", "tolerations: []"));
    ok(&c.kubectl("master1", &["apply", "-f", "/tmp/ingress.yml"]));
    let ds = json(&c.kubectl("master1", &["get", "daemonset", "-n", "ingress-nginx", "ingress-nginx-controller", "-o", "json"]));
    assert_eq!(ds["status"]["desiredNumberScheduled"], 0);
    let toleration = "tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]";
    m1.write("/tmp/ingress.yml", &INGRESS.replace("TOLERATIONS", toleration));
    ok(&c.kubectl("master1", &["apply", "-f", "/tmp/ingress.yml"]));
    let pods = json(&c.kubectl("master1", &["get", "pods", "-n", "ingress-nginx", "-o", "json"]));
    let on: Vec<&str> = pods["items"].as_array().unwrap().iter().map(|p| p["spec"]["nodeName"].as_str().unwrap()).collect();
    assert_eq!(on, ["master1"]);
    assert_eq!(pods["items"][0]["status"]["phase"], "Running");
    // objects are parsed as kubectl parses them
    m1.write("/tmp/bad.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n---\nkind: Foo\napiVersion: example.com/v1\nmetadata: {name: y}\n---\nmetadata: {name: z}\n");
    let bad = c.kubectl("master1", &["apply", "-f", "/tmp/bad.yml"]);
    refused(&bad, 1, "Error from server (NotFound): error when creating \"/tmp/bad.yml\": namespaces \"nowhere\" not found");
    refused(&bad, 1, "no matches for kind \"Foo\" in version \"example.com/v1\"");
    refused(&bad, 1, "error validating data: [apiVersion not set, kind not set]");
    refused(&c.kubectl("master1", &["get", "node", "nosuch", "-o", "json"]), 1, "Error from server (NotFound): nodes \"nosuch\" not found");
    if std::env::var_os("STANDIN_DEBUG").is_some() {
        for n in &c.nodes {
            eprintln!("=== {} kubelet.log\n{}\n=== apiserver\n{}\n=== calls\n{}", n.name, n.log("kubelet"), n.log("standin-apiserver"), n.read("/var/log/k8s-standin/calls.jsonl"));
        }
        for a in [&["get", "nodes"][..], &["get", "pods", "-A"], &["get", "ds", "-A"]] {
            eprintln!("{}", out(&c.kubectl("master1", a)));
        }
        eprintln!("{}", c.node("worker1").read("/var/lib/kubelet/kubeadm-flags.env"));
        eprintln!("{}", c.node("master1").read("/var/lib/kubelet/config.yaml"));
        eprintln!("{}", c.node("worker1").read("/etc/kubernetes/kubelet.conf"));
    }
}

/// Put the stand-ins on a lab node the way a bundle would put the real tools: the binary in
/// /usr/local/bin as kubeadm, kubelet and kubectl, the upstream kubelet unit + drop-in, kubelet enabled,
/// ip_forward on (what os-prepare does).
fn install_standins(lab: &crate::support::lab::Lab, node: &str) {
    use crate::support::standins::{standin_bin, KUBEADM_DROPIN, KUBELET_SERVICE};
    let root = lab.root(node);
    let put = |p: &str, content: &[u8], mode: u32| {
        let p = root.join(p.trim_start_matches('/'));
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    };
    put("/usr/local/bin/k8s-standin", &fs_err::read(standin_bin()).unwrap(), 0o755);
    for tool in ["kubeadm", "kubelet", "kubectl"] {
        std::os::unix::fs::symlink("k8s-standin", root.join("usr/local/bin").join(tool)).unwrap();
    }
    put("/etc/systemd/system/kubelet.service", KUBELET_SERVICE.as_bytes(), 0o644);
    put("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN.as_bytes(), 0o644);
    put("/etc/default/kubelet", format!("KUBELET_EXTRA_ARGS=--node-ip={}\n", lab.address(node)).as_bytes(), 0o644);
    lab.exec(node, "systemctl daemon-reload && systemctl enable kubelet && sysctl -qw net.ipv4.ip_forward=1 && systemd-analyze verify kubelet.service");
}

#[test]
fn standins_on_a_two_node_lab() {
    let t0 = std::time::Instant::now();
    let Some(lab) = crate::support::lab::shared() else { return };
    let reg = Registry::start_on(Mode::Plain, &format!("{}.1", lab.net));
    let (m1, w) = ("master1", "master2");
    let ca = CertificateAuthority::generate(KeyAlgorithm::Rsa2048).unwrap();
    let secrets = JoinSecrets { token: BootstrapToken::generate().unwrap(), certificate_key: CertificateKey::generate().unwrap(), ca_cert_hash: ca.cert_hash().unwrap() };
    let mut input = ClusterInput::new(
        VERSION.parse().unwrap(),
        "standin-lab",
        format!("{}.100", lab.net).parse().unwrap(),
        vec![NodeInput { name: m1.into(), address: lab.address(m1).parse().unwrap() }],
        format!("{}.200", lab.net).parse().unwrap(),
        "10.244.0.0/16".parse().unwrap(),
        "10.96.0.0/12".parse().unwrap(),
    );
    // two nodes, no keepalived/haproxy: the control-plane endpoint is the first master itself
    input.control_plane_endpoint = format!("{}:6443", lab.address(m1)).parse().unwrap();
    input.image_repository = reg.addr.clone();
    push_images(&reg, &airgap::kube::images::images_for(&input.kubernetes_version).unwrap().at_site(&reg.addr));
    for n in [m1, w] {
        install_standins(&lab, n);
    }
    let root = lab.root(m1);
    fs_err::create_dir_all(root.join("etc/kubernetes/pki")).unwrap();
    fs_err::write(root.join("etc/kubernetes/pki/ca.crt"), ca.cert_pem()).unwrap();
    fs_err::write(root.join("etc/kubernetes/pki/ca.key"), ca.expose_key_pem()).unwrap();
    fs_err::create_dir_all(root.join("etc/kubernetes/airgap")).unwrap();
    fs_err::write(root.join(INIT_CFG.trim_start_matches('/')), render_init(&input, &secrets, Secrets::Real).unwrap()).unwrap();
    let node = NodeInput { name: w.into(), address: lab.address(w).parse().unwrap() };
    fs_err::create_dir_all(lab.root(w).join("etc/kubernetes/airgap")).unwrap();
    fs_err::write(lab.root(w).join(JOIN_CFG.trim_start_matches('/')), render_join(&input, &node, JoinRole::Worker, &secrets, Secrets::Real).unwrap()).unwrap();

    let t = std::time::Instant::now();
    let init = lab.exec(m1, &format!("kubeadm init --config {INIT_CFG} --upload-certs --skip-token-print --skip-certificate-key-print"));
    assert!(init.contains("initialized successfully"), "{init}");
    eprintln!("kubeadm init: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(lab.exec(m1, "systemctl is-active kubelet standin-apiserver").split_whitespace().collect::<Vec<_>>(), ["active", "active"]);
    let t = std::time::Instant::now();
    let join = lab.exec(w, &format!("kubeadm join --config {JOIN_CFG}"));
    assert!(join.contains("This node has joined the cluster"), "{join}");
    eprintln!("kubeadm join: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(lab.exec(w, "systemctl is-active kubelet").trim(), "active");

    let kubectl = |args: &str| lab.exec(m1, &format!("kubectl --kubeconfig {ADMIN} {args}"));
    eventually("two nodes", || serde_json::from_str::<Value>(&kubectl("get nodes -o json")).unwrap()["items"].as_array().unwrap().len() == 2);
    let nodes: Value = serde_json::from_str(&kubectl("get nodes -o json")).unwrap();
    let mut seen: Vec<(String, String)> = nodes["items"].as_array().unwrap().iter().map(|n| (n["metadata"]["name"].as_str().unwrap().into(), n["status"]["addresses"][0]["address"].as_str().unwrap().into())).collect();
    seen.sort();
    assert_eq!(seen, [(m1.to_string(), lab.address(m1)), (w.to_string(), lab.address(w))]);
    fs_err::write(root.join("etc/kubernetes/airgap/kube-flannel.yml"), FLANNEL.replace("NETWORK", "10.244.0.0/16")).unwrap();
    kubectl("apply -f /etc/kubernetes/airgap/kube-flannel.yml");
    assert!(kubectl("wait --for=condition=Ready node --all --timeout=30s").contains(&format!("node/{w} condition met")));
    // the call logs on the nodes: init, join, the kubelets started by systemd with the drop-in's flags
    let calls = lab.exec(w, "cat /var/log/k8s-standin/calls.jsonl");
    let kubelet: Value = calls.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|c| c["tool"] == "kubelet").unwrap();
    let argv: Vec<&str> = kubelet["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(argv.contains(&"--config=/var/lib/kubelet/config.yaml") && argv.contains(&format!("--node-ip={}", lab.address(w)).as_str()), "{argv:?}");
    assert!(!lab.exec(m1, "cat /var/log/k8s-standin/calls.jsonl").contains(&secrets.token.expose_secret()));
    // a reboot of the first master: the kubelet (enabled) brings the apiserver back, the state is kept
    let t = std::time::Instant::now();
    lab.stop_node(m1);
    lab.start_node(m1);
    crate::support::wait_until("the cluster back after master1 rebooted", std::time::Duration::from_secs(60), || {
        lab.script(&["exec", m1, "sh", "-c", &format!("kubectl --kubeconfig {ADMIN} get node {w}")]).status.success()
    });
    eprintln!("master1 reboot to a working apiserver: {:.1} s", t.elapsed().as_secs_f64());
    // reset takes the worker back out
    lab.exec(w, "kubeadm reset -f");
    assert!(!lab.root(w).join("etc/kubernetes/kubelet.conf").exists());
    eprintln!("standins lab: {:.1} s", t0.elapsed().as_secs_f64());
}
