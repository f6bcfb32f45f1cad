//! The state holder's API: authentication (client certificate verified against the cluster CA; a
//! bootstrap token as `Authorization: Bearer`; anonymous), the authorization kubeadm's RBAC grants
//! (anonymous reads kube-public/cluster-info; bootstrap tokens read the kubeadm config, nodes and the
//! kubeadm-certs Secret and get node certificates; nodes post their own status; kubeadm:cluster-admins and
//! system:masters do everything), the REST paths kubectl and kubeadm use, and a few stand-in endpoints
//! under `/standin/v1/` (apply, TLS bootstrap, node heartbeat, control-plane members).

use super::state::State;
use super::{views, PROXY_CN};
use crate::common::{rfc3339, Ctx};
use crate::net::{Peer, Request, Response};
use crate::objects::{self, parse_path, selector_matches, KindInfo};
use crate::pki::{self, Ca};
use airgap::kube::Version;
use serde_json::{json, Value};
use std::sync::Mutex;

pub struct Holder {
    pub ctx: Ctx,
    pub state: Mutex<State>,
    pub state_file: std::path::PathBuf,
    pub ca: Ca,
    pub version: Version,
}

pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    fn admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters" || g == "kubeadm:cluster-admins")
    }
    fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
}

pub fn status(code: u16, reason: &str, message: &str) -> Response {
    Response::json(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

fn not_found(k: &KindInfo, name: &str) -> Response {
    let res = if k.group.is_empty() { k.plural.clone() } else { format!("{}.{}", k.plural, k.group) };
    status(404, "NotFound", &format!("{res} \"{name}\" not found"))
}

fn forbidden(id: &Identity, verb: &str, k: Option<&KindInfo>, ns: Option<&str>, name: Option<&str>) -> Response {
    let (res, group) = k.map(|k| (k.plural.as_str(), k.group.as_str())).unwrap_or(("", ""));
    let subject = match name {
        Some(n) => format!("{res} \"{n}\""),
        None => res.to_string(),
    };
    let scope = match ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    status(403, "Forbidden", &format!("{subject} is forbidden: User \"{}\" cannot {verb} resource \"{res}\" in API group \"{group}\" {scope}", id.user))
}

fn identify(st: &State, req: &Request, peer: &Peer, now: i64) -> Result<Identity, Response> {
    let from_cert = peer.certs.first().and_then(|c| pki::identity(c));
    if let Some((cn, orgs)) = &from_cert {
        if cn != PROXY_CN {
            return Ok(Identity { user: cn.clone(), groups: orgs.clone() });
        }
        if let Some(u) = req.get_header("X-Remote-User") {
            let groups = req.get_header("X-Remote-Group").unwrap_or("").split(',').filter(|g| !g.is_empty()).map(str::to_string).collect();
            return Ok(Identity { user: u.to_string(), groups });
        }
    }
    if let Some(tok) = req.get_header("Authorization").and_then(|a| a.strip_prefix("Bearer ")) {
        let (id, secret) = tok.trim().split_once('.').unwrap_or(("", ""));
        return st
            .tokens()
            .into_iter()
            .find(|t| t.id == id && t.secret == secret && t.usages.iter().any(|u| u == "authentication") && t.expiration.is_none_or(|e| e > now))
            .map(|t| {
                let mut groups = vec!["system:bootstrappers".to_string()];
                groups.extend(t.groups);
                Identity { user: format!("system:bootstrap:{}", t.id), groups }
            })
            .ok_or_else(|| status(401, "Unauthorized", "Unauthorized"));
    }
    if let Some((cn, orgs)) = from_cert {
        return Ok(Identity { user: cn, groups: orgs });
    }
    Ok(Identity { user: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] })
}

/// What kubeadm's RBAC (and the node authorizer) lets a non-admin do.
fn allowed(id: &Identity, method: &str, k: &KindInfo, ns: Option<&str>, name: Option<&str>) -> bool {
    if id.admin() {
        return true;
    }
    let get = method == "GET";
    let is = |kind: &str, n: Option<&str>, want_ns: Option<&str>| k.kind == kind && (want_ns.is_none() || ns == want_ns) && (n.is_none() || name == n);
    if get && is("ConfigMap", Some("cluster-info"), Some("kube-public")) {
        return true;
    }
    let bootstrapper = id.in_group("system:bootstrappers");
    let node = id.in_group("system:nodes");
    if (bootstrapper || node) && get && k.kind == "ConfigMap" && ns == Some("kube-system") {
        return ["kubeadm-config", "kubelet-config", "kube-proxy"].contains(&name.unwrap_or(""));
    }
    if (bootstrapper || node) && get && k.kind == "Node" {
        return name.is_some() || node;
    }
    if id.in_group("system:bootstrappers:kubeadm:default-node-token") && get && is("Secret", Some("kubeadm-certs"), Some("kube-system")) {
        return true;
    }
    node && get && k.kind == "Pod"
}

fn validate(obj: &Value, k: &KindInfo) -> Result<(), String> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let invalid = |field: &str, what: &str| Err(format!("{} \"{name}\" is invalid: {field}: {what}", k.kind));
    if name.is_empty() {
        return Err("resource name may not be empty".into());
    }
    if name.len() > 253 || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') || name.starts_with(['-', '.']) {
        return invalid("metadata.name", &format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"));
    }
    if ["DaemonSet", "Deployment", "StatefulSet", "ReplicaSet"].contains(&k.kind.as_str()) {
        let spec = &obj["spec"];
        if spec["selector"].is_null() {
            return invalid("spec.selector", "Required value");
        }
        let tl = objects::labels(&spec["template"]);
        if !objects::label_selector_matches(&spec["selector"], &tl) || tl.is_empty() {
            return invalid("spec.template.metadata.labels", &format!("Invalid value: {:?}: `selector` does not match template `labels`", tl));
        }
        let containers = spec["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
        if containers.is_empty() {
            return invalid("spec.template.spec.containers", "Required value");
        }
        for (i, c) in containers.iter().enumerate() {
            for f in ["name", "image"] {
                if c[f].as_str().unwrap_or("").is_empty() {
                    return invalid(&format!("spec.template.spec.containers[{i}].{f}"), "Required value");
                }
            }
        }
    }
    Ok(())
}

impl Holder {
    pub fn handle(&self, req: Request, peer: &Peer) -> Response {
        let now = self.ctx.now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.collect_garbage(now) {
            st.save(&self.state_file);
        }
        let id = match identify(&st, &req, peer, now) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let path = req.path().to_string();
        let resp = match (req.method.as_str(), path.as_str()) {
            ("GET", "/healthz" | "/livez" | "/readyz") => Response::text(200, "ok"),
            ("GET", "/version") => {
                let v = self.version;
                Response::json(200, &json!({"major": v.major.to_string(), "minor": v.minor.to_string(), "gitVersion": v.to_string(), "platform": "linux/amd64"}))
            }
            ("POST", "/standin/v1/apply") if id.admin() => self.apply(&mut st, &req, now),
            ("POST", "/standin/v1/tlsbootstrap") if id.in_group("system:bootstrappers") => self.tls_bootstrap(&req),
            ("GET", "/standin/v1/members") if id.admin() => Response::json(200, &json!(st.members)),
            ("POST", "/standin/v1/members") if id.admin() => {
                let m: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                st.members.retain(|x| x["name"] != m["name"]);
                st.members.push(m);
                Response::json(200, &json!(st.members))
            }
            ("POST", p) if p.starts_with("/standin/v1/nodes/") && p.ends_with("/heartbeat") => {
                let name = p.trim_start_matches("/standin/v1/nodes/").trim_end_matches("/heartbeat").to_string();
                if id.user != format!("system:node:{name}") || !id.in_group("system:nodes") {
                    return status(403, "Forbidden", &format!("nodes \"{name}\" is forbidden: node \"{}\" can only update its own status", id.user));
                }
                self.heartbeat(&mut st, &name, &req, now)
            }
            (_, p) if p.starts_with("/standin/") => status(403, "Forbidden", &format!("User \"{}\" cannot use {p}", id.user)),
            _ => self.rest(&mut st, &id, &req, now),
        };
        if req.method != "GET" {
            st.save(&self.state_file);
        }
        resp
    }

    fn rest(&self, st: &mut State, id: &Identity, req: &Request, now: i64) -> Response {
        let Some(ap) = parse_path(req.path()) else { return status(404, "NotFound", "the server could not find the requested resource") };
        let kinds = st.kinds();
        let Some(k) = kinds.iter().find(|k| k.group == ap.group && k.version == ap.version && k.plural == ap.plural).cloned() else {
            return status(404, "NotFound", "the server could not find the requested resource");
        };
        let ns = if k.namespaced { ap.namespace.clone() } else { None };
        let verb = match (req.method.as_str(), &ap.name) {
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            _ => "unknown",
        };
        if !allowed(id, &req.method, &k, ns.as_deref(), ap.name.as_deref()) {
            return forbidden(id, verb, Some(&k), ns.as_deref(), ap.name.as_deref());
        }
        let nsv = ns.clone().unwrap_or_default();
        match (req.method.as_str(), ap.name.as_deref()) {
            ("GET", None) => {
                let mut items: Vec<Value> = match k.kind.as_str() {
                    "Node" => views::nodes(st, now),
                    "Pod" => views::pods(st, ns.as_deref(), now),
                    "DaemonSet" | "Deployment" => st.list(&k.group, &k.kind, ns.as_deref()).into_iter().map(|o| views::workload(st, o, now)).collect(),
                    _ => st.list(&k.group, &k.kind, ns.as_deref()).into_iter().cloned().collect(),
                };
                if let Some(sel) = req.query("labelSelector") {
                    items.retain(|o| selector_matches(&sel, &objects::labels(o)));
                }
                Response::json(200, &json!({"apiVersion": k.api_version(), "kind": format!("{}List", k.kind), "metadata": {"resourceVersion": st.resource_version.to_string()}, "items": items}))
            }
            ("GET", Some(name)) => {
                let found = match k.kind.as_str() {
                    "Pod" => views::pods(st, ns.as_deref(), now).into_iter().find(|p| p["metadata"]["name"] == name),
                    _ => st.get(&k.group, &k.kind, &nsv, name).map(|o| match k.kind.as_str() {
                        "Node" => views::node(st, o, now),
                        "DaemonSet" | "Deployment" => views::workload(st, o, now),
                        "ConfigMap" if name == "cluster-info" && nsv == "kube-public" => views::cluster_info(st, o),
                        _ => o.clone(),
                    }),
                };
                found.map(|o| Response::json(200, &o)).unwrap_or_else(|| not_found(&k, name))
            }
            ("POST" | "PUT", name) => {
                let Ok(mut obj) = serde_json::from_slice::<Value>(&req.body) else { return status(400, "BadRequest", "the body is not a JSON object") };
                if obj["metadata"].is_null() {
                    obj["metadata"] = json!({});
                }
                if let Some(n) = name {
                    obj["metadata"]["name"] = json!(n);
                }
                if k.namespaced {
                    obj["metadata"]["namespace"] = json!(nsv);
                }
                let obj_name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                if req.method == "POST" && st.get(&k.group, &k.kind, &nsv, &obj_name).is_some() {
                    let res = if k.group.is_empty() { k.plural.clone() } else { format!("{}.{}", k.plural, k.group) };
                    return status(409, "AlreadyExists", &format!("{res} \"{obj_name}\" already exists"));
                }
                if let Err(e) = validate(&obj, &k) {
                    return status(422, "Invalid", &e);
                }
                let result = st.put(obj, now);
                let stored = st.get(&k.group, &k.kind, &nsv, &obj_name).cloned().unwrap_or(Value::Null);
                Response::json(if result == "created" { 201 } else { 200 }, &stored)
            }
            ("PATCH", Some(name)) => {
                let Some(mut obj) = st.get(&k.group, &k.kind, &nsv, name).cloned() else { return not_found(&k, name) };
                let Ok(patch) = serde_json::from_slice::<Value>(&req.body) else { return status(400, "BadRequest", "the patch is not JSON") };
                merge_patch(&mut obj, &patch);
                st.put(obj, now);
                Response::json(200, st.get(&k.group, &k.kind, &nsv, name).unwrap_or(&Value::Null))
            }
            ("DELETE", Some(name)) => match st.delete(&k.group, &k.kind, &nsv, name) {
                Some(_) => Response::json(200, &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": k.plural}})),
                None => not_found(&k, name),
            },
            _ => status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"),
        }
    }

    /// `kubectl apply` of one object: `{"object": OBJ}` -> `{"result": created|configured|unchanged}`.
    fn apply(&self, st: &mut State, req: &Request, now: i64) -> Response {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut obj = body["object"].clone();
        let (api_version, kind) = (obj["apiVersion"].as_str().unwrap_or(""), obj["kind"].as_str().unwrap_or(""));
        let kinds = st.kinds();
        let Some(k) = objects::by_type(&kinds, api_version, kind).cloned() else {
            return status(404, "NoKindMatch", &format!("no matches for kind \"{kind}\" in version \"{api_version}\""));
        };
        if obj["metadata"].is_null() {
            obj["metadata"] = json!({});
        }
        if k.namespaced {
            let ns = obj["metadata"]["namespace"].as_str().filter(|s| !s.is_empty()).or(body["namespace"].as_str()).unwrap_or("default").to_string();
            if st.get("", "Namespace", "", &ns).is_none() {
                return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if let Err(e) = validate(&obj, &k) {
            return status(422, "Invalid", &e);
        }
        let result = st.put(obj, now);
        Response::json(200, &json!({"result": result, "resource": k.resource_name()}))
    }

    /// The kubelet's TLS bootstrap (CSR created and auto-approved, as kubeadm's RBAC arranges): a client
    /// certificate `system:node:<name>` / `system:nodes` signed by the cluster CA.
    fn tls_bootstrap(&self, req: &Request) -> Response {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let Some(node) = body["nodeName"].as_str().filter(|n| !n.is_empty()) else { return status(400, "BadRequest", "nodeName is required") };
        match self.ca.sign(&format!("system:node:{node}"), &["system:nodes"], &[], &[], false, true) {
            Ok((cert, key)) => Response::json(200, &json!({"certificate": cert, "key": key})),
            Err(e) => status(500, "InternalError", &e.msg),
        }
    }

    /// A kubelet's status post: registers the Node the first time (labels, pod CIDR), then refreshes
    /// its addresses, node info and heartbeat.
    fn heartbeat(&self, st: &mut State, name: &str, req: &Request, now: i64) -> Response {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut node = match st.get("", "Node", "", name).cloned() {
            Some(n) => n,
            None => {
                let cidr = st.allocate_pod_cidr();
                let mut lbls = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                    "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")});
                if let Some(extra) = body["labels"].as_object() {
                    for (k, v) in extra {
                        lbls[k] = v.clone();
                    }
                }
                json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": lbls, "annotations": body["annotations"].clone()},
                    "spec": {"podCIDR": cidr, "podCIDRs": cidr.iter().collect::<Vec<_>>(), "taints": body["taints"].clone()}})
            }
        };
        node["status"]["addresses"] = body["addresses"].clone();
        node["status"]["nodeInfo"] = body["nodeInfo"].clone();
        node["status"]["capacity"] = json!({"cpu": "2", "memory": "2Gi", "pods": "110"});
        node["status"]["allocatable"] = node["status"]["capacity"].clone();
        if node["metadata"]["annotations"].is_null() {
            node["metadata"]["annotations"] = json!({});
        }
        if node["spec"]["taints"].is_null() {
            node["spec"].as_object_mut().map(|m| m.remove("taints"));
        }
        st.put(node, now);
        st.heartbeats.insert(name.to_string(), now);
        let stored = st.get("", "Node", "", name).cloned().unwrap_or(Value::Null);
        let mut v = views::node(st, &stored, now);
        v["standin"] = json!({"now": rfc3339(now)});
        Response::json(200, &v)
    }
}

/// RFC 7386 JSON merge patch (what `kubectl patch --type merge` sends; kubeadm's node patches fit it).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}
