//! The inventory's `registry:` section: the site's own registry (Harbor, the distribution registry...) in
//! place of the built-in one.
//!
//! ```yaml
//! registry:
//!   external: harbor.plant-a.example:443/k8s   # HOST[:PORT][/PREFIX]: where `airgap push` put the images
//!   ca_file: /etc/pki/plant-a-ca.pem             # its CA (PEM), when not a public one
//!   username: robot$k8s-pull                     # credentials for pulling, if it wants some:
//!   password_env: AIRGAP_REGISTRY_PASSWORD       # the password from this environment variable,
//!   # password_file: /root/.airgap/registry-pw   # or from this file (0600)
//! ```
//!
//! Then the `registry` step (the built-in registry and the workers' VIP for it) is not installed, containerd
//! pulls every upstream host's images from `external` (with the CA and the credentials), and preflight checks
//! that every node reaches it and that it holds every image of the bundle.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `HOST[:PORT][/PREFIX]` of the site's registry; absent: the built-in registry on the workers' VIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    /// CA certificate (PEM) the nodes trust for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// User to pull as (with `password_env` or `password_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// File holding the password (its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// `HOST[:PORT][/PREFIX]` split, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct External {
    pub host: String,
    /// Without slashes at the ends; empty for none.
    pub prefix: String,
}

impl External {
    pub fn parse(s: &str) -> Result<External, String> {
        let (host, prefix) = s.split_once('/').unwrap_or((s, ""));
        let prefix = prefix.trim_end_matches('/');
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        let name_ok = !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !name_ok || port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
            return Err(format!("{s:?} is not HOST[:PORT][/PREFIX] (e.g. harbor.example:443/k8s)"));
        }
        let comp_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !prefix.is_empty() && !prefix.split('/').all(comp_ok) {
            return Err(format!("the prefix {prefix:?} of {s:?} is not a repository path (lowercase a-z, 0-9, '.', '_', '-', '/')"));
        }
        Ok(External { host: host.to_string(), prefix: prefix.to_string() })
    }

    /// `HOST[/PREFIX]`: where images are named (the kubeadm `imageRepository`, the sandbox image's prefix).
    pub fn repository_base(&self) -> String {
        if self.prefix.is_empty() {
            self.host.clone()
        } else {
            format!("{}/{}", self.host, self.prefix)
        }
    }
}

impl RegistryConfig {
    pub fn external(&self) -> Option<External> {
        self.external.as_deref().and_then(|s| External::parse(s).ok())
    }

    /// The problems of the section: (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let Some(ext) = &self.external else {
            for (set, f) in [(self.ca_file.is_some(), "ca_file"), (self.username.is_some(), "username"), (self.password_env.is_some(), "password_env"), (self.password_file.is_some(), "password_file")] {
                if set {
                    v.push((f, format!("registry.{f} is only used with registry.external")));
                }
            }
            return v;
        };
        if let Err(e) = External::parse(ext) {
            v.push(("external", format!("registry.external {e}")));
        }
        let password = self.password_env.is_some() as u8 + self.password_file.is_some() as u8;
        if password > 1 {
            v.push(("password_env", "give registry.password_env or registry.password_file, not both".into()));
        }
        if self.username.is_some() != (password > 0) {
            v.push(("username", "registry.username needs registry.password_env or registry.password_file, and they need it".into()));
        }
        if let Some(u) = &self.username {
            if u.is_empty() || u.contains([':', '\n', '"', '\\']) {
                v.push(("username", format!("registry.username {u:?} must be non-empty without ':', quotes, backslashes or newlines")));
            }
        }
        if let Some(e) = &self.password_env {
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                v.push(("password_env", format!("registry.password_env {e:?} is not an environment variable name")));
            }
        }
        v
    }

    /// The credentials (user, password), read from their secret source now; `None` without a `username`.
    pub fn credentials(&self) -> anyhow::Result<Option<(String, String)>> {
        use anyhow::Context;
        let Some(user) = &self.username else { return Ok(None) };
        let password = match (&self.password_env, &self.password_file) {
            (Some(var), _) => std::env::var(var).with_context(|| format!("registry.password_env names {var}, which is not set"))?,
            (None, Some(f)) => {
                let text = fs_err::read_to_string(f).context("failed to read registry.password_file")?;
                text.lines().next().unwrap_or_default().to_string()
            }
            (None, None) => anyhow::bail!("registry.username {user:?} has no password_env or password_file"),
        };
        if password.is_empty() {
            anyhow::bail!("the registry password (registry.password_env / password_file) is empty");
        }
        Ok(Some((user.clone(), password)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_is_host_port_prefix() {
        assert_eq!(External::parse("harbor.example:8443/k8s/base").unwrap(), External { host: "harbor.example:8443".into(), prefix: "k8s/base".into() });
        assert_eq!(External::parse("10.0.0.5:5000").unwrap().repository_base(), "10.0.0.5:5000");
        assert_eq!(External::parse("h.example/p").unwrap().repository_base(), "h.example/p");
        for bad in ["", ":5000", "h:0", "h:x", "h/Upper", "h/a//b", "h /x", "https://h"] {
            assert!(External::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
