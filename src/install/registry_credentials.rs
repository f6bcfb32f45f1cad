//! The external registry's credentials in files: a step's plan (what `plan`, `--dry-run` and the journal's inputs hash see) carries
//! [`SECRET`] where a secret goes; [`fill`] puts in the real value, read from its secret source (an
//! environment variable or a file named by the inventory, never argv), only for `check` and `apply`, so it
//! reaches the node through the file write's stdin and nothing else.

use crate::install::config::SECRET;
use crate::install::{Action, Ctx};
use anyhow::Result;
use base64::Engine;

/// The plan's actions with the external registry's credentials filled in (`Basic` value of hosts.toml).
pub fn fill(ctx: &Ctx, mut plan: Vec<Action>) -> Result<Vec<Action>> {
    let needs = plan.iter().any(|a| matches!(a, Action::File { content, .. } if content.contains(SECRET)));
    if !needs {
        return Ok(plan);
    }
    let Some((user, password)) = ctx.inv.registry.credentials()? else {
        anyhow::bail!("a file needs the registry credentials, but the inventory's registry section has none");
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    for a in &mut plan {
        if let Action::File { content, mode, .. } = a {
            if content.contains(SECRET) {
                *content = content.replace(SECRET, &basic);
                *mode &= 0o700;
            }
        }
    }
    Ok(plan)
}
