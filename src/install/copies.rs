//! The bundle and its signers' public key as copies to a node (distribute sends them to the registry workers,
//! which verify the bundle themselves before loading its images). Without `--bundle` (plan, status) the
//! copies are placeholders that check and apply refuse with a hint.

use super::{Action, Ctx};
use anyhow::Result;

/// Where the bundle (or its parts) goes on the nodes that need it.
pub const REMOTE_BUNDLE_DIR: &str = "/opt/airgap/bundles";
/// Where the bundle signers' public key goes on the nodes.
pub const REMOTE_PUBKEY: &str = "/opt/airgap/bundle.pub";

/// The bundle (all its files) and the public key on the node; returns the node's bundle path.
pub fn bundle_on_node(ctx: &Ctx, actions: &mut Vec<Action>) -> Result<String> {
    actions.extend(bundle_copies(ctx));
    let Some(first) = ctx.bundle.and_then(|f| f.first()) else {
        return Ok(format!("{REMOTE_BUNDLE_DIR}/<bundle>"));
    };
    actions.push(pubkey_copy(ctx).unwrap_or_else(|| Action::Copy {
        local: "<--pubkey KEY.pub>".into(),
        remote: REMOTE_PUBKEY.into(),
        mode: 0o644,
        sha256: None,
        size: None,
    }));
    Ok(format!("{REMOTE_BUNDLE_DIR}/{}", first.file_name()))
}

/// The bundle's files (archive or parts + signatures) copied to the node; without --bundle (plan, status), a
/// placeholder that check and apply refuse with a hint.
pub fn bundle_copies(ctx: &Ctx) -> Vec<Action> {
    match ctx.bundle.filter(|f| !f.is_empty()) {
        Some(files) => files
            .iter()
            .map(|f| Action::Copy {
                local: f.path.display().to_string(),
                remote: format!("{REMOTE_BUNDLE_DIR}/{}", f.file_name()),
                mode: 0o644,
                sha256: Some(f.sha256.clone()),
                size: Some(f.size),
            })
            .collect(),
        None => vec![Action::Copy {
            local: "<--bundle: the .tar.zst or every part, and their signatures>".into(),
            remote: format!("{REMOTE_BUNDLE_DIR}/"),
            mode: 0o644,
            sha256: None,
            size: None,
        }],
    }
}

/// The bundle signers' public key copied to the node (the registry workers verify the bundle before loading it).
pub fn pubkey_copy(ctx: &Ctx) -> Option<Action> {
    ctx.pubkey.map(|pubkey| Action::Copy {
        local: pubkey.path.display().to_string(),
        remote: REMOTE_PUBKEY.into(),
        mode: 0o644,
        sha256: Some(pubkey.sha256.clone()),
        size: Some(pubkey.size),
    })
}
