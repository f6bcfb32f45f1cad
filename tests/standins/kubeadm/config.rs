//! Reading kubeadm configuration files with airgap's typed mirrors (src/kube), then kubeadm's defaults and
//! field validation (validation.go: ValidateInitConfiguration / ValidateJoinConfiguration, the messages as
//! field.ErrorList prints them).
//!
//! One deliberate difference: an unknown field is REFUSED here. kubeadm init/join only log a warning for
//! it (`documentMapToInitConfiguration(..., strictErrors=false, ...)` in app/util/config; `kubeadm config
//! validate` is the strict path); the stand-in is stricter so that a misspelled field in a rendered
//! configuration cannot go unnoticed.

use super::kerr;
use crate::common::{Ctx, R};
use airgap::kube::kubeadm_api::kubelet::KubeletConfiguration;
use airgap::kube::kubeadm_api::kubeproxy::KubeProxyConfiguration;
use airgap::kube::kubeadm_api::v1beta4::{ClusterConfiguration, InitConfiguration, JoinConfiguration};
use airgap::kube::kubeadm_api::{parse_documents, Document};
use airgap::kube::Version;
use std::net::IpAddr;

pub struct InitCfg {
    pub init: InitConfiguration,
    pub cluster: ClusterConfiguration,
    pub kubelet: Option<KubeletConfiguration>,
    pub proxy: Option<KubeProxyConfiguration>,
}

/// Read and strictly parse a configuration file.
pub fn read_docs(ctx: &Ctx, path: &str) -> R<Vec<Document>> {
    let text = ctx.read_config(path).map_err(|e| kerr(1, format!("unable to read config from \"{path}\" : open {path}: {}", super::go_err(&e))))?;
    parse_documents(&text).map_err(|e| kerr(1, format!("strict decoding error: {e}")))
}

pub fn load_init(ctx: &Ctx, path: &str) -> R<InitCfg> {
    let mut cfg = InitCfg { init: InitConfiguration::new(), cluster: ClusterConfiguration::new(), kubelet: None, proxy: None };
    for d in read_docs(ctx, path)? {
        match d {
            Document::Init(i) => cfg.init = *i,
            Document::Cluster(c) => cfg.cluster = *c,
            Document::Kubelet(k) => cfg.kubelet = Some(*k),
            Document::KubeProxy(p) => cfg.proxy = Some(*p),
            other => eprintln!("W0000 [config] WARNING: Ignored configuration document with GroupVersionKind {}, Kind={}", other.api_version(), other.kind()),
        }
    }
    Ok(cfg)
}

pub fn load_join(ctx: &Ctx, path: &str) -> R<JoinConfiguration> {
    let mut join = None;
    for d in read_docs(ctx, path)? {
        match d {
            Document::Join(j) => join = Some(*j),
            other => eprintln!("W0000 [config] WARNING: Ignored configuration document with GroupVersionKind {}, Kind={}", other.api_version(), other.kind()),
        }
    }
    join.ok_or_else(|| kerr(1, "no JoinConfiguration found in the supplied config"))
}

/// Collected field errors, printed as `ToAggregate()` does.
#[derive(Default)]
pub struct Errs(pub Vec<String>);

impl Errs {
    pub fn invalid(&mut self, field: &str, value: &str, why: &str) {
        self.0.push(format!("{field}: Invalid value: \"{value}\": {why}"));
    }
    pub fn required(&mut self, field: &str, why: &str) {
        self.0.push(format!("{field}: Required value: {why}"));
    }
    pub fn into_result(self) -> R<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(kerr(3, &self.0[0])),
            _ => Err(kerr(3, format!("[{}]", self.0.join(", ")))),
        }
    }
}

pub fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !l.starts_with('-') && !l.ends_with('-')
        })
}

pub fn check_name(e: &mut Errs, field: &str, name: &str) {
    if !dns1123_subdomain(name) {
        e.invalid(field, name, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
    }
}

pub fn check_token(e: &mut Errs, field: &str, token: &str) {
    if token.parse::<airgap::kube::pki::BootstrapToken>().is_err() {
        e.invalid(field, token, "the bootstrap token is invalid");
    }
}

pub fn check_certificate_key(e: &mut Errs, field: &str, key: &str) {
    if key.is_empty() {
        return;
    }
    match hex::decode(key) {
        Err(err) => e.invalid(field, key, &format!("certificate key decoding error: encoding/hex: {err}")),
        Ok(b) if b.len() != 32 => e.invalid(field, key, &format!("invalid certificate key size {}, the key must be an AES key of size 32", b.len())),
        Ok(_) => {}
    }
}

pub fn check_cri_socket(e: &mut Errs, field: &str, s: &str) {
    if !s.starts_with("unix://") {
        let scheme = s.split_once("://").map(|(a, _)| a).unwrap_or("");
        e.invalid(field, s, &format!("only URL scheme \"unix\" is supported, got \"{scheme}\""));
    }
}

pub fn check_host_port(e: &mut Errs, field: &str, ep: &str, why: &str) {
    let ok = match ep.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
        None => !ep.is_empty(),
    };
    if !ok {
        e.invalid(field, ep, why);
    }
}

/// The cluster as one ClusterConfiguration (+ the local endpoint) describes it, with kubeadm's defaults.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub version: Version,
    pub name: String,
    /// `host:port` every kubeconfig and joining node uses.
    pub endpoint: String,
    pub pod_subnet: Option<String>,
    pub service_subnet: String,
    pub dns_domain: String,
    pub cert_sans: Vec<String>,
    /// What kubeadm pulls (imageRepository and dns/etcd overrides applied).
    pub images: Vec<String>,
}

impl ClusterView {
    pub fn of(ctx: &Ctx, c: &ClusterConfiguration, local: Option<(IpAddr, u16)>) -> R<ClusterView> {
        let own = ctx.version();
        let version: Version = match c.kubernetes_version.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => v.parse().map_err(|_| kerr(1, format!("couldn't parse Kubernetes version {v:?}")))?,
            None => {
                eprintln!("W0000 version.go:109] could not fetch a Kubernetes version from the internet: unable to get URL \"https://dl.k8s.io/release/stable-1.txt\" (no internet)\nW0000 version.go:110] falling back to the local client version: {own}");
                own
            }
        };
        let min = Version::new(own.major, own.minor.saturating_sub(1), 0);
        if version < min {
            return Err(kerr(1, format!("this version of kubeadm only supports deploying clusters with the control plane version >= {}. Current version: {version}", min.to_string().trim_start_matches('v'))));
        }
        if !version.same_minor(&own) && version > own {
            eprintln!("[preflight] WARNING: Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes version: {version}. Kubeadm version: {}.{}.x", own.major, own.minor);
        }
        let set = airgap::kube::images::images_for(&version).map_err(|e| kerr(1, format!("k8s-standin: {e}")))?;
        let images = set.pulled_with(c);
        let endpoint = match (c.control_plane_endpoint.as_deref().filter(|s| !s.is_empty()), local) {
            (Some(ep), Some((_, port))) if !ep.contains(':') || ep.ends_with(']') => format!("{ep}:{port}"),
            (Some(ep), _) => ep.to_string(),
            (None, Some((ip, port))) => std::net::SocketAddr::new(ip, port).to_string(),
            (None, None) => String::new(),
        };
        let net = c.networking.clone().unwrap_or_default();
        Ok(ClusterView {
            version,
            name: c.cluster_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "kubernetes".into()),
            endpoint,
            pod_subnet: net.pod_subnet.filter(|s| !s.is_empty()),
            service_subnet: net.service_subnet.filter(|s| !s.is_empty()).unwrap_or_else(|| "10.96.0.0/12".into()),
            dns_domain: net.dns_domain.filter(|s| !s.is_empty()).unwrap_or_else(|| "cluster.local".into()),
            cert_sans: c.api_server.as_ref().and_then(|a| a.cert_sans.clone()).unwrap_or_default(),
            images,
        })
    }

    /// The n-th address of the service subnet (1: the `kubernetes` Service, 10: CoreDNS).
    pub fn service_ip(&self, n: u32) -> Option<IpAddr> {
        let net: ipnet::IpNet = self.service_subnet.split(',').next()?.trim().parse().ok()?;
        match net.network() {
            IpAddr::V4(a) => Some(IpAddr::V4((u32::from(a) + n).into())),
            IpAddr::V6(a) => Some(IpAddr::V6((u128::from(a) + n as u128).into())),
        }
    }

    pub fn endpoint_host(&self) -> String {
        crate::net::split_host_port(&self.endpoint, 6443).0
    }
}

/// ValidateClusterConfiguration, the parts a site's configuration can get wrong.
pub fn check_cluster(e: &mut Errs, c: &ClusterConfiguration) {
    if let Some(ep) = c.control_plane_endpoint.as_deref().filter(|s| !s.is_empty()) {
        check_host_port(e, "controlPlaneEndpoint", ep, "endpoint is not valid");
    }
    if let Some(n) = &c.networking {
        for (f, v) in [("networking.podSubnet", &n.pod_subnet), ("networking.serviceSubnet", &n.service_subnet)] {
            if let Some(v) = v.as_deref().filter(|s| !s.is_empty()) {
                if v.split(',').any(|s| s.trim().parse::<ipnet::IpNet>().is_err()) {
                    e.invalid(f, v, "couldn't parse subnet");
                }
            }
        }
    }
    if let Some(r) = c.image_repository.as_deref().filter(|s| !s.is_empty()) {
        if r.contains("://") || r.ends_with('/') || r.contains(' ') {
            e.invalid("imageRepository", r, "invalid image repository format");
        }
    }
    if let Some(d) = c.certificates_dir.as_deref().filter(|d| *d != "/etc/kubernetes/pki") {
        e.invalid("certificatesDir", d, "the k8s-standin supports only /etc/kubernetes/pki");
    }
}
