//! Human and JSON forms of the plan: every step, on every node, every file (content or a diff against the
//! node) and every command, copy-pasteable.

use super::actions::{check_one, receive_cmd, write_file_cmd};
use super::{Action, Ctx, Step};
use crate::site::inventory::Node;
use crate::install::ssh::{shell_join, shell_quote, Transport};
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write;

#[derive(Serialize)]
pub struct PlanJson<'a> {
    pub cluster: &'a str,
    pub kubernetes_version: &'a str,
    pub steps: Vec<StepJson>,
}

#[derive(Serialize)]
pub struct StepJson {
    pub name: &'static str,
    pub summary: &'static str,
    /// Work on other nodes before the per-node work (kubeadm-join: on the first master).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<NodeJson>,
    pub nodes: Vec<NodeJson>,
}

#[derive(Serialize)]
pub struct NodeJson {
    pub node: String,
    pub address: String,
    pub role: String,
    pub actions: Vec<Action>,
}

pub fn plan_json<'a>(ctx: &'a Ctx, steps: &[Box<dyn Step>]) -> Result<PlanJson<'a>> {
    let mut out = Vec::new();
    for s in steps {
        let mut nodes = Vec::new();
        for n in ctx.inv.nodes.iter().filter(|n| s.runs_on(ctx, n)) {
            nodes.push(NodeJson {
                node: n.name.clone(),
                address: n.address.to_string(),
                role: n.role.to_string(),
                actions: s.plan(ctx, n)?,
            });
        }
        let mut before = Vec::new();
        for (name, actions) in s.cluster_actions(ctx, None)? {
            if let Some(n) = ctx.inv.nodes.iter().find(|n| n.name == name) {
                before.push(NodeJson { node: n.name.clone(), address: n.address.to_string(), role: n.role.to_string(), actions });
            }
        }
        out.push(StepJson {
            name: s.name(),
            summary: s.summary(),
            before,
            nodes,
        });
    }
    Ok(PlanJson {
        cluster: &ctx.inv.cluster.name,
        kubernetes_version: &ctx.inv.cluster.kubernetes_version,
        steps: out,
    })
}

/// The whole plan as text.
pub fn plan_text(ctx: &Ctx, steps: &[Box<dyn Step>]) -> Result<String> {
    let inv = ctx.inv;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# airgap plan: cluster {} (Kubernetes {}), {} masters + {} workers, {} step{}",
        inv.cluster.name,
        inv.cluster.kubernetes_version,
        inv.masters().count(),
        inv.workers().count(),
        steps.len(),
        if steps.len() == 1 { "" } else { "s" }
    );
    match &inv.registry.external {
        None => {
            let _ = writeln!(s, "# masters' VIP {}:16443, workers' VIP {}:5000", inv.vips.masters, inv.vips.workers);
        }
        Some(ext) => {
            let _ = writeln!(s, "# masters' VIP {}:16443, workers' VIP {}; images from the site's registry {ext} (no built-in registry)", inv.vips.masters, inv.vips.workers);
        }
    }
    let _ = writeln!(
        s,
        "# file contents are shown as the `airgap node write-file` command that writes them (reads stdin)"
    );
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "\n## {}. {}: {}", i + 1, step.name(), step.summary());
        for (name, actions) in step.cluster_actions(ctx, None)? {
            let _ = writeln!(s, "\n### {name}, before the other nodes (when one is pending)");
            for a in actions {
                s.push_str(&action_text(&a));
            }
        }
        for n in inv.nodes.iter().filter(|n| step.runs_on(ctx, n)) {
            let _ = writeln!(s, "\n### {} ({}, {})", n.name, n.address, n.role);
            for a in step.plan(ctx, n)? {
                s.push_str(&action_text(&a));
            }
        }
    }
    Ok(s)
}

fn heredoc(content: &str) -> String {
    let mut c = content.to_string();
    if !c.ends_with('\n') {
        c.push('\n');
    }
    format!("<<'AIRGAP_EOF'\n{c}AIRGAP_EOF\n")
}

/// One action: the command a person would run on the node.
pub fn action_text(a: &Action) -> String {
    match a {
        Action::File {
            path,
            mode,
            content,
            block,
        } => {
            let what = match block {
                Some(b) => format!("# file {path}: the block between '# BEGIN {b}' and '# END {b}' (the rest is kept)"),
                None => format!("# file {path} (mode {mode:o})"),
            };
            format!(
                "{what}\n$ {} {}",
                shell_join(&write_file_cmd(path, *mode, content, block.as_deref())),
                heredoc(content)
            )
        }
        Action::SecretFile { path, mode, shown, source, .. } => format!(
            "# file {path} (mode {mode:o}) holds secrets from {source}: shown with <secret>; the content goes on stdin (checked the same way)\n$ {} {}",
            shell_join(&super::actions::secret_file_cmd(path, *mode, false)),
            heredoc(shown)
        ),
        Action::Command { argv, check, why } => {
            let mut s = format!("# {why}\n");
            if let Some(c) = check {
                let _ = writeln!(s, "# (skipped when `{}` succeeds)", shell_join(c));
            }
            let _ = writeln!(s, "$ {}", shell_join(argv));
            s
        }
        Action::Copy {
            local,
            remote,
            mode,
            sha256,
            size,
        } => match sha256 {
            Some(h) => format!(
                "# copy {local} ({}, {h}) to {remote}, verified on arrival, skipped when there\n$ {} < {}\n",
                super::actions::human_size(size.unwrap_or(0)),
                shell_join(&receive_cmd(remote, *mode, h)),
                shell_quote(local)
            ),
            None => format!("# copy {local} to {remote} (mode {mode:o}), verified by sha256 on arrival\n"),
        },
    }
}

/// `--dry-run` for one node: why the step would run, then each action with what would change.
pub fn dry_run_node(ctx: &Ctx, step: &dyn Step, node: &Node, t: &dyn Transport, why: &str) -> Result<String> {
    let mut s = format!(
        "\n## {} on {} ({}): would run ({why})\n",
        step.name(),
        node.name,
        node.address
    );
    for a in step.plan(ctx, node)? {
        match &a {
            Action::File {
                path, content, block, ..
            } => {
                let current = match t.read_file(path) {
                    Ok(c) => c.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    Err(e) => {
                        let _ = writeln!(s, "# (cannot read {path} on the node: {e:#})");
                        None
                    }
                };
                let current = match (current, block) {
                    (Some(c), Some(b)) => crate::node::files::extract_block(&c, b),
                    (c, _) => c,
                };
                match current {
                    Some(c) if &c == content => {
                        let _ = writeln!(s, "# file {path}: unchanged");
                    }
                    Some(c) => {
                        let diff = similar::TextDiff::from_lines(&c, content);
                        let _ = writeln!(s, "# file {path}: would change:");
                        s.push_str(
                            &diff
                                .unified_diff()
                                .context_radius(3)
                                .header(&format!("{}:{path}", node.name), "desired")
                                .to_string(),
                        );
                        s.push_str(&action_text(&a));
                    }
                    None => s.push_str(&action_text(&a)),
                }
            }
            _ => {
                if let Ok(None) = check_one(&a, t) {
                    if !matches!(a, Action::Command { check: None, .. }) {
                        let _ = writeln!(s, "# already in place: {}", first_line(&action_text(&a)));
                        continue;
                    }
                }
                s.push_str(&action_text(&a));
            }
        }
    }
    Ok(s)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim_start_matches("# ")
}
