//! Files that hold a secret (the Redis password...): never in a plan, a log, an argv or the journal. In the
//! plan they are an `airgap node secret-file --path P` command whose purpose says `<secret>` and where the
//! secret comes from; check and apply send the content on the command's stdin, so that nothing of it (not
//! even a hash, which would allow guessing a weak password offline) is on a command line.

use super::actions::{apply_all, check_one};
use super::ssh::{Stdin, Transport};
use super::{node_cmd, Action};
use anyhow::{bail, Context, Result};

/// Where a secret comes from, as the inventory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(String),
    File(std::path::PathBuf),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Env(v) => format!("environment variable {v}"),
            Source::File(f) => format!("file {}", f.display()),
        }
    }

    /// The secret (a file's first line), or why not, naming the inventory field `field`.
    pub fn read(&self, field: &str) -> Result<String> {
        use crate::error::HintExt;
        let s = match self {
            Source::Env(v) => std::env::var(v)
                .map_err(|_| anyhow::anyhow!("{field} names {v}, which is not set"))
                .with_hint(|| format!("export {v}=... on this machine before running airgap"))?,
            Source::File(f) => {
                let text = fs_err::read_to_string(f).with_context(|| format!("failed to read {field}"))?;
                text.lines().next().unwrap_or_default().to_string()
            }
        };
        if s.is_empty() {
            bail!("{field}: the secret from {} is empty", self.describe());
        }
        Ok(s)
    }
}

/// The plan's action for a secret file (mode 0600).
pub fn file_action(path: &str, what: &str, source: &Source) -> Action {
    Action::Command {
        argv: node_cmd(&["secret-file", "--path", path]),
        check: Some(node_cmd(&["secret-file", "--path", path, "--check"])),
        why: format!("{what} (<secret>, from the {}) in {path}, mode 0600: the content goes on stdin", source.describe()),
    }
}

fn secret_path(a: &Action) -> Option<&str> {
    match a {
        Action::Command { argv, .. } if argv.get(2).is_some_and(|s| s == "secret-file") => argv.get(4).map(String::as_str),
        _ => None,
    }
}

/// [`super::actions::check_all`] with the secret files' contents (`path` → content) sent on stdin.
pub fn check_all(actions: &[Action], t: &dyn Transport, secrets: &[(String, String)]) -> Result<Vec<String>> {
    let mut diff = Vec::new();
    for a in actions {
        match (secret_path(a), a) {
            (Some(p), Action::Command { check: Some(check), .. }) => {
                let content = content_of(secrets, p)?;
                let out = t.run(check, Stdin::Bytes(content.as_bytes()))?;
                if !out.success() {
                    diff.push(format!("{p}: {}", out.stdout_str().trim()));
                }
            }
            _ => diff.extend(check_one(a, t)?),
        }
    }
    Ok(diff)
}

/// [`super::actions::apply_all`] with the secret files' contents sent on stdin.
pub fn apply(actions: &[Action], t: &dyn Transport, secrets: &[(String, String)], progress: &dyn Fn(&str)) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for a in actions {
        match (secret_path(a), a) {
            (Some(p), Action::Command { argv, .. }) => {
                let content = content_of(secrets, p)?;
                progress(&format!("writing {p} (<secret>)"));
                let out = t.run(argv, Stdin::Bytes(content.as_bytes()))?;
                if !out.success() {
                    bail!("failed to write {p} on {}: {}", t.node(), out.reason());
                }
                if out.stdout_str().trim() == "written" {
                    changed.push(format!("wrote {p} (<secret>)"));
                }
            }
            _ => changed.extend(apply_all(std::slice::from_ref(a), t, progress)?),
        }
    }
    Ok(changed)
}

fn content_of<'a>(secrets: &'a [(String, String)], path: &str) -> Result<&'a String> {
    secrets.iter().find(|(p, _)| p == path).map(|(_, c)| c).with_context(|| format!("no secret content for {path}"))
}
