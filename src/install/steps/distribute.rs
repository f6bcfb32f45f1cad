//! distribute: the airgap binary to every node and the bundle (archive or parts + signatures) to the nodes that
//! need it, each verified by sha256 on arrival and skipped when already there with the same hash.

use crate::install::kit::REMOTE_FILES_DIR;
use crate::install::{Action, Ctx, LocalFile, Step};
use crate::node::packages::PACKAGES_DIR;
use crate::node::BIN;
use crate::error::HintExt;
use crate::site::inventory::{Inventory, Node, Role};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

pub struct Distribute;

/// Does this node need the bundle? The registry (workers' VIP) runs on the first two workers (nginx too,
/// behind the same VIP); the other nodes get only their packages and components (see `kit`).
pub fn needs_bundle(inv: &Inventory, node: &Node) -> bool {
    node.role == Role::Worker && inv.workers().take(2).any(|w| w.name == node.name)
}

/// Does the node load the whole bundle into the built-in registry (a registry worker, and no
/// `registry.external`)? Only then does it receive the bundle.
pub fn loads_bundle(inv: &Inventory, node: &Node) -> bool {
    inv.registry.external.is_none() && needs_bundle(inv, node)
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

/// The node's OS packages and its platform's components, from the kit extracted here (verified bundle),
/// each checked on arrival against the root document's sha256. Without the node's facts (`plan`): one
/// placeholder saying what will be chosen.
fn kit_copies(ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
    let Some(kit) = ctx.kit else { return Ok(vec![]) };
    if !kit.has_node_files() {
        return Ok(vec![]);
    }
    let Some(target) = ctx.targets.get(&node.name) else {
        return Ok(vec![Action::Copy {
            local: format!(
                "<the bundle's packages for {}'s OS (the bundle has: {}) and its components for its platform, from {}>",
                node.name,
                kit.package_tags().join(", "),
                kit.local("").display()
            ),
            remote: format!("{PACKAGES_DIR}/, {REMOTE_FILES_DIR}/"),
            mode: 0o644,
            sha256: None,
            size: None,
        }]);
    };
    let mut v = Vec::new();
    if !kit.root().packages.is_empty() {
        let Some((tag, packages)) = kit.packages_for(target) else {
            return Err(anyhow::anyhow!(
                "the bundle carries no OS packages for {} ({}); it has packages for: {}",
                node.name,
                target.os_tags.join(" or "),
                kit.package_tags().join(", ")
            ))
            .hint("build the bundle with a packages: section for this OS (scripts/deb-closure.sh --os TAG ...)");
        };
        for p in packages {
            let name = p.path.rsplit('/').next().unwrap_or(&p.path);
            v.push(Action::Copy {
                local: kit.local(&p.path).display().to_string(),
                remote: format!("{PACKAGES_DIR}/{tag}/{name}"),
                mode: 0o644,
                sha256: Some(crate::digest::Digest::from_hex(&p.sha256)?),
                size: Some(p.size),
            });
        }
    }
    for (_, f) in kit.components_for(&target.platform) {
        v.push(Action::Copy {
            local: kit.local(&f.path).display().to_string(),
            remote: crate::install::software::remote_file(&f.path),
            mode: 0o644,
            sha256: Some(crate::digest::Digest::from_hex(&f.sha256)?),
            size: Some(f.size),
        });
    }
    Ok(v)
}

impl Step for Distribute {
    fn name(&self) -> &'static str {
        "distribute"
    }
    fn summary(&self) -> &'static str {
        "copy the airgap binary, each node's OS packages and binaries from the bundle, and the whole bundle to the registry workers (sha256 verified on arrival)"
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let mut v = Vec::new();
        v.push(match ctx.binary {
            Some(b) => Action::Copy {
                local: b.path.display().to_string(),
                remote: BIN.into(),
                mode: 0o755,
                sha256: Some(b.sha256.clone()),
                size: Some(b.size),
            },
            None => Action::Copy {
                local: "<this airgap binary>".into(),
                remote: BIN.into(),
                mode: 0o755,
                sha256: None,
                size: None,
            },
        });
        v.extend(kit_copies(ctx, node)?);
        if loads_bundle(ctx.inv, node) {
            v.extend(crate::install::copies::bundle_copies(ctx));
            // the registry workers verify the bundle themselves before loading its images
            v.extend(crate::install::copies::pubkey_copy(ctx));
        }
        Ok(v)
    }
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn crate::install::ssh::Transport) -> Result<Vec<String>> {
        let plan = self.plan(ctx, node)?;
        if plan.iter().any(|a| matches!(a, Action::Copy { sha256: None, .. })) {
            return Err(anyhow::anyhow!("distribute needs the bundle for {}", node.name))
                .hint("pass --bundle PATH (the .tar.zst, or the base name of a split bundle)");
        }
        crate::install::actions::check_all(&plan, t)
    }
}
