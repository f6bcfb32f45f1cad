//! Kubernetes objects as the stand-in knows them: the built-in kinds (group, version, plural, scope, short
//! names, as `kubectl api-resources` lists them) plus the kinds of applied CustomResourceDefinitions, REST
//! paths, label selectors, and the scheduling rules DaemonSet pods follow (nodeSelector, required node
//! affinity, taints and tolerations).

use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct KindInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub short: Vec<String>,
}

impl KindInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `daemonset.apps`, `namespace`: how kubectl names the resource in its output.
    pub fn resource_name(&self) -> String {
        let k = self.kind.to_lowercase();
        if self.group.is_empty() {
            k
        } else {
            format!("{k}.{}", self.group)
        }
    }

    /// `/api/v1/namespaces/NS/pods/NAME`, `/apis/apps/v1/daemonsets`, ...
    pub fn path(&self, ns: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() { format!("/api/{}", self.version) } else { format!("/apis/{}/{}", self.group, self.version) };
        if let (true, Some(ns)) = (self.namespaced, ns) {
            p.push_str(&format!("/namespaces/{ns}"));
        }
        p.push('/');
        p.push_str(&self.plural);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }
}

/// (group, version, kind, plural, namespaced, short names)
type Builtin = (&'static str, &'static str, &'static str, &'static str, bool, &'static [&'static str]);

const BUILTIN: &[Builtin] = &[
    ("", "v1", "Namespace", "namespaces", false, &["ns"]),
    ("", "v1", "Node", "nodes", false, &["no"]),
    ("", "v1", "Pod", "pods", true, &["po"]),
    ("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
    ("", "v1", "Secret", "secrets", true, &[]),
    ("", "v1", "Service", "services", true, &["svc"]),
    ("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
    ("", "v1", "Endpoints", "endpoints", true, &["ep"]),
    ("", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"]),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"]),
    ("", "v1", "LimitRange", "limitranges", true, &["limits"]),
    ("", "v1", "ResourceQuota", "resourcequotas", true, &["quota"]),
    ("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"]),
    ("apps", "v1", "Deployment", "deployments", true, &["deploy"]),
    ("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"]),
    ("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"]),
    ("batch", "v1", "Job", "jobs", true, &[]),
    ("batch", "v1", "CronJob", "cronjobs", true, &["cj"]),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[]),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, &[]),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[]),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[]),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"]),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, &[]),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, &["netpol"]),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", false, &[]),
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", false, &[]),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"]),
    ("storage.k8s.io", "v1", "StorageClass", "storageclasses", false, &["sc"]),
    ("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, &["pc"]),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"]),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", false, &["csr"]),
];

/// The built-in kinds, then one per served version of each applied CRD.
pub fn kinds(crds: &[&Value]) -> Vec<KindInfo> {
    let mut out: Vec<KindInfo> = BUILTIN
        .iter()
        .map(|(g, v, k, p, n, s)| KindInfo {
            group: g.to_string(),
            version: v.to_string(),
            kind: k.to_string(),
            plural: p.to_string(),
            namespaced: *n,
            short: s.iter().map(|x| x.to_string()).collect(),
        })
        .collect();
    for crd in crds {
        let spec = &crd["spec"];
        let names = &spec["names"];
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"] == json!(false) {
                continue;
            }
            out.push(KindInfo {
                group: spec["group"].as_str().unwrap_or("").to_string(),
                version: v["name"].as_str().unwrap_or("").to_string(),
                kind: names["kind"].as_str().unwrap_or("").to_string(),
                plural: names["plural"].as_str().unwrap_or("").to_string(),
                namespaced: spec["scope"] != "Cluster",
                short: names["shortNames"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            });
        }
    }
    out
}

/// The kind of `apiVersion`/`kind`, if served.
pub fn by_type<'a>(kinds: &'a [KindInfo], api_version: &str, kind: &str) -> Option<&'a KindInfo> {
    kinds.iter().find(|k| k.api_version() == api_version && k.kind == kind)
}

/// The kind a kubectl resource argument names: plural, singular, short name, or `name.group`.
pub fn by_resource<'a>(kinds: &'a [KindInfo], arg: &str) -> Option<&'a KindInfo> {
    let arg = arg.to_lowercase();
    let (name, group) = match arg.split_once('.') {
        Some((n, g)) => (n.to_string(), Some(g.to_string())),
        None => (arg.clone(), None),
    };
    kinds.iter().find(|k| {
        (k.plural == name || k.kind.to_lowercase() == name || k.short.contains(&name))
            && group.as_ref().is_none_or(|g| k.group == *g || k.group.starts_with(&format!("{g}.")))
    })
}

/// A parsed `/api/...` or `/apis/...` path.
#[derive(Debug, PartialEq)]
pub struct ApiPath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub fn parse_path(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some(ns.to_string()), r),
        r => (None, r),
    };
    let (plural, name, sub) = match rest {
        [p] => (p.to_string(), None, None),
        [p, n] => (p.to_string(), Some(n.to_string()), None),
        [p, n, s] => (p.to_string(), Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(ApiPath { group, version, namespace, plural, name, sub })
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

/// `k=v,k2!=v2,k3,!k4` against `labels`.
pub fn selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector.split(',').map(str::trim).filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()) != Some(&v.trim().to_string())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.get(k.trim()) == Some(&v.trim().to_string())
        } else if let Some(k) = term.strip_prefix('!') {
            !labels.contains_key(k)
        } else {
            labels.contains_key(term)
        }
    })
}

/// A LabelSelector object (`matchLabels`, `matchExpressions`) against labels.
pub fn label_selector_matches(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    let ml = sel["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    ml && sel["matchExpressions"].as_array().into_iter().flatten().all(|e| expression_matches(e, labels, "values"))
}

fn expression_matches(e: &Value, labels: &BTreeMap<String, String>, values_field: &str) -> bool {
    let key = e["key"].as_str().unwrap_or("");
    let values: Vec<&str> = e[values_field].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let have = labels.get(key);
    match e["operator"].as_str().unwrap_or("") {
        "In" => have.is_some_and(|v| values.contains(&v.as_str())),
        "NotIn" => !have.is_some_and(|v| values.contains(&v.as_str())),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(h), Some(v)) = (have.and_then(|h| h.parse::<i64>().ok()), values.first().and_then(|v| v.parse::<i64>().ok())) else { return false };
            if e["operator"] == "Gt" {
                h > v
            } else {
                h < v
            }
        }
        _ => false,
    }
}

/// Whether a pod template's `tolerations` tolerate `taint`.
pub fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t["effect"].as_str().is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key = t["key"].as_str().unwrap_or("");
        match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => effect_ok && (key.is_empty() || Some(key) == taint["key"].as_str()),
            _ => effect_ok && Some(key) == taint["key"].as_str() && t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or(""),
        }
    })
}

/// Whether a pod with spec `pod_spec` may run on `node` (whose `spec.taints` already holds the taints
/// the node lifecycle adds, e.g. `node.kubernetes.io/not-ready`), as a DaemonSet pod: the DaemonSet
/// controller adds tolerations for not-ready/unreachable NoExecute and the pressure/unschedulable
/// NoSchedule taints (network-unavailable too for host-network pods).
pub fn schedulable(pod_spec: &Value, node: &Value, daemonset: bool) -> bool {
    let node_labels = labels(node);
    let selector_ok = pod_spec["nodeSelector"].as_object().into_iter().flatten().all(|(k, v)| node_labels.get(k).map(String::as_str) == v.as_str());
    let terms = &pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let affinity_ok = match terms.as_array() {
        Some(ts) if !ts.is_empty() => ts.iter().any(|t| {
            t["matchExpressions"].as_array().into_iter().flatten().all(|e| expression_matches(e, &node_labels, "values"))
                && t["matchFields"].as_array().into_iter().flatten().all(|e| {
                    let mut fields = BTreeMap::new();
                    fields.insert("metadata.name".to_string(), node["metadata"]["name"].as_str().unwrap_or("").to_string());
                    expression_matches(e, &fields, "values")
                })
        }),
        _ => true,
    };
    let mut tolerations: Vec<Value> = pod_spec["tolerations"].as_array().cloned().unwrap_or_default();
    if daemonset {
        for (k, e) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ] {
            tolerations.push(json!({"key": k, "operator": "Exists", "effect": e}));
        }
        if pod_spec["hostNetwork"] == json!(true) {
            tolerations.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
        }
    }
    let taints_ok = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] != "PreferNoSchedule")
        .all(|t| tolerates(&tolerations, t));
    selector_ok && affinity_ok && taints_ok
}

/// A stable 5-character suffix (as the controllers' generated names) from `seed`.
pub fn suffix(seed: &str) -> String {
    use sha2::Digest as _;
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    sha2::Sha256::digest(seed.as_bytes()).iter().take(5).map(|b| ALPHA[*b as usize % ALPHA.len()] as char).collect()
}

/// A stable UID from `seed` (8-4-4-4-12 hex).
pub fn uid(seed: &str) -> String {
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
