//! Platforms as OCI image indexes name them: `os/arch[/variant]` (`linux/amd64`, `linux/arm/v7`).

use anyhow::{bail, Result};

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform { os: os.to_string(), arch: arch.to_string(), variant: None }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => {
                Ok(Platform { os: os.to_string(), arch: arch.to_string(), variant: Some(v.to_string()) })
            }
            _ => bail!("bad platform {s:?}: expected os/arch[/variant] in lower case, e.g. linux/amd64 or linux/arm/v7"),
        }
    }

    /// Expand `{os}`, `{arch}`, `{variant}`, `{platform}` in a template.
    pub fn expand(&self, template: &str) -> String {
        let variant = self.variant.clone().unwrap_or_default();
        let flat = self.to_string().replace('/', "-");
        template.replace("{os}", &self.os).replace("{arch}", &self.arch).replace("{variant}", &variant).replace("{platform}", &flat)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.variant {
            Some(v) => write!(f, "{}/{}/{}", self.os, self.arch, v),
            None => write!(f, "{}/{}", self.os, self.arch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shows_and_expands() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(p.expand("k-{os}-{arch}-{variant}-{platform}"), "k-linux-arm-v7-linux-arm-v7");
        assert_eq!(Platform::parse("linux/amd64").unwrap().expand("{arch}/{variant}"), "amd64/");
        for bad in ["linux", "Linux/amd64", "linux//x", "linux/arm/v7/x"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
