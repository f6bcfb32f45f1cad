//! `kubelet`: `kubelet --version`, and the daemon systemd runs from kubelet.service + 10-kubeadm.conf
//! (`$KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS`). It checks
//! what the install must get right: only known flags, `--config` a KubeletConfiguration (parsed strictly)
//! with `cgroupDriver: systemd` (what containerd is configured with), `--kubeconfig` given, `--node-ip`
//! given and one of the node's addresses. Then it does the TLS bootstrap when only the bootstrap
//! kubeconfig exists (kubeadm join), registers the node and posts its status every
//! `nodeStatusUpdateFrequency` (10 s). It runs no containers.

use crate::client::Client;
use crate::common::{self, fail, Ctx, R};
use crate::flags::{self, flag, short, Kind};
use crate::pki::KubeConfig;
use airgap::kube::kubeadm_api::{parse_documents, Document};
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

const SPECS: &[flags::Spec] = &[
    flag("version", Kind::Bool),
    flag("config", Kind::Str),
    flag("kubeconfig", Kind::Str),
    flag("bootstrap-kubeconfig", Kind::Str),
    flag("node-ip", Kind::Str),
    flag("hostname-override", Kind::Str),
    flag("container-runtime-endpoint", Kind::Str),
    flag("image-service-endpoint", Kind::Str),
    flag("pod-infra-container-image", Kind::Str),
    flag("node-labels", Kind::Str),
    flag("register-with-taints", Kind::Str),
    flag("root-dir", Kind::Str),
    flag("cert-dir", Kind::Str),
    flag("cloud-provider", Kind::Str),
    flag("provider-id", Kind::Str),
    flag("runtime-request-timeout", Kind::Str),
    flag("feature-gates", Kind::Str),
    flag("fail-swap-on", Kind::Bool),
    flag("cgroup-driver", Kind::Str),
    flag("max-pods", Kind::Int),
    flag("resolv-conf", Kind::Str),
    flag("log-file", Kind::Str),
    flag("logtostderr", Kind::Bool),
    short("v", 'v', Kind::Int),
];

fn fatal(msg: impl std::fmt::Display) -> crate::common::Fail {
    fail(format!("E0000 run.go:72] \"command failed\" err=\"{msg}\""))
}

/// Whether `ip` is one of this host's (network namespace's) addresses: it can be bound.
fn local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

pub fn main(ctx: &Ctx, args: &[String]) -> R<()> {
    let p = flags::parse(args, SPECS).map_err(|e| fail(format!("Error: failed to parse kubelet flag: {e}")))?;
    if p.has("version") {
        println!("Kubernetes {}", ctx.version());
        return Ok(());
    }
    let argv: Vec<String> = std::iter::once("kubelet".to_string()).chain(args.iter().cloned()).collect();
    let config_path = p.str("config").ok_or_else(|| fatal("k8s-standin: the kubelet needs --config (10-kubeadm.conf passes --config=/var/lib/kubelet/config.yaml)"))?;
    let text = ctx
        .read_config(config_path)
        .map_err(|e| fatal(format!("failed to load kubelet config file, path: {config_path}, error: failed to read kubelet config file \"{config_path}\", error: open {config_path}: {}", crate::kubeadm::go_err(&e))))?;
    let cfg = parse_documents(&text)
        .map_err(|e| fatal(format!("failed to load kubelet config file, path: {config_path}, error: strict decoding error: {e}")))?
        .into_iter()
        .find_map(|d| match d {
            Document::Kubelet(k) => Some(*k),
            _ => None,
        })
        .ok_or_else(|| fatal(format!("failed to load kubelet config file, path: {config_path}, error: no KubeletConfiguration in it")))?;
    let driver = cfg.cgroup_driver.clone().unwrap_or_else(|| "cgroupfs".into());
    if driver != "systemd" {
        return Err(fatal(format!(
            "failed to run Kubelet: cgroupDriver is \"{driver}\" in {config_path}, but the container runtime (containerd, SystemdCgroup = true) uses \"systemd\"; the k8s-standin requires them to agree"
        )));
    }
    let kubeconfig = p.str("kubeconfig").ok_or_else(|| fatal("k8s-standin: the kubelet needs --kubeconfig (10-kubeadm.conf passes --kubeconfig=/etc/kubernetes/kubelet.conf)"))?;
    let node_ip: IpAddr = match p.str("node-ip") {
        None => return Err(fatal("k8s-standin: the kubelet needs --node-ip (KUBELET_EXTRA_ARGS or nodeRegistration.kubeletExtraArgs)")),
        Some(s) => s.parse().map_err(|_| fatal(format!("failed to parse node IP {s:?}")))?,
    };
    if !local_address(node_ip) {
        return Err(fatal(format!("failed to validate nodeIP: node IP: \"{node_ip}\" not found in the host's network interfaces")));
    }
    let name = p.str("hostname-override").map(str::to_string).unwrap_or_else(|| ctx.hostname()).to_lowercase();
    common::record_call(ctx, "kubelet", &argv, None, None);

    if !ctx.exists(kubeconfig) {
        let boot = p.str("bootstrap-kubeconfig").filter(|b| ctx.exists(b)).ok_or_else(|| {
            fatal(format!(
                "failed to run Kubelet: unable to load bootstrap kubeconfig: stat {}: no such file or directory",
                p.str("bootstrap-kubeconfig").unwrap_or("(no --bootstrap-kubeconfig)")
            ))
        })?;
        tls_bootstrap(ctx, boot, kubeconfig, &name)?;
    }
    // the static pod: a control-plane node's apiserver comes back with the kubelet (e.g. after a reboot)
    let manifest = "/etc/kubernetes/manifests/kube-apiserver.yaml";
    if ctx.exists(manifest) && !crate::services::active(ctx, crate::services::APISERVER_UNIT) {
        if let Some(a) = ctx.read(crate::kubeadm::APISERVER_ARGS).ok().and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok()) {
            eprintln!("I0000 kubelet.go] \"Starting static pod\" manifest=\"{manifest}\"");
            if let Err(e) = crate::services::start_apiserver(ctx, &a) {
                eprintln!("E0000 kubelet.go] \"Failed to start static pod\" err=\"{}\"", e.msg);
            }
        }
    }
    // kubelet port: the preflight checks of a second init/join see it in use
    if let Ok(l) = std::net::TcpListener::bind((if ctx.sandboxed() { node_ip } else { IpAddr::from([0, 0, 0, 0]) }, 10250)) {
        std::thread::spawn(move || for _ in l.incoming() {});
    }
    let period = cfg.node_status_update_frequency.and_then(|d| d.to_std()).unwrap_or(Duration::from_secs(10));
    let client = Client::from_kubeconfig(&KubeConfig::load(ctx, kubeconfig).map_err(|e| fatal(e.msg))?)?;
    let arch = std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64");
    let status = json!({
        "addresses": [{"type": "InternalIP", "address": node_ip.to_string()}, {"type": "Hostname", "address": name}],
        "nodeInfo": {"kubeletVersion": ctx.version().to_string(), "kubeProxyVersion": "", "containerRuntimeVersion": "containerd://k8s-standin",
                     "architecture": arch, "operatingSystem": "linux", "osImage": "k8s-standin"},
    });
    eprintln!("I0000 kubelet.go] \"Starting kubelet\" node=\"{name}\" nodeIP=\"{node_ip}\"");
    let mut registered = false;
    loop {
        match client.call("POST", &format!("/standin/v1/nodes/{name}/heartbeat"), Some(&status)) {
            Ok(a) if a.ok() => {
                if !registered {
                    eprintln!("I0000 kubelet_node_status.go] \"Successfully registered node\" node=\"{name}\"");
                    registered = true;
                }
            }
            Ok(a) => eprintln!("E0000 kubelet_node_status.go] \"Unable to register node with API server\" err=\"{}\" node=\"{name}\"", a.message()),
            Err(e) => eprintln!("E0000 kubelet_node_status.go] \"Unable to register node with API server\" err=\"{e}\" node=\"{name}\""),
        }
        std::thread::sleep(if registered { period } else { Duration::from_secs(1) }); // kubelet's node status period
    }
}

/// The TLS bootstrap: with the bootstrap token, obtain a client certificate for `system:node:<name>`,
/// write it to /var/lib/kubelet/pki/kubelet-client-current.pem and the kubeconfig pointing at it.
fn tls_bootstrap(ctx: &Ctx, boot: &str, kubeconfig: &str, name: &str) -> R<()> {
    let kc = KubeConfig::load(ctx, boot).map_err(|e| fatal(e.msg))?;
    let client = Client::from_kubeconfig(&kc)?;
    let mut warned = false;
    let answer = loop {
        match client.call("POST", "/standin/v1/tlsbootstrap", Some(&json!({"nodeName": name}))) {
            Ok(a) if a.ok() => break a.body,
            Ok(a) if a.status == 401 || a.status == 403 => {
                return Err(fatal(format!("failed to run Kubelet: cannot create certificate signing request: {}", a.message())));
            }
            other => {
                if !warned {
                    let why = match other {
                        Ok(a) => a.message(),
                        Err(e) => e,
                    };
                    eprintln!("E0000 bootstrap.go] \"Unhandled Error\" err=\"cannot create certificate signing request: {why}\"");
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(2)); // kubelet's CSR retry period
            }
        }
    };
    let pem = format!("{}{}", answer["certificate"].as_str().unwrap_or(""), answer["key"].as_str().unwrap_or(""));
    let cert_file = "/var/lib/kubelet/pki/kubelet-client-current.pem";
    ctx.write(cert_file, &pem, 0o600)?;
    let ca = kc.ca_pem.clone().unwrap_or_default();
    let yaml = crate::pki::kubeconfig_with(&kc.cluster_name, &kc.server, &ca, "default-auth", json!({"client-certificate": cert_file, "client-key": cert_file}));
    ctx.write(kubeconfig, yaml, 0o600)?;
    eprintln!("I0000 bootstrap.go] \"Client certificate written\" path=\"{cert_file}\"");
    Ok(())
}
