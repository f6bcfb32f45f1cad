//! Types the three configuration APIs borrow from `k8s.io/api/core/v1` (Taint, EnvVar, ...),
//! `k8s.io/apimachinery` (Quantity) and `k8s.io/component-base` (logging, tracing, client connection).
//!
//! Sources: component-base `logs/api/v1/types.go`, `tracing/api/v1/types.go`, `config/v1alpha1/types.go`
//! at tag kubernetes-1.36.3 (kubernetes/component-base@ccf6f38e848ab4b98e1ed1f27b183b8e24212444, same
//! fields at kubernetes-1.35.7 @bab2adfc14c0b9bdc9d32d2e45620f9909c36e53); the core/v1 types are stable
//! v1 API (Taint, EnvVar, EnvVarSource, HostPathType, PullPolicy).

use crate::kube::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One command-line argument (`extraArgs`, `kubeletExtraArgs` in v1beta4): a list, so duplicates are allowed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

impl Arg {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Arg { name: name.into(), value: value.into() }
    }
}

/// core/v1 Taint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
    /// RFC 3339 time; only meaningful for NoExecute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    #[default]
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// core/v1 PullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// core/v1 HostPathType ("" = no check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPathType {
    #[serde(rename = "")]
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

/// core/v1 EnvVar (kubeadm's v1beta4 EnvVar inlines it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// core/v1 EnvVarSource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// Alpha (EnvFiles feature gate); kept opaque: its content is not checked here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_key_ref: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectFieldSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub field_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceFieldSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divisor: Option<Quantity>,
}

/// ConfigMapKeySelector / SecretKeySelector (same shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// apimachinery `resource.Quantity`: written as a string (`128Mi`, `500m`), a bare number is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            U(u64),
            F(f64),
        }
        Ok(Quantity(match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::U(u) => u.to_string(),
            Raw::F(f) => f.to_string(),
        }))
    }
}

/// core/v1 ResourceList.
pub type ResourceList = BTreeMap<String, Quantity>;

/// component-base `TimeOrMetaDuration` (logging `flushFrequency`): a duration string, or an integer of
/// nanoseconds (how Kubernetes writes it unless it was read as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeOrMetaDuration {
    Duration(Duration),
    Nanos(i64),
}

api_struct! {
    /// component-base `LoggingConfiguration`.
    pub struct LoggingConfiguration {
        format: String,
        flush_frequency: TimeOrMetaDuration,
        verbosity: u32,
        #[serde(rename = "vmodule")]
        vmodule: Vec<VModuleItem>,
        options: FormatOptions,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VModuleItem {
    pub file_pattern: String,
    pub verbosity: u32,
}

api_struct! {
    pub struct FormatOptions {
        text: OutputRoutingOptions,
        json: OutputRoutingOptions,
    }
}

api_struct! {
    /// `TextOptions` / `JSONOptions`: both inline `OutputRoutingOptions`.
    pub struct OutputRoutingOptions {
        split_stream: bool,
        info_buffer_size: Quantity,
    }
}

api_struct! {
    /// component-base `TracingConfiguration`.
    pub struct TracingConfiguration {
        endpoint: String,
        sampling_rate_per_million: i32,
    }
}

api_struct! {
    /// component-base `ClientConnectionConfiguration` (kube-proxy).
    pub struct ClientConnectionConfiguration {
        kubeconfig: String,
        accept_content_types: String,
        content_type: String,
        qps: f32,
        burst: i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_takes_strings_and_numbers() {
        let q: BTreeMap<String, Quantity> = serde_yaml_ng::from_str("a: 128Mi\nb: 2\nc: 0.5").unwrap();
        assert_eq!(q["a"].0, "128Mi");
        assert_eq!(q["b"].0, "2");
        assert_eq!(q["c"].0, "0.5");
        assert_eq!(serde_yaml_ng::to_string(&q["b"]).unwrap().trim(), "'2'");
    }

    #[test]
    fn flush_frequency_string_or_nanos() {
        let l: LoggingConfiguration = serde_yaml_ng::from_str("flushFrequency: 5s\nverbosity: 2").unwrap();
        assert_eq!(l.flush_frequency, Some(TimeOrMetaDuration::Duration(Duration::from_secs(5))));
        let l: LoggingConfiguration = serde_yaml_ng::from_str("flushFrequency: 5000000000").unwrap();
        assert_eq!(l.flush_frequency, Some(TimeOrMetaDuration::Nanos(5_000_000_000)));
        assert!(serde_yaml_ng::from_str::<LoggingConfiguration>("flushFrequency: soon").is_err());
    }

    #[test]
    fn taints_and_env_are_strict() {
        let t: Taint = serde_yaml_ng::from_str("key: a\neffect: NoExecute\ntimeAdded: '2026-01-01T00:00:00Z'").unwrap();
        assert_eq!(t.effect, TaintEffect::NoExecute);
        assert!(serde_yaml_ng::from_str::<Taint>("key: a\neffect: Nope").is_err());
        assert!(serde_yaml_ng::from_str::<Taint>("effect: NoSchedule").is_err(), "key is required");
        let e: EnvVar = serde_yaml_ng::from_str("name: N\nvalueFrom:\n  fieldRef:\n    fieldPath: status.podIP").unwrap();
        assert_eq!(e.value_from.unwrap().field_ref.unwrap().field_path, "status.podIP");
        assert!(serde_yaml_ng::from_str::<EnvVar>("name: N\nvalu: x").is_err());
    }
}
