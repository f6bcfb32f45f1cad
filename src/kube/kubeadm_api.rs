//! Typed mirrors of the configuration APIs `kubeadm init/join --config` reads, and a strict parser for
//! them: a rendered configuration that parses here has only known kinds and known fields (camelCase, as
//! upstream), with every value of the right type. That is how the tests prove rendered configs valid.
//!
//! Supported: Kubernetes 1.35 and 1.36 (kubeadm API `kubeadm.k8s.io/v1beta4`, kubelet
//! `kubelet.config.k8s.io/v1beta1`, kube-proxy `kubeproxy.config.k8s.io/v1alpha1`). Sources, read at
//! release tags where the upstream repository could be read at tags (see each submodule):
//! - kubeadm v1beta4 + bootstraptoken/v1: [`v1beta4`];
//! - kubelet v1beta1: [`kubelet`] (kubernetes/kubelet tags kubernetes-1.35.7 / kubernetes-1.36.3);
//! - kube-proxy v1alpha1: [`kubeproxy`] (kubernetes/kube-proxy tag kubernetes-1.36.3);
//! - shared core/v1 and component-base types: [`core`] (kubernetes/component-base tag kubernetes-1.36.3).
//!
//! Every struct is `deny_unknown_fields`; optional fields are `Option` and skipped when `None`, so a
//! rendering holds only what was set. `metav1.Duration` is [`crate::kube::Duration`] (`"4m0s"`).

use super::{Error, Result, Version};
use serde::Serialize;

/// Declares an API struct: camelCase, unknown fields refused, every field `Option<T>` skipped when unset.
/// `pub struct X: TypeMeta("group/version", "Kind") { .. }` adds `apiVersion` + `kind` first, with `new()`
/// (and `Default`) filling them, and `API_VERSION` / `KIND` constants.
macro_rules! api_struct {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fm])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>, )*
        }
    };
    ($(#[$m:meta])* pub struct $name:ident : TypeMeta($api:expr, $kind:expr) {
        $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            #[serde(rename = "apiVersion")]
            pub api_version: String,
            pub kind: String,
            $( $(#[$fm])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>, )*
        }
        impl $name {
            pub const API_VERSION: &'static str = $api;
            pub const KIND: &'static str = $kind;
            /// apiVersion and kind set, nothing else.
            pub fn new() -> Self {
                $name { api_version: $api.to_string(), kind: $kind.to_string(), $( $field: None, )* }
            }
        }
        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

pub mod core;
pub mod kubelet;
pub mod kubeproxy;
pub mod v1beta4;

pub use self::core::{Arg, Taint, TaintEffect};
pub use kubelet::KubeletConfiguration;
pub use kubeproxy::KubeProxyConfiguration;
pub use v1beta4::{ClusterConfiguration, InitConfiguration, JoinConfiguration, ResetConfiguration, UpgradeConfiguration};

/// What secrets read in a redacted rendering.
pub const REDACTED: &str = "<secret>";

/// The first release line whose kubeadm reads `kubeadm.k8s.io/v1beta4`.
pub const V1BETA4_SINCE: (u32, u32) = (1, 31);
/// The newest release line this mirror was checked against.
pub const NEWEST_KNOWN: (u32, u32) = (1, 36);

/// The kubeadm configuration API version to write for Kubernetes `k8s`.
///
/// v1beta4 exists from 1.31; v1beta3, the only other one kubeadm reads there, is deprecated from 1.31 and
/// removed in 1.37 (kubernetes PR 136016, listed in kubernetes/sig-release `releases/release-1.37` notes;
/// 1.35 and 1.36 still read it, with a deprecation warning). Older releases are refused (upstream no
/// longer supports them), and so are releases past 1.36, whose kubeadm this mirror was not checked against.
pub fn api_version_for(k8s: &Version) -> Result<&'static str> {
    let line = (k8s.major, k8s.minor);
    if line < V1BETA4_SINCE || line > NEWEST_KNOWN {
        return Err(Error::Unsupported {
            version: *k8s,
            what: "airgap's kubeadm configuration (kubeadm.k8s.io/v1beta4)",
            supported: "v1.31.0 up to v1.36.x".into(),
        });
    }
    Ok(v1beta4::GROUP_VERSION)
}

/// One typed document of a kubeadm configuration file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Document {
    Init(Box<InitConfiguration>),
    Cluster(Box<ClusterConfiguration>),
    Join(Box<JoinConfiguration>),
    Reset(Box<ResetConfiguration>),
    Upgrade(Box<UpgradeConfiguration>),
    Kubelet(Box<KubeletConfiguration>),
    KubeProxy(Box<KubeProxyConfiguration>),
}

/// Every (apiVersion, kind) the parser accepts.
pub const KNOWN_KINDS: &[(&str, &str)] = &[
    (v1beta4::GROUP_VERSION, InitConfiguration::KIND),
    (v1beta4::GROUP_VERSION, ClusterConfiguration::KIND),
    (v1beta4::GROUP_VERSION, JoinConfiguration::KIND),
    (v1beta4::GROUP_VERSION, ResetConfiguration::KIND),
    (v1beta4::GROUP_VERSION, UpgradeConfiguration::KIND),
    (kubelet::GROUP_VERSION, KubeletConfiguration::KIND),
    (kubeproxy::GROUP_VERSION, KubeProxyConfiguration::KIND),
];

impl Document {
    pub fn api_version(&self) -> &str {
        match self {
            Document::Init(d) => &d.api_version,
            Document::Cluster(d) => &d.api_version,
            Document::Join(d) => &d.api_version,
            Document::Reset(d) => &d.api_version,
            Document::Upgrade(d) => &d.api_version,
            Document::Kubelet(d) => &d.api_version,
            Document::KubeProxy(d) => &d.api_version,
        }
    }

    pub fn kind(&self) -> &str {
        match self {
            Document::Init(d) => &d.kind,
            Document::Cluster(d) => &d.kind,
            Document::Join(d) => &d.kind,
            Document::Reset(d) => &d.kind,
            Document::Upgrade(d) => &d.kind,
            Document::Kubelet(d) => &d.kind,
            Document::KubeProxy(d) => &d.kind,
        }
    }

    /// Refuse a field or value the kubeadm/kubelet of `k8s` does not know yet (the mirror is the union of
    /// the supported releases).
    pub fn check_version(&self, index: usize, k8s: &Version) -> Result<()> {
        let too_new = |field: &'static str, (major, minor): (u32, u32)| -> Result<()> {
            let since = Version::new(major, minor, 0);
            if *k8s < since {
                return Err(Error::TooNew { index, kind: self.kind().to_string(), field, since, version: *k8s });
            }
            Ok(())
        };
        match self {
            Document::Cluster(c) => {
                if c.etcd.as_ref().and_then(|e| e.external.as_ref()).and_then(|x| x.http_endpoints.as_ref()).is_some() {
                    too_new("etcd.external.httpEndpoints", (1, 35))?;
                }
                if c.encryption_algorithm == Some(v1beta4::EncryptionAlgorithm::EcdsaP384) {
                    too_new("encryptionAlgorithm: ECDSA-P384", (1, 34))?;
                }
            }
            Document::Upgrade(u) if u.plan.as_ref().and_then(|p| p.etcd_upgrade).is_some() => {
                too_new("plan.etcdUpgrade", (1, 33))?;
            }
            Document::Kubelet(k) => {
                for &(field, since) in kubelet::SINCE {
                    let set = match field {
                        "tlsCurvePreferences" => k.tls_curve_preferences.is_some(),
                        "memoryReservationPolicy" => k.memory_reservation_policy.is_some(),
                        _ => unreachable!("kubelet::SINCE lists a field check_version does not know"),
                    };
                    if set {
                        too_new(field, since)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Replace every secret (bootstrap tokens, certificate keys, TLS bootstrap token) by [`REDACTED`].
    /// The CA certificate hashes are public-key pins, not secrets: they stay.
    pub fn redact_secrets(&mut self) {
        let hide = |s: &mut String| *s = REDACTED.to_string();
        match self {
            Document::Init(i) => {
                for t in i.bootstrap_tokens.iter_mut().flatten() {
                    hide(&mut t.token);
                }
                if let Some(k) = i.certificate_key.as_mut() {
                    hide(k);
                }
            }
            Document::Join(j) => {
                if let Some(d) = j.discovery.as_mut() {
                    if let Some(b) = d.bootstrap_token.as_mut() {
                        hide(&mut b.token);
                    }
                    if let Some(t) = d.tls_bootstrap_token.as_mut() {
                        hide(t);
                    }
                }
                if let Some(k) = j.control_plane.as_mut().and_then(|cp| cp.certificate_key.as_mut()) {
                    hide(k);
                }
            }
            _ => {}
        }
    }
}

/// Parse a kubeadm configuration file (YAML documents separated by `---`) into typed documents, refusing
/// unknown apiVersion/kind pairs and unknown fields. Empty documents are skipped, as kubeadm does.
pub fn parse_documents(yaml: &str) -> Result<Vec<Document>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let index = i + 1;
        let value = serde_yaml_ng::Value::deserialize(de).map_err(|source| Error::Yaml { index, source })?;
        if value.is_null() {
            continue;
        }
        let field = |name: &'static str| -> Result<String> {
            value
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or(Error::MissingTypeMeta { index, field: name })
        };
        let (api_version, kind) = (field("apiVersion")?, field("kind")?);
        fn typed<T: serde::de::DeserializeOwned>(index: usize, kind: &str, v: serde_yaml_ng::Value) -> Result<T> {
            serde_path_to_error::deserialize(v).map_err(|e| Error::Field {
                index,
                kind: kind.to_string(),
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            })
        }
        let doc = match (api_version.as_str(), kind.as_str()) {
            (v1beta4::GROUP_VERSION, "InitConfiguration") => Document::Init(typed(index, &kind, value)?),
            (v1beta4::GROUP_VERSION, "ClusterConfiguration") => Document::Cluster(typed(index, &kind, value)?),
            (v1beta4::GROUP_VERSION, "JoinConfiguration") => Document::Join(typed(index, &kind, value)?),
            (v1beta4::GROUP_VERSION, "ResetConfiguration") => Document::Reset(typed(index, &kind, value)?),
            (v1beta4::GROUP_VERSION, "UpgradeConfiguration") => Document::Upgrade(typed(index, &kind, value)?),
            (kubelet::GROUP_VERSION, "KubeletConfiguration") => Document::Kubelet(typed(index, &kind, value)?),
            (kubeproxy::GROUP_VERSION, "KubeProxyConfiguration") => Document::KubeProxy(typed(index, &kind, value)?),
            _ => {
                let known = KNOWN_KINDS.iter().map(|(a, k)| format!("{a}/{k}")).collect::<Vec<_>>().join(", ");
                return Err(Error::UnknownKind { index, api_version, kind, known });
            }
        };
        out.push(doc);
    }
    Ok(out)
}

/// [`parse_documents`], then check each document's apiVersion and version-gated fields against `k8s`.
pub fn parse_documents_for(yaml: &str, k8s: &Version) -> Result<Vec<Document>> {
    let want = api_version_for(k8s)?;
    let docs = parse_documents(yaml)?;
    for (i, d) in docs.iter().enumerate() {
        if d.api_version().starts_with("kubeadm.k8s.io/") && d.api_version() != want {
            return Err(Error::Invalid(format!(
                "kubeadm configuration document {}: {} is not the kubeadm API of Kubernetes {k8s}: write {want}",
                i + 1,
                d.api_version()
            )));
        }
        d.check_version(i + 1, k8s)?;
    }
    Ok(docs)
}

/// Serialize documents as one YAML file, `---` between documents.
pub fn to_yaml(docs: &[Document]) -> Result<String> {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml_ng::to_string(d).map_err(Error::Serialize)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
