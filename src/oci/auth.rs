//! Registry credentials from a docker-style auth file (`~/.docker/config.json`): `auths.<host>.auth`
//! (base64 `user:password`) or `auths.<host>.username` / `password`.

use anyhow::{Context, Result};
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials per registry host.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    by_host: BTreeMap<String, (String, String)>,
}

impl Credentials {
    /// Load `path`; a missing file gives no credentials unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Credentials> {
        if !required && !path.exists() {
            return Ok(Credentials::default());
        }
        let text = fs_err::read_to_string(path).context("failed to read the auth file")?;
        let file: AuthFile = serde_json::from_str(&text).with_context(|| format!("failed to parse the auth file {}", path.display()))?;
        let mut by_host = BTreeMap::new();
        for (key, e) in file.auths {
            let creds = match (&e.auth, &e.username, &e.password) {
                (Some(a), _, _) if !a.is_empty() => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(a.trim())
                        .with_context(|| format!("bad base64 in auths.{key}.auth of {}", path.display()))?;
                    let s = String::from_utf8(raw).with_context(|| format!("auths.{key}.auth of {} is not UTF-8", path.display()))?;
                    let (u, p) = s.split_once(':').with_context(|| format!("auths.{key}.auth of {} is not user:password", path.display()))?;
                    (u.to_string(), p.to_string())
                }
                (_, Some(u), Some(p)) => (u.clone(), p.clone()),
                _ => continue,
            };
            by_host.insert(normalize_host(&key), creds);
        }
        Ok(Credentials { by_host })
    }

    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.by_host.get(&normalize_host(registry)) {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://host:5000/` → `host:5000`.
fn normalize_host(key: &str) -> String {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    super::reference::normalize_host(k).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpwOng="},"127.0.0.1:5000":{"username":"a","password":"b"}}}"#).unwrap();
        let c = Credentials::load(&p, true).unwrap();
        assert!(matches!(c.for_registry("docker.io"), RegistryAuth::Basic(u, p) if u == "u" && p == "p:x"));
        assert!(matches!(c.for_registry("127.0.0.1:5000"), RegistryAuth::Basic(u, _) if u == "a"));
        assert!(matches!(c.for_registry("ghcr.io"), RegistryAuth::Anonymous));
        assert!(Credentials::load(&dir.path().join("none"), false).is_ok());
        assert!(Credentials::load(&dir.path().join("none"), true).is_err());
    }
}
