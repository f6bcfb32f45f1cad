//! `kubeproxy.config.k8s.io/v1alpha1` KubeProxyConfiguration.
//!
//! Source: kubernetes/kube-proxy (published staging copy of k8s.io/kube-proxy) `config/v1alpha1/types.go`
//! at tag kubernetes-1.36.3 (commit 5bfb40fe3b1310c89117147b4f0a2ac163187757); unchanged since
//! kubernetes-1.35.0 (1f06271b043795505c2620ed11cc8f9452721058).

use super::core::{ClientConnectionConfiguration, LoggingConfiguration};
use crate::kube::Duration;
use std::collections::BTreeMap;

/// `kubeproxy.config.k8s.io/v1alpha1`
pub const GROUP_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";

api_struct! {
    pub struct KubeProxyConfiguration: TypeMeta(GROUP_VERSION, "KubeProxyConfiguration") {
        feature_gates: BTreeMap<String, bool>,
        client_connection: ClientConnectionConfiguration,
        logging: LoggingConfiguration,
        hostname_override: String,
        bind_address: String,
        healthz_bind_address: String,
        metrics_bind_address: String,
        bind_address_hard_fail: bool,
        enable_profiling: bool,
        show_hidden_metrics_for_version: String,
        /// `iptables`, `ipvs`, `nftables` (Linux) or `kernelspace` (Windows); unset = iptables on Linux.
        mode: String,
        #[serde(rename = "iptables")]
        iptables: KubeProxyIPTablesConfiguration,
        #[serde(rename = "ipvs")]
        ipvs: KubeProxyIPVSConfiguration,
        #[serde(rename = "nftables")]
        nftables: KubeProxyNFTablesConfiguration,
        winkernel: KubeProxyWinkernelConfiguration,
        detect_local_mode: String,
        detect_local: DetectLocalConfiguration,
        /// Must equal kubeadm's podSubnet (kubeadm fills it from there when unset).
        #[serde(rename = "clusterCIDR")]
        cluster_cidr: String,
        node_port_addresses: Vec<String>,
        oom_score_adj: i32,
        conntrack: KubeProxyConntrackConfiguration,
        config_sync_period: Duration,
        port_range: String,
        windows_run_as_service: bool,
    }
}

api_struct! {
    pub struct KubeProxyIPTablesConfiguration {
        masquerade_bit: i32,
        masquerade_all: bool,
        localhost_node_ports: bool,
        sync_period: Duration,
        min_sync_period: Duration,
    }
}

api_struct! {
    pub struct KubeProxyIPVSConfiguration {
        sync_period: Duration,
        min_sync_period: Duration,
        scheduler: String,
        #[serde(rename = "excludeCIDRs")]
        exclude_cidrs: Vec<String>,
        #[serde(rename = "strictARP")]
        strict_arp: bool,
        tcp_timeout: Duration,
        tcp_fin_timeout: Duration,
        udp_timeout: Duration,
    }
}

api_struct! {
    pub struct KubeProxyNFTablesConfiguration {
        masquerade_bit: i32,
        masquerade_all: bool,
        sync_period: Duration,
        min_sync_period: Duration,
    }
}

api_struct! {
    pub struct KubeProxyConntrackConfiguration {
        max_per_core: i32,
        min: i32,
        tcp_established_timeout: Duration,
        tcp_close_wait_timeout: Duration,
        tcp_be_liberal: bool,
        udp_timeout: Duration,
        udp_stream_timeout: Duration,
    }
}

api_struct! {
    pub struct KubeProxyWinkernelConfiguration {
        network_name: String,
        source_vip: String,
        #[serde(rename = "enableDSR")]
        enable_dsr: bool,
        root_hns_endpoint_name: String,
        forward_health_check_vip: bool,
    }
}

api_struct! {
    pub struct DetectLocalConfiguration {
        bridge_interface: String,
        interface_name_prefix: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names() {
        let y = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n\
                 clusterCIDR: 10.244.0.0/16\nipvs:\n  strictARP: true\n  excludeCIDRs: [10.0.0.0/8]\n  tcpFinTimeout: 30s\n\
                 iptables:\n  localhostNodePorts: false\nconntrack:\n  maxPerCore: 0\n  tcpBeLiberal: true\n\
                 winkernel:\n  enableDSR: false\nclientConnection:\n  qps: 5.5\n  acceptContentTypes: ''\n\
                 logging:\n  flushFrequency: 0\n  verbosity: 0\n  options:\n    json:\n      infoBufferSize: '0'\n";
        let p: KubeProxyConfiguration = serde_yaml_ng::from_str(y).unwrap();
        assert_eq!(p.ipvs.as_ref().unwrap().strict_arp, Some(true));
        assert_eq!(p.ipvs.unwrap().tcp_fin_timeout, Some(Duration::from_secs(30)));
        assert_eq!(p.client_connection.unwrap().qps, Some(5.5));
        assert!(serde_yaml_ng::from_str::<KubeProxyConfiguration>("ipvs:\n  strictArp: true").is_err());
    }
}
