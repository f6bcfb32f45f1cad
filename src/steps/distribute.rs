//! distribute: the airgap binary to every node and the bundle (archive or parts + signatures) to the nodes that
//! need it, each verified by sha256 on arrival and skipped when already there with the same hash.

use super::{Action, Ctx, LocalFile, Step, REMOTE_BIN, REMOTE_BUNDLE_DIR};
use crate::error::HintExt;
use crate::inventory::{Inventory, Node, Role};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

pub struct Distribute;

/// Does this node need the bundle? The registry (workers' VIP) runs on the first two workers; later steps
/// that need bundle files elsewhere extend this.
pub fn needs_bundle(inv: &Inventory, node: &Node) -> bool {
    node.role == Role::Worker && inv.workers().take(2).any(|w| w.name == node.name)
}

/// The files of a bundle given as `--bundle`: a `.tar.zst` (+ `.minisig`), or a split bundle given by its base
/// name or any `.NNN` part (all parts + `.parts` + `.parts.minisig`). Signatures are included when present.
pub fn bundle_files(given: &Path) -> Result<Vec<PathBuf>> {
    let s = given.to_string_lossy().to_string();
    // a part (`x.tar.zst.003`) or the parts list names the split bundle's base
    let base = match s.rsplit_once('.') {
        Some((b, ext)) if ext.len() == 3 && ext.bytes().all(|c| c.is_ascii_digit()) => b.to_string(),
        _ => s.strip_suffix(".parts").unwrap_or(&s).to_string(),
    };
    let base = PathBuf::from(base);
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", base.display()));
    let mut files = Vec::new();
    if base.is_file() {
        files.push(base.clone());
        if with(".minisig").is_file() {
            files.push(with(".minisig"));
        }
        return Ok(files);
    }
    for i in 0..1000 {
        let p = with(&format!(".{i:03}"));
        if !p.is_file() {
            break;
        }
        files.push(p);
    }
    if files.is_empty() {
        return Err(anyhow::anyhow!(
            "bundle {} not found (neither the file nor its parts {}.000...)",
            given.display(),
            base.display()
        ))
        .hint("give the .tar.zst written by `airgap build`, or the base name / any .NNN part of a split bundle");
    }
    for extra in [".parts", ".parts.minisig", ".minisig"] {
        if with(extra).is_file() {
            files.push(with(extra));
        }
    }
    if !with(".parts").is_file() {
        bail!(
            "split bundle {}: the parts list {} is missing",
            base.display(),
            with(".parts").display()
        );
    }
    Ok(files)
}

/// Hash every bundle file once (streaming).
pub fn hash_bundle(given: &Path) -> Result<Vec<LocalFile>> {
    bundle_files(given)?.into_iter().map(LocalFile::hash).collect()
}

impl Step for Distribute {
    fn name(&self) -> &'static str {
        "distribute"
    }
    fn summary(&self) -> &'static str {
        "copy the airgap binary to every node and the bundle to the nodes that need it (sha256 verified on arrival)"
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let mut v = Vec::new();
        v.push(match ctx.binary {
            Some(b) => Action::Copy {
                local: b.path.display().to_string(),
                remote: REMOTE_BIN.into(),
                mode: 0o755,
                sha256: Some(b.sha256.clone()),
                size: Some(b.size),
            },
            None => Action::Copy {
                local: "<this airgap binary>".into(),
                remote: REMOTE_BIN.into(),
                mode: 0o755,
                sha256: None,
                size: None,
            },
        });
        if needs_bundle(ctx.inv, node) {
            match ctx.bundle {
                Some(files) => {
                    for f in files {
                        v.push(Action::Copy {
                            local: f.path.display().to_string(),
                            remote: format!("{REMOTE_BUNDLE_DIR}/{}", f.file_name()),
                            mode: 0o644,
                            sha256: Some(f.sha256.clone()),
                            size: Some(f.size),
                        });
                    }
                }
                None => v.push(Action::Copy {
                    local: "<--bundle: the .tar.zst or every part, and their signatures>".into(),
                    remote: format!("{REMOTE_BUNDLE_DIR}/"),
                    mode: 0o644,
                    sha256: None,
                    size: None,
                }),
            }
        }
        Ok(v)
    }
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn crate::ssh::Transport) -> Result<Vec<String>> {
        let plan = self.plan(ctx, node)?;
        if plan.iter().any(|a| matches!(a, Action::Copy { sha256: None, .. })) {
            return Err(anyhow::anyhow!("distribute needs the bundle for {}", node.name))
                .hint("pass --bundle PATH (the .tar.zst, or the base name of a split bundle)");
        }
        super::actions::check_all(&plan, t)
    }
}
