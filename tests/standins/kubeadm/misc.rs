//! `kubeadm token create|list|delete`, `kubeadm version`, `kubeadm config images list`,
//! `kubeadm config validate`, `kubeadm reset`.

use super::config::{self, check_cluster, check_token, ClusterView, Errs};
use super::controlplane::{self as cp, call};
use super::init::{token_secret, tokens_of};
use super::{kerr, parse, validate_mixed};
use crate::common::{human_duration, parse_rfc3339, rfc3339, Ctx, R};
use crate::flags::{flag, short, Kind, Spec};
use crate::pki::B64;
use crate::services;
use base64::Engine as _;
use serde_json::{json, Value};

const TOKEN_COMMON: &[Spec] = &[flag("kubeconfig", Kind::Str), flag("dry-run", Kind::Bool)];
const TOKEN_CREATE: &[Spec] = &[
    flag("kubeconfig", Kind::Str),
    flag("dry-run", Kind::Bool),
    flag("config", Kind::Str),
    flag("print-join-command", Kind::Bool),
    flag("certificate-key", Kind::Str),
    flag("ttl", Kind::Str),
    flag("usages", Kind::List),
    flag("groups", Kind::List),
    flag("description", Kind::Str),
];
const TOKEN_LIST: &[Spec] = &[
    flag("kubeconfig", Kind::Str),
    flag("dry-run", Kind::Bool),
    short("output", 'o', Kind::Str),
    flag("allow-missing-template-keys", Kind::Bool),
    flag("show-managed-fields", Kind::Bool),
];

pub fn token(ctx: &Ctx, sub: Option<&str>, args: &[String]) -> R<()> {
    match sub {
        Some("create") => token_create(ctx, args),
        Some("list") => token_list(ctx, args),
        Some("delete") => {
            let p = parse(args, TOKEN_COMMON, "kubeadm token delete")?;
            let c = cp::admin_client(ctx, p.str("kubeconfig").unwrap_or(cp::ADMIN_CONF))?;
            if p.args.is_empty() {
                return Err(kerr(1, "missing argument; 'token delete' is missing token of form \"[a-z0-9]{6}\" or \"[a-z0-9]{6}\\.[a-z0-9]{16}\""));
            }
            for t in &p.args {
                let id = t.split('.').next().unwrap_or("");
                call(&c, "DELETE", &format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}"), None)
                    .map_err(|e| kerr(1, format!("failed to delete bootstrap token with ID \"{id}\": {e}")))?;
                println!("bootstrap token \"{id}\" deleted");
            }
            Ok(())
        }
        Some(other) => Err(kerr(1, format!("unknown command \"{other}\" for \"kubeadm token\""))),
        None => Err(kerr(1, "kubeadm token: a subcommand is required (create, list, delete)")),
    }
}

fn token_create(ctx: &Ctx, args: &[String]) -> R<()> {
    let p = parse(args, TOKEN_CREATE, "kubeadm token create")?;
    validate_mixed(&p)?;
    let c = cp::admin_client(ctx, p.str("kubeconfig").unwrap_or(cp::ADMIN_CONF))?;
    let now = ctx.now();
    let tokens: Vec<(String, Value)> = match p.str("config") {
        Some(path) => {
            let cfg = config::load_init(ctx, path)?;
            let mut e = Errs::default();
            for (i, t) in cfg.init.bootstrap_tokens.iter().flatten().enumerate() {
                check_token(&mut e, &format!("bootstrapTokens[{i}].token"), &t.token);
            }
            check_cluster(&mut e, &cfg.cluster);
            e.into_result()?;
            tokens_of(&cfg.init, now)
        }
        None => {
            let t = match p.args.first() {
                Some(t) => t.clone(),
                None => airgap::kube::pki::BootstrapToken::generate().expect("randomness").expose_secret(),
            };
            let mut e = Errs::default();
            check_token(&mut e, "token", &t);
            e.into_result()?;
            let ttl = p.str("ttl").map(|d| crate::common::go_duration_secs(d).map(|s| s as i64).ok_or_else(|| kerr(1, format!("invalid argument \"{d}\" for \"--ttl\" flag: time: invalid duration \"{d}\"")))).transpose()?;
            let usages = if p.has("usages") { p.list("usages") } else { vec!["signing".into(), "authentication".into()] };
            let usages: Vec<&str> = usages.iter().map(String::as_str).collect();
            let groups = if p.has("groups") { p.list("groups") } else { vec!["system:bootstrappers:kubeadm:default-node-token".into()] };
            vec![(t.clone(), token_secret(&t, Some(ttl.unwrap_or(24 * 3600)), &usages, &groups, p.str("description").unwrap_or(""), now))]
        }
    };
    for (t, secret) in &tokens {
        let id = t.split('.').next().unwrap_or("");
        let path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}");
        if c.get(&path).map_err(|e| kerr(1, e))?.ok() {
            return Err(kerr(1, format!("a token with id \"{id}\" already exists")));
        }
        call(&c, "POST", "/api/v1/namespaces/kube-system/secrets", Some(secret))
            .map_err(|e| kerr(1, format!("failed to create or update bootstrap token with name bootstrap-token-{id}: {e}")))?;
    }
    let first = &tokens[0].0;
    if p.bool("print-join-command") {
        let cm = call(&c, "GET", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config", None).map_err(|e| kerr(1, e))?;
        let cc = serde_yaml_ng::from_str(cm["data"]["ClusterConfiguration"].as_str().unwrap_or("")).map_err(|e| kerr(1, e))?;
        let view = ClusterView::of(ctx, &cc, None)?;
        let ca = ctx.read(&format!("{}/ca.crt", cp::PKI)).map_err(|e| kerr(1, e))?;
        println!("kubeadm join {} --token {first} --discovery-token-ca-cert-hash {}", view.endpoint, crate::pki::spki_pin(&ca)?);
    } else {
        println!("{first}");
    }
    Ok(())
}

fn token_list(ctx: &Ctx, args: &[String]) -> R<()> {
    let p = parse(args, TOKEN_LIST, "kubeadm token list")?;
    let c = cp::admin_client(ctx, p.str("kubeconfig").unwrap_or(cp::ADMIN_CONF))?;
    let list = call(&c, "GET", "/api/v1/namespaces/kube-system/secrets", None).map_err(|e| kerr(1, format!("failed to list bootstrap tokens: {e}")))?;
    let now = ctx.now();
    let dec = |s: &Value, k: &str| s["data"][k].as_str().and_then(|d| B64.decode(d).ok()).map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut rows = Vec::new();
    for s in list["items"].as_array().into_iter().flatten().filter(|s| s["type"] == "bootstrap.kubernetes.io/token") {
        let (Some(id), Some(secret)) = (dec(s, "token-id"), dec(s, "token-secret")) else { continue };
        let exp = dec(s, "expiration");
        let usages: Vec<&str> = ["authentication", "signing"].into_iter().filter(|u| dec(s, &format!("usage-bootstrap-{u}")).as_deref() == Some("true")).collect();
        rows.push(json!({
            "kind": "BootstrapToken", "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
            "token": format!("{id}.{secret}"), "description": dec(s, "description").unwrap_or_default(),
            "ttl": exp.as_deref().and_then(parse_rfc3339).map(|e| format!("{}s", (e - now).max(0))),
            "expires": exp, "usages": usages,
            "groups": dec(s, "auth-extra-groups").map(|g| g.split(',').map(str::to_string).collect::<Vec<_>>()).unwrap_or_default(),
        }));
    }
    match p.str("output").unwrap_or("text") {
        "json" => {
            for r in &rows {
                println!("{}", serde_json::to_string_pretty(r).expect("json"));
            }
        }
        "yaml" => {
            for r in &rows {
                print!("{}", serde_yaml_ng::to_string(r).expect("yaml"));
            }
        }
        "text" => {
            if rows.is_empty() {
                return Ok(());
            }
            println!("{:<24}  {:<9}  {:<21}  {:<24}  {:<56}  EXTRA GROUPS", "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION");
            for r in &rows {
                let exp = r["expires"].as_str().and_then(parse_rfc3339);
                let ttl = exp.map(|e| human_duration(e - now)).unwrap_or_else(|| "<forever>".into());
                let usages: Vec<&str> = r["usages"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let groups: Vec<&str> = r["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                println!(
                    "{:<24}  {:<9}  {:<21}  {:<24}  {:<56}  {}",
                    r["token"].as_str().unwrap_or(""),
                    ttl,
                    exp.map(rfc3339).unwrap_or_else(|| "<never>".into()),
                    if usages.is_empty() { "<none>".to_string() } else { usages.join(",") },
                    r["description"].as_str().filter(|d| !d.is_empty()).unwrap_or("<none>"),
                    if groups.is_empty() { "<none>".to_string() } else { groups.join(",") }
                );
            }
        }
        o => return Err(kerr(1, format!("unable to match a printer suitable for the output format \"{o}\", allowed formats are: json,jsonpath,jsonpath-as-json,jsonpath-file,go-template,go-template-file,template,templatefile,text,yaml"))),
    }
    Ok(())
}

pub fn version(ctx: &Ctx, args: &[String]) -> R<()> {
    let p = parse(args, &[short("output", 'o', Kind::Str)], "kubeadm version")?;
    let v = ctx.version();
    let info = json!({"major": v.major.to_string(), "minor": v.minor.to_string(), "gitVersion": v.to_string(), "gitCommit": "k8s-standin",
                      "gitTreeState": "clean", "goVersion": "go1.25", "compiler": "gc", "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"))});
    match p.str("output").unwrap_or("") {
        "short" => println!("{v}"),
        "json" => println!("{}", serde_json::to_string_pretty(&json!({"clientVersion": info})).expect("json")),
        "yaml" => print!("{}", serde_yaml_ng::to_string(&json!({"clientVersion": info})).expect("yaml")),
        "" => println!(
            "kubeadm version: &version.Info{{Major:\"{}\", Minor:\"{}\", GitVersion:\"{v}\", GitCommit:\"k8s-standin\", GitTreeState:\"clean\", GoVersion:\"go1.25\", Compiler:\"gc\", Platform:\"{}\"}}",
            v.major, v.minor, info["platform"].as_str().unwrap_or("")
        ),
        o => return Err(kerr(1, format!("invalid output format: {o}"))),
    }
    Ok(())
}

pub fn images_list(ctx: &Ctx, args: &[String]) -> R<()> {
    let specs = [
        flag("config", Kind::Str),
        flag("kubernetes-version", Kind::Str),
        flag("image-repository", Kind::Str),
        flag("feature-gates", Kind::Str),
        short("output", 'o', Kind::Str),
        flag("allow-missing-template-keys", Kind::Bool),
        flag("show-managed-fields", Kind::Bool),
        flag("kubeconfig", Kind::Str),
    ];
    let p = parse(args, &specs, "kubeadm config images list")?;
    let mut cc = match p.str("config") {
        Some(path) => config::load_init(ctx, path)?.cluster,
        None => Default::default(),
    };
    if let Some(v) = p.str("kubernetes-version") {
        cc.kubernetes_version = Some(v.to_string());
    }
    if let Some(r) = p.str("image-repository") {
        cc.image_repository = Some(r.to_string());
    }
    let view = ClusterView::of(ctx, &cc, Some(([127, 0, 0, 1].into(), 6443)))?;
    match p.str("output").unwrap_or("text") {
        "text" => view.images.iter().for_each(|i| println!("{i}")),
        "json" => println!("{}", serde_json::to_string_pretty(&json!({"kind": "Images", "apiVersion": "output.kubeadm.k8s.io/v1alpha3", "images": view.images})).expect("json")),
        o => return Err(kerr(1, format!("unable to match a printer suitable for the output format \"{o}\""))),
    }
    Ok(())
}

pub fn config_validate(ctx: &Ctx, args: &[String]) -> R<()> {
    let p = parse(args, &[flag("config", Kind::Str), flag("allow-experimental-api", Kind::Bool), flag("kubeconfig", Kind::Str)], "kubeadm config validate")?;
    let path = p.str("config").ok_or_else(|| kerr(1, "the --config flag is mandatory"))?;
    let docs = config::read_docs(ctx, path)?;
    let _ = docs;
    println!("ok");
    Ok(())
}

/// `kubeadm reset -f`: stop the kubelet and the apiserver, remove what init/join wrote.
pub fn reset(ctx: &Ctx, args: &[String]) -> R<()> {
    let specs = [
        flag("cert-dir", Kind::Str),
        flag("cleanup-tmp-dir", Kind::Bool),
        flag("config", Kind::Str),
        flag("cri-socket", Kind::Str),
        flag("dry-run", Kind::Bool),
        short("force", 'f', Kind::Bool),
        flag("ignore-preflight-errors", Kind::List),
        flag("kubeconfig", Kind::Str),
        flag("skip-phases", Kind::List),
    ];
    let p = parse(args, &specs, "kubeadm reset")?;
    validate_mixed(&p)?;
    if !p.bool("force") {
        return Err(kerr(1, "the k8s-standin kubeadm reset does not prompt: use -f / --force"));
    }
    println!("[preflight] Running pre-flight checks");
    println!("[reset] Stopping the kubelet service");
    services::stop(ctx, "kubelet");
    services::stop(ctx, services::APISERVER_UNIT);
    println!("[reset] Deleting contents of directories: [/etc/kubernetes/manifests /var/lib/kubelet /etc/kubernetes/pki /var/lib/etcd]");
    ctx.remove(cp::APISERVER_ARGS);
    for d in [cp::MANIFESTS, "/var/lib/kubelet", cp::PKI, "/var/lib/etcd"] {
        if let Ok(rd) = std::fs::read_dir(ctx.path(d)) {
            for e in rd.flatten() {
                let _ = if e.path().is_dir() { std::fs::remove_dir_all(e.path()) } else { std::fs::remove_file(e.path()) };
            }
        }
    }
    println!("[reset] Deleting files: [/etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf /etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf /etc/kubernetes/controller-manager.conf /etc/kubernetes/scheduler.conf]");
    for f in ["admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf", "controller-manager.conf", "scheduler.conf"] {
        ctx.remove(&format!("/etc/kubernetes/{f}"));
    }
    println!("\nThe reset process does not clean CNI configuration, iptables or IPVS tables, or your kubeconfig files.");
    Ok(())
}
