//! `kubelet.config.k8s.io/v1beta1` KubeletConfiguration.
//!
//! Source: kubernetes/kubelet (the published staging copy of k8s.io/kubelet) `config/v1beta1/types.go` at
//! tag kubernetes-1.36.3 (commit bbb4f8f0907ace5f317f33e06413a55a5f4636f6). Against kubernetes-1.35.7
//! (53285727612c017f985231451b8c37226680182c; identical to kubernetes-1.35.0, 07d8bcee) 1.36 adds exactly
//! two fields, `tlsCurvePreferences` and `memoryReservationPolicy`, checked per version by
//! [`super::Document::check_version`].
//!
//! Every field is optional: kubeadm and the kubelet default what is unset. String enums the kubelet
//! validates itself (cgroupDriver, cpuManagerPolicy, ...) stay strings.

use super::core::{LoggingConfiguration, ResourceList, Taint, TracingConfiguration};
use crate::kube::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `kubelet.config.k8s.io/v1beta1`
pub const GROUP_VERSION: &str = "kubelet.config.k8s.io/v1beta1";

/// Fields that appeared after 1.35: (field name, first release).
pub(super) const SINCE: &[(&str, (u32, u32))] = &[("tlsCurvePreferences", (1, 36)), ("memoryReservationPolicy", (1, 36))];

api_struct! {
    pub struct KubeletConfiguration: TypeMeta(GROUP_VERSION, "KubeletConfiguration") {
        enable_server: bool,
        static_pod_path: String,
        pod_logs_dir: String,
        sync_frequency: Duration,
        file_check_frequency: Duration,
        http_check_frequency: Duration,
        #[serde(rename = "staticPodURL")]
        static_pod_url: String,
        #[serde(rename = "staticPodURLHeader")]
        static_pod_url_header: BTreeMap<String, Vec<String>>,
        address: String,
        port: i32,
        read_only_port: i32,
        tls_cert_file: String,
        tls_private_key_file: String,
        tls_cipher_suites: Vec<String>,
        /// Since 1.36.
        tls_curve_preferences: Vec<i32>,
        tls_min_version: String,
        rotate_certificates: bool,
        #[serde(rename = "serverTLSBootstrap")]
        server_tls_bootstrap: bool,
        authentication: KubeletAuthentication,
        authorization: KubeletAuthorization,
        #[serde(rename = "registryPullQPS")]
        registry_pull_qps: i32,
        registry_burst: i32,
        image_pull_credentials_verification_policy: String,
        preloaded_images_verification_allowlist: Vec<String>,
        #[serde(rename = "eventRecordQPS")]
        event_record_qps: i32,
        event_burst: i32,
        enable_debugging_handlers: bool,
        enable_contention_profiling: bool,
        healthz_port: i32,
        healthz_bind_address: String,
        oom_score_adj: i32,
        cluster_domain: String,
        #[serde(rename = "clusterDNS")]
        cluster_dns: Vec<String>,
        streaming_connection_idle_timeout: Duration,
        node_status_update_frequency: Duration,
        node_status_report_frequency: Duration,
        node_lease_duration_seconds: i32,
        #[serde(rename = "imageMinimumGCAge")]
        image_minimum_gc_age: Duration,
        #[serde(rename = "imageMaximumGCAge")]
        image_maximum_gc_age: Duration,
        #[serde(rename = "imageGCHighThresholdPercent")]
        image_gc_high_threshold_percent: i32,
        #[serde(rename = "imageGCLowThresholdPercent")]
        image_gc_low_threshold_percent: i32,
        volume_stats_agg_period: Duration,
        kubelet_cgroups: String,
        system_cgroups: String,
        cgroup_root: String,
        #[serde(rename = "cgroupsPerQOS")]
        cgroups_per_qos: bool,
        /// `systemd` or `cgroupfs`: must match the container runtime's.
        cgroup_driver: String,
        #[serde(rename = "cpuManagerPolicy")]
        cpu_manager_policy: String,
        #[serde(rename = "singleProcessOOMKill")]
        single_process_oom_kill: bool,
        #[serde(rename = "cpuManagerPolicyOptions")]
        cpu_manager_policy_options: BTreeMap<String, String>,
        #[serde(rename = "cpuManagerReconcilePeriod")]
        cpu_manager_reconcile_period: Duration,
        memory_manager_policy: String,
        topology_manager_policy: String,
        topology_manager_scope: String,
        topology_manager_policy_options: BTreeMap<String, String>,
        qos_reserved: BTreeMap<String, String>,
        runtime_request_timeout: Duration,
        hairpin_mode: String,
        max_pods: i32,
        #[serde(rename = "podCIDR")]
        pod_cidr: String,
        pod_pids_limit: i64,
        resolv_conf: String,
        run_once: bool,
        #[serde(rename = "cpuCFSQuota")]
        cpu_cfs_quota: bool,
        #[serde(rename = "cpuCFSQuotaPeriod")]
        cpu_cfs_quota_period: Duration,
        node_status_max_images: i32,
        max_open_files: i64,
        content_type: String,
        #[serde(rename = "kubeAPIQPS")]
        kube_api_qps: i32,
        #[serde(rename = "kubeAPIBurst")]
        kube_api_burst: i32,
        serialize_image_pulls: bool,
        max_parallel_image_pulls: i32,
        eviction_hard: BTreeMap<String, String>,
        eviction_soft: BTreeMap<String, String>,
        eviction_soft_grace_period: BTreeMap<String, String>,
        eviction_pressure_transition_period: Duration,
        eviction_max_pod_grace_period: i32,
        eviction_minimum_reclaim: BTreeMap<String, String>,
        merge_default_eviction_settings: bool,
        pods_per_core: i32,
        enable_controller_attach_detach: bool,
        protect_kernel_defaults: bool,
        #[serde(rename = "makeIPTablesUtilChains")]
        make_ip_tables_util_chains: bool,
        iptables_masquerade_bit: i32,
        iptables_drop_bit: i32,
        feature_gates: BTreeMap<String, bool>,
        fail_swap_on: bool,
        memory_swap: MemorySwapConfiguration,
        container_log_max_size: String,
        container_log_max_files: i32,
        container_log_max_workers: i32,
        container_log_monitor_interval: Duration,
        config_map_and_secret_change_detection_strategy: String,
        system_reserved: BTreeMap<String, String>,
        kube_reserved: BTreeMap<String, String>,
        #[serde(rename = "reservedSystemCPUs")]
        reserved_system_cpus: String,
        show_hidden_metrics_for_version: String,
        system_reserved_cgroup: String,
        kube_reserved_cgroup: String,
        enforce_node_allocatable: Vec<String>,
        allowed_unsafe_sysctls: Vec<String>,
        volume_plugin_dir: String,
        #[serde(rename = "providerID")]
        provider_id: String,
        kernel_memcg_notification: bool,
        logging: LoggingConfiguration,
        enable_system_log_handler: bool,
        enable_system_log_query: bool,
        shutdown_grace_period: Duration,
        shutdown_grace_period_critical_pods: Duration,
        shutdown_grace_period_by_pod_priority: Vec<ShutdownGracePeriodByPodPriority>,
        crash_loop_back_off: CrashLoopBackOffConfig,
        reserved_memory: Vec<MemoryReservation>,
        enable_profiling_handler: bool,
        enable_debug_flags_handler: bool,
        seccomp_default: bool,
        memory_throttling_factor: f64,
        /// Since 1.36: `None` or `TieredReservation`.
        memory_reservation_policy: String,
        register_with_taints: Vec<Taint>,
        register_node: bool,
        tracing: TracingConfiguration,
        local_storage_capacity_isolation: bool,
        container_runtime_endpoint: String,
        image_service_endpoint: String,
        #[serde(rename = "failCgroupV1")]
        fail_cgroup_v1: bool,
        user_namespaces: UserNamespaces,
    }
}

api_struct! {
    pub struct KubeletAuthentication {
        x509: KubeletX509Authentication,
        webhook: KubeletWebhookAuthentication,
        anonymous: KubeletAnonymousAuthentication,
    }
}

api_struct! {
    pub struct KubeletX509Authentication {
        #[serde(rename = "clientCAFile")]
        client_ca_file: String,
    }
}

api_struct! {
    pub struct KubeletWebhookAuthentication {
        enabled: bool,
        #[serde(rename = "cacheTTL")]
        cache_ttl: Duration,
    }
}

api_struct! {
    pub struct KubeletAnonymousAuthentication {
        enabled: bool,
    }
}

api_struct! {
    pub struct KubeletAuthorization {
        /// `AlwaysAllow` or `Webhook`.
        mode: String,
        webhook: KubeletWebhookAuthorization,
    }
}

api_struct! {
    pub struct KubeletWebhookAuthorization {
        #[serde(rename = "cacheAuthorizedTTL")]
        cache_authorized_ttl: Duration,
        #[serde(rename = "cacheUnauthorizedTTL")]
        cache_unauthorized_ttl: Duration,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryReservation {
    pub numa_node: i32,
    pub limits: ResourceList,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShutdownGracePeriodByPodPriority {
    pub priority: i32,
    pub shutdown_grace_period_seconds: i64,
}

api_struct! {
    pub struct MemorySwapConfiguration {
        /// `NoSwap` or `LimitedSwap`.
        swap_behavior: String,
    }
}

api_struct! {
    pub struct CrashLoopBackOffConfig {
        max_container_restart_period: Duration,
    }
}

api_struct! {
    pub struct UserNamespaces {
        #[serde(rename = "idsPerPod")]
        ids_per_pod: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_only_what_is_set() {
        let k = KubeletConfiguration { cgroup_driver: Some("systemd".into()), ..KubeletConfiguration::new() };
        assert_eq!(
            serde_yaml_ng::to_string(&k).unwrap(),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
        );
    }

    #[test]
    fn odd_upstream_names() {
        let y = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 clusterDNS: [10.96.0.10]\nresolvConf: /run/systemd/resolve/resolv.conf\n\
                 imageGCHighThresholdPercent: 85\nkubeAPIQPS: 50\ncpuCFSQuota: true\nfailCgroupV1: true\n\
                 makeIPTablesUtilChains: true\niptablesMasqueradeBit: 14\nproviderID: x\nstaticPodURL: y\n\
                 authentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n  webhook:\n    cacheTTL: 2m0s\n\
                 authorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 5m0s\n\
                 userNamespaces:\n  idsPerPod: 65536\nreservedMemory:\n- numaNode: 0\n  limits:\n    memory: 1Gi\n";
        let k: KubeletConfiguration = serde_yaml_ng::from_str(y).unwrap();
        assert_eq!(k.cluster_dns.as_deref(), Some(&["10.96.0.10".to_string()][..]));
        assert_eq!(k.kube_api_qps, Some(50));
        assert_eq!(k.authentication.unwrap().webhook.unwrap().cache_ttl, Some(Duration::from_mins(2)));
        assert_eq!(k.reserved_memory.unwrap()[0].limits["memory"].0, "1Gi");
        assert!(serde_yaml_ng::from_str::<KubeletConfiguration>("clusterDns: [10.96.0.10]").is_err());
    }
}
