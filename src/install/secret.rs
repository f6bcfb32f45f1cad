//! Secrets the inventory points at (the Redis password, the external registry's password): an environment
//! variable or a file on the deploy machine, read only when a step checks or applies, never at plan time.
//! They reach the nodes like every secret, as an [`Action::SecretFile`] (`airgap node secret-file`, the
//! content on stdin): the plan carries the file with `<secret>` and no content; [`fill`] puts in the real
//! content for check and apply.

use super::{Action, SecretText};
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

/// The plan's secret files whose content is not known yet, given it by `content_of` (called once per such
/// file, with its path and its shown text; `None` leaves it without content).
pub fn fill(mut actions: Vec<Action>, mut content_of: impl FnMut(&str, &str) -> Result<Option<String>>) -> Result<Vec<Action>> {
    for a in &mut actions {
        if let Action::SecretFile { path, shown, content: content @ None, .. } = a {
            if let Some(text) = content_of(path, shown)? {
                *content = Some(SecretText::new(text));
            }
        }
    }
    Ok(actions)
}
