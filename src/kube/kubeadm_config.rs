//! The kubeadm configuration files of a site: one for `kubeadm init --config F --upload-certs` on the first
//! master (InitConfiguration + ClusterConfiguration + KubeletConfiguration + KubeProxyConfiguration) and
//! one per joining node for `kubeadm join --config F` (JoinConfiguration, with `controlPlane` for masters).
//!
//! Everything a join needs is decided before init (see [`super::pki`]): the bootstrap token, the
//! certificate key and the CA pin go into the files, never on a command line (kubeadm refuses
//! `--certificate-key`, `--token`, `--discovery-token-ca-cert-hash` next to `--config` anyway).
//! [`Secrets::Redacted`] renders the same file with every secret as `<secret>` (plan / dry-run output);
//! [`Secrets::Real`] is the file to write [`CONFIG_FILE_MODE`] on the node.
//!
//! What the files pin, and why:
//! - `controlPlaneEndpoint` / `discovery.bootstrapToken.apiServerEndpoint` = the masters' VIP (haproxy
//!   `:16443`), `localAPIEndpoint` = the node's own address and `:6443`;
//! - `imageRepository` = the site registry (`<workers' VIP>:5000`): kubeadm then pulls every image,
//!   pause and etcd included, from there and nowhere else; and `dns.imageRepository` = `<repo>/coredns`:
//!   with a custom imageRepository kubeadm would ask for `<repo>/coredns:<tag>`, but the site registry
//!   serves `registry.k8s.io/coredns/coredns` under its upstream path `coredns/coredns`; this makes kubeadm
//!   ask for `<repo>/coredns/coredns:<tag>`, so every image is the upstream path under the registry
//!   ([`super::images::ImageSet::at_site`]);
//! - `certSANs` = the VIP, every master's address and name;
//! - `criSocket` = containerd's socket, kubelet `--node-ip` = the node's inventory address, the systemd
//!   cgroup driver (what the runtime step configures containerd with);
//! - kube-proxy in `iptables` mode with `clusterCIDR` = the pod subnet (ipvs is deprecated since 1.35 and
//!   nftables needs kernel >= 5.13, which older customer nodes do not have);
//! - `encryptionAlgorithm` = the CA's key type.

use super::kubeadm_api::core::{Arg, PullPolicy};
use super::kubeadm_api::kubelet::KubeletConfiguration;
use super::kubeadm_api::kubeproxy::KubeProxyConfiguration;
use super::kubeadm_api::v1beta4::{
    APIEndpoint, APIServer, BootstrapToken as ApiToken, BootstrapTokenDiscovery, ClusterConfiguration, Discovery,
    InitConfiguration, JoinConfiguration, JoinControlPlane, Networking, NodeRegistrationOptions, DNS,
};
use super::kubeadm_api::{self, Document};
use super::pki::{BootstrapToken, CaCertHash, CertificateKey, KeyAlgorithm};
use super::{Duration, Error, Result, Version};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// containerd's CRI socket.
pub const CONTAINERD_SOCKET: &str = "unix:///run/containerd/containerd.sock";
/// The apiserver's port on each master (haproxy forwards the VIP's `:16443` to it).
pub const APISERVER_BIND_PORT: u16 = 6443;
/// The masters' VIP port (haproxy).
pub const CONTROL_PLANE_ENDPOINT_PORT: u16 = 16443;
/// Where the configuration files go on the nodes, and their mode (they hold secrets).
pub const INIT_CONFIG_PATH: &str = "/etc/kubernetes/airgap/kubeadm-init.yaml";
pub const JOIN_CONFIG_PATH: &str = "/etc/kubernetes/airgap/kubeadm-join.yaml";
pub const CONFIG_FILE_MODE: u32 = 0o600;
/// kubeadm's SystemVerification preflight check: since 1.35 it fails on cgroup v1 hosts.
pub const CGROUP_V1_PREFLIGHT: &str = "SystemVerification";

/// A node as the configuration needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInput {
    /// The node name (= hostname).
    pub name: String,
    /// The inventory address: kubelet `--node-ip`, and the apiserver's advertise address on a master.
    pub address: IpAddr,
}

/// The cluster-wide inputs.
#[derive(Clone, Debug)]
pub struct ClusterInput {
    pub kubernetes_version: Version,
    pub cluster_name: String,
    /// The masters' VIP and haproxy port (`VIP:16443`).
    pub control_plane_endpoint: SocketAddr,
    /// Every master, the first one (where init runs) first.
    pub masters: Vec<NodeInput>,
    /// The site registry, `<workers' VIP>:5000`.
    pub image_repository: String,
    pub pod_subnet: IpNet,
    pub service_subnet: IpNet,
    /// `None` = kubeadm's `cluster.local`.
    pub dns_domain: Option<String>,
    /// Added to the VIP and the masters' addresses and names.
    pub extra_cert_sans: Vec<String>,
    pub cri_socket: String,
    /// The CA's key type, written as `encryptionAlgorithm` (kubeadm's other keys follow it).
    pub key_algorithm: KeyAlgorithm,
    /// Lifetime of the bootstrap token (kubeadm's default 24h); the joins must happen within it.
    pub token_ttl: Duration,
    /// Let kubelet >= 1.35 run on cgroup v1 hosts (e.g. CentOS 7): `failCgroupV1: false` and kubeadm's
    /// SystemVerification preflight error ignored on every node. Upstream deprecates cgroup v1.
    pub allow_cgroup_v1: bool,
}

impl ClusterInput {
    /// The defaults for everything that is not site-specific.
    pub fn new(
        kubernetes_version: Version,
        cluster_name: impl Into<String>,
        masters_vip: IpAddr,
        masters: Vec<NodeInput>,
        workers_vip: IpAddr,
        pod_subnet: IpNet,
        service_subnet: IpNet,
    ) -> Self {
        ClusterInput {
            kubernetes_version,
            cluster_name: cluster_name.into(),
            control_plane_endpoint: SocketAddr::new(masters_vip, CONTROL_PLANE_ENDPOINT_PORT),
            masters,
            image_repository: SocketAddr::new(workers_vip, 5000).to_string(),
            pod_subnet,
            service_subnet,
            dns_domain: None,
            extra_cert_sans: Vec::new(),
            cri_socket: CONTAINERD_SOCKET.to_string(),
            key_algorithm: KeyAlgorithm::Rsa2048,
            token_ttl: Duration::from_hours(24),
            allow_cgroup_v1: false,
        }
    }

    /// The apiserver certificate's extra SANs: the VIP, then every master's address and name (no duplicates).
    pub fn cert_sans(&self) -> Vec<String> {
        let mut sans = vec![self.control_plane_endpoint.ip().to_string()];
        for m in &self.masters {
            sans.push(m.address.to_string());
            sans.push(m.name.clone());
        }
        sans.extend(self.extra_cert_sans.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        sans.retain(|s| seen.insert(s.clone()));
        sans
    }

    fn check(&self) -> Result<()> {
        kubeadm_api::api_version_for(&self.kubernetes_version)?;
        let bad = |m: String| Err(Error::Invalid(m));
        if self.cluster_name.is_empty() {
            return bad("the cluster name is empty".into());
        }
        if self.masters.is_empty() {
            return bad("no master: kubeadm init needs one".into());
        }
        if self.image_repository.is_empty() || self.image_repository.contains("://") || self.image_repository.ends_with('/') {
            return bad(format!(
                "imageRepository {:?} is not a registry host[:port][/path] (no scheme, no trailing slash)",
                self.image_repository
            ));
        }
        if self.pod_subnet.contains(&self.service_subnet) || self.service_subnet.contains(&self.pod_subnet) {
            return bad(format!("the pod subnet {} and the service subnet {} overlap", self.pod_subnet, self.service_subnet));
        }
        if self.token_ttl.as_nanos() <= 0 {
            return bad(format!("the bootstrap token TTL {} is not positive", self.token_ttl));
        }
        Ok(())
    }

    fn node_registration(&self, node: &NodeInput) -> NodeRegistrationOptions {
        NodeRegistrationOptions {
            name: Some(node.name.clone()),
            cri_socket: Some(self.cri_socket.clone()),
            kubelet_extra_args: Some(vec![Arg::new("node-ip", node.address.to_string())]),
            ignore_preflight_errors: self.allow_cgroup_v1.then(|| vec![CGROUP_V1_PREFLIGHT.to_string()]),
            // the images are in the site registry (checked before init); never pull what is there already
            image_pull_policy: Some(PullPolicy::IfNotPresent),
            ..Default::default()
        }
    }

    fn local_endpoint(node: &NodeInput) -> APIEndpoint {
        APIEndpoint { advertise_address: Some(node.address.to_string()), bind_port: Some(APISERVER_BIND_PORT.into()) }
    }

    fn master(&self, node: &NodeInput) -> Result<()> {
        if self.masters.iter().any(|m| m == node) {
            Ok(())
        } else {
            Err(Error::Invalid(format!("{} ({}) is not one of the cluster's masters", node.name, node.address)))
        }
    }
}

/// What the joins need from init, decided before it.
#[derive(Clone, Debug)]
pub struct JoinSecrets {
    pub token: BootstrapToken,
    pub certificate_key: CertificateKey,
    /// Public (a pin), but it belongs with the rest.
    pub ca_cert_hash: CaCertHash,
}

/// Real secrets (the file for the node) or `<secret>` (plan, dry-run, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    Real,
    Redacted,
}

/// How a node joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRole {
    ControlPlane,
    Worker,
}

/// The typed documents of the first master's `kubeadm init` configuration (secrets real).
pub fn init_documents(cluster: &ClusterInput, secrets: &JoinSecrets) -> Result<Vec<Document>> {
    cluster.check()?;
    let first = &cluster.masters[0];
    let init = InitConfiguration {
        bootstrap_tokens: Some(vec![ApiToken {
            token: secrets.token.expose_secret(),
            description: Some(format!("airgap: joins of the {} nodes", cluster.cluster_name)),
            ttl: Some(cluster.token_ttl),
            ..Default::default()
        }]),
        node_registration: Some(cluster.node_registration(first)),
        local_api_endpoint: Some(ClusterInput::local_endpoint(first)),
        certificate_key: Some(secrets.certificate_key.expose_secret().to_string()),
        ..InitConfiguration::new()
    };
    let cluster_config = ClusterConfiguration {
        networking: Some(Networking {
            service_subnet: Some(cluster.service_subnet.to_string()),
            pod_subnet: Some(cluster.pod_subnet.to_string()),
            dns_domain: cluster.dns_domain.clone(),
        }),
        kubernetes_version: Some(cluster.kubernetes_version.to_string()),
        control_plane_endpoint: Some(cluster.control_plane_endpoint.to_string()),
        api_server: Some(APIServer { cert_sans: Some(cluster.cert_sans()), ..Default::default() }),
        dns: Some(DNS { image_repository: Some(format!("{}/coredns", cluster.image_repository)), ..Default::default() }),
        image_repository: Some(cluster.image_repository.clone()),
        cluster_name: Some(cluster.cluster_name.clone()),
        encryption_algorithm: Some(cluster.key_algorithm.encryption_algorithm()),
        ..ClusterConfiguration::new()
    };
    let kubelet = KubeletConfiguration {
        cgroup_driver: Some("systemd".into()),
        fail_cgroup_v1: cluster.allow_cgroup_v1.then_some(false),
        ..KubeletConfiguration::new()
    };
    let proxy = KubeProxyConfiguration {
        mode: Some("iptables".into()),
        cluster_cidr: Some(cluster.pod_subnet.to_string()),
        ..KubeProxyConfiguration::new()
    };
    Ok(vec![
        Document::Init(Box::new(init)),
        Document::Cluster(Box::new(cluster_config)),
        Document::Kubelet(Box::new(kubelet)),
        Document::KubeProxy(Box::new(proxy)),
    ])
}

/// The typed JoinConfiguration of `node` (secrets real).
pub fn join_documents(cluster: &ClusterInput, node: &NodeInput, role: JoinRole, secrets: &JoinSecrets) -> Result<Vec<Document>> {
    cluster.check()?;
    match role {
        JoinRole::ControlPlane => {
            cluster.master(node)?;
            if cluster.masters[0] == *node {
                return Err(Error::Invalid(format!("{} is the first master: it runs kubeadm init, not join", node.name)));
            }
        }
        JoinRole::Worker => {
            if cluster.masters.iter().any(|m| m.name == node.name || m.address == node.address) {
                return Err(Error::Invalid(format!("{} is a master: it joins as a control-plane member", node.name)));
            }
        }
    }
    let join = JoinConfiguration {
        node_registration: Some(cluster.node_registration(node)),
        discovery: Some(Discovery {
            bootstrap_token: Some(BootstrapTokenDiscovery {
                token: secrets.token.expose_secret(),
                api_server_endpoint: Some(cluster.control_plane_endpoint.to_string()),
                ca_cert_hashes: Some(vec![secrets.ca_cert_hash.to_string()]),
                unsafe_skip_ca_verification: None,
            }),
            ..Default::default()
        }),
        control_plane: (role == JoinRole::ControlPlane).then(|| JoinControlPlane {
            local_api_endpoint: Some(ClusterInput::local_endpoint(node)),
            certificate_key: Some(secrets.certificate_key.expose_secret().to_string()),
        }),
        ..JoinConfiguration::new()
    };
    Ok(vec![Document::Join(Box::new(join))])
}

fn render(header: String, mut docs: Vec<Document>, mode: Secrets) -> Result<String> {
    if mode == Secrets::Redacted {
        docs.iter_mut().for_each(Document::redact_secrets);
    }
    Ok(format!("{header}{}", kubeadm_api::to_yaml(&docs)?))
}

/// The `kubeadm init` configuration file of the first master.
pub fn render_init(cluster: &ClusterInput, secrets: &JoinSecrets, mode: Secrets) -> Result<String> {
    let docs = init_documents(cluster, secrets)?;
    let header = format!(
        "# kubeadm init --config {INIT_CONFIG_PATH} --upload-certs  ({}, Kubernetes {}), written by airgap\n",
        cluster.masters[0].name, cluster.kubernetes_version
    );
    render(header, docs, mode)
}

/// The `kubeadm join` configuration file of `node`.
pub fn render_join(cluster: &ClusterInput, node: &NodeInput, role: JoinRole, secrets: &JoinSecrets, mode: Secrets) -> Result<String> {
    let docs = join_documents(cluster, node, role, secrets)?;
    let what = match role {
        JoinRole::ControlPlane => "control-plane member",
        JoinRole::Worker => "worker",
    };
    let header = format!(
        "# kubeadm join --config {JOIN_CONFIG_PATH}  ({}, {what}, Kubernetes {}), written by airgap\n",
        node.name, cluster.kubernetes_version
    );
    render(header, docs, mode)
}

#[cfg(test)]
mod tests;
