//! `kubectl`: `apply -f FILE`, `get RESOURCE [NAME]` (`-o json|yaml|name|wide`, `-n`, `-A`, `-l`),
//! `wait --for=condition=C`, `delete`, `version`. It talks to the server of the kubeconfig (`--kubeconfig`,
//! `$KUBECONFIG`, `~/.kube/config`), TLS verified against the embedded CA, with the kubeconfig's
//! credentials; errors read like kubectl's (`Error from server (NotFound): nodes "x" not found`).

use crate::client::{Answer, Client};
use crate::common::{fail, poll, Ctx, R};
use crate::flags::{self, flag, short, Kind, Parsed};
use crate::objects::{self, KindInfo};
use crate::pki::KubeConfig;
use serde_json::{json, Value};
use std::time::Duration;

const SPECS: &[flags::Spec] = &[
    flag("kubeconfig", Kind::Str),
    short("namespace", 'n', Kind::Str),
    short("filename", 'f', Kind::List),
    short("output", 'o', Kind::Str),
    short("selector", 'l', Kind::Str),
    short("all-namespaces", 'A', Kind::Bool),
    flag("all", Kind::Bool),
    flag("for", Kind::Str),
    flag("timeout", Kind::Str),
    flag("request-timeout", Kind::Str),
    flag("client", Kind::Bool),
    flag("validate", Kind::Str),
    flag("server-side", Kind::Bool),
    flag("force-conflicts", Kind::Bool),
    flag("field-manager", Kind::Str),
    flag("ignore-not-found", Kind::Bool),
    short("v", 'v', Kind::Int),
];

fn client(ctx: &Ctx, p: &Parsed) -> R<(Client, Option<String>)> {
    let path = p
        .str("kubeconfig")
        .map(str::to_string)
        .or_else(|| std::env::var("KUBECONFIG").ok().and_then(|k| k.split(':').next().map(str::to_string)).filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.kube/config")).filter(|f| ctx.exists(f)));
    let Some(path) = path else {
        return Err(fail("The connection to the server localhost:8080 was refused - did you specify the right host or port?"));
    };
    let text = ctx.read_config(&path).map_err(|e| fail(format!("error: stat {path}: {}", crate::kubeadm::go_err(&e))))?;
    let kc = KubeConfig::parse(ctx, &text).map_err(|e| fail(format!("error: {}", e.msg)))?;
    Ok((Client::from_kubeconfig(&kc)?, kc.namespace))
}

/// A transport error or a server error, as kubectl prints it.
fn server_err(c: &Client, r: Result<Answer, String>) -> Result<Answer, String> {
    match r {
        Err(e) if e.contains("connection refused") => {
            Err(format!("The connection to the server {} was refused - did you specify the right host or port?", c.server.trim_start_matches("https://")))
        }
        Err(e) => Err(format!("Unable to connect to the server: {}", e.split_once("\": ").map(|(_, r)| r).unwrap_or(&e))),
        Ok(a) if a.status == 401 => Err("error: You must be logged in to the server (Unauthorized)".into()),
        Ok(a) => Ok(a),
    }
}

fn kinds(c: &Client) -> Vec<KindInfo> {
    let crds = c.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").ok().filter(Answer::ok).map(|a| a.body["items"].clone()).unwrap_or(Value::Null);
    let crds: Vec<&Value> = crds.as_array().into_iter().flatten().collect();
    objects::kinds(&crds)
}

pub fn main(ctx: &Ctx, args: &[String]) -> R<()> {
    let p = flags::parse(args, SPECS).map_err(|e| fail(format!("error: {e}\nSee 'kubectl --help' for usage.")))?;
    let verb = p.args.first().map(String::as_str).unwrap_or("");
    match verb {
        "version" => {
            println!("Client Version: {}\nKustomize Version: v5.7.1", ctx.version());
            if !p.bool("client") {
                let (c, _) = client(ctx, &p)?;
                let a = server_err(&c, c.get("/version")).map_err(fail)?;
                println!("Server Version: {}", a.body["gitVersion"].as_str().unwrap_or(""));
            }
            Ok(())
        }
        "apply" => apply(ctx, &p),
        "get" => get(ctx, &p),
        "wait" => wait(ctx, &p),
        "delete" => delete(ctx, &p),
        "" => Err(fail("kubectl controls the Kubernetes cluster manager (k8s-standin).\nerror: a command is required")),
        other => Err(fail(format!("error: unknown command \"{other}\" for \"kubectl\" (the k8s-standin kubectl knows apply, get, wait, delete, version)"))),
    }
}

fn yaml_docs(file: &str, text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| format!("error: error parsing {file}: error converting YAML to JSON: yaml: {e}"))?;
        match v {
            Value::Null => {}
            v if v["kind"] == "List" => out.extend(v["items"].as_array().cloned().unwrap_or_default()),
            v => out.push(v),
        }
    }
    Ok(out)
}

fn apply(ctx: &Ctx, p: &Parsed) -> R<()> {
    let files = p.list("filename");
    if files.is_empty() {
        return Err(fail("error: must specify one of -f and -k"));
    }
    let (c, kc_ns) = client(ctx, p)?;
    let ns = p.str("namespace").map(str::to_string).or(kc_ns).unwrap_or_else(|| "default".into());
    let mut errors = Vec::new();
    for file in files {
        let text = if file == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| fail(e.to_string()))?;
            s
        } else {
            ctx.read_config(&file).map_err(|e| fail(format!("error: the path \"{file}\" does not exist: {e}")))?
        };
        let docs = yaml_docs(&file, &text).map_err(fail)?;
        for obj in docs {
            let mut missing = Vec::new();
            for f in ["apiVersion", "kind"] {
                if obj[f].as_str().unwrap_or("").is_empty() {
                    missing.push(format!("{f} not set"));
                }
            }
            if !missing.is_empty() {
                errors.push(format!("error: error validating \"{file}\": error validating data: [{}]; if you choose to ignore these errors, turn validation off with --validate=false", missing.join(", ")));
                continue;
            }
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            if let (Some(o), Some(want)) = (obj["metadata"]["namespace"].as_str(), p.str("namespace")) {
                if o != want {
                    errors.push(format!("error: the namespace from the provided object \"{o}\" does not match the namespace \"{want}\". You must pass '--namespace={o}' to perform this operation."));
                    continue;
                }
            }
            let r = server_err(&c, c.call("POST", "/standin/v1/apply", Some(&json!({"object": obj, "namespace": ns})))).map_err(fail)?;
            if r.ok() {
                println!("{}/{name} {}", r.body["resource"].as_str().unwrap_or(""), r.body["result"].as_str().unwrap_or(""));
                continue;
            }
            let objns = obj["metadata"]["namespace"].as_str().unwrap_or(&ns);
            errors.push(match r.reason() {
                "NoKindMatch" => format!("error: resource mapping not found for name: \"{name}\" namespace: \"{objns}\" from \"{file}\": {}\nensure CRDs are installed first", r.message()),
                "Invalid" => r.message(),
                reason => format!("Error from server ({reason}): error when creating \"{file}\": {}", r.message()),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(fail(errors.join("\n")))
    }
}

/// The objects `get`/`wait` name: (kind, items, whether one NAME was asked for).
fn fetch(c: &Client, p: &Parsed, kc_ns: Option<String>, args: &[String]) -> R<(KindInfo, Vec<Value>, bool)> {
    let res = args.first().ok_or_else(|| fail("error: you must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources."))?;
    let (res, mut name) = match res.split_once('/') {
        Some((r, n)) => (r.to_string(), Some(n.to_string())),
        None => (res.clone(), args.get(1).cloned()),
    };
    if p.bool("all") {
        name = None;
    }
    let kinds = kinds(c);
    let k = objects::by_resource(&kinds, &res).cloned().ok_or_else(|| fail(format!("error: the server doesn't have a resource type \"{res}\"")))?;
    let ns = if p.bool("all-namespaces") && name.is_none() { None } else { Some(p.str("namespace").map(str::to_string).or(kc_ns).unwrap_or_else(|| "default".into())) };
    let mut path = k.path(ns.as_deref(), name.as_deref());
    if let (Some(sel), None) = (p.str("selector"), &name) {
        path.push_str(&format!("?labelSelector={}", crate::net::percent_encode(sel)));
    }
    let a = server_err(c, c.get(&path)).map_err(fail)?;
    if !a.ok() {
        return Err(fail(format!("Error from server ({}): {}", a.reason(), a.message())));
    }
    Ok(if name.is_some() { (k, vec![a.body], true) } else { (k, a.body["items"].as_array().cloned().unwrap_or_default(), false) })
}

fn age(obj: &Value) -> String {
    let t = obj["metadata"]["creationTimestamp"].as_str().and_then(crate::common::parse_rfc3339).unwrap_or(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    crate::common::human_duration(now - t)
}

fn cond(obj: &Value, ty: &str) -> Option<String> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == ty).and_then(|c| c["status"].as_str().map(str::to_string))
}

fn get(ctx: &Ctx, p: &Parsed) -> R<()> {
    let (c, kc_ns) = client(ctx, p)?;
    let (k, items, single) = fetch(&c, p, kc_ns, &p.args[1..])?;
    match p.str("output").unwrap_or("") {
        "json" if single => println!("{}", serde_json::to_string_pretty(&items[0]).expect("json")),
        "json" => println!("{}", serde_json::to_string_pretty(&json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})).expect("json")),
        "yaml" if single => print!("{}", serde_yaml_ng::to_string(&items[0]).expect("yaml")),
        "yaml" => print!("{}", serde_yaml_ng::to_string(&json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})).expect("yaml")),
        "name" => items.iter().for_each(|o| println!("{}/{}", k.resource_name(), o["metadata"]["name"].as_str().unwrap_or(""))),
        "" | "wide" => {
            if items.is_empty() {
                eprintln!("No resources found in {} namespace.", p.str("namespace").unwrap_or("default"));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|o| {
                    let n = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                    match k.kind.as_str() {
                        "Node" => {
                            let status = match cond(o, "Ready").as_deref() {
                                Some("True") => "Ready",
                                _ => "NotReady",
                            };
                            let roles: Vec<String> = objects::labels(o).keys().filter_map(|l| l.strip_prefix("node-role.kubernetes.io/").map(str::to_string)).collect();
                            let roles = if roles.is_empty() { "<none>".into() } else { roles.join(",") };
                            vec![n, status.into(), roles, age(o), o["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap_or("").into()]
                        }
                        "Pod" => {
                            let cs = o["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
                            let ready = cs.iter().filter(|c| c["ready"] == json!(true)).count();
                            let waiting = cs.iter().find_map(|c| c["state"]["waiting"]["reason"].as_str().map(str::to_string));
                            vec![n, format!("{ready}/{}", cs.len()), waiting.unwrap_or_else(|| o["status"]["phase"].as_str().unwrap_or("").into()), "0".into(), age(o)]
                        }
                        "DaemonSet" => {
                            let s = &o["status"];
                            let f = |x: &str| s[x].as_i64().unwrap_or(0).to_string();
                            vec![n, f("desiredNumberScheduled"), f("currentNumberScheduled"), f("numberReady"), f("updatedNumberScheduled"), f("numberAvailable"), age(o)]
                        }
                        _ => vec![n, age(o)],
                    }
                })
                .collect();
            let header: Vec<&str> = match k.kind.as_str() {
                "Node" => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
                "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                "DaemonSet" => vec!["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                _ => vec!["NAME", "AGE"],
            };
            let widths: Vec<usize> = (0..header.len()).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
            let line = |cells: Vec<&str>| cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i] + 3)).collect::<String>().trim_end().to_string();
            println!("{}", line(header.clone()));
            for r in &rows {
                println!("{}", line(r.iter().map(String::as_str).collect()));
            }
        }
        o => return Err(fail(format!("error: unable to match a printer suitable for the output format \"{o}\" (the k8s-standin kubectl prints json, yaml, name, wide)"))),
    }
    Ok(())
}

fn wait(ctx: &Ctx, p: &Parsed) -> R<()> {
    let (c, kc_ns) = client(ctx, p)?;
    let for_ = p.str("for").ok_or_else(|| fail("error: --for must be specified"))?;
    let spec = for_.strip_prefix("condition=").ok_or_else(|| fail(format!("error: unrecognized condition: \"{for_}\" (the k8s-standin kubectl waits for conditions)")))?;
    let (cond_type, want) = match spec.split_once('=') {
        Some((t, v)) => (t.to_string(), v.to_string()),
        None => (spec.to_string(), "True".to_string()),
    };
    let timeout = p.str("timeout").and_then(crate::common::go_duration_secs).unwrap_or(30.0);
    let args = p.args[1..].to_vec();
    let mut pending: Vec<String> = Vec::new();
    let done = poll(Duration::from_secs_f64(timeout), Duration::from_millis(500), || {
        let (k, items, _) = fetch(&c, p, kc_ns.clone(), &args).ok()?;
        if items.is_empty() {
            return None;
        }
        pending = items
            .iter()
            .filter(|o| !cond(o, &cond_type).is_some_and(|s| s.eq_ignore_ascii_case(&want)))
            .map(|o| format!("{}/{}", k.plural, o["metadata"]["name"].as_str().unwrap_or("")))
            .collect();
        pending.is_empty().then(|| items.iter().map(|o| format!("{}/{}", k.kind.to_lowercase(), o["metadata"]["name"].as_str().unwrap_or(""))).collect::<Vec<_>>())
    });
    match done {
        Some(names) => {
            names.iter().for_each(|n| println!("{n} condition met"));
            Ok(())
        }
        None if pending.is_empty() => Err(fail("error: no matching resources found")),
        None => Err(fail(pending.iter().map(|n| format!("error: timed out waiting for the condition on {n}")).collect::<Vec<_>>().join("\n"))),
    }
}

fn delete(ctx: &Ctx, p: &Parsed) -> R<()> {
    let (c, kc_ns) = client(ctx, p)?;
    let res = p.args.get(1).ok_or_else(|| fail("error: You must provide one or more resources by argument or filename."))?;
    let kinds = kinds(&c);
    let k = objects::by_resource(&kinds, res).cloned().ok_or_else(|| fail(format!("error: the server doesn't have a resource type \"{res}\"")))?;
    let ns = p.str("namespace").map(str::to_string).or(kc_ns).unwrap_or_else(|| "default".into());
    for name in &p.args[2..] {
        let a = server_err(&c, c.call("DELETE", &k.path(Some(&ns), Some(name)), None)).map_err(fail)?;
        if a.ok() {
            println!("{} \"{name}\" deleted", k.resource_name());
        } else if !(a.status == 404 && p.bool("ignore-not-found")) {
            return Err(fail(format!("Error from server ({}): {}", a.reason(), a.message())));
        }
    }
    Ok(())
}
