//! The journal on the deploy machine: per step and node, the outcome with the hash of its inputs.
//! Rewritten atomically after every step on every node, so a kill at any moment leaves a consistent journal.

use crate::digest::Digest;
use crate::fsutil;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub status: Status,
    /// sha256 of the step's inputs on this node when it ran
    pub inputs: Digest,
    /// UTC, RFC 3339
    pub at: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JournalData {
    pub version: u32,
    pub cluster: String,
    /// step -> node -> entry
    pub steps: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// The journal file, shared by the threads working on nodes.
pub struct Journal {
    path: PathBuf,
    data: Mutex<JournalData>,
}

impl Journal {
    pub const FILE: &'static str = "journal.json";

    /// Open (or start) the journal in `state_dir`.
    pub fn open(state_dir: &Path, cluster: &str) -> Result<Journal> {
        let path = state_dir.join(Self::FILE);
        let data = match fs_err::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("the journal {} is corrupt", path.display()))
                .map_err(|e| {
                    crate::error::with_hint(
                        e,
                        "move it away to start over (steps are checked on the nodes, so done work is skipped)",
                    )
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JournalData {
                version: 1,
                cluster: cluster.into(),
                steps: BTreeMap::new(),
            },
            Err(e) => return Err(e.into()),
        };
        Ok(Journal {
            path,
            data: Mutex::new(data),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, step: &str, node: &str) -> Option<Entry> {
        let d = self.data.lock().unwrap_or_else(|e| e.into_inner());
        d.steps.get(step).and_then(|m| m.get(node)).cloned()
    }

    pub fn snapshot(&self) -> JournalData {
        self.data.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Record an outcome and write the whole journal atomically.
    pub fn record(&self, step: &str, node: &str, status: Status, inputs: &Digest, message: &str) -> Result<()> {
        let mut d = self.data.lock().unwrap_or_else(|e| e.into_inner());
        d.steps.entry(step.into()).or_default().insert(
            node.into(),
            Entry {
                status,
                inputs: inputs.clone(),
                at: now_rfc3339(),
                message: message.into(),
            },
        );
        let bytes = serde_json::to_vec_pretty(&*d)?;
        // like the install logs: readable (0644) unless an operator restricted it
        fsutil::atomic_write(&self.path, &bytes, fsutil::Mode::Keep).context("failed to write the journal")
    }
}

/// Now, UTC, `2026-11-23T16:20:05Z`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil from days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_journal_is_0644_or_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let j = super::Journal::open(d.path(), "c").unwrap();
        let digest = crate::digest::Digest::of_bytes(b"x");
        j.record("preflight", "master1", super::Status::Done, &digest, "ok").unwrap();
        let mode = || fs_err::metadata(j.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(), 0o644, "tempfile's 0600 leaked into the journal");
        fs_err::set_permissions(j.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        j.record("preflight", "master2", super::Status::Done, &digest, "ok").unwrap();
        assert_eq!(mode(), 0o600);
    }

    #[test]
    fn dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_449_605), "2026-11-23T16:00:05Z");
    }
}
