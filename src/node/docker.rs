//! docker, when a node has it: `insecure-registries` in `/etc/docker/daemon.json` lists the site registry
//! (plain HTTP on the workers' VIP), every other setting of the file kept, and docker restarted when the file
//! changed. With Kubernetes >= 1.24 the kubelet talks to containerd, so docker only serves operators' CLI use.

use anyhow::{bail, Context, Result};
use std::path::Path;

pub const DAEMON_JSON: &str = "etc/docker/daemon.json";

/// Is docker installed on the node under `root`?
pub fn installed(root: &Path) -> bool {
    ["usr/bin/dockerd", "usr/local/bin/dockerd", "usr/sbin/dockerd"].iter().any(|p| root.join(p).is_file())
}

/// `daemon.json` with `registry` in `insecure-registries` (other keys and entries kept, in order), or `None`
/// when it already is.
pub fn merged(current: Option<&str>, registry: &str) -> Result<Option<String>> {
    let mut doc: serde_json::Map<String, serde_json::Value> = match current.map(str::trim) {
        None | Some("") => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text).context("is not a JSON object")?,
    };
    let list = doc.entry("insecure-registries").or_insert_with(|| serde_json::Value::Array(vec![]));
    let Some(arr) = list.as_array_mut() else { bail!("its \"insecure-registries\" is not a list") };
    if arr.iter().any(|v| v.as_str() == Some(registry)) {
        return Ok(None);
    }
    arr.push(serde_json::Value::String(registry.to_string()));
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    Ok(Some(text))
}

/// Make docker (if installed) trust the site registry. With `check`, only say what differs. Returns what was
/// (or would be) changed.
pub fn ensure_insecure_registry(root: &Path, registry: &str, check: bool) -> Result<Option<String>> {
    if !installed(root) {
        return Ok(None);
    }
    let path = root.join(DAEMON_JSON);
    let current = match fs_err::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let Some(text) = merged(current.as_deref(), registry).with_context(|| format!("{} cannot be updated", path.display()))? else {
        return Ok(None);
    };
    if check {
        return Ok(Some(format!("{} does not list {registry} in insecure-registries", path.display())));
    }
    // the file keeps its mode and owner (a new one: 0644): docker reads it as root, operators may restrict it
    crate::fsutil::atomic_write(&path, text.as_bytes(), crate::fsutil::Mode::Keep)?;
    if root == Path::new("/") {
        // a stopped docker reads the file when it starts; a running one must restart to see it
        let active = std::process::Command::new("systemctl").args(["is-active", "--quiet", "docker"]).status();
        if active.is_ok_and(|s| s.success()) {
            let st = std::process::Command::new("systemctl").args(["restart", "docker"]).status().context("failed to run systemctl")?;
            if !st.success() {
                bail!("docker did not restart with the new {}: see `journalctl -u docker`", path.display());
            }
        }
    }
    Ok(Some(format!("{registry} added to insecure-registries in {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_into_existing_settings_once() {
        let got = merged(Some(r#"{"log-driver": "json-file", "insecure-registries": ["a:5000"]}"#), "10.0.0.200:5000").unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["log-driver"], "json-file");
        assert_eq!(v["insecure-registries"], serde_json::json!(["a:5000", "10.0.0.200:5000"]));
        assert_eq!(merged(Some(&got), "10.0.0.200:5000").unwrap(), None);
        assert!(merged(None, "r:5000").unwrap().unwrap().contains("\"r:5000\""));
        assert!(merged(Some("[1]"), "r:5000").is_err());
        assert!(merged(Some(r#"{"insecure-registries": "x"}"#), "r:5000").is_err());
    }

    #[test]
    fn writes_only_where_docker_is_installed() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(ensure_insecure_registry(t.path(), "r:5000", false).unwrap(), None);
        assert!(!t.path().join(DAEMON_JSON).exists());
        fs_err::create_dir_all(t.path().join("usr/bin")).unwrap();
        fs_err::write(t.path().join("usr/bin/dockerd"), b"").unwrap();
        assert!(ensure_insecure_registry(t.path(), "r:5000", true).unwrap().unwrap().contains("does not list"));
        assert!(ensure_insecure_registry(t.path(), "r:5000", false).unwrap().is_some());
        assert_eq!(ensure_insecure_registry(t.path(), "r:5000", true).unwrap(), None);
    }

    #[test]
    fn daemon_json_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(t.path().join("usr/bin")).unwrap();
        fs_err::write(t.path().join("usr/bin/dockerd"), b"").unwrap();
        let path = t.path().join(DAEMON_JSON);
        let mode = || fs_err::metadata(&path).unwrap().permissions().mode() & 0o7777;
        // a new daemon.json is 0644 (it was tempfile's 0600)
        ensure_insecure_registry(t.path(), "a:5000", false).unwrap().unwrap();
        assert_eq!(mode(), 0o644);
        // an operator's mode survives the merge
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        ensure_insecure_registry(t.path(), "b:5000", false).unwrap().unwrap();
        assert_eq!(mode(), 0o640);
        assert!(fs_err::read_to_string(&path).unwrap().contains("\"b:5000\""));
    }
}
