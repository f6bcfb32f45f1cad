//! docker, when a node has it: `insecure-registries` in `/etc/docker/daemon.json` lists the site registry
//! (plain HTTP on the workers' VIP), every other setting of the file kept, and docker restarted when the file
//! changed. With Kubernetes >= 1.24 the kubelet talks to containerd, so docker only serves operators' CLI use.
//!
//! Where the site wants docker (`runtime.docker`), [`Settings`] also carry `registry-mirrors` (the site
//! registry: docker sends Docker Hub pulls, and only those, to a mirror, so `docker pull nginx:1` works by its
//! original name) and json-file logs with `max-size` / `max-file`.

use anyhow::{bail, Context, Result};
use std::path::Path;

pub const DAEMON_JSON: &str = "etc/docker/daemon.json";

/// Is docker installed on the node under `root`?
pub fn installed(root: &Path) -> bool {
    ["usr/bin/dockerd", "usr/local/bin/dockerd", "usr/sbin/dockerd"].iter().any(|p| root.join(p).is_file())
}

/// What daemon.json must say (beyond what it says already, which is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// host:port of the site registry: in `insecure-registries` (plain HTTP).
    pub registry: String,
    /// Also `http://<registry>` in `registry-mirrors` (Docker Hub names pulled from the site registry).
    pub mirror: bool,
    /// json-file logs with these `max-size` / `max-file` (`log-driver` + `log-opts`).
    pub log_max_size: Option<String>,
    pub log_max_file: Option<u32>,
}

impl Settings {
    /// Only the site registry in `insecure-registries` (docker installed by someone else).
    pub fn registry(registry: &str) -> Settings {
        Settings { registry: registry.into(), ..Settings::default() }
    }
}

/// `value` is in the list at `key` (added at its end when not). Returns whether it was added.
fn ensure_listed(doc: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: &str) -> Result<bool> {
    let list = doc.entry(key).or_insert_with(|| serde_json::Value::Array(vec![]));
    let Some(arr) = list.as_array_mut() else { bail!("its \"{key}\" is not a list") };
    if arr.iter().any(|v| v.as_str() == Some(value)) {
        return Ok(false);
    }
    arr.push(serde_json::Value::String(value.to_string()));
    Ok(true)
}

/// `daemon.json` with `registry` in `insecure-registries` (other keys and entries kept, in order), or `None`
/// when it already is.
pub fn merged(current: Option<&str>, registry: &str) -> Result<Option<String>> {
    merged_settings(current, &Settings::registry(registry))
}

/// `daemon.json` saying everything `want` asks for (every other key, entry and log option kept, in order), or
/// `None` when it already does.
pub fn merged_settings(current: Option<&str>, want: &Settings) -> Result<Option<String>> {
    use serde_json::Value;
    let mut doc: serde_json::Map<String, Value> = match current.map(str::trim) {
        None | Some("") => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text).context("is not a JSON object")?,
    };
    let mut changed = ensure_listed(&mut doc, "insecure-registries", &want.registry)?;
    if want.mirror {
        changed |= ensure_listed(&mut doc, "registry-mirrors", &format!("http://{}", want.registry))?;
    }
    if want.log_max_size.is_some() || want.log_max_file.is_some() {
        if doc.get("log-driver").and_then(Value::as_str) != Some("json-file") {
            doc.insert("log-driver".into(), Value::String("json-file".into()));
            changed = true;
        }
        let opts = doc.entry("log-opts").or_insert_with(|| Value::Object(Default::default()));
        let Some(opts) = opts.as_object_mut() else { bail!("its \"log-opts\" is not an object") };
        // docker takes log options as strings only ("max-file": "5")
        let wanted = [("max-size", want.log_max_size.clone()), ("max-file", want.log_max_file.map(|n| n.to_string()))];
        for (k, v) in wanted {
            if let Some(v) = v {
                if opts.get(k).and_then(Value::as_str) != Some(v.as_str()) {
                    opts.insert(k.into(), Value::String(v));
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    Ok(Some(text))
}

/// Make docker (if installed) trust the site registry. With `check`, only say what differs. Returns what was
/// (or would be) changed.
pub fn ensure_insecure_registry(root: &Path, registry: &str, check: bool) -> Result<Option<String>> {
    ensure(root, &Settings::registry(registry), check)
}

/// Make docker (if installed) say what `want` asks for in daemon.json. With `check`, only say what differs.
/// Returns what was (or would be) changed.
pub fn ensure(root: &Path, want: &Settings, check: bool) -> Result<Option<String>> {
    let registry = want.registry.as_str();
    if !installed(root) {
        return Ok(None);
    }
    let path = root.join(DAEMON_JSON);
    let current = match fs_err::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let Some(text) = merged_settings(current.as_deref(), want).with_context(|| format!("{} cannot be updated", path.display()))? else {
        return Ok(None);
    };
    let what = if want == &Settings::registry(registry) {
        format!("list {registry} in insecure-registries")
    } else {
        let mut w = format!("list {registry} in insecure-registries");
        if want.mirror {
            w.push_str(&format!(" and http://{registry} in registry-mirrors"));
        }
        if want.log_max_size.is_some() || want.log_max_file.is_some() {
            w.push_str(", log with json-file (max-size, max-file)");
        }
        w
    };
    if check {
        return Ok(Some(format!("{} does not {what}", path.display())));
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
    Ok(Some(format!("{} updated: {what}", path.display())))
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
    fn the_sites_settings_are_merged_with_the_operators() {
        let want = Settings { registry: "10.0.0.200:5000".into(), mirror: true, log_max_size: Some("50m".into()), log_max_file: Some(3) };
        let current = r#"{"storage-driver": "vfs", "log-opts": {"labels": "app", "max-file": "9"}, "registry-mirrors": ["http://m:1"]}"#;
        let got = merged_settings(Some(current), &want).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["storage-driver"], "vfs");
        assert_eq!(v["insecure-registries"], serde_json::json!(["10.0.0.200:5000"]));
        assert_eq!(v["registry-mirrors"], serde_json::json!(["http://m:1", "http://10.0.0.200:5000"]));
        assert_eq!(v["log-driver"], "json-file");
        assert_eq!(v["log-opts"], serde_json::json!({"labels": "app", "max-file": "3", "max-size": "50m"}));
        // idempotent; another max-size is a change
        assert_eq!(merged_settings(Some(&got), &want).unwrap(), None);
        let other = Settings { log_max_size: Some("10m".into()), ..want.clone() };
        assert!(merged_settings(Some(&got), &other).unwrap().unwrap().contains("\"max-size\": \"10m\""));
        // the plain form (docker installed by someone else) touches neither mirrors nor logs
        let plain = merged(Some(r#"{"log-driver": "journald"}"#), "r:5000").unwrap().unwrap();
        assert!(plain.contains("journald") && !plain.contains("registry-mirrors"), "{plain}");
        assert!(merged_settings(Some(r#"{"log-opts": []}"#), &want).is_err());
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
