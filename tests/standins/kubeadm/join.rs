//! `kubeadm join` (phases preflight with discovery, control-plane-prepare, kubelet-start,
//! control-plane-join). Discovery as cmd/kubeadm/app/discovery/token/token.go does it: the cluster-info
//! ConfigMap fetched without verifying TLS from `apiServerEndpoint`, polled every 5 s until
//! `timeouts.discovery` (default 5m) for a JWS signature of the token's id, the signature checked with the
//! token's secret, the CA in it checked against `caCertHashes`, then fetched again over TLS verified with
//! that CA. Control-plane joins download the certificates uploaded by `--upload-certs` (gone 2 h after the
//! upload) and decrypt them with `controlPlane.certificateKey`.

use super::config::{self, check_certificate_key, check_cri_socket, check_host_port, check_name, check_token, ClusterView, Errs};
use super::controlplane::{self as cp, call, NodeInfo, PKI};
use super::preflight::Checks;
use super::{images, kerr, phase_err, validate_mixed};
use crate::client::Client;
use crate::common::{poll, Ctx, R};
use crate::crypto;
use crate::flags::Parsed;
use crate::pki::{self, kubeconfig_yaml, Auth, KubeConfig, B64};
use airgap::kube::kubeadm_api::v1beta4::{BootstrapTokenDiscovery, ClusterConfiguration, Discovery, JoinConfiguration, JoinControlPlane, NodeRegistrationOptions};
use base64::Engine as _;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

const INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

fn from_flags(p: &Parsed) -> JoinConfiguration {
    let s = |n: &str| p.str(n).map(str::to_string);
    let token = s("discovery-token").or(s("token")).unwrap_or_default();
    JoinConfiguration {
        node_registration: Some(NodeRegistrationOptions { cri_socket: s("cri-socket"), ..Default::default() }),
        discovery: Some(Discovery {
            bootstrap_token: p.args.first().map(|ep| BootstrapTokenDiscovery {
                token,
                api_server_endpoint: Some(ep.clone()),
                ca_cert_hashes: Some(p.list("discovery-token-ca-cert-hash")),
                unsafe_skip_ca_verification: Some(p.bool("discovery-token-unsafe-skip-ca-verification")),
            }),
            tls_bootstrap_token: s("tls-bootstrap-token").or(s("token")),
            ..Default::default()
        }),
        control_plane: p.bool("control-plane").then(|| JoinControlPlane {
            local_api_endpoint: Some(airgap::kube::kubeadm_api::v1beta4::APIEndpoint {
                advertise_address: s("apiserver-advertise-address"),
                bind_port: s("apiserver-bind-port").and_then(|v| v.parse().ok()),
            }),
            certificate_key: s("certificate-key"),
        }),
        ..JoinConfiguration::new()
    }
}

fn discovery_err(msg: impl std::fmt::Display) -> crate::common::Fail {
    phase_err("preflight", format!("couldn't validate the identity of the API Server: {msg}"))
}

/// Token discovery: the cluster CA (PEM), verified.
fn discover(endpoint: &str, token: &str, pins: &[String], timeout: Duration) -> R<String> {
    let (id, secret) = token.split_once('.').unwrap_or(("", ""));
    let insecure = Client::new(&format!("https://{endpoint}"), None, &Auth::None)?;
    let mut last = String::new();
    let interval = Duration::from_secs(5).min(timeout);
    let cm = poll(timeout, interval, || {
        match insecure.get(INFO) {
            Err(e) => last = format!("failed to request the cluster-info ConfigMap: {e}"),
            Ok(a) if !a.ok() => last = format!("failed to request the cluster-info ConfigMap: {}", a.message()),
            Ok(a) if a.body["data"][format!("jws-kubeconfig-{id}")].is_null() => {
                last = format!("could not find a JWS signature in the cluster-info ConfigMap for token ID \"{id}\"")
            }
            Ok(a) => return Some(a.body),
        }
        None
    })
    .ok_or_else(|| discovery_err(&last))?;
    let kubeconfig = cm["data"]["kubeconfig"].as_str().unwrap_or("").to_string();
    if kubeconfig.is_empty() {
        return Err(discovery_err("there is no kubeconfig key in the cluster-info ConfigMap. This API Server isn't set up for token bootstrapping, can't connect"));
    }
    let jws = cm["data"][format!("jws-kubeconfig-{id}")].as_str().unwrap_or("");
    if !crypto::jws_valid(jws, &kubeconfig, id, secret) {
        return Err(discovery_err("failed to verify JWS signature of received cluster info object, can't trust this API Server"));
    }
    let ca = {
        let v: Value = serde_yaml_ng::from_str(&kubeconfig).map_err(|e| discovery_err(format!("couldn't parse the kubeconfig file in the cluster-info ConfigMap: {e}")))?;
        let data = v["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap_or("");
        String::from_utf8(B64.decode(data).unwrap_or_default()).unwrap_or_default()
    };
    if pins.is_empty() {
        return Ok(ca);
    }
    let have = pki::spki_pin(&ca).map_err(|e| discovery_err(format!("failed to parse cluster CA from the cluster-info ConfigMap: {}", e.msg)))?;
    if !pins.iter().any(|p| p.to_lowercase() == have) {
        return Err(discovery_err(format!("cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{have}\" are pinned")));
    }
    let secure = Client::new(&format!("https://{endpoint}"), Some(&ca), &Auth::None)?;
    let again = secure.get(INFO).map_err(|e| discovery_err(format!("failed to request the cluster-info ConfigMap: {e}")))?;
    if again.body["data"]["kubeconfig"].as_str() != Some(kubeconfig.as_str()) {
        return Err(discovery_err("the second kubeconfig from the cluster-info ConfigMap (using validated TLS) was different from the first"));
    }
    Ok(ca)
}

fn download_certs(ctx: &Ctx, c: &Client, key: &str) -> R<()> {
    let err = |m: String| phase_err("control-plane-prepare/download-certs", format!("error downloading certs: {m}"));
    println!("[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace");
    let a = c.get("/api/v1/namespaces/kube-system/secrets/kubeadm-certs").map_err(|e| err(format!("error downloading the secret: {e}")))?;
    if a.status == 404 {
        return Err(err("error downloading the secret: Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one".into()));
    }
    if !a.ok() {
        return Err(err(format!("error downloading the secret: {}", a.message())));
    }
    for (name, file) in cp::SHARED {
        let sealed = B64.decode(a.body["data"][name].as_str().unwrap_or("")).unwrap_or_default();
        let plain = crypto::decrypt(key, &sealed).map_err(|e| err(format!("error decoding secret data with provided key: {e}")))?;
        ctx.write(&format!("{PKI}/{file}"), plain, if file.ends_with(".key") { 0o600 } else { 0o644 })?;
    }
    Ok(())
}

pub fn run(ctx: &Ctx, p: &Parsed) -> R<()> {
    validate_mixed(p)?;
    if p.bool("dry-run") {
        return Err(kerr(1, "--dry-run is not supported by the k8s-standin kubeadm"));
    }
    let mut j = match p.str("config") {
        Some(path) => config::load_join(ctx, path)?,
        None => from_flags(p),
    };
    if let Some(n) = p.str("node-name") {
        j.node_registration.get_or_insert_with(Default::default).name = Some(n.to_string());
    }
    let nr = j.node_registration.clone().unwrap_or_default();
    let name = nr.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| ctx.hostname().to_lowercase());
    let cri = nr.cri_socket.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "unix:///var/run/containerd/containerd.sock".into());
    let mut e = Errs::default();
    check_name(&mut e, "nodeRegistration.name", &name);
    check_cri_socket(&mut e, "nodeRegistration.criSocket", &cri);
    let disc = j.discovery.clone().unwrap_or_default();
    if disc.file.is_some() {
        return Err(kerr(1, "file discovery is not supported by the k8s-standin kubeadm: use discovery.bootstrapToken"));
    }
    let Some(bt) = disc.bootstrap_token.clone() else {
        e.invalid("discovery", "", "bootstrapToken or file must be set");
        return e.into_result();
    };
    let endpoint = bt.api_server_endpoint.clone().unwrap_or_default();
    if endpoint.is_empty() {
        e.required("discovery.bootstrapToken", "APIServerEndpoint is not set");
    } else {
        check_host_port(&mut e, "discovery.bootstrapToken.apiServerEndpoint", &endpoint, "missing port in address");
    }
    let pins = bt.ca_cert_hashes.clone().unwrap_or_default();
    if pins.is_empty() && bt.unsafe_skip_ca_verification != Some(true) {
        e.invalid("discovery.bootstrapToken.caCertHashes", "", "using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue");
    }
    check_token(&mut e, "discovery.bootstrapToken.token", &bt.token);
    let tls_token = disc.tls_bootstrap_token.clone().filter(|t| !t.is_empty()).unwrap_or(bt.token.clone());
    check_token(&mut e, "discovery.tlsBootstrapToken", &tls_token);
    let ca_path = j.ca_cert_path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| format!("{PKI}/ca.crt"));
    if !ca_path.starts_with('/') || !ca_path.ends_with(".crt") {
        e.invalid("caCertPath", &ca_path, "the ca certificate path must be an absolute path");
    }
    let cp_join = j.control_plane.clone();
    let node_ip_arg = nr.kubelet_extra_args.iter().flatten().find(|a| a.name == "node-ip").and_then(|a| a.value.parse::<IpAddr>().ok());
    let mut ip = node_ip_arg;
    let mut bind_port = 6443;
    if let Some(c) = &cp_join {
        check_certificate_key(&mut e, "controlPlane.certificateKey", c.certificate_key.as_deref().unwrap_or(""));
        let ep = c.local_api_endpoint.clone().unwrap_or_default();
        bind_port = ep.bind_port.unwrap_or(6443) as u16;
        match ep.advertise_address.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => match a.parse::<IpAddr>() {
                Ok(a) => ip = Some(a),
                Err(_) => e.invalid("controlPlane.localAPIEndpoint.advertiseAddress", a, "ip address is not valid"),
            },
            None if ctx.sandboxed() => e.required("controlPlane.localAPIEndpoint.advertiseAddress", "the k8s-standin needs it under a sandbox root"),
            None => {}
        }
    }
    for pin in &pins {
        if pin.parse::<airgap::kube::pki::CaCertHash>().is_err() {
            e.invalid("discovery.bootstrapToken.caCertHashes", pin, "invalid hash, expected \"format:hex-value\" with format sha256 and a 32-byte value");
        }
    }
    e.into_result()?;

    let skip: Vec<String> = if p.has("skip-phases") { p.list("skip-phases") } else { j.skip_phases.clone().unwrap_or_default() };
    if let Some(s) = skip.iter().find(|s| *s != "preflight") {
        return Err(kerr(1, format!("the k8s-standin kubeadm join can skip only the preflight phase, not {s:?}")));
    }
    let mut ignore = p.list("ignore-preflight-errors");
    ignore.extend(nr.ignore_preflight_errors.clone().unwrap_or_default());
    if !skip.is_empty() {
        ignore.push("all".into());
    }
    let mut checks = Checks::new(ignore.clone());
    checks.privileged();
    checks.dir_available(ctx, cp::MANIFESTS);
    checks.file_available(ctx, cp::KUBELET_CONF);
    checks.file_available(ctx, cp::BOOTSTRAP_KUBELET_CONF);
    checks.port(ctx, ip, 10250);
    checks.ip_forward(ctx);
    if cp_join.is_none() {
        checks.file_available(ctx, &ca_path);
    }
    checks.finish()?;

    let timeouts = j.timeouts.clone().unwrap_or_default();
    let secs = |d: Option<airgap::kube::Duration>, default: u64| d.and_then(|d| d.to_std()).unwrap_or(Duration::from_secs(default));
    let ca = discover(&endpoint, &bt.token, &pins, secs(timeouts.discovery, 300))?;
    let bootstrap = Client::new(&format!("https://{endpoint}"), Some(&ca), &Auth::Token(tls_token.clone()))?;
    println!("[preflight] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...");
    let cm = call(&bootstrap, "GET", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config", None).map_err(|e| phase_err("preflight", format!("unable to fetch the kubeadm-config ConfigMap: {e}")))?;
    let cc: ClusterConfiguration = serde_yaml_ng::from_str(cm["data"]["ClusterConfiguration"].as_str().unwrap_or(""))
        .map_err(|e| phase_err("preflight", format!("unable to decode the ClusterConfiguration in the kubeadm-config ConfigMap: {e}")))?;
    let view = ClusterView::of(ctx, &cc, None)?;

    if let Some(c) = &cp_join {
        println!("[preflight] Running pre-flight checks before initializing the new control plane instance");
        if view.endpoint.is_empty() {
            return Err(phase_err("preflight", "\nunable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n"));
        }
        if c.certificate_key.as_deref().unwrap_or("").is_empty() {
            let missing: Vec<String> = cp::SHARED.iter().filter(|(_, f)| !ctx.exists(&format!("{PKI}/{f}"))).map(|(_, f)| format!("couldn't load the certificate file {PKI}/{f}: open {PKI}/{f}: no such file or directory")).collect();
            if !missing.is_empty() {
                return Err(phase_err("preflight", format!("\none or more conditions for hosting a new control plane instance is not satisfied.\n\n[failure loading certificate for CA: {}]\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n", missing.join(", "))));
            }
        }
        let mut checks = Checks::new(ignore);
        for port in [bind_port, 10259, 10257, 2379, 2380] {
            checks.port(ctx, ip, port);
        }
        for comp in cp::COMPONENTS {
            checks.file_available(ctx, &format!("{}/{comp}.yaml", cp::MANIFESTS));
        }
        checks.dir_available(ctx, "/var/lib/etcd");
        images::pull_all(&mut checks, &view.images, nr.image_pull_policy.map(|p| format!("{p:?}")).as_deref());
        checks.finish()?;
    }
    let ip = match ip {
        Some(ip) => ip,
        None => super::init::default_address().ok_or_else(|| kerr(1, "unable to select an IP from default routes"))?,
    };
    let node = NodeInfo { name: name.clone(), ip, bind_port, cri_socket: cri, kubelet_extra_args: nr.kubelet_extra_args.clone().unwrap_or_default() };

    if let Some(c) = &cp_join {
        if let Some(key) = c.certificate_key.as_deref().filter(|k| !k.is_empty()) {
            download_certs(ctx, &bootstrap, key)?;
        }
        println!("[certs] Using certificateDir folder \"{PKI}\"");
        let ca = cp::local_pki(ctx, &view, &node)?;
        cp::kubeconfigs(ctx, &ca, &view, &node, false)?;
        cp::manifests(ctx, &view, &node)?;
    }

    // kubelet-start
    let existing = bootstrap.get(&format!("/api/v1/nodes/{name}")).map_err(|e| phase_err("kubelet-start", format!("cannot get Node \"{name}\": {e}")))?;
    if existing.ok() && crate::apiserver::views::ready(&existing.body) {
        return Err(phase_err("kubelet-start", format!("a Node with name \"{name}\" and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node")));
    }
    if cp_join.is_none() {
        ctx.write(&ca_path, &ca, 0o644)?;
    }
    ctx.write(cp::BOOTSTRAP_KUBELET_CONF, kubeconfig_yaml(&view.name, &format!("https://{endpoint}"), &ca, "tls-bootstrap-token-user", &Auth::Token(tls_token)), 0o600)?;
    let kcm = call(&bootstrap, "GET", "/api/v1/namespaces/kube-system/configmaps/kubelet-config", None).map_err(|e| phase_err("kubelet-start", e))?;
    cp::kubelet_start(ctx, kcm["data"]["kubelet"].as_str().unwrap_or(""), &node)?;
    println!("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap");
    poll(secs(timeouts.tls_bootstrap, 300), Duration::from_millis(200), || ctx.exists(cp::KUBELET_CONF).then_some(())).ok_or_else(|| {
        phase_err("kubelet-start", format!("failed while waiting for the kubelet to perform the TLS Bootstrap: timed out waiting for {} (is the kubelet running? can it reach https://{endpoint}?)", cp::KUBELET_CONF))
    })?;
    ctx.remove(cp::BOOTSTRAP_KUBELET_CONF);

    if cp_join.is_some() {
        let admin = cp::admin_client(ctx, cp::ADMIN_CONF)?;
        let members = call(&admin, "GET", "/standin/v1/members", None).map_err(|e| phase_err("control-plane-join/etcd", e))?;
        let holder = members[0]["address"].as_str().ok_or_else(|| phase_err("control-plane-join/etcd", "the cluster has no control-plane member to join"))?;
        cp::start_apiserver(ctx, &node, Some(&format!("https://{holder}")))?;
        cp::wait_apiserver(ctx, &node, secs(timeouts.control_plane_component_health_check, 240))?;
        let taints: Vec<Value> = match &nr.taints {
            Some(t) => t.iter().map(|t| serde_json::to_value(t).expect("json")).collect(),
            None => vec![json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})],
        };
        cp::mark_control_plane(&admin, &name, &taints, secs(timeouts.kubernetes_api_call, 60))?;
        call(&admin, "POST", "/standin/v1/members", Some(&json!({"name": name, "address": std::net::SocketAddr::new(ip, bind_port).to_string()})))
            .map_err(|e| phase_err("control-plane-join/etcd", e))?;
        let _ = KubeConfig::load;
        println!("\nThis node has joined the cluster and a new control plane instance was created:\n\n* Certificate signing request was sent to apiserver and approval was received.\n* The Kubelet was informed of the new secure connection details.\n* Control plane label and taint were applied to the new node.\n* The Kubernetes control plane instances scaled up.\n* A new etcd member was added to the local/stacked etcd cluster.\n\nTo start administering your cluster from this node, you need to run the following as a regular user:\n\n\tmkdir -p $HOME/.kube\n\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n\tsudo chown $(id -u):$(id -g) $HOME/.kube/config\n\nRun 'kubectl get nodes' to see this node join the cluster.\n");
    } else {
        println!("\nThis node has joined the cluster:\n* Certificate signing request was sent to apiserver and a response was received.\n* The Kubelet was informed of the new secure connection details.\n\nRun 'kubectl get nodes' on the control-plane to see this node join the cluster.\n");
    }
    Ok(())
}
