//! `kubeadm init` (phases preflight, certs, kubeconfig, etcd, control-plane, kubelet-start,
//! wait-control-plane, upload-config, upload-certs, mark-control-plane, bootstrap-token, addons) and
//! `kubeadm init phase upload-certs`.

use super::config::{self, check_cluster, check_certificate_key, check_cri_socket, check_name, check_token, ClusterView, Errs, InitCfg};
use super::controlplane::{self as cp, call, NodeInfo, PKI};
use super::preflight::Checks;
use super::{images, kerr, phase_err, validate_mixed};
use crate::client::Client;
use crate::common::{rfc3339, Ctx, R};
use crate::crypto;
use crate::flags::Parsed;
use crate::pki::{self, B64};
use airgap::kube::kubeadm_api::v1beta4::{APIEndpoint, BootstrapToken, Networking, NodeRegistrationOptions};
use base64::Engine as _;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

/// kubeadm init's phases (init.go AppendPhase order) and the sub-phases the stand-in can skip.
const PHASES: &[&str] = &[
    "preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start", "wait-control-plane", "upload-config",
    "upload-certs", "mark-control-plane", "bootstrap-token", "kubelet-finalize", "addon", "addon/coredns", "addon/kube-proxy",
    "show-join-command",
];
/// What skipping does nothing the install could rely on: these the stand-in honours.
const SKIPPABLE: &[&str] = &["preflight", "upload-certs", "kubelet-finalize", "addon", "addon/coredns", "addon/kube-proxy", "show-join-command"];

const DEFAULT_CRI: &str = "unix:///var/run/containerd/containerd.sock";
const DEFAULT_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The first non-loopback IPv4 address of the host (kubeadm: the default route's interface).
pub fn default_address() -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|i| i.address.and_then(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip()))))
        .find(|ip| !ip.is_loopback())
}

/// `kubeadm init` without `--config`: the InitConfiguration the flags describe.
fn from_flags(p: &Parsed) -> InitCfg {
    let mut cfg = InitCfg {
        init: Default::default(),
        cluster: Default::default(),
        kubelet: None,
        proxy: None,
    };
    let s = |n: &str| p.str(n).map(str::to_string);
    cfg.init.local_api_endpoint = Some(APIEndpoint { advertise_address: s("apiserver-advertise-address"), bind_port: s("apiserver-bind-port").and_then(|v| v.parse().ok()) });
    cfg.init.node_registration = Some(NodeRegistrationOptions { cri_socket: s("cri-socket"), ..Default::default() });
    cfg.init.certificate_key = s("certificate-key");
    if let Some(t) = s("token") {
        cfg.init.bootstrap_tokens = Some(vec![BootstrapToken { token: t, ttl: s("token-ttl").and_then(|d| d.parse().ok()), ..Default::default() }]);
    }
    cfg.cluster.networking = Some(Networking { pod_subnet: s("pod-network-cidr"), service_subnet: s("service-cidr"), dns_domain: s("service-dns-domain") });
    cfg.cluster.control_plane_endpoint = s("control-plane-endpoint");
    cfg.cluster.kubernetes_version = s("kubernetes-version");
    cfg.cluster.image_repository = s("image-repository");
    cfg
}

/// Token Secret `bootstrap-token-<id>` (bootstraptoken/v1 BootstrapTokenToSecret).
pub fn token_secret(token: &str, ttl_secs: Option<i64>, usages: &[&str], groups: &[String], description: &str, now: i64) -> Value {
    let (id, secret) = token.split_once('.').unwrap_or(("", ""));
    let b = |s: &str| json!(B64.encode(s));
    let mut data = json!({"token-id": b(id), "token-secret": b(secret)});
    if let Some(t) = ttl_secs.filter(|t| *t > 0) {
        data["expiration"] = b(&rfc3339(now + t));
    }
    for u in usages {
        data[format!("usage-bootstrap-{u}")] = b("true");
    }
    if !groups.is_empty() {
        data["auth-extra-groups"] = b(&groups.join(","));
    }
    if !description.is_empty() {
        data["description"] = b(description);
    }
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
           "type": "bootstrap.kubernetes.io/token", "data": data})
}

/// The bootstrap tokens of an InitConfiguration, as Secrets (defaults: 24h, signing+authentication,
/// the default node-token group).
pub fn tokens_of(init: &airgap::kube::kubeadm_api::v1beta4::InitConfiguration, now: i64) -> Vec<(String, Value)> {
    let list = init.bootstrap_tokens.clone().filter(|l| !l.is_empty()).unwrap_or_else(|| {
        vec![BootstrapToken { token: airgap::kube::pki::BootstrapToken::generate().expect("randomness").expose_secret(), ..Default::default() }]
    });
    list.iter()
        .map(|t| {
            let ttl = match (&t.expires, &t.ttl) {
                (Some(e), _) => crate::common::parse_rfc3339(e).map(|e| e - now),
                (None, Some(d)) => Some(d.as_nanos() / 1_000_000_000),
                (None, None) => Some(24 * 3600),
            };
            let usages: Vec<String> = t.usages.clone().unwrap_or_else(|| vec!["signing".into(), "authentication".into()]);
            let usages: Vec<&str> = usages.iter().map(String::as_str).collect();
            let groups = t.groups.clone().unwrap_or_else(|| vec![DEFAULT_GROUP.into()]);
            let desc = t.description.clone().unwrap_or_default();
            (t.token.clone(), token_secret(&t.token, ttl, &usages, &groups, &desc, now))
        })
        .collect()
}

/// Upload the shared certificates, encrypted with `key`, as kube-system/kubeadm-certs, owned by a new
/// 2-hour token (copycerts.UploadCerts): the Secret is garbage-collected when that token expires.
pub fn upload_certs(ctx: &Ctx, c: &Client, key: &str) -> R<()> {
    let now = ctx.now();
    let token = airgap::kube::pki::BootstrapToken::generate().expect("randomness").expose_secret();
    let owner = token_secret(&token, Some(2 * 3600), &[], &[], "Proxy for managing TTL for the kubeadm-certs secret", now);
    let created = call(c, "POST", "/api/v1/namespaces/kube-system/secrets", Some(&owner)).map_err(|e| phase_err("upload-certs", format!("error uploading certs: error creating token: {e}")))?;
    println!("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace");
    let mut data = json!({});
    for (name, file) in cp::SHARED {
        let content = ctx.read(&format!("{PKI}/{file}")).map_err(|e| phase_err("upload-certs", format!("error uploading certs: {PKI}/{file}: {e}")))?;
        let sealed = crypto::encrypt(key, content.as_bytes()).map_err(|e| phase_err("upload-certs", format!("error uploading certs: {e}")))?;
        data[name] = json!(B64.encode(sealed));
    }
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "kubeadm-certs", "namespace": "kube-system",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": created["metadata"]["name"], "uid": created["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "data": data});
    call(c, "PUT", "/api/v1/namespaces/kube-system/secrets/kubeadm-certs", Some(&secret)).map_err(|e| phase_err("upload-certs", format!("error uploading certs: {e}")))?;
    Ok(())
}

fn print_key(key: &str, skip: bool) {
    println!("[upload-certs] Using certificate key:\n{}", if skip { "<value withheld>" } else { key });
}

pub fn run(ctx: &Ctx, p: &Parsed) -> R<()> {
    validate_mixed(p)?;
    if p.bool("dry-run") {
        return Err(kerr(1, "--dry-run is not supported by the k8s-standin kubeadm"));
    }
    let mut cfg = match p.str("config") {
        Some(path) => config::load_init(ctx, path)?,
        None => from_flags(p),
    };
    if let Some(n) = p.str("node-name") {
        cfg.init.node_registration.get_or_insert_with(Default::default).name = Some(n.to_string());
    }
    let nr = cfg.init.node_registration.clone().unwrap_or_default();
    let name = nr.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| ctx.hostname().to_lowercase());
    let cri = nr.cri_socket.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_CRI.into());
    let ep = cfg.init.local_api_endpoint.clone().unwrap_or_default();
    let bind_port = ep.bind_port.unwrap_or(6443) as u16;
    let mut e = Errs::default();
    check_name(&mut e, "nodeRegistration.name", &name);
    check_cri_socket(&mut e, "nodeRegistration.criSocket", &cri);
    for (i, t) in cfg.init.bootstrap_tokens.iter().flatten().enumerate() {
        check_token(&mut e, &format!("bootstrapTokens[{i}].token"), &t.token);
        if t.ttl.is_some() && t.expires.is_some() {
            e.invalid(&format!("bootstrapTokens[{i}]"), "", "the BootstrapToken .TTL and .Expires fields are mutually exclusive");
        }
    }
    check_certificate_key(&mut e, "certificateKey", cfg.init.certificate_key.as_deref().unwrap_or(""));
    let ip = match ep.advertise_address.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => a.parse::<IpAddr>().map_err(|_| e.invalid("localAPIEndpoint.advertiseAddress", a, "ip address is not valid")).ok(),
        None if ctx.sandboxed() => {
            e.required("localAPIEndpoint.advertiseAddress", "the k8s-standin needs it under a sandbox root");
            None
        }
        None => default_address(),
    };
    check_cluster(&mut e, &cfg.cluster);
    e.into_result()?;
    let ip = ip.ok_or_else(|| kerr(1, "unable to select an IP from default routes"))?;
    let node = NodeInfo { name: name.clone(), ip, bind_port, cri_socket: cri, kubelet_extra_args: nr.kubelet_extra_args.clone().unwrap_or_default() };
    let view = ClusterView::of(ctx, &cfg.cluster, Some((ip, bind_port)))?;
    println!("[init] Using Kubernetes version: {}", view.version);

    let skip: Vec<String> = if p.has("skip-phases") { p.list("skip-phases") } else { cfg.init.skip_phases.clone().unwrap_or_default() };
    for s in &skip {
        if !PHASES.contains(&s.as_str()) {
            return Err(kerr(1, format!("phase {s:?} not found (the phases of kubeadm init are {})", PHASES.join(", "))));
        }
        if !SKIPPABLE.contains(&s.as_str()) {
            return Err(kerr(1, format!("the k8s-standin kubeadm cannot skip the {s:?} phase (it can skip {})", SKIPPABLE.join(", "))));
        }
    }
    let skipped = |ph: &str| skip.iter().any(|s| s == ph || ph.starts_with(&format!("{s}/")));
    let mut ignore = p.list("ignore-preflight-errors");
    ignore.extend(nr.ignore_preflight_errors.clone().unwrap_or_default());
    if skipped("preflight") {
        ignore.push("all".into());
    }
    let mut checks = Checks::new(ignore);
    checks.privileged();
    for port in [bind_port, 10259, 10257, 10250, 2379, 2380] {
        checks.port(ctx, Some(ip), port);
    }
    for c in cp::COMPONENTS {
        checks.file_available(ctx, &format!("{}/{c}.yaml", cp::MANIFESTS));
    }
    checks.dir_available(ctx, "/var/lib/etcd");
    checks.ip_forward(ctx);
    if !crate::services::kubelet_enabled(ctx) {
        println!("\t[WARNING Service-Kubelet]: kubelet service is not enabled, please run 'systemctl enable kubelet.service'");
    }
    let policy = nr.image_pull_policy.map(|p| format!("{p:?}"));
    images::pull_all(&mut checks, &view.images, policy.as_deref());
    checks.finish()?;

    println!("[certs] Using certificateDir folder \"{PKI}\"");
    cp::shared_pki(ctx)?;
    let ca = cp::local_pki(ctx, &view, &node)?;
    cp::kubeconfigs(ctx, &ca, &view, &node, true)?;
    cp::manifests(ctx, &view, &node)?;
    cp::kubelet_start(ctx, &cp::kubelet_config(&view, cfg.kubelet.clone()), &node)?;
    cp::start_apiserver(ctx, &node, None)?;
    let timeouts = cfg.init.timeouts.clone().unwrap_or_default();
    let secs = |d: Option<airgap::kube::Duration>, default: u64| d.and_then(|d| d.to_std()).unwrap_or(Duration::from_secs(default));
    cp::wait_apiserver(ctx, &node, secs(timeouts.control_plane_component_health_check, 240))?;

    let admin = cp::admin_client(ctx, cp::ADMIN_CONF)?;
    let put = |path: &str, obj: Value, phase: &str| call(&admin, "PUT", path, Some(&obj)).map(|_| ()).map_err(|e| phase_err(phase, e));
    println!("[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace");
    let cluster_yaml = serde_yaml_ng::to_string(&cfg.cluster).expect("yaml");
    put("/api/v1/namespaces/kube-system/configmaps/kubeadm-config", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"}, "data": {"ClusterConfiguration": cluster_yaml}}), "upload-config/kubeadm")?;
    let kubelet_yaml = ctx.read(cp::KUBELET_CONFIG).unwrap_or_default();
    put("/api/v1/namespaces/kube-system/configmaps/kubelet-config", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubelet-config", "namespace": "kube-system"}, "data": {"kubelet": kubelet_yaml}}), "upload-config/kubelet")?;

    let key = cfg.init.certificate_key.clone().filter(|k| !k.is_empty());
    let key = if p.bool("upload-certs") && !skipped("upload-certs") {
        let key = key.unwrap_or_else(|| airgap::kube::pki::CertificateKey::generate().expect("randomness").expose_secret().to_string());
        upload_certs(ctx, &admin, &key)?;
        print_key(&key, p.bool("skip-certificate-key-print"));
        Some(key)
    } else {
        println!("[upload-certs] Skipping phase. Please see --upload-certs");
        None
    };

    let taints: Vec<Value> = match &nr.taints {
        Some(t) => t.iter().map(|t| serde_json::to_value(t).expect("json")).collect(),
        None => vec![json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})],
    };
    cp::mark_control_plane(&admin, &name, &taints, secs(timeouts.kubernetes_api_call, 60))?;

    println!("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles");
    let now = ctx.now();
    let tokens = tokens_of(&cfg.init, now);
    for (_, secret) in &tokens {
        let n = secret["metadata"]["name"].as_str().unwrap_or("").to_string();
        put(&format!("/api/v1/namespaces/kube-system/secrets/{n}"), secret.clone(), "bootstrap-token")?;
    }
    let info = json!({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": {"certificate-authority-data": B64.encode(&ca.cert_pem), "server": format!("https://{}", view.endpoint)}}],
                      "contexts": null, "current-context": "", "preferences": {}, "users": null});
    let info_yaml = serde_yaml_ng::to_string(&info).expect("yaml");
    put("/api/v1/namespaces/kube-public/configmaps/cluster-info", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"}, "data": {"kubeconfig": info_yaml}}), "bootstrap-token")?;

    let dns = cfg.cluster.dns.as_ref().and_then(|d| d.disabled) != Some(true) && !skipped("addon/coredns");
    let proxy = cfg.cluster.proxy.as_ref().and_then(|p| p.disabled) != Some(true) && !skipped("addon/kube-proxy");
    addons(&admin, &view, dns, proxy)?;
    call(&admin, "POST", "/standin/v1/members", Some(&json!({"name": name, "address": std::net::SocketAddr::new(ip, bind_port).to_string()}))).map_err(|e| phase_err("etcd", e))?;

    if skipped("show-join-command") {
        return Ok(());
    }
    let hash = pki::spki_pin(&ca.cert_pem)?;
    let token = if p.bool("skip-token-print") { "<value withheld>".to_string() } else { tokens[0].0.clone() };
    println!("\nYour Kubernetes control-plane has initialized successfully!\n\nTo start using your cluster, you need to run the following as a regular user:\n\n  mkdir -p $HOME/.kube\n  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n\nYou should now deploy a pod network to the cluster.\nRun \"kubectl apply -f [podnetwork].yaml\" with one of the options listed at:\n  https://kubernetes.io/docs/concepts/cluster-administration/addons/\n");
    if let Some(k) = key {
        let shown = if p.bool("skip-certificate-key-print") { "<value withheld>" } else { &k };
        println!("You can now join any number of control-plane nodes running the following command on each as root:\n\n  kubeadm join {} --token {token} \\\n\t--discovery-token-ca-cert-hash {hash} \\\n\t--control-plane --certificate-key {shown}\n\nPlease note that the certificate-key gives access to cluster sensitive data, keep it secret!\nAs a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use\n\"kubeadm init phase upload-certs --upload-certs\" to reload certs afterward.\n", view.endpoint);
    }
    println!("Then you can join any number of worker nodes by running the following on each as root:\n\nkubeadm join {} --token {token} \\\n\t--discovery-token-ca-cert-hash {hash}", view.endpoint);
    Ok(())
}

/// The CoreDNS Deployment and kube-proxy DaemonSet kubeadm's addon phase creates.
fn addons(c: &Client, view: &ClusterView, dns: bool, proxy: bool) -> R<()> {
    let image = |n: &str| view.images.iter().find(|i| i.rsplit('/').next().is_some_and(|x| x.starts_with(&format!("{n}:")))).cloned().unwrap_or_default();
    let apply = |obj: Value| call(c, "POST", "/standin/v1/apply", Some(&json!({"object": obj}))).map(|_| ()).map_err(|e| phase_err("addon", e));
    let cp_toleration = json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"});
    if dns {
        apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                     "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}}, "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                         "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}, cp_toleration],
                         "containers": [{"name": "coredns", "image": image("coredns")}]}}}}))?;
        println!("[addons] Applied essential addon: CoreDNS");
    }
    if proxy {
        apply(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
            "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                     "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}}, "spec": {"hostNetwork": true, "nodeSelector": {"kubernetes.io/os": "linux"},
                         "tolerations": [{"operator": "Exists"}], "containers": [{"name": "kube-proxy", "image": image("kube-proxy")}]}}}}))?;
        println!("[addons] Applied essential addon: kube-proxy");
    }
    Ok(())
}

/// `kubeadm init phase upload-certs --upload-certs [--config F | --certificate-key K]`.
pub fn phase_upload_certs(ctx: &Ctx, p: &Parsed) -> R<()> {
    validate_mixed(p)?;
    if !p.bool("upload-certs") {
        println!("[upload-certs] Skipping phase. Please see --upload-certs");
        return Ok(());
    }
    let mut key = p.str("certificate-key").map(str::to_string);
    if let Some(path) = p.str("config") {
        let cfg = config::load_init(ctx, path)?;
        let mut e = Errs::default();
        check_certificate_key(&mut e, "certificateKey", cfg.init.certificate_key.as_deref().unwrap_or(""));
        check_cluster(&mut e, &cfg.cluster);
        e.into_result()?;
        key = cfg.init.certificate_key;
    }
    let key = match key.filter(|k| !k.is_empty()) {
        Some(k) => k,
        None => airgap::kube::pki::CertificateKey::generate().expect("randomness").expose_secret().to_string(),
    };
    let admin = cp::admin_client(ctx, p.str("kubeconfig").unwrap_or(cp::ADMIN_CONF))?;
    upload_certs(ctx, &admin, &key)?;
    print_key(&key, p.bool("skip-certificate-key-print"));
    Ok(())
}
