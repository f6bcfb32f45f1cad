//! The cluster's secrets on the deploy machine: made ONCE, by the first `install` that runs a Kubernetes
//! step, into `<state>/secrets/` (directory 0700, files 0600) and reused by every later run, so that a
//! re-run renders the same kubeadm files and the joins agree with what init was given.
//!
//! - `bootstrap-token`: the kubeadm bootstrap token (`<id>.<secret>`);
//! - `certificate-key`: the key `--upload-certs` encrypts the control-plane certificates with;
//! - `ca.crt` + `ca.key`: the cluster CA, pre-seeded on the first master before `kubeadm init` so that the
//!   joins' `caCertHashes` pin is known up front.
//!
//! Nothing here prints a secret: the types of [`crate::kube::pki`] show `<secret>` in Debug, and the
//! steps send the values to the nodes only as [`super::Action::SecretFile`]s (over SSH stdin).

use crate::error::HintExt;
use crate::fsutil;
use crate::kube::kubeadm_config::JoinSecrets;
use crate::kube::pki::{BootstrapToken, CertificateAuthority, CertificateKey, KeyAlgorithm};
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The directory under the state dir.
pub const DIR: &str = "secrets";
const TOKEN: &str = "bootstrap-token";
const CERT_KEY: &str = "certificate-key";
const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
/// Where the admin kubeconfig of the cluster comes back to, under the state dir (mode 0600).
pub const ADMIN_CONF: &str = "admin.conf";

/// The cluster's secrets, and the state dir they live in.
#[derive(Debug)]
pub struct ClusterSecrets {
    state_dir: PathBuf,
    pub token: BootstrapToken,
    pub certificate_key: CertificateKey,
    pub ca: CertificateAuthority,
}

impl ClusterSecrets {
    /// The secrets in `state_dir`, `None` when none were made yet (`plan`, `status`, `--dry-run` make none).
    pub fn load(state_dir: &Path) -> Result<Option<ClusterSecrets>> {
        let dir = state_dir.join(DIR);
        if !dir.exists() {
            return Ok(None);
        }
        let read = |name: &str| -> Result<String> {
            let p = dir.join(name);
            let text = fs_err::read_to_string(&p)?;
            Ok(text.trim_end().to_string())
        };
        let parse = || -> Result<ClusterSecrets> {
            let token: BootstrapToken = read(TOKEN)?.parse().with_context(|| format!("in {}", dir.join(TOKEN).display()))?;
            let certificate_key: CertificateKey =
                read(CERT_KEY)?.parse().with_context(|| format!("in {}", dir.join(CERT_KEY).display()))?;
            let ca = CertificateAuthority::from_pem(&format!("{}\n", read(CA_CRT)?), &format!("{}\n", read(CA_KEY)?))
                .with_context(|| format!("the cluster CA in {}", dir.display()))?;
            Ok(ClusterSecrets { state_dir: state_dir.to_path_buf(), token, certificate_key, ca })
        };
        parse()
            .with_context(|| format!("failed to read the cluster secrets in {}", dir.display()))
            .with_hint(|| {
                "they are made once by the first install and must stay as they are: restore them from a backup \
                 (the cluster's joins and its CA depend on them)"
                    .to_string()
            })
            .map(Some)
    }

    /// The secrets in `state_dir`, made now (and written 0600 under a 0700 directory) when there are none.
    pub fn load_or_create(state_dir: &Path) -> Result<ClusterSecrets> {
        if let Some(s) = Self::load(state_dir)? {
            s.check_modes()?;
            return Ok(s);
        }
        let s = ClusterSecrets {
            state_dir: state_dir.to_path_buf(),
            token: BootstrapToken::generate()?,
            certificate_key: CertificateKey::generate()?,
            ca: CertificateAuthority::generate(KeyAlgorithm::Rsa2048)?,
        };
        // made in a temporary directory next to it, then renamed: a kill never leaves half a set
        let dir = state_dir.join(DIR);
        let tmp = state_dir.join(format!(".{DIR}.tmp"));
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        fs_err::create_dir_all(&tmp)?;
        fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        for (name, content) in [
            (TOKEN, s.token.expose_secret()),
            (CERT_KEY, s.certificate_key.expose_secret().to_string()),
            (CA_CRT, s.ca.cert_pem().to_string()),
            (CA_KEY, s.ca.expose_key_pem().to_string()),
        ] {
            let mut content = content;
            if !content.ends_with('\n') {
                content.push('\n');
            }
            fsutil::atomic_write(&tmp.join(name), content.as_bytes(), fsutil::Mode::Set(0o600))?;
        }
        fsutil::rename_durable(&tmp, &dir).context("failed to store the cluster secrets")?;
        Ok(s)
    }

    /// Refuse secrets others can read (a copy restored with the wrong modes).
    fn check_modes(&self) -> Result<()> {
        let dir = self.state_dir.join(DIR);
        let mode = |p: &Path| -> Result<u32> { Ok(fs_err::metadata(p)?.permissions().mode() & 0o7777) };
        let mut bad = Vec::new();
        if mode(&dir)? & 0o077 != 0 {
            bad.push(format!("{} is {:o}", dir.display(), mode(&dir)?));
        }
        for name in [TOKEN, CERT_KEY, CA_KEY] {
            let p = dir.join(name);
            if mode(&p)? & 0o077 != 0 {
                bad.push(format!("{} is {:o}", p.display(), mode(&p)?));
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        Err(anyhow::anyhow!("the cluster secrets are readable by others: {}", bad.join(", ")))
            .with_hint(|| format!("chmod 700 {0} && chmod 600 {0}/*", dir.display()))
    }

    /// What the joins need (the CA pin computed from the CA).
    pub fn join(&self) -> Result<JoinSecrets> {
        Ok(JoinSecrets { token: self.token.clone(), certificate_key: self.certificate_key.clone(), ca_cert_hash: self.ca.cert_hash()? })
    }

    /// `<state>/admin.conf`.
    pub fn admin_conf(&self) -> PathBuf {
        self.state_dir.join(ADMIN_CONF)
    }

    /// Every secret value, for tests that look for them in logs, journals and plans.
    pub fn values(&self) -> Vec<String> {
        let mut v = vec![self.token.expose_secret(), self.certificate_key.expose_secret().to_string()];
        // the CA key's base64 lines (each is 64 characters of key material)
        v.extend(self.ca.expose_key_pem().lines().filter(|l| !l.starts_with("-----")).take(2).map(String::from));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_0600_under_0700_and_reused() {
        let d = tempfile::tempdir().unwrap();
        assert!(ClusterSecrets::load(d.path()).unwrap().is_none());
        let a = ClusterSecrets::load_or_create(d.path()).unwrap();
        let b = ClusterSecrets::load_or_create(d.path()).unwrap();
        assert_eq!(a.token, b.token);
        assert_eq!(a.certificate_key, b.certificate_key);
        assert_eq!(a.ca.cert_hash().unwrap(), b.ca.cert_hash().unwrap());
        let mode = |p: PathBuf| fs_err::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(d.path().join(DIR)), 0o700);
        for f in [TOKEN, CERT_KEY, CA_CRT, CA_KEY] {
            assert_eq!(mode(d.path().join(DIR).join(f)), 0o600, "{f}");
        }
        // Debug never shows a value
        let dbg = format!("{a:?}");
        for v in a.values() {
            assert!(!dbg.contains(&v), "{dbg}");
        }
        // readable by others: refused with the chmod to run
        fs_err::set_permissions(d.path().join(DIR).join(CA_KEY), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClusterSecrets::load_or_create(d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("readable by others"), "{e:#}");
        assert!(crate::error::hints(&e)[0].starts_with("chmod 700"));
    }

    #[test]
    fn a_damaged_set_is_an_error_not_a_new_cluster() {
        let d = tempfile::tempdir().unwrap();
        ClusterSecrets::load_or_create(d.path()).unwrap();
        fs_err::write(d.path().join(DIR).join(TOKEN), "nope\n").unwrap();
        let e = ClusterSecrets::load_or_create(d.path()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("failed to read the cluster secrets") && msg.contains("bootstrap-token"), "{msg}");
        assert!(!msg.contains("nope"), "the value is not shown: {msg}");
    }
}
