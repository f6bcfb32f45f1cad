//! The cluster state the apiserver holding it keeps (the stand-in's etcd): every object, node heartbeats,
//! the control-plane members. Persisted as one JSON file after every change, so a restarted apiserver
//! (systemd restarts it, a node reboots) answers as before.
//!
//! What controllers would do in a real cluster happens here when the state is read or written: expired
//! bootstrap-token Secrets are deleted (tokencleaner), objects whose owner is gone are deleted (garbage
//! collector: the `kubeadm-certs` Secret is owned by a 2-hour token, so it disappears with it).

use crate::common::{parse_rfc3339, rfc3339};
use crate::objects::{self, KindInfo};
use crate::pki::B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Default, Serialize, Deserialize)]
pub struct State {
    pub objects: BTreeMap<String, Value>,
    /// Node name -> last heartbeat (Unix seconds, cluster clock).
    pub heartbeats: BTreeMap<String, i64>,
    /// Control-plane members (the apiservers): `{name, address}`, the state holder first.
    pub members: Vec<Value>,
    pub resource_version: u64,
    pub next_pod_cidr: u32,
}

/// A bootstrap token as its Secret holds it.
#[derive(Clone, Debug)]
pub struct Token {
    pub id: String,
    pub secret: String,
    pub expiration: Option<i64>,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

pub fn key(group: &str, kind: &str, ns: &str, name: &str) -> String {
    format!("{group}/{kind}/{ns}/{name}")
}

fn secret_str(obj: &Value, k: &str) -> Option<String> {
    let d = obj["data"][k].as_str()?;
    B64.decode(d).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Strip what the server owns, to compare what a client sent with what is stored.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o["metadata"].as_object_mut() {
        for f in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] {
            m.remove(f);
        }
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
            if a.is_empty() {
                m.remove("annotations");
            }
        }
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    o
}

impl State {
    pub fn load(path: &std::path::Path) -> State {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn save(&self, path: &std::path::Path) {
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, serde_json::to_vec(self).expect("json")).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    pub fn get(&self, group: &str, kind: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(group, kind, ns, name))
    }

    /// Every object of a kind, in one namespace or all.
    pub fn list(&self, group: &str, kind: &str, ns: Option<&str>) -> Vec<&Value> {
        let prefix = format!("{group}/{kind}/");
        self.objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| ns.is_none_or(|ns| k[prefix.len()..].starts_with(&format!("{ns}/"))))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn kinds(&self) -> Vec<KindInfo> {
        let crds = self.list("apiextensions.k8s.io", "CustomResourceDefinition", None);
        objects::kinds(&crds)
    }

    /// Store `obj` (create or replace): `created`, `configured` or `unchanged`. Server fields are kept
    /// across updates; `generation` moves when the spec does.
    pub fn put(&mut self, mut obj: Value, now: i64) -> &'static str {
        let group = group_of(obj["apiVersion"].as_str().unwrap_or("")).to_string();
        let kind = obj["kind"].as_str().unwrap_or("").to_string();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let k = key(&group, &kind, &ns, &name);
        let old = self.objects.get(&k).cloned();
        if let Some(old) = &old {
            if comparable(old) == comparable(&obj) {
                return "unchanged";
            }
        }
        self.resource_version += 1;
        let m = obj["metadata"].as_object_mut().expect("metadata is an object");
        m.insert("resourceVersion".into(), json!(self.resource_version.to_string()));
        match &old {
            Some(old) => {
                for f in ["uid", "creationTimestamp"] {
                    m.insert(f.into(), old["metadata"][f].clone());
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = old["spec"] != obj["spec"];
                obj["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
                if obj.get("status").is_none() && old.get("status").is_some() {
                    obj["status"] = old["status"].clone();
                }
            }
            None => {
                m.insert("uid".into(), json!(objects::uid(&format!("{k}/{}", self.resource_version))));
                m.insert("creationTimestamp".into(), json!(rfc3339(now)));
                m.insert("generation".into(), json!(1));
            }
        }
        self.objects.insert(k, obj);
        if old.is_some() {
            "configured"
        } else {
            "created"
        }
    }

    pub fn delete(&mut self, group: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let v = self.objects.remove(&key(group, kind, ns, name));
        if v.is_some() {
            self.resource_version += 1;
        }
        if kind == "Node" && group.is_empty() {
            self.heartbeats.remove(name);
        }
        v
    }

    /// The tokencleaner and the garbage collector. True when something was deleted.
    pub fn collect_garbage(&mut self, now: i64) -> bool {
        let mut changed = false;
        let expired: Vec<String> = self
            .list("", "Secret", Some("kube-system"))
            .into_iter()
            .filter(|s| s["type"] == "bootstrap.kubernetes.io/token")
            .filter(|s| secret_str(s, "expiration").and_then(|e| parse_rfc3339(&e)).is_some_and(|e| e <= now))
            .map(|s| s["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        for name in expired {
            changed |= self.delete("", "Secret", "kube-system", &name).is_some();
        }
        loop {
            let uids: std::collections::HashSet<String> =
                self.objects.values().filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_string)).collect();
            let orphans: Vec<String> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    let owners = o["metadata"]["ownerReferences"].as_array();
                    owners.is_some_and(|os| !os.is_empty() && os.iter().all(|r| !uids.contains(r["uid"].as_str().unwrap_or(""))))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphans.is_empty() {
                break;
            }
            for k in orphans {
                self.objects.remove(&k);
                changed = true;
            }
        }
        changed
    }

    /// The bootstrap tokens (unexpired: expired ones are collected first).
    pub fn tokens(&self) -> Vec<Token> {
        self.list("", "Secret", Some("kube-system"))
            .into_iter()
            .filter(|s| s["type"] == "bootstrap.kubernetes.io/token")
            .filter_map(|s| {
                let usages = ["authentication", "signing"]
                    .iter()
                    .filter(|u| secret_str(s, &format!("usage-bootstrap-{u}")).as_deref() == Some("true"))
                    .map(|u| u.to_string())
                    .collect();
                Some(Token {
                    id: secret_str(s, "token-id")?,
                    secret: secret_str(s, "token-secret")?,
                    expiration: secret_str(s, "expiration").and_then(|e| parse_rfc3339(&e)),
                    usages,
                    groups: secret_str(s, "auth-extra-groups").map(|g| g.split(',').map(str::to_string).collect()).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The ClusterConfiguration `kubeadm init` uploaded (kube-system/kubeadm-config), as loose YAML values.
    pub fn cluster_config(&self) -> Value {
        self.get("", "ConfigMap", "kube-system", "kubeadm-config")
            .and_then(|cm| cm["data"]["ClusterConfiguration"].as_str())
            .and_then(|y| serde_yaml_ng::from_str(y).ok())
            .unwrap_or(Value::Null)
    }

    pub fn pod_subnet(&self) -> Option<ipnet::IpNet> {
        self.cluster_config()["networking"]["podSubnet"].as_str()?.split(',').next()?.trim().parse().ok()
    }

    /// The next node's pod CIDR (the controller-manager's /24 per node out of the pod subnet).
    pub fn allocate_pod_cidr(&mut self) -> Option<String> {
        let net = self.pod_subnet()?;
        let prefix = if net.addr().is_ipv4() { 24 } else { 64 };
        let cidr = net.subnets(prefix.max(net.prefix_len())).ok()?.nth(self.next_pod_cidr as usize)?;
        self.next_pod_cidr += 1;
        Some(cidr.to_string())
    }
}
