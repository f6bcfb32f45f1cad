//! A Kubernetes release version, `vMAJOR.MINOR.PATCH` (the form of kubeadm's `kubernetesVersion` and of
//! the release tags). Pre-releases (`-rc.1`) and build metadata are refused: bundles ship releases.

use super::Error;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version { major, minor, patch }
    }

    /// The release line, `1.35` for v1.35.2.
    pub fn minor_line(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// Same MAJOR.MINOR.
    pub fn same_minor(&self, other: &Version) -> bool {
        self.major == other.major && self.minor == other.minor
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = Error;

    /// `v1.35.2` or `1.35.2`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadVersion(s.to_string());
        let rest = s.strip_prefix('v').unwrap_or(s);
        let mut parts = rest.split('.');
        let mut num = || -> Result<u32, Error> {
            let p = parts.next().ok_or_else(bad)?;
            // No sign, no leading zeros (as semver): "01" is not a version component.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = Version { major: num()?, minor: num()?, patch: num()? };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_v() {
        assert_eq!("v1.35.2".parse::<Version>().unwrap(), Version::new(1, 35, 2));
        assert_eq!("1.36.0".parse::<Version>().unwrap(), Version::new(1, 36, 0));
        assert_eq!(Version::new(1, 35, 2).to_string(), "v1.35.2");
        assert_eq!(Version::new(1, 35, 2).minor_line(), "1.35");
    }

    #[test]
    fn refuses_what_is_not_a_release() {
        for s in ["", "v", "1.35", "v1.35.2.1", "v1.36.0-rc.1", "v1.35.x", "V1.35.2", "v1.035.2", "v-1.35.2", " v1.35.2"] {
            let e = s.parse::<Version>().unwrap_err();
            assert!(e.to_string().contains("expected vMAJOR.MINOR.PATCH"), "{s}: {e}");
        }
    }

    #[test]
    fn orders_numerically() {
        let a: Version = "v1.35.10".parse().unwrap();
        let b: Version = "v1.35.9".parse().unwrap();
        assert!(a > b);
        assert!(a.same_minor(&b));
        assert!(!a.same_minor(&Version::new(1, 36, 0)));
    }

    #[test]
    fn serde_as_string() {
        let v: Version = serde_yaml_ng::from_str("v1.36.3").unwrap();
        assert_eq!(v, Version::new(1, 36, 3));
        assert_eq!(serde_yaml_ng::to_string(&v).unwrap().trim(), "v1.36.3");
        assert!(serde_yaml_ng::from_str::<Version>("1.36").is_err());
    }
}
