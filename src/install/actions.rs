//! Generic check / apply of [`Action`]s over a [`Transport`], through `airgap node ...` on the node.

use super::{node_cmd, Action};
use crate::digest::Digest;
use crate::install::ssh::{shell_join, Stdin, Transport};
use anyhow::{bail, Result};

/// The `airgap node check-file` command for a file action (exit 0: same content and mode).
pub fn check_file_cmd(path: &str, sha256: &Digest, mode: Option<u32>, block: Option<&str>) -> Vec<String> {
    let mut v = node_cmd(&["check-file", "--path", path, "--sha256", sha256.hex()]);
    if let Some(m) = mode {
        v.extend(["--mode".into(), format!("{m:o}")]);
    }
    if let Some(b) = block {
        v.extend(["--block".into(), b.into()]);
    }
    v
}

/// The `airgap node write-file` command for a file action (content on stdin).
pub fn write_file_cmd(path: &str, mode: u32, content: &str, block: Option<&str>) -> Vec<String> {
    let sha = Digest::of_bytes(content.as_bytes());
    let mut v = node_cmd(&[
        "write-file",
        "--path",
        path,
        "--mode",
        &format!("{mode:o}"),
        "--sha256",
        sha.hex(),
    ]);
    if let Some(b) = block {
        v.extend(["--block".into(), b.into()]);
    }
    v
}

/// The `airgap node secret-file` command for a file holding secrets (content on stdin, for the write and
/// for the check).
pub fn secret_file_cmd(path: &str, mode: u32, check: bool) -> Vec<String> {
    let mut v = node_cmd(&["secret-file", "--path", path, "--mode", &format!("{mode:o}")]);
    if check {
        v.push("--check".into());
    }
    v
}

/// The `airgap node receive` command for a copy (content on stdin, verified by sha256 before the rename).
pub fn receive_cmd(remote: &str, mode: u32, sha256: &Digest) -> Vec<String> {
    node_cmd(&[
        "receive",
        "--path",
        remote,
        "--mode",
        &format!("{mode:o}"),
        "--sha256",
        sha256.hex(),
    ])
}

/// Differences between the node and the actions' desired state (empty: nothing to do).
pub fn check_all(actions: &[Action], t: &dyn Transport) -> Result<Vec<String>> {
    let mut diff = Vec::new();
    for a in actions {
        if let Some(d) = check_one(a, t)? {
            diff.push(d);
        }
    }
    Ok(diff)
}

/// `None` when the action's target is already in place, else what differs.
pub fn check_one(a: &Action, t: &dyn Transport) -> Result<Option<String>> {
    match a {
        Action::File {
            path,
            mode,
            content,
            block,
        } => {
            let sha = Digest::of_bytes(content.as_bytes());
            check_file(t, path, &sha, *mode, block.as_deref())
        }
        Action::SecretFile { path, mode, content, source, .. } => match content {
            Some(content) => {
                let out = t.run(&secret_file_cmd(path, *mode, true), Stdin::Bytes(content.expose().as_bytes()))?;
                match out.code {
                    0 => Ok(None),
                    1 => Ok(Some(format!("{path}: {}", out.stdout_str().trim()))),
                    _ => bail!("failed to check {path} on {}: {}", t.node(), out.reason()),
                }
            }
            None => Ok(Some(format!("{path}: its secrets ({source}) are not there yet"))),
        },
        Action::Copy {
            remote, sha256, mode, ..
        } => {
            let Some(sha) = sha256 else {
                bail!("no local file for {remote} (is --bundle missing?)")
            };
            check_file(t, remote, sha, *mode, None)
        }
        Action::Command {
            check: Some(check),
            why,
            ..
        } => {
            let out = t.run(check, Stdin::Null)?;
            if out.success() {
                Ok(None)
            } else {
                let detail = [out.stdout_str().trim().to_string(), out.stderr.trim().to_string()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                Ok(Some(if detail.is_empty() {
                    format!("{why}: not yet")
                } else {
                    format!("{why}: {detail}")
                }))
            }
        }
        Action::Command { check: None, .. } => Ok(None),
    }
}

/// `airgap node check-file` on the node: `None` when `path` has that content and mode, else what differs.
fn check_file(
    t: &dyn Transport,
    path: &str,
    sha256: &Digest,
    mode: u32,
    block: Option<&str>,
) -> Result<Option<String>> {
    let out = t.run(&check_file_cmd(path, sha256, Some(mode), block), Stdin::Null)?;
    match out.code {
        0 => Ok(None),
        1 => Ok(Some(format!("{path}: {}", out.stdout_str().trim()))),
        _ => bail!("failed to check {path} on {}: {}", t.node(), out.reason()),
    }
}

/// Apply every action in order; returns what changed. `progress` is told what is being done.
pub fn apply_all(actions: &[Action], t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for a in actions {
        match a {
            Action::File {
                path,
                mode,
                content,
                block,
            } => {
                progress(&format!("writing {path}"));
                let cmd = write_file_cmd(path, *mode, content, block.as_deref());
                let out = t.run(&cmd, Stdin::Bytes(content.as_bytes()))?;
                if !out.success() {
                    bail!("failed to write {path} on {}: {}", t.node(), out.reason());
                }
                if out.stdout_str().trim() == "written" {
                    changed.push(format!("wrote {path}"));
                }
            }
            Action::SecretFile { path, mode, content, source, .. } => {
                let Some(content) = content else {
                    bail!("bug: the secrets of {path} ({source}) were not read before the apply")
                };
                progress(&format!("writing {path} (<secret>)"));
                // the content travels on stdin; nothing of it (not even its hash) on the command line
                let out = t.run(&secret_file_cmd(path, *mode, false), Stdin::Bytes(content.expose().as_bytes()))?;
                if !out.success() {
                    bail!("failed to write {path} on {}: {}", t.node(), out.reason());
                }
                if out.stdout_str().trim() == "written" {
                    changed.push(format!("wrote {path}"));
                }
            }
            Action::Command { argv, check, why } => {
                if let Some(c) = check {
                    if t.run(c, Stdin::Null)?.success() {
                        continue;
                    }
                }
                progress(why);
                let out = t.run(argv, Stdin::Null)?;
                if !out.success() {
                    bail!("`{}` failed on {}: {}", shell_join(argv), t.node(), out.reason());
                }
                for w in out.stderr.lines().filter(|l| l.starts_with("warning:")) {
                    changed.push(w.to_string());
                }
                changed.push(format!("ran {}", why));
            }
            Action::Copy {
                local,
                remote,
                mode,
                sha256,
                size,
            } => {
                if check_one(a, t)?.is_none() {
                    continue;
                }
                let Some(sha) = sha256 else {
                    bail!("no local file for {remote}")
                };
                progress(&format!("copying {} ({})", remote, human_size(size.unwrap_or(0))));
                let out = t.run(
                    &receive_cmd(remote, *mode, sha),
                    Stdin::File(std::path::Path::new(local)),
                )?;
                if !out.success() {
                    bail!("failed to copy {local} to {}:{remote}: {}", t.node(), out.reason());
                }
                changed.push(format!("copied {remote}"));
            }
        }
    }
    Ok(changed)
}

pub fn human_size(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}
