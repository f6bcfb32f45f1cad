//! The bundled Kubernetes manifests, made to fit the site: typed edits of the parsed YAML documents (never
//! text substitution), each document re-serialized. Image references stay as upstream wrote them: containerd
//! on every node mirrors each upstream registry to the site registry (`certs.d/<host>/hosts.toml`), and
//! digest-pinned references must keep their digest.
//!
//! - [`patch_flannel`]: `net-conf.json` `Network` = the inventory's pod subnet (kubeadm's `podSubnet`), and
//!   `--iface=...` in flanneld's arguments when the inventory names interfaces.
//! - [`patch_ingress`]: the ingress controller (the Deployment or DaemonSet whose containers expose ports 80
//!   and 443: ingress-nginx's `ingress-nginx-controller`, or another controller's) becomes a DaemonSet on the
//!   masters: `hostNetwork`, `dnsPolicy: ClusterFirstWithHostNet`, the control-plane nodeSelector and
//!   toleration. The workers' nginx forwards :80/:443 of the workers' VIP to it.

use super::{Error, Result};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

/// The label kubeadm puts on control-plane nodes (and the key of their NoSchedule taint).
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// A manifest after the site's edits, and the workload to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// The documents, re-serialized, separated by `---`.
    pub text: String,
    /// The DaemonSet the step waits for: (namespace, name).
    pub daemonset: (String, String),
}

/// The documents of a multi-document YAML file (empty documents dropped).
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(de).map_err(|e| Error::Invalid(format!("document {} is not valid YAML: {e}", i + 1)))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The documents as one multi-document YAML text.
pub fn serialize(docs: &[Value]) -> Result<String> {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml_ng::to_string(d).map_err(Error::Serialize)?);
    }
    Ok(out)
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(*p) {
            Some(n) => cur = n,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn ident(doc: &Value) -> (String, String) {
    (str_of(doc, &["metadata", "namespace"]).to_string(), str_of(doc, &["metadata", "name"]).to_string())
}

/// `m[key]` as a mapping, created (or replaced, when it is not a mapping) if needed.
fn mapping<'a>(m: &'a mut Value, key: &str) -> &'a mut Mapping {
    let Value::Mapping(map) = m else { unreachable!("callers pass mappings") };
    let slot = map.entry(Value::from(key)).or_insert_with(|| Value::Mapping(Mapping::new()));
    if !slot.is_mapping() {
        *slot = Value::Mapping(Mapping::new());
    }
    slot.as_mapping_mut().expect("just made a mapping")
}

/// The pod spec of a workload (`spec.template.spec`).
fn pod_spec(doc: &mut Value) -> Option<&mut Value> {
    doc.get_mut("spec")?.get_mut("template")?.get_mut("spec").filter(|s| s.is_mapping())
}

/// The last path component of an image reference's repository: `flannel` for `ghcr.io/flannel-io/flannel:v1`.
fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// flannel: `Network` = `pod_subnet` in every ConfigMap's `net-conf.json`, and flanneld (the container running
/// the `flannel` image in the DaemonSet) gets one `--iface=X` per entry of `ifaces` (it takes the first that
/// exists on the node), replacing any `--iface*` the manifest had; `ifaces` empty: its arguments stay.
pub fn patch_flannel(text: &str, pod_subnet: &str, ifaces: &[String]) -> Result<Patched> {
    let mut docs = documents(text)?;
    let mut configs = 0;
    let mut daemonset = None;
    for doc in &mut docs {
        match str_of(doc, &["kind"]) {
            "ConfigMap" => {
                let Some(conf) = doc.get_mut("data").and_then(|d| d.get_mut("net-conf.json")) else { continue };
                let mut json: serde_json::Value = serde_json::from_str(conf.as_str().unwrap_or(""))
                    .map_err(|e| Error::Invalid(format!("flannel's net-conf.json is not JSON: {e}")))?;
                let obj = json.as_object_mut().ok_or_else(|| Error::Invalid("flannel's net-conf.json is not a JSON object".into()))?;
                obj.insert("Network".into(), serde_json::Value::from(pod_subnet));
                let mut s = serde_json::to_string_pretty(&json).map_err(|e| Error::Invalid(e.to_string()))?;
                s.push('\n');
                *conf = Value::from(s);
                configs += 1;
            }
            "DaemonSet" => {
                let id = ident(doc);
                let Some(spec) = pod_spec(doc) else { continue };
                let Some(containers) = spec.get_mut("containers").and_then(Value::as_sequence_mut) else { continue };
                let Some(c) = containers.iter_mut().find(|c| image_name(str_of(c, &["image"])) == "flannel") else { continue };
                if !ifaces.is_empty() {
                    let Value::Mapping(cm) = c else { continue };
                    let args = cm.entry(Value::from("args")).or_insert_with(|| Value::Sequence(vec![]));
                    let Value::Sequence(args) = args else {
                        return Err(Error::Invalid(format!("flannel DaemonSet {}/{}: `args` is not a list", id.0, id.1)));
                    };
                    args.retain(|a| !a.as_str().is_some_and(|s| s.starts_with("--iface")));
                    args.extend(ifaces.iter().map(|i| Value::from(format!("--iface={i}"))));
                }
                daemonset = Some(id);
            }
            _ => {}
        }
    }
    if configs == 0 {
        return Err(Error::Invalid("the flannel manifest has no ConfigMap with a net-conf.json: is it flannel's kube-flannel.yml?".into()));
    }
    let daemonset = daemonset.ok_or_else(|| {
        Error::Invalid("the flannel manifest has no DaemonSet running the flannel image: is it flannel's kube-flannel.yml?".into())
    })?;
    Ok(Patched { text: serialize(&docs)?, daemonset })
}

/// Does this workload's pod template expose container ports 80 and 443?
fn serves_http_and_https(doc: &Value) -> bool {
    let ports: Vec<i64> = doc
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .flat_map(|c| c.get("ports").and_then(Value::as_sequence).cloned().unwrap_or_default())
        .filter_map(|p| p.get("containerPort").and_then(Value::as_i64))
        .collect();
    ports.contains(&80) && ports.contains(&443)
}

/// The ingress controller as a DaemonSet on the masters (see the module documentation).
pub fn patch_ingress(text: &str) -> Result<Patched> {
    let mut docs = documents(text)?;
    let candidates: Vec<usize> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| matches!(str_of(d, &["kind"]), "Deployment" | "DaemonSet") && serves_http_and_https(d))
        .map(|(i, _)| i)
        .collect();
    let i = match candidates.as_slice() {
        [i] => *i,
        [] => return Err(Error::Invalid("the ingress manifest has no Deployment or DaemonSet whose containers expose ports 80 and 443: which one is the controller?".into())),
        more => {
            let names: Vec<String> = more.iter().map(|i| format!("{} {}", str_of(&docs[*i], &["kind"]), ident(&docs[*i]).1)).collect();
            return Err(Error::Invalid(format!("the ingress manifest has several workloads exposing ports 80 and 443 ({}): bundle one controller", names.join(", "))));
        }
    };
    let doc = &mut docs[i];
    let id = ident(doc);
    if str_of(doc, &["kind"]) == "Deployment" {
        let Value::Mapping(top) = &mut *doc else { unreachable!() };
        top.insert("kind".into(), "DaemonSet".into());
        let spec = mapping(doc, "spec");
        for k in ["replicas", "strategy", "progressDeadlineSeconds", "paused"] {
            spec.remove(k);
        }
        let mut rolling = Mapping::new();
        rolling.insert("maxUnavailable".into(), 1.into());
        let mut update = Mapping::new();
        update.insert("type".into(), "RollingUpdate".into());
        update.insert("rollingUpdate".into(), Value::Mapping(rolling));
        spec.insert("updateStrategy".into(), Value::Mapping(update));
    }
    let pod = pod_spec(doc).ok_or_else(|| Error::Invalid(format!("ingress controller {}/{} has no pod template", id.0, id.1)))?;
    let Value::Mapping(p) = &mut *pod else { unreachable!() };
    p.insert("hostNetwork".into(), true.into());
    p.insert("dnsPolicy".into(), "ClusterFirstWithHostNet".into());
    mapping(pod, "nodeSelector").insert(CONTROL_PLANE_LABEL.into(), "".into());
    let Value::Mapping(p) = &mut *pod else { unreachable!() };
    let tolerations = p.entry("tolerations".into()).or_insert_with(|| Value::Sequence(vec![]));
    if !tolerations.is_sequence() {
        *tolerations = Value::Sequence(vec![]);
    }
    let list = tolerations.as_sequence_mut().expect("just made a list");
    let tolerated = list.iter().any(|t| {
        let op = str_of(t, &["operator"]);
        let effect = str_of(t, &["effect"]);
        let key = str_of(t, &["key"]);
        (key == CONTROL_PLANE_LABEL || (key.is_empty() && op == "Exists")) && (effect.is_empty() || effect == "NoSchedule")
    });
    if !tolerated {
        let mut t = Mapping::new();
        t.insert("key".into(), CONTROL_PLANE_LABEL.into());
        t.insert("operator".into(), "Exists".into());
        t.insert("effect".into(), "NoSchedule".into());
        list.push(Value::Mapping(t));
    }
    Ok(Patched { text: serialize(&docs)?, daemonset: id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/manifests/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        docs.iter().find(|d| str_of(d, &["kind"]) == kind && str_of(d, &["metadata", "name"]) == name).unwrap()
    }

    #[test]
    fn flannel_gets_the_pod_subnet_and_the_interfaces() {
        let upstream = fixture("kube-flannel-v0.28.9.yml");
        let p = patch_flannel(&upstream, "10.32.0.0/12", &["ens192".into(), "eth1".into()]).unwrap();
        assert_eq!(p.daemonset, ("kube-flannel".into(), "kube-flannel-ds".into()));
        let docs = documents(&p.text).unwrap();
        assert_eq!(docs.len(), documents(&upstream).unwrap().len(), "every object is kept");
        let cm = object(&docs, "ConfigMap", "kube-flannel-cfg");
        let net: serde_json::Value = serde_json::from_str(str_of(cm, &["data", "net-conf.json"])).unwrap();
        assert_eq!(net["Network"], "10.32.0.0/12");
        assert_eq!(net["Backend"]["Type"], "vxlan", "the rest of net-conf.json is kept");
        insta::assert_yaml_snapshot!("flannel_configmap", cm);
        insta::assert_yaml_snapshot!("flannel_daemonset", object(&docs, "DaemonSet", "kube-flannel-ds"));
        // without interfaces, flanneld's arguments are upstream's; patching twice changes nothing more
        let plain = patch_flannel(&upstream, "10.244.0.0/16", &[]).unwrap();
        let ds = object(&documents(&plain.text).unwrap(), "DaemonSet", "kube-flannel-ds").clone();
        assert_eq!(ds, *object(&documents(&upstream).unwrap(), "DaemonSet", "kube-flannel-ds"));
        assert_eq!(patch_flannel(&p.text, "10.32.0.0/12", &["ens192".into(), "eth1".into()]).unwrap(), p);
    }

    #[test]
    fn ingress_nginx_becomes_a_daemonset_on_the_masters() {
        let upstream = fixture("ingress-nginx-baremetal-controller-v1.15.1.yaml");
        let p = patch_ingress(&upstream).unwrap();
        assert_eq!(p.daemonset, ("ingress-nginx".into(), "ingress-nginx-controller".into()));
        let docs = documents(&p.text).unwrap();
        let up = documents(&upstream).unwrap();
        assert_eq!(docs.len(), up.len());
        assert!(!docs.iter().any(|d| str_of(d, &["kind"]) == "Deployment"));
        let ds = object(&docs, "DaemonSet", "ingress-nginx-controller");
        insta::assert_yaml_snapshot!("ingress_daemonset", ds);
        // only the controller changed; the digest-pinned images are untouched
        for (a, b) in docs.iter().zip(&up) {
            if str_of(b, &["kind"]) != "Deployment" {
                assert_eq!(a, b);
            }
        }
        assert!(p.text.contains("controller:v1.15.1@sha256:594ceea76b01c592858f803f9ff4d2cb40542cae2060410b2c95f75907d659e1"));
        assert_eq!(patch_ingress(&p.text).unwrap(), p, "patching is idempotent");
    }

    #[test]
    fn manifests_that_are_not_what_the_role_says_are_refused() {
        let e = patch_flannel("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n", "10.244.0.0/16", &[]).unwrap_err();
        assert!(e.to_string().contains("no ConfigMap with a net-conf.json"), "{e}");
        let e = patch_ingress(&fixture("kube-flannel-v0.28.9.yml")).unwrap_err();
        assert!(e.to_string().contains("no Deployment or DaemonSet whose containers expose ports 80 and 443"), "{e}");
        let e = patch_ingress("kind: [").unwrap_err();
        assert!(e.to_string().starts_with("document 1 is not valid YAML"), "{e}");
    }
}
