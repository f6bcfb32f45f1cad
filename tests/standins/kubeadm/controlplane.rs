//! What `kubeadm init` and a control-plane `kubeadm join` both write on the node, in kubeadm's layout
//! (cmd/kubeadm/app/constants): /etc/kubernetes/pki (ca, apiserver, apiserver-kubelet-client,
//! front-proxy-ca/-client, etcd/{ca,server,peer,healthcheck-client}, apiserver-etcd-client, sa.key/pub),
//! the kubeconfigs (admin.conf, super-admin.conf on init, controller-manager.conf, scheduler.conf with the
//! local endpoint, kubelet.conf), the static pod manifests, /var/lib/kubelet/{config.yaml,kubeadm-flags.env};
//! then the stand-in apiserver, the wait for it, and marking the node as a control plane.

use super::config::ClusterView;
use super::{kerr, phase_err};
use crate::client::Client;
use crate::common::{poll, Ctx, R};
use crate::pki::{kubeconfig_yaml, Auth, Ca, KubeConfig};
use crate::services;
use airgap::kube::kubeadm_api::core::Arg;
use airgap::kube::kubeadm_api::kubelet::KubeletConfiguration;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

pub const PKI: &str = "/etc/kubernetes/pki";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const BOOTSTRAP_KUBELET_CONF: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const KUBELET_FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";
pub const COMPONENTS: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];
/// The certificates and keys control-plane nodes share (copycerts), as named in the kubeadm-certs Secret.
pub const SHARED: [(&str, &str); 8] = [
    ("ca.crt", "ca.crt"),
    ("ca.key", "ca.key"),
    ("sa.key", "sa.key"),
    ("sa.pub", "sa.pub"),
    ("front-proxy-ca.crt", "front-proxy-ca.crt"),
    ("front-proxy-ca.key", "front-proxy-ca.key"),
    ("etcd-ca.crt", "etcd/ca.crt"),
    ("etcd-ca.key", "etcd/ca.key"),
];

/// The node as kubeadm sees it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub ip: IpAddr,
    pub bind_port: u16,
    pub cri_socket: String,
    pub kubelet_extra_args: Vec<Arg>,
}

fn pki(ctx: &Ctx, name: &str, content: &str, secret: bool) -> R<()> {
    ctx.write(&format!("{PKI}/{name}"), content, if secret { 0o600 } else { 0o644 })
}

/// The CAs and the service-account key pair, made unless present (a pre-seeded `ca.crt` + `ca.key` is
/// used as is; kubeadm does the same).
pub fn shared_pki(ctx: &Ctx) -> R<()> {
    for (crt, key, cn) in [("ca.crt", "ca.key", "kubernetes"), ("front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-ca"), ("etcd/ca.crt", "etcd/ca.key", "etcd-ca")] {
        let have = (ctx.exists(&format!("{PKI}/{crt}")), ctx.exists(&format!("{PKI}/{key}")));
        match have {
            (true, true) => {
                Ca::from_files(ctx, &format!("{PKI}/{crt}"), &format!("{PKI}/{key}"))
                    .map_err(|e| phase_err("certs", format!("failure loading {cn} certificate authority: {}", e.msg)))?;
                println!("[certs] Using existing {cn} certificate authority");
            }
            (false, false) => {
                let (c, k) = if cn == "kubernetes" {
                    let ca = airgap::kube::pki::CertificateAuthority::generate(airgap::kube::pki::KeyAlgorithm::Rsa2048).map_err(|e| phase_err("certs", e))?;
                    (ca.cert_pem().to_string(), ca.expose_key_pem().to_string())
                } else {
                    Ca::generate(cn)?
                };
                pki(ctx, crt, &c, false)?;
                pki(ctx, key, &k, true)?;
                println!("[certs] Generating \"{}\" certificate and key", crt.trim_end_matches(".crt"));
            }
            (true, false) => return Err(phase_err("certs", format!("the {cn} CA key {PKI}/{key} is missing (external CAs are not supported by the k8s-standin)"))),
            (false, true) => return Err(phase_err("certs", format!("couldn't load the certificate file {PKI}/{crt}: open {PKI}/{crt}: no such file or directory"))),
        }
    }
    if !ctx.exists(&format!("{PKI}/sa.key")) {
        let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| phase_err("certs", e))?;
        pki(ctx, "sa.key", &k.serialize_pem(), true)?;
        pki(ctx, "sa.pub", &k.public_key_pem(), false)?;
        println!("[certs] Generating \"sa\" key and public key");
    }
    Ok(())
}

/// The node's own certificates, signed by the shared CAs.
pub fn local_pki(ctx: &Ctx, view: &ClusterView, node: &NodeInfo) -> R<Ca> {
    let ca = Ca::from_files(ctx, &format!("{PKI}/ca.crt"), &format!("{PKI}/ca.key"))?;
    let mut dns: Vec<String> = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"].iter().map(|s| s.to_string()).collect();
    dns.push(format!("kubernetes.default.svc.{}", view.dns_domain));
    dns.push(node.name.clone());
    let mut ips: Vec<IpAddr> = view.service_ip(1).into_iter().collect();
    ips.push(node.ip);
    for san in view.cert_sans.iter().cloned().chain(std::iter::once(view.endpoint_host())) {
        match san.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.contains(&san) => dns.push(san),
            Err(_) => {}
        }
    }
    println!("[certs] apiserver serving cert is signed for DNS names [{}] and IPs [{}]", dns.join(" "), ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" "));
    let put = |name: &str, (c, k): (String, String)| -> R<()> {
        pki(ctx, &format!("{name}.crt"), &c, false)?;
        pki(ctx, &format!("{name}.key"), &k, true)
    };
    put("apiserver", ca.sign("kube-apiserver", &[], &dns, &ips, true, false)?)?;
    put("apiserver-kubelet-client", ca.sign("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"], &[], &[], false, true)?)?;
    let fp = Ca::from_files(ctx, &format!("{PKI}/front-proxy-ca.crt"), &format!("{PKI}/front-proxy-ca.key"))?;
    put("front-proxy-client", fp.sign("front-proxy-client", &[], &[], &[], false, true)?)?;
    let etcd = Ca::from_files(ctx, &format!("{PKI}/etcd/ca.crt"), &format!("{PKI}/etcd/ca.key"))?;
    let etcd_ips = vec![node.ip, IpAddr::from([127, 0, 0, 1])];
    let etcd_dns = vec![node.name.clone(), "localhost".to_string()];
    put("etcd/server", etcd.sign(&node.name, &[], &etcd_dns, &etcd_ips, true, true)?)?;
    put("etcd/peer", etcd.sign(&node.name, &[], &etcd_dns, &etcd_ips, true, true)?)?;
    put("etcd/healthcheck-client", etcd.sign("kube-etcd-healthcheck-client", &[], &[], &[], false, true)?)?;
    put("apiserver-etcd-client", etcd.sign("kube-apiserver-etcd-client", &[], &[], &[], false, true)?)?;
    Ok(ca)
}

/// Write a kubeconfig, refusing (as kubeadm's kubeconfig phase does) one that exists with another CA.
#[allow(clippy::too_many_arguments)]
fn kubeconfig(ctx: &Ctx, ca: &Ca, file: &str, server: &str, cluster: &str, user: &str, cn: &str, orgs: &[&str]) -> R<()> {
    let path = format!("/etc/kubernetes/{file}");
    if let Ok(text) = ctx.read(&path) {
        let existing = KubeConfig::parse(ctx, &text)?;
        if existing.ca_pem.as_deref().map(str::trim) != Some(ca.cert_pem.trim()) {
            return Err(phase_err("kubeconfig", format!("a kubeconfig file \"{path}\" exists already but has got the wrong CA cert")));
        }
        println!("[kubeconfig] Using existing kubeconfig file: \"{path}\"");
        return Ok(());
    }
    let (c, k) = ca.sign(cn, orgs, &[], &[], false, true)?;
    println!("[kubeconfig] Writing \"{file}\" kubeconfig file");
    ctx.write(&path, kubeconfig_yaml(cluster, server, &ca.cert_pem, user, &Auth::Cert(c, k)), 0o600)
}

pub fn kubeconfigs(ctx: &Ctx, ca: &Ca, view: &ClusterView, node: &NodeInfo, init: bool) -> R<()> {
    let server = format!("https://{}", view.endpoint);
    let local = format!("https://{}", std::net::SocketAddr::new(node.ip, node.bind_port));
    kubeconfig(ctx, ca, "admin.conf", &server, &view.name, "kubernetes-admin", "kubernetes-admin", &["kubeadm:cluster-admins"])?;
    if init {
        kubeconfig(ctx, ca, "super-admin.conf", &server, &view.name, "kubernetes-super-admin", "kubernetes-super-admin", &["system:masters"])?;
        let node_user = format!("system:node:{}", node.name);
        kubeconfig(ctx, ca, "kubelet.conf", &server, &view.name, &node_user, &node_user, &["system:nodes"])?;
    }
    kubeconfig(ctx, ca, "controller-manager.conf", &local, &view.name, "system:kube-controller-manager", "system:kube-controller-manager", &[])?;
    kubeconfig(ctx, ca, "scheduler.conf", &local, &view.name, "system:kube-scheduler", "system:kube-scheduler", &[])
}

/// The four static pod manifests (what a real kubelet would run).
pub fn manifests(ctx: &Ctx, view: &ClusterView, node: &NodeInfo) -> R<()> {
    let image = |c: &str| view.images.iter().find(|i| i.rsplit('/').next().is_some_and(|n| n.starts_with(&format!("{c}:")))).cloned().unwrap_or_default();
    let ip = node.ip.to_string();
    let commands: [(&str, Vec<String>); 4] = [
        ("etcd", vec!["etcd".into(), format!("--advertise-client-urls=https://{ip}:2379"), "--data-dir=/var/lib/etcd".into(), format!("--name={}", node.name), format!("--listen-client-urls=https://127.0.0.1:2379,https://{ip}:2379")]),
        ("kube-apiserver", vec!["kube-apiserver".into(), format!("--advertise-address={ip}"), format!("--secure-port={}", node.bind_port), "--authorization-mode=Node,RBAC".into(), "--client-ca-file=/etc/kubernetes/pki/ca.crt".into(), "--enable-bootstrap-token-auth=true".into(), "--etcd-servers=https://127.0.0.1:2379".into(), format!("--service-cluster-ip-range={}", view.service_subnet), "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt".into(), "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key".into()]),
        ("kube-controller-manager", {
            let mut c = vec!["kube-controller-manager".into(), "--kubeconfig=/etc/kubernetes/controller-manager.conf".into(), "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt".into(), "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key".into(), "--controllers=*,bootstrapsigner,tokencleaner".into()];
            if let Some(p) = &view.pod_subnet {
                c.push("--allocate-node-cidrs=true".into());
                c.push(format!("--cluster-cidr={p}"));
            }
            c
        }),
        ("kube-scheduler", vec!["kube-scheduler".into(), "--kubeconfig=/etc/kubernetes/scheduler.conf".into(), "--bind-address=127.0.0.1".into()]),
    ];
    for (name, command) in commands {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "kube-system", "labels": {"component": name, "tier": "control-plane"}},
            "spec": {"hostNetwork": true, "priorityClassName": "system-node-critical",
                     "containers": [{"name": name, "image": image(name), "imagePullPolicy": "IfNotPresent", "command": command}]},
            "status": {},
        });
        println!("[control-plane] Creating static Pod manifest for \"{name}\"");
        ctx.write(&format!("{MANIFESTS}/{name}.yaml"), serde_yaml_ng::to_string(&pod).expect("yaml"), 0o600)?;
    }
    Ok(())
}

/// /var/lib/kubelet/config.yaml: the cluster's KubeletConfiguration with kubeadm's defaults.
pub fn kubelet_config(view: &ClusterView, user: Option<KubeletConfiguration>) -> String {
    use airgap::kube::kubeadm_api::kubelet::{KubeletAuthentication, KubeletAuthorization, KubeletX509Authentication};
    let mut k = user.unwrap_or_default();
    k.cgroup_driver.get_or_insert_with(|| "systemd".into());
    k.static_pod_path.get_or_insert_with(|| MANIFESTS.into());
    k.rotate_certificates.get_or_insert(true);
    k.cluster_domain.get_or_insert_with(|| view.dns_domain.clone());
    k.cluster_dns.get_or_insert_with(|| view.service_ip(10).map(|i| vec![i.to_string()]).unwrap_or_default());
    k.authentication.get_or_insert_with(|| KubeletAuthentication {
        x509: Some(KubeletX509Authentication { client_ca_file: Some(format!("{PKI}/ca.crt")) }),
        ..Default::default()
    });
    k.authorization.get_or_insert_with(|| KubeletAuthorization { mode: Some("Webhook".into()), ..Default::default() });
    serde_yaml_ng::to_string(&k).expect("yaml")
}

/// /var/lib/kubelet/kubeadm-flags.env (KUBELET_KUBEADM_ARGS, read by the 10-kubeadm.conf drop-in).
pub fn kubeadm_flags(ctx: &Ctx, node: &NodeInfo) -> String {
    let mut args: Vec<(String, String)> = vec![("container-runtime-endpoint".into(), node.cri_socket.clone())];
    if node.name != ctx.hostname().to_lowercase() {
        args.push(("hostname-override".into(), node.name.clone()));
    }
    for a in &node.kubelet_extra_args {
        args.retain(|(n, _)| *n != a.name);
        args.push((a.name.clone(), a.value.clone()));
    }
    args.sort();
    let joined: Vec<String> = args.iter().map(|(n, v)| format!("--{n}={v}")).collect();
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", joined.join(" "))
}

/// kubelet-start: write the kubelet's files, then `systemctl daemon-reload && systemctl restart kubelet`.
pub fn kubelet_start(ctx: &Ctx, config_yaml: &str, node: &NodeInfo) -> R<()> {
    println!("[kubelet-start] Writing kubelet environment file with flags to file \"{KUBELET_FLAGS}\"");
    ctx.write(KUBELET_FLAGS, kubeadm_flags(ctx, node), 0o644)?;
    println!("[kubelet-start] Writing kubelet configuration to file \"{KUBELET_CONFIG}\"");
    ctx.write(KUBELET_CONFIG, config_yaml, 0o644)?;
    println!("[kubelet-start] Starting the kubelet");
    if let Err(e) = services::restart_kubelet(ctx) {
        eprintln!("W0000 [kubelet-start] WARNING: unable to start the kubelet service: [{e}]");
        println!("[kubelet-start] Please ensure kubelet is reloaded and running manually.");
    }
    Ok(())
}

/// Start the stand-in apiserver on the node: the state holder (init) or a proxy to it (join).
pub fn start_apiserver(ctx: &Ctx, node: &NodeInfo, upstream: Option<&str>) -> R<()> {
    let mut a = vec![
        format!("--advertise-address={}", node.ip),
        format!("--secure-port={}", node.bind_port),
        format!("--tls-cert-file={PKI}/apiserver.crt"),
        format!("--tls-private-key-file={PKI}/apiserver.key"),
        format!("--client-ca-file={PKI}/ca.crt"),
    ];
    match upstream {
        Some(u) => a.extend([
            format!("--upstream={u}"),
            format!("--proxy-client-cert-file={PKI}/apiserver-kubelet-client.crt"),
            format!("--proxy-client-key-file={PKI}/apiserver-kubelet-client.key"),
        ]),
        None => a.extend([
            format!("--state-file={}", crate::apiserver::STATE_FILE),
            format!("--cluster-signing-cert-file={PKI}/ca.crt"),
            format!("--cluster-signing-key-file={PKI}/ca.key"),
        ]),
    }
    services::start_apiserver(ctx, &a)?;
    // what the kubelet needs to bring it back after a reboot, as it would a static pod
    ctx.write(APISERVER_ARGS, serde_json::to_string(&a).expect("json"), 0o600)
}

/// The stand-in apiserver's arguments, for the kubelet (static pod stand-in).
pub const APISERVER_ARGS: &str = "/var/lib/k8s-standin/apiserver.args";

/// wait-control-plane: the local apiserver's /healthz answers within `timeout`.
pub fn wait_apiserver(ctx: &Ctx, node: &NodeInfo, timeout: Duration) -> R<()> {
    let ca = ctx.read(&format!("{PKI}/ca.crt")).map_err(|e| kerr(1, e))?;
    let url = format!("https://{}", std::net::SocketAddr::new(node.ip, node.bind_port));
    let c = Client::new(&url, Some(&ca), &Auth::None)?;
    println!("[control-plane-check] Checking kube-apiserver at {url}/livez");
    let start = std::time::Instant::now();
    poll(timeout, Duration::from_millis(100), || c.get("/healthz").ok().filter(|a| a.ok())).map(|_| {
        println!("[control-plane-check] kube-apiserver is healthy after {:?}", start.elapsed());
    }).ok_or_else(|| phase_err("wait-control-plane", format!("failed while waiting for the control plane to start: kube-apiserver check failed at {url}/livez: not healthy after {timeout:?}")))
}

pub fn admin_client(ctx: &Ctx, path: &str) -> R<Client> {
    Client::from_kubeconfig(&KubeConfig::load(ctx, path)?)
}

/// Call and turn transport errors and non-2xx answers into one error string.
pub fn call(c: &Client, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let a = c.call(method, path, body)?;
    if a.ok() {
        Ok(a.body)
    } else {
        Err(a.message())
    }
}

/// mark-control-plane: wait for the node to register, then label and taint it.
pub fn mark_control_plane(c: &Client, name: &str, taints: &[Value], timeout: Duration) -> R<()> {
    println!("[mark-control-plane] Marking the node {name} as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]");
    let path = format!("/api/v1/nodes/{name}");
    let mut last = String::new();
    let node = poll(timeout, Duration::from_millis(250), || match call(c, "GET", &path, None) {
        Ok(n) => Some(n),
        Err(e) => {
            last = e;
            None
        }
    })
    .ok_or_else(|| phase_err("mark-control-plane", format!("error patching Node \"{name}\": timed out waiting for the condition: {last}")))?;
    let mut all: Vec<Value> = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    all.retain(|t| !t["key"].as_str().unwrap_or("").starts_with("node.kubernetes.io/"));
    for t in taints {
        if !all.iter().any(|x| x["key"] == t["key"] && x["effect"] == t["effect"]) {
            all.push(t.clone());
        }
    }
    let patch = json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "node.kubernetes.io/exclude-from-external-load-balancers": ""}},
                       "spec": {"taints": all}});
    call(c, "PATCH", &path, Some(&patch)).map_err(|e| phase_err("mark-control-plane", format!("error patching Node \"{name}\": {e}")))?;
    Ok(())
}
