//! `kubeadm.k8s.io/v1beta4`: Init-, Cluster-, Join-, Reset- and UpgradeConfiguration.
//!
//! Field set and JSON tags: kubernetes/kubernetes `cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go` and
//! `cmd/kubeadm/app/apis/bootstraptoken/v1/types.go` (kubernetes/kubernetes is too large to fetch here and
//! its file index serves no release-tag copy: read at kubernetes/kubernetes@1329935739c3aa007d23cb9a4dadfee9d59ff79b,
//! the v1beta4 of 1.31-1.33), checked field by field against the reference generated from the 1.35 types
//! (kubernetes/website `content/uk/docs/reference/config-api/kubeadm-config.v1beta4.md` @ 66a4805a, links to
//! kubernetes-api/v1.35), which adds what came later, as v1beta4's own changelog (`doc.go`) lists it:
//! v1.33 `UpgradeConfiguration.plan.etcdUpgrade`, v1.34 `encryptionAlgorithm: ECDSA-P384`, v1.35
//! `etcd.external.httpEndpoints` (kubernetes PR 134890), and `imagePullPolicy`/`imagePullSerial` in
//! upgrade apply/node. The 1.36 release notes (kubernetes/sig-release `releases/release-1.36`) list no
//! v1beta4 field change. Version-gated fields are checked by [`super::Document::check_version`].
//!
//! Go decodes a missing field as its zero value, so almost everything is optional here too; fields
//! kubeadm cannot do without (an extraArg's name, a taint's key, a discovery token) are required.

use super::core::{Arg, EnvVar, HostPathType, PullPolicy, Taint};
use crate::kube::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `kubeadm.k8s.io/v1beta4`
pub const GROUP_VERSION: &str = "kubeadm.k8s.io/v1beta4";

api_struct! {
    /// `kubeadm init`-only settings of the first control-plane node.
    pub struct InitConfiguration: TypeMeta(GROUP_VERSION, "InitConfiguration") {
        bootstrap_tokens: Vec<BootstrapToken>,
        dry_run: bool,
        node_registration: NodeRegistrationOptions,
        #[serde(rename = "localAPIEndpoint")]
        local_api_endpoint: APIEndpoint,
        /// Secret: the AES-256 key (64 hex) the uploaded control-plane certificates are encrypted with.
        certificate_key: String,
        skip_phases: Vec<String>,
        patches: Patches,
        timeouts: Timeouts,
    }
}

api_struct! {
    /// Cluster-wide settings (uploaded to the `kubeadm-config` ConfigMap).
    pub struct ClusterConfiguration: TypeMeta(GROUP_VERSION, "ClusterConfiguration") {
        etcd: Etcd,
        networking: Networking,
        kubernetes_version: String,
        control_plane_endpoint: String,
        api_server: APIServer,
        controller_manager: ControlPlaneComponent,
        scheduler: ControlPlaneComponent,
        dns: DNS,
        proxy: Proxy,
        certificates_dir: String,
        image_repository: String,
        feature_gates: BTreeMap<String, bool>,
        cluster_name: String,
        encryption_algorithm: EncryptionAlgorithm,
        certificate_validity_period: Duration,
        #[serde(rename = "caCertificateValidityPeriod")]
        ca_certificate_validity_period: Duration,
    }
}

api_struct! {
    pub struct ControlPlaneComponent {
        extra_args: Vec<Arg>,
        extra_volumes: Vec<HostPathMount>,
        extra_envs: Vec<EnvVar>,
    }
}

api_struct! {
    /// `ControlPlaneComponent` inlined, plus certSANs.
    pub struct APIServer {
        extra_args: Vec<Arg>,
        extra_volumes: Vec<HostPathMount>,
        extra_envs: Vec<EnvVar>,
        #[serde(rename = "certSANs")]
        cert_sans: Vec<String>,
    }
}

api_struct! {
    /// `ImageMeta` inlined, plus disabled.
    pub struct DNS {
        image_repository: String,
        image_tag: String,
        disabled: bool,
    }
}

api_struct! {
    pub struct Proxy {
        disabled: bool,
    }
}

api_struct! {
    pub struct APIEndpoint {
        advertise_address: String,
        bind_port: i32,
    }
}

api_struct! {
    pub struct NodeRegistrationOptions {
        name: String,
        #[serde(rename = "criSocket")]
        cri_socket: String,
        /// Unset = kubeadm's default control-plane taint; `Some(vec![])` = `taints: []` = no taint.
        taints: Vec<Taint>,
        kubelet_extra_args: Vec<Arg>,
        ignore_preflight_errors: Vec<String>,
        image_pull_policy: PullPolicy,
        image_pull_serial: bool,
    }
}

api_struct! {
    pub struct Networking {
        service_subnet: String,
        pod_subnet: String,
        dns_domain: String,
    }
}

/// bootstraptoken/v1 BootstrapToken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapToken {
    /// Secret: `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// RFC 3339 time; exclusive with ttl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

api_struct! {
    /// `local` and `external` are mutually exclusive.
    pub struct Etcd {
        local: LocalEtcd,
        external: ExternalEtcd,
    }
}

api_struct! {
    /// `ImageMeta` inlined.
    pub struct LocalEtcd {
        image_repository: String,
        image_tag: String,
        data_dir: String,
        extra_args: Vec<Arg>,
        extra_envs: Vec<EnvVar>,
        #[serde(rename = "serverCertSANs")]
        server_cert_sans: Vec<String>,
        #[serde(rename = "peerCertSANs")]
        peer_cert_sans: Vec<String>,
    }
}

api_struct! {
    pub struct ExternalEtcd {
        endpoints: Vec<String>,
        /// Since 1.35.
        http_endpoints: Vec<String>,
        ca_file: String,
        cert_file: String,
        key_file: String,
    }
}

api_struct! {
    /// `kubeadm join` settings of one node.
    pub struct JoinConfiguration: TypeMeta(GROUP_VERSION, "JoinConfiguration") {
        dry_run: bool,
        node_registration: NodeRegistrationOptions,
        ca_cert_path: String,
        discovery: Discovery,
        /// Set = this node joins as a control-plane member.
        control_plane: JoinControlPlane,
        skip_phases: Vec<String>,
        patches: Patches,
        timeouts: Timeouts,
    }
}

api_struct! {
    pub struct JoinControlPlane {
        #[serde(rename = "localAPIEndpoint")]
        local_api_endpoint: APIEndpoint,
        /// Secret: same key as the InitConfiguration's certificateKey.
        certificate_key: String,
    }
}

api_struct! {
    /// `bootstrapToken` and `file` are mutually exclusive.
    pub struct Discovery {
        bootstrap_token: BootstrapTokenDiscovery,
        file: FileDiscovery,
        /// Secret.
        tls_bootstrap_token: String,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapTokenDiscovery {
    /// Secret.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_endpoint: Option<String>,
    /// `sha256:<hex of the CA's SubjectPublicKeyInfo>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_hashes: Option<Vec<String>>,
    #[serde(rename = "unsafeSkipCAVerification", default, skip_serializing_if = "Option::is_none")]
    pub unsafe_skip_ca_verification: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileDiscovery {
    pub kube_config_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathMount {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_type: Option<HostPathType>,
}

api_struct! {
    pub struct Patches {
        directory: String,
    }
}

api_struct! {
    /// `kubeadm reset` settings.
    pub struct ResetConfiguration: TypeMeta(GROUP_VERSION, "ResetConfiguration") {
        cleanup_tmp_dir: bool,
        certificates_dir: String,
        #[serde(rename = "criSocket")]
        cri_socket: String,
        dry_run: bool,
        force: bool,
        ignore_preflight_errors: Vec<String>,
        skip_phases: Vec<String>,
        unmount_flags: Vec<String>,
        timeouts: Timeouts,
    }
}

/// `encryptionAlgorithm`: the key type of the certificates kubeadm generates (default RSA-2048).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionAlgorithm {
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    /// Since 1.34.
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
}

api_struct! {
    /// `kubeadm upgrade` settings (airgap does not write one; mirrored so a config holding one parses).
    pub struct UpgradeConfiguration: TypeMeta(GROUP_VERSION, "UpgradeConfiguration") {
        apply: UpgradeApplyConfiguration,
        diff: UpgradeDiffConfiguration,
        node: UpgradeNodeConfiguration,
        plan: UpgradePlanConfiguration,
        timeouts: Timeouts,
    }
}

api_struct! {
    pub struct UpgradeApplyConfiguration {
        kubernetes_version: String,
        allow_experimental_upgrades: bool,
        #[serde(rename = "allowRCUpgrades")]
        allow_rc_upgrades: bool,
        certificate_renewal: bool,
        dry_run: bool,
        etcd_upgrade: bool,
        force_upgrade: bool,
        ignore_preflight_errors: Vec<String>,
        patches: Patches,
        print_config: bool,
        skip_phases: Vec<String>,
        image_pull_policy: PullPolicy,
        image_pull_serial: bool,
    }
}

api_struct! {
    pub struct UpgradeDiffConfiguration {
        kubernetes_version: String,
        context_lines: i64,
    }
}

api_struct! {
    pub struct UpgradeNodeConfiguration {
        certificate_renewal: bool,
        dry_run: bool,
        etcd_upgrade: bool,
        ignore_preflight_errors: Vec<String>,
        skip_phases: Vec<String>,
        patches: Patches,
        image_pull_policy: PullPolicy,
        image_pull_serial: bool,
    }
}

api_struct! {
    pub struct UpgradePlanConfiguration {
        kubernetes_version: String,
        allow_experimental_upgrades: bool,
        #[serde(rename = "allowRCUpgrades")]
        allow_rc_upgrades: bool,
        dry_run: bool,
        /// Since 1.33.
        etcd_upgrade: bool,
        ignore_preflight_errors: Vec<String>,
        print_config: bool,
    }
}

api_struct! {
    pub struct Timeouts {
        control_plane_component_health_check: Duration,
        kubelet_health_check: Duration,
        #[serde(rename = "kubernetesAPICall")]
        kubernetes_api_call: Duration,
        #[serde(rename = "etcdAPICall")]
        etcd_api_call: Duration,
        #[serde(rename = "tlsBootstrap")]
        tls_bootstrap: Duration,
        discovery: Duration,
        upgrade_manifests: Duration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sets_type_meta_and_nothing_else() {
        let yaml = serde_yaml_ng::to_string(&InitConfiguration::new()).unwrap();
        assert_eq!(yaml, "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n");
        assert_eq!(JoinConfiguration::KIND, "JoinConfiguration");
        assert_eq!(ClusterConfiguration::API_VERSION, GROUP_VERSION);
    }

    #[test]
    fn camel_case_names_as_upstream() {
        let mut c = ClusterConfiguration::new();
        c.api_server = Some(APIServer { cert_sans: Some(vec!["10.0.0.100".into()]), ..Default::default() });
        c.ca_certificate_validity_period = Some(Duration::from_hours(87600));
        c.encryption_algorithm = Some(EncryptionAlgorithm::EcdsaP256);
        let yaml = serde_yaml_ng::to_string(&c).unwrap();
        assert!(yaml.contains("apiServer:\n  certSANs:\n  - 10.0.0.100\n"), "{yaml}");
        assert!(yaml.contains("caCertificateValidityPeriod: 87600h0m0s\n"), "{yaml}");
        assert!(yaml.contains("encryptionAlgorithm: ECDSA-P256\n"), "{yaml}");
        let mut j = JoinConfiguration::new();
        j.control_plane = Some(JoinControlPlane {
            local_api_endpoint: Some(APIEndpoint { advertise_address: Some("10.0.0.12".into()), bind_port: Some(6443) }),
            certificate_key: None,
        });
        j.discovery = Some(Discovery {
            bootstrap_token: Some(BootstrapTokenDiscovery {
                unsafe_skip_ca_verification: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        let yaml = serde_yaml_ng::to_string(&j).unwrap();
        assert!(yaml.contains("localAPIEndpoint:\n    advertiseAddress: 10.0.0.12\n    bindPort: 6443\n"), "{yaml}");
        assert!(yaml.contains("unsafeSkipCAVerification: false"), "{yaml}");
    }

    #[test]
    fn empty_taints_are_kept_unset_taints_are_not() {
        let n = NodeRegistrationOptions { taints: Some(vec![]), ..Default::default() };
        assert_eq!(serde_yaml_ng::to_string(&n).unwrap(), "taints: []\n");
        assert_eq!(serde_yaml_ng::to_string(&NodeRegistrationOptions::default()).unwrap(), "{}\n");
        let n: NodeRegistrationOptions = serde_yaml_ng::from_str("taints: null").unwrap();
        assert_eq!(n.taints, None);
    }
}
