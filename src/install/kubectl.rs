//! kubectl on the first master, for the steps that apply bundled Kubernetes manifests (flannel, ingress-nginx):
//! the manifest, edited for the site (`kube::manifests`), is written to the node, applied with the bundled
//! kubectl and the admin kubeconfig kubeadm wrote there, and the step waits for what the manifest is for (every
//! node Ready; the DaemonSet's pods ready on every master), reading the cluster's objects as JSON and naming
//! each node that is not there yet with the cluster's own reason.

use crate::bundle::format::ManifestRole;
use crate::install::ssh::{shell_join, Stdin, Transport};
use crate::install::{Action, Ctx};
use crate::error::HintExt;
use anyhow::{anyhow, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The bundled kubectl (component `kubectl`).
pub const KUBECTL: &str = "/usr/local/bin/kubectl";
/// The admin kubeconfig `kubeadm init` / a control-plane join writes.
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
/// Where the edited manifests are written on the first master.
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/airgap/manifests";
/// How long a step waits for what its manifest brings up.
pub const WAIT: Duration = if cfg!(test) { Duration::from_millis(200) } else { Duration::from_secs(600) };
/// How often the cluster is asked again while waiting.
pub const POLL: Duration = if cfg!(test) { Duration::from_millis(5) } else { Duration::from_secs(3) };

/// `kubectl --kubeconfig /etc/kubernetes/admin.conf ARGS...`
pub fn argv(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [KUBECTL, "--kubeconfig", ADMIN_CONF].map(String::from).to_vec();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// The node the manifests are applied from: the first master.
pub fn first_master(ctx: &Ctx) -> Option<String> {
    ctx.inv.masters().next().map(|n| n.name.clone())
}

/// The text of the bundle's manifest of `role`, from the kit extracted here: `Ok(None)` when it cannot be
/// known here (`plan` without `--bundle`, or before the kit is extracted); an error naming the role when the
/// bundle carries none.
pub fn bundled_text(ctx: &Ctx, role: ManifestRole, step: &str) -> Result<Option<(String, String)>> {
    let Some(kit) = ctx.kit else {
        if ctx.targets.is_empty() {
            return Ok(None);
        }
        return Err(anyhow!("step {step} applies the bundle's {role} manifest, and no --bundle was given")).hint("pass --bundle and --pubkey");
    };
    let Some(f) = kit.manifest(role) else {
        return Err(anyhow!("the bundle carries no {role} manifest: step {step} has nothing to apply"))
            .hint(format!("build the bundle with a `files:` entry marked `manifest: {role}` (see manifests/k8s-ha.yaml), or leave the step out with --only/--from"));
    };
    let local = kit.local(&f.path);
    match fs_err::read(&local) {
        Ok(bytes) if crate::digest::Digest::of_bytes(&bytes).hex() == f.sha256 => {
            let text = String::from_utf8(bytes).map_err(|_| anyhow!("the bundle's {role} manifest {} is not UTF-8 text", f.path))?;
            Ok(Some((f.path.clone(), text)))
        }
        // plan and --dry-run (install extracts the kit before it applies anything): a placeholder
        _ => Ok(None),
    }
}

/// [`bundled_text`] when the step is about to change the node: the manifest must be there.
pub fn required_text(ctx: &Ctx, role: ManifestRole, step: &str) -> Result<(String, String)> {
    let missing = || {
        let at = ctx.kit.map(|k| k.local("").display().to_string()).unwrap_or_default();
        anyhow!("the bundle's {role} manifest is not extracted under {at} (or no longer has its sha256)")
    };
    bundled_text(ctx, role, step)?
        .ok_or_else(missing)
        .hint("run install with the distribute step (it verifies the bundle and extracts its files here)")
}

/// The file + `kubectl apply` actions for an edited manifest (`content`: a placeholder saying what it will be,
/// for `plan` without the bundle's files); `then`: what the step waits for after the apply.
pub fn apply_actions(file: &str, content: String, then: &str) -> Vec<Action> {
    let path = format!("{MANIFESTS_DIR}/{file}");
    vec![
        Action::File { path: path.clone(), mode: 0o644, content, block: None },
        Action::Command { argv: argv(&["apply", "-f", &path]), check: None, why: format!("kubectl apply -f {path}, then wait (up to {} s) until {then}", WAIT.as_secs()) },
    ]
}

/// `kubectl get ... -o json` on the node.
pub fn get_json(t: &dyn Transport, args: &[&str]) -> Result<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["-o", "json"]);
    let cmd = argv(&a);
    let out = t.run(&cmd, Stdin::Null)?;
    if !out.success() {
        return Err(anyhow!("`{}` failed on {}: {}", shell_join(&cmd), t.node(), out.reason()))
            .hint(format!("is the cluster up? `{}` on {} shows what kubectl sees", shell_join(&argv(&["get", "nodes"])), t.node()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| anyhow!("`{}` on {} printed no JSON: {e}", shell_join(&cmd), t.node()))
}

/// Why each of `expected` is not a Ready node in `nodes` (a `kubectl get nodes -o json` list); empty: all are.
pub fn nodes_not_ready(nodes: &Value, expected: &[String]) -> Vec<String> {
    let items = nodes["items"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for name in expected {
        let Some(n) = items.iter().find(|n| n["metadata"]["name"].as_str() == Some(name)) else {
            out.push(format!("{name}: not registered with the cluster (has it joined?)"));
            continue;
        };
        let conds = n["status"]["conditions"].as_array().cloned().unwrap_or_default();
        match conds.iter().find(|c| c["type"] == "Ready") {
            Some(c) if c["status"] == "True" => {}
            Some(c) => out.push(format!(
                "{name}: not Ready ({}: {})",
                c["reason"].as_str().unwrap_or("no reason"),
                c["message"].as_str().unwrap_or("no message")
            )),
            None => out.push(format!("{name}: no Ready condition yet (the kubelet has not reported)")),
        }
    }
    out
}

/// Why the DaemonSet `ds` is not rolled out on each of `expected` (`pods`: the namespace's pods as JSON).
pub fn daemonset_not_ready(ds: &Value, pods: &Value, expected: &[String]) -> Vec<String> {
    let name = ds["metadata"]["name"].as_str().unwrap_or("?");
    let uid = &ds["metadata"]["uid"];
    let mut out = Vec::new();
    let generation = ds["metadata"]["generation"].as_i64().unwrap_or(0);
    if ds["status"]["observedGeneration"].as_i64().unwrap_or(0) < generation {
        out.push(format!("DaemonSet {name}: the controller has not seen its latest change yet"));
    }
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let owned: Vec<&Value> = items
        .iter()
        .filter(|p| p["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|r| r["kind"] == "DaemonSet" && (r["uid"] == *uid || r["name"] == name))))
        .collect();
    for node in expected {
        let on_node: Vec<&&Value> = owned.iter().filter(|p| p["spec"]["nodeName"].as_str() == Some(node)).collect();
        let Some(p) = on_node.first() else {
            out.push(format!("{node}: no pod of DaemonSet {name} (is the node Ready, and its control-plane taint tolerated?)"));
            continue;
        };
        let ready = p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        if !ready {
            let pod = p["metadata"]["name"].as_str().unwrap_or("?");
            let why = p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|c| {
                    let w = &c["state"]["waiting"];
                    w["reason"].as_str().map(|r| format!("{r}: {}", w["message"].as_str().unwrap_or("")))
                })
                .unwrap_or_else(|| format!("phase {}", p["status"]["phase"].as_str().unwrap_or("unknown")));
            out.push(format!("{node}: pod {pod} not ready ({})", why.trim_end_matches(": ")));
        }
    }
    out
}

/// Poll `problems` until it returns none, or fail after `timeout` with the last problems, one per line.
pub fn wait_for(what: &str, timeout: Duration, poll: Duration, progress: &dyn Fn(&str), mut problems: impl FnMut() -> Result<Vec<String>>) -> Result<()> {
    let start = Instant::now();
    loop {
        let p = problems()?;
        if p.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(anyhow!("{what}: still not there after {} s:\n  {}", timeout.as_secs(), p.join("\n  ")));
        }
        progress(&format!("waiting for {what}: {}", p.join("; ")));
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_node_that_is_not_ready_is_named_with_the_clusters_reason() {
        let nodes = json!({"items": [
            {"metadata": {"name": "master1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "worker1"}, "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"}]}},
        ]});
        let expected: Vec<String> = ["master1", "worker1", "worker2"].map(String::from).to_vec();
        assert_eq!(
            nodes_not_ready(&nodes, &expected),
            [
                "worker1: not Ready (KubeletNotReady: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized)",
                "worker2: not registered with the cluster (has it joined?)",
            ]
        );
        assert!(nodes_not_ready(&nodes, &expected[..1]).is_empty());
    }

    #[test]
    fn a_daemonset_is_rolled_out_when_every_master_has_a_ready_pod() {
        let ds = json!({"metadata": {"name": "ingress-nginx-controller", "uid": "u1", "generation": 2}, "status": {"observedGeneration": 2}});
        let pod = |node: &str, ready: &str| json!({"metadata": {"name": format!("c-{node}"), "ownerReferences": [{"kind": "DaemonSet", "uid": "u1", "name": "ingress-nginx-controller"}]},
            "spec": {"nodeName": node}, "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}});
        let pods = json!({"items": [pod("master1", "True"), pod("master2", "False")]});
        let masters: Vec<String> = ["master1", "master2", "master3"].map(String::from).to_vec();
        assert_eq!(
            daemonset_not_ready(&ds, &pods, &masters),
            [
                "master2: pod c-master2 not ready (ImagePullBackOff: Back-off pulling image)",
                "master3: no pod of DaemonSet ingress-nginx-controller (is the node Ready, and its control-plane taint tolerated?)",
            ]
        );
        assert!(daemonset_not_ready(&ds, &pods, &masters[..1]).is_empty());
        let stale = json!({"metadata": {"name": "x", "uid": "u1", "generation": 3}, "status": {"observedGeneration": 2}});
        assert_eq!(daemonset_not_ready(&stale, &pods, &masters[..1]), ["DaemonSet x: the controller has not seen its latest change yet"]);
    }

    #[test]
    fn waiting_ends_with_the_last_problems() {
        let mut n = 0;
        wait_for("x", Duration::from_secs(60), Duration::from_millis(1), &|_| {}, || {
            n += 1;
            Ok(if n < 2 { vec!["a".into()] } else { vec![] })
        })
        .unwrap();
        let e = wait_for("every node Ready", Duration::ZERO, POLL, &|_| {}, || Ok(vec!["worker1: not Ready (r: m)".into()])).unwrap_err();
        assert_eq!(e.to_string(), "every node Ready: still not there after 0 s:\n  worker1: not Ready (r: m)");
    }
}
