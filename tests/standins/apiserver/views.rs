//! What the controllers and kubelets of a real cluster would have written, computed when read: node
//! conditions (Ready only while the kubelet heartbeats AND a flannel DaemonSet whose net-conf.json
//! `Network` equals the cluster's podSubnet runs on the node), the not-ready taint, the pods of DaemonSets
//! and Deployments (and the static control-plane pods), workload status, and the cluster-info JWS
//! signatures (bootstrapsigner).

use super::state::State;
use crate::common::rfc3339;
use crate::crypto;
use crate::objects::{self, labels, schedulable, suffix};
use serde_json::{json, Value};

/// node-monitor-grace-period: a node whose kubelet was silent longer is NotReady/Unknown.
pub const GRACE_SECS: i64 = 40;

fn created(obj: &Value) -> i64 {
    obj["metadata"]["creationTimestamp"].as_str().and_then(crate::common::parse_rfc3339).unwrap_or(0)
}

/// The flannel DaemonSets: their main container runs the `flannel` image.
fn flannel_daemonsets(st: &State) -> Vec<&Value> {
    st.list("apps", "DaemonSet", None)
        .into_iter()
        .filter(|ds| {
            ds["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten().any(|c| {
                let image = c["image"].as_str().unwrap_or("");
                let repo = image.split('@').next().unwrap_or("");
                let repo = repo.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map(|(r, _)| r).unwrap_or(repo);
                repo.rsplit('/').next() == Some("flannel")
            })
        })
        .collect()
}

/// net-conf.json `Network` of a flannel DaemonSet (from the ConfigMap it mounts).
fn flannel_network(st: &State, ds: &Value) -> Option<String> {
    let ns = ds["metadata"]["namespace"].as_str().unwrap_or("");
    ds["spec"]["template"]["spec"]["volumes"].as_array().into_iter().flatten().find_map(|v| {
        let cm = st.get("", "ConfigMap", ns, v["configMap"]["name"].as_str()?)?;
        let conf: Value = serde_json::from_str(cm["data"]["net-conf.json"].as_str()?).ok()?;
        conf["Network"].as_str().map(str::to_string)
    })
}

pub enum NodeNet {
    /// No flannel DaemonSet for this node.
    None,
    /// flannel runs, but its Network is not the cluster's pod subnet.
    Mismatch(String),
    Ready(i64),
}

fn node_network(st: &State, node: &Value) -> NodeNet {
    let pod_subnet = st.pod_subnet().map(|n| n.to_string());
    let mut result = NodeNet::None;
    for ds in flannel_daemonsets(st) {
        if !schedulable(&ds["spec"]["template"]["spec"], node, true) {
            continue;
        }
        match flannel_network(st, ds) {
            Some(n) if pod_subnet.as_deref().is_some_and(|p| n.parse::<ipnet::IpNet>().ok().map(|x| x.to_string()) == Some(p.to_string())) => {
                return NodeNet::Ready(created(ds));
            }
            Some(n) => {
                result = NodeNet::Mismatch(format!(
                    "flannel net-conf.json Network {n} is not the cluster's pod subnet {}: the node's podCIDR {} is outside it",
                    pod_subnet.as_deref().unwrap_or("(unset)"),
                    node["spec"]["podCIDR"].as_str().unwrap_or("")
                ))
            }
            None => result = NodeNet::Mismatch("flannel has no net-conf.json in its ConfigMap".into()),
        }
    }
    result
}

/// The Node as `kubectl get node -o json` shows it.
pub fn node(st: &State, stored: &Value, now: i64) -> Value {
    let mut n = stored.clone();
    let name = n["metadata"]["name"].as_str().unwrap_or("").to_string();
    let beat = st.heartbeats.get(&name).copied();
    let alive = beat.is_some_and(|b| now - b <= GRACE_SECS);
    let net = node_network(st, stored);
    let t = |s: i64| rfc3339(s);
    let (status, reason, message, since) = match (&net, alive) {
        (_, false) => ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.".to_string(), beat.unwrap_or(created(stored)) + GRACE_SECS),
        (NodeNet::Ready(at), true) => ("True", "KubeletReady", "kubelet is posting ready status".to_string(), (*at).max(created(stored))),
        (_, true) => (
            "False",
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".to_string(),
            created(stored),
        ),
    };
    let hb = t(beat.unwrap_or(created(stored)));
    let pressure = |ty: &str, reason: &str, msg: &str| {
        json!({"type": ty, "status": "False", "reason": reason, "message": msg, "lastHeartbeatTime": hb, "lastTransitionTime": t(created(stored))})
    };
    n["status"]["conditions"] = json!([
        pressure("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        pressure("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        {"type": "Ready", "status": status, "reason": reason, "message": message, "lastHeartbeatTime": hb, "lastTransitionTime": t(since)},
    ]);
    if status != "True" {
        let key = if alive { "node.kubernetes.io/not-ready" } else { "node.kubernetes.io/unreachable" };
        let mut taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
        taints.push(json!({"key": key, "effect": "NoSchedule"}));
        n["spec"]["taints"] = json!(taints);
    }
    n
}

pub fn ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub fn nodes(st: &State, now: i64) -> Vec<Value> {
    st.list("", "Node", None).into_iter().map(|n| node(st, n, now)).collect()
}

fn container_statuses(spec: &Value, state: &Value, ready: bool, started: &str) -> Value {
    json!(spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({
            "name": c["name"], "image": c["image"], "imageID": "", "ready": ready, "restartCount": 0,
            "started": ready, "state": if state.is_null() { json!({"running": {"startedAt": started}}) } else { state.clone() },
        }))
        .collect::<Vec<_>>())
}

/// A pod of `owner` (kind, object) on `node`, with the status its kubelet would report.
fn pod(st: &State, owner_kind: &str, owner: &Value, name: String, node: &Value, now: i64) -> Value {
    let ns = owner["metadata"]["namespace"].as_str().unwrap_or("default");
    let tmpl = &owner["spec"]["template"];
    let spec = &tmpl["spec"];
    let node_name = node["metadata"]["name"].as_str().unwrap_or("");
    let node_ip = node["status"]["addresses"].as_array().into_iter().flatten().find(|a| a["type"] == "InternalIP").map(|a| a["address"].clone()).unwrap_or(Value::Null);
    let alive = st.heartbeats.get(node_name).is_some_and(|b| now - b <= GRACE_SECS);
    let host_net = spec["hostNetwork"] == json!(true);
    let is_flannel = flannel_daemonsets(st).iter().any(|d| d["metadata"]["uid"] == owner["metadata"]["uid"]);
    let started = rfc3339(created(owner).max(created(node)));
    let (phase, ok, state, message) = if !alive {
        ("Pending", false, json!({"waiting": {"reason": "ContainerCreating"}}), "node is not posting status")
    } else if let (true, NodeNet::Mismatch(why)) = (is_flannel, node_network(st, node)) {
        let msg = format!("back-off restarting failed container kube-flannel: {why}");
        ("Running", false, json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}}), "")
    } else if host_net || ready(node) {
        ("Running", true, Value::Null, "")
    } else {
        ("Pending", false, json!({"waiting": {"reason": "ContainerCreating"}}), "network is not ready")
    };
    let cond = |ty: &str, ok: bool| json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": started});
    let mut lbls = tmpl["metadata"]["labels"].clone();
    if lbls.is_null() {
        lbls = json!({});
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "labels": lbls, "uid": objects::uid(&format!("pod/{ns}/{name}")),
            "creationTimestamp": started,
            "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner_kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": true}],
        },
        "spec": {"nodeName": node_name, "hostNetwork": host_net, "containers": spec["containers"], "tolerations": spec["tolerations"]},
        "status": {
            "phase": phase, "hostIP": node_ip, "podIP": if host_net { node_ip.clone() } else { Value::Null },
            "message": message, "startTime": started,
            "conditions": [cond("PodScheduled", true), cond("Initialized", alive), cond("ContainersReady", ok), cond("Ready", ok)],
            "containerStatuses": container_statuses(spec, &state, ok, &started),
        },
    })
}

fn eligible_nodes<'a>(nodes: &'a [Value], spec: &Value, daemonset: bool) -> Vec<&'a Value> {
    nodes.iter().filter(|n| schedulable(spec, n, daemonset)).collect()
}

/// Every pod the workloads in `ns` (all namespaces when `None`) run.
pub fn pods(st: &State, ns: Option<&str>, now: i64) -> Vec<Value> {
    let nodes = nodes(st, now);
    let mut out = Vec::new();
    for ds in st.list("apps", "DaemonSet", ns) {
        for n in eligible_nodes(&nodes, &ds["spec"]["template"]["spec"], true) {
            let name = format!("{}-{}", ds["metadata"]["name"].as_str().unwrap_or(""), suffix(&format!("{}{}", ds["metadata"]["uid"], n["metadata"]["name"])));
            out.push(pod(st, "DaemonSet", ds, name, n, now));
        }
    }
    for d in st.list("apps", "Deployment", ns) {
        let candidates: Vec<&Value> = eligible_nodes(&nodes, &d["spec"]["template"]["spec"], false).into_iter().filter(|n| ready(n)).collect();
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let rs = suffix(&format!("{}", d["metadata"]["uid"]));
        for i in 0..replicas {
            let name = format!("{}-{rs}-{}", d["metadata"]["name"].as_str().unwrap_or(""), suffix(&format!("{}{i}", d["metadata"]["uid"])));
            match candidates.get(i % candidates.len().max(1)) {
                Some(n) if !candidates.is_empty() => out.push(pod(st, "ReplicaSet", d, name, n, now)),
                _ => {
                    let mut p = pod(st, "ReplicaSet", d, name, &json!({"metadata": {"name": ""}}), now);
                    p["spec"]["nodeName"] = Value::Null;
                    p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": format!("0/{} nodes are available: no node is Ready and matches the pod's node selector and tolerations", nodes.len())}]});
                    out.push(p);
                }
            }
        }
    }
    if ns.is_none() || ns == Some("kube-system") {
        for n in nodes.iter().filter(|n| labels(n).contains_key("node-role.kubernetes.io/control-plane")) {
            let node_name = n["metadata"]["name"].as_str().unwrap_or("");
            for c in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
                let owner = json!({"apiVersion": "v1", "metadata": {"name": node_name, "namespace": "kube-system", "uid": objects::uid(node_name)},
                    "spec": {"template": {"metadata": {"labels": {"component": c, "tier": "control-plane"}},
                        "spec": {"hostNetwork": true, "containers": [{"name": c, "image": c}]}}}});
                out.push(pod(st, "Node", &owner, format!("{c}-{node_name}"), n, now));
            }
        }
    }
    for p in st.list("", "Pod", ns) {
        let mut p = p.clone();
        let node = nodes.iter().find(|n| n["metadata"]["name"] == p["spec"]["nodeName"]);
        let ok = node.is_some_and(|n| ready(n) || p["spec"]["hostNetwork"] == json!(true));
        p["status"]["phase"] = json!(if ok { "Running" } else { "Pending" });
        out.push(p);
    }
    out
}

/// A DaemonSet or Deployment with the status its controller would report.
pub fn workload(st: &State, obj: &Value, now: i64) -> Value {
    let mut o = obj.clone();
    let uid = &obj["metadata"]["uid"];
    let mine: Vec<Value> = pods(st, obj["metadata"]["namespace"].as_str(), now)
        .into_iter()
        .filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == *uid)
        .collect();
    let total = mine.len() as i64;
    let ready = mine.iter().filter(|p| p["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")).count() as i64;
    let generation = obj["metadata"]["generation"].clone();
    o["status"] = if obj["kind"] == "DaemonSet" {
        json!({"currentNumberScheduled": total, "desiredNumberScheduled": total, "numberAvailable": ready, "numberMisscheduled": 0,
               "numberReady": ready, "numberUnavailable": total - ready, "observedGeneration": generation, "updatedNumberScheduled": total})
    } else {
        let available = ready > 0 && ready == total;
        json!({"replicas": total, "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": total,
               "unavailableReplicas": total - ready, "observedGeneration": generation,
               "conditions": [{"type": "Available", "status": if available { "True" } else { "False" },
                               "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }}]})
    };
    o
}

/// kube-public/cluster-info with a `jws-kubeconfig-<id>` per signing token (the bootstrapsigner).
pub fn cluster_info(st: &State, cm: &Value) -> Value {
    let mut cm = cm.clone();
    let Some(kubeconfig) = cm["data"]["kubeconfig"].as_str().map(str::to_string) else { return cm };
    for t in st.tokens().into_iter().filter(|t| t.usages.iter().any(|u| u == "signing")) {
        cm["data"][format!("jws-kubeconfig-{}", t.id)] = json!(crypto::jws_detached(&t.id, &t.secret, &kubeconfig));
    }
    cm
}
