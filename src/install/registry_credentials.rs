//! The external registry's credentials in files (hosts.toml's `Authorization` header): the rendered file
//! carries [`SECRET`] where the credentials go; [`masked`] makes such a file an [`Action::SecretFile`] (0600,
//! shown as rendered, no content: what `plan`, `--dry-run` and the journal's inputs hash see), and [`fill`]
//! puts in the real value, read from the inventory's secret source (an environment variable or a file, never
//! argv) only for `check` and `apply`, so it reaches the node on the stdin of `airgap node secret-file` and
//! nowhere else.

use crate::install::config::SECRET;
use crate::install::{secret, Action, Ctx};
use anyhow::Result;
use base64::Engine;

/// Where the credentials come from, as the plan says it.
pub const SOURCE: &str = "the inventory's registry credentials (registry.username, registry.password_env/password_file)";

/// The plan's files that hold the credentials' placeholder, as secret files without content.
pub fn masked(plan: Vec<Action>) -> Vec<Action> {
    plan.into_iter()
        .map(|a| match a {
            Action::File { path, mode, content, block: None } if content.contains(SECRET) => {
                Action::secret_file(&path, mode & 0o700, None, content, SOURCE)
            }
            a => a,
        })
        .collect()
}

/// The plan's actions with the external registry's credentials filled in (`Basic` value of hosts.toml).
pub fn fill(ctx: &Ctx, plan: Vec<Action>) -> Result<Vec<Action>> {
    let needs = plan.iter().any(|a| matches!(a, Action::SecretFile { source, content: None, .. } if source == SOURCE));
    if !needs {
        return Ok(plan);
    }
    let Some((user, password)) = ctx.inv.registry.credentials()? else {
        anyhow::bail!("a file needs the registry credentials, but the inventory's registry section has none");
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    secret::fill(plan, |_, shown| Ok(shown.contains(SECRET).then(|| shown.replace(SECRET, &basic))))
}
