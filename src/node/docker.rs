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
    /// host:port of the site registry: in `insecure-registries` (plain HTTP), unless `tls`.
    pub registry: String,
    /// Also `http://<registry>` (`https://` with `tls`) in `registry-mirrors` (Docker Hub names pulled from
    /// the site registry).
    pub mirror: bool,
    /// The registry speaks TLS (the site's own one, its CA in `/etc/docker/certs.d/<registry>/ca.crt`): never
    /// in `insecure-registries` (taken out if an earlier install put it there), its mirror URL `https://`.
    pub tls: bool,
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

/// `value` is not in the list at `key` (taken out when it was; the list is kept, emptied or not). Returns
/// whether it was taken out.
fn ensure_unlisted(doc: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: &str) -> Result<bool> {
    let Some(list) = doc.get_mut(key) else { return Ok(false) };
    let Some(arr) = list.as_array_mut() else { bail!("its \"{key}\" is not a list") };
    let before = arr.len();
    arr.retain(|v| v.as_str() != Some(value));
    Ok(arr.len() != before)
}

/// The mirror URL docker is given for the site registry.
pub fn mirror_url(want: &Settings) -> String {
    format!("{}://{}", if want.tls { "https" } else { "http" }, want.registry)
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
    let mut changed = if want.tls {
        // and no plain-HTTP mirror of it, which an earlier install may have listed too
        ensure_unlisted(&mut doc, "registry-mirrors", &format!("http://{}", want.registry))? | ensure_unlisted(&mut doc, "insecure-registries", &want.registry)?
    } else {
        ensure_listed(&mut doc, "insecure-registries", &want.registry)?
    };
    if want.mirror {
        changed |= ensure_listed(&mut doc, "registry-mirrors", &mirror_url(want))?;
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
        let mut w = if want.tls { format!("leave {registry} (TLS) out of insecure-registries") } else { format!("list {registry} in insecure-registries") };
        if want.mirror {
            w.push_str(&format!(" and {} in registry-mirrors", mirror_url(want)));
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

/// root's docker client configuration (where `docker login` keeps credentials).
pub const ROOT_CONFIG: &str = "root/.docker/config.json";

/// Merge the `auths` entries of `from` (a docker config.json the install wrote, 0600) into root's docker
/// client configuration, every other key and entry kept; the result is written 0600 (it holds credentials).
/// With `check`, only say which registries differ. Never prints a credential.
pub fn ensure_auths(root: &Path, from: &Path, check: bool) -> Result<Option<String>> {
    use serde_json::Value;
    let src: Value = serde_json::from_str(&fs_err::read_to_string(from)?).with_context(|| format!("{} is not JSON", from.display()))?;
    let Some(wanted) = src.get("auths").and_then(Value::as_object) else { bail!("{} has no \"auths\" object", from.display()) };
    let path = root.join(ROOT_CONFIG);
    let current = match fs_err::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut doc: serde_json::Map<String, Value> =
        if current.trim().is_empty() { Default::default() } else { serde_json::from_str(&current).with_context(|| format!("{} is not a JSON object", path.display()))? };
    let auths = doc.entry("auths").or_insert_with(|| Value::Object(Default::default()));
    let Some(auths) = auths.as_object_mut() else { bail!("{}: its \"auths\" is not an object", path.display()) };
    let mut differ = Vec::new();
    for (host, entry) in wanted {
        let have = auths.get(host).and_then(|e| e.get("auth"));
        if have != entry.get("auth") {
            differ.push(host.clone());
            auths.insert(host.clone(), entry.clone());
        }
    }
    let mode = fs_err::metadata(&path).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777).ok();
    if differ.is_empty() && mode.is_none_or(|m| m == 0o600) {
        return Ok(None);
    }
    let what = if differ.is_empty() { "mode 600".to_string() } else { format!("credentials for {}", differ.join(", ")) };
    if check {
        return Ok(Some(format!("{} lacks the {what}", path.display())));
    }
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    crate::fsutil::atomic_write(&path, text.as_bytes(), crate::fsutil::Mode::Set(0o600))?;
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
        let want = Settings { registry: "10.0.0.200:5000".into(), mirror: true, tls: false, log_max_size: Some("50m".into()), log_max_file: Some(3) };
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
    fn a_tls_registry_is_never_insecure_and_mirrors_over_https() {
        let want = Settings { registry: "harbor.example:8443".into(), mirror: true, tls: true, ..Settings::default() };
        // an earlier install listed it as insecure: taken out, the operator's entries kept
        let got = merged_settings(Some(r#"{"insecure-registries": ["a:5000", "harbor.example:8443"], "registry-mirrors": ["http://harbor.example:8443"]}"#), &want).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["insecure-registries"], serde_json::json!(["a:5000"]));
        assert_eq!(v["registry-mirrors"], serde_json::json!(["https://harbor.example:8443"]));
        assert_eq!(merged_settings(Some(&got), &want).unwrap(), None);
        // with a prefix it cannot be docker's mirror: then nothing is listed anywhere
        let no_mirror = Settings { mirror: false, ..want };
        assert_eq!(merged_settings(Some(r#"{"storage-driver": "vfs"}"#), &no_mirror).unwrap(), None);
    }

    #[test]
    fn credentials_are_merged_into_roots_docker_config_0600() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let from = t.path().join("auth.json");
        fs_err::write(&from, r#"{"auths": {"h:443": {"auth": "dTpw"}}}"#).unwrap();
        let path = t.path().join(ROOT_CONFIG);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, r#"{"auths": {"other": {"auth": "eDp5"}}, "credsStore": "pass"}"#).unwrap();
        let said = ensure_auths(t.path(), &from, true).unwrap().unwrap();
        assert!(said.contains("credentials for h:443") && !said.contains("dTpw"), "{said}");
        ensure_auths(t.path(), &from, false).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["auths"]["other"]["auth"], "eDp5");
        assert_eq!(v["auths"]["h:443"]["auth"], "dTpw");
        assert_eq!(v["credsStore"], "pass");
        assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(ensure_auths(t.path(), &from, true).unwrap(), None);
        // a world-readable config with the right entry is still a difference
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ensure_auths(t.path(), &from, true).unwrap().unwrap().contains("mode 600"));
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
