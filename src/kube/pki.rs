//! What the kubeadm bootstrap needs decided before `kubeadm init`, so that every join can be rendered up
//! front instead of being scraped from init's output:
//!
//! - a bootstrap token ([`BootstrapToken`], `[a-z0-9]{6}.[a-z0-9]{16}`, as kubeadm's
//!   `bootstraputil.GenerateBootstrapToken`) and a certificate key ([`CertificateKey`], 32 random bytes
//!   as 64 hex, as kubeadm's `copycerts.CreateCertificateKey`), both from the OS CSPRNG;
//! - the cluster CA ([`CertificateAuthority`]), made the way kubeadm's `pkiutil.NewSelfSignedCACert` makes
//!   it: CN and DNS SAN `kubernetes`, key usages digitalSignature + keyEncipherment + keyCertSign, CA basic
//!   constraint, a random serial in [1, 2^63-1), 10 years of validity (`CACertificateValidityPeriod` =
//!   87600h), notBefore backdated 5 minutes (`CertificateBackdate`); an RSA-2048 key (kubeadm's default
//!   `encryptionAlgorithm`) or ECDSA P-256. kubeadm uses an existing `/etc/kubernetes/pki/ca.crt` +
//!   `ca.key` instead of making one. Sources: kubernetes/kubernetes `cmd/kubeadm/app/util/pkiutil/pki_helpers.go`
//!   @ 025f2834a128798cef30018a5e6a6ae82b5ad885, `cmd/kubeadm/app/constants/constants.go` @ 898b9f80.
//! - the CA's public-key pin for `caCertHashes` ([`ca_cert_hash`]): `sha256:` + hex SHA-256 of the
//!   certificate's DER SubjectPublicKeyInfo (kubeadm's `pubkeypin.Hash`), for RSA and ECDSA alike;
//! - certificate inspection for `airgap certs check` ([`parse_certificates`]), parsed in Rust.

use super::{Error, Result};
use crate::digest::Digest;
use rand::TryRngCore;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use time::OffsetDateTime;

/// kubeadm's `CACertificateValidityPeriod`: 10 years.
pub const CA_VALIDITY: time::Duration = time::Duration::hours(87600);
/// kubeadm's `CertificateBackdate`: notBefore of a CA is 5 minutes in the past (clock skew between nodes).
pub const CA_BACKDATE: time::Duration = time::Duration::minutes(5);
/// The CA's CommonName (and DNS SAN) kubeadm gives the cluster CA.
pub const CA_COMMON_NAME: &str = "kubernetes";

const TOKEN_CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn random_bytes(buf: &mut [u8]) -> Result<()> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| Error::pki_from("cannot read random bytes from the operating system", e))
}

/// `n` characters of `[a-z0-9]`, uniform (rejection sampling).
fn random_token_chars(n: usize) -> Result<String> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        random_bytes(&mut buf)?;
        // 252 = 7 * 36: bytes from 252 up would favour the first characters
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() == n {
                break;
            }
            out.push(TOKEN_CHARS[usize::from(b % 36)] as char);
        }
    }
    Ok(out)
}

/// A kubeadm bootstrap token `<id>.<secret>`. Secret: its Debug shows only the public id.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    pub fn generate() -> Result<Self> {
        Ok(BootstrapToken { id: random_token_chars(6)?, secret: random_token_chars(16)? })
    }

    /// The public part (it names the `bootstrap-token-<id>` Secret in kube-system).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The whole token, for the file written 0600 on the node. Never log it.
    pub fn expose_secret(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl FromStr for BootstrapToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let ok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| TOKEN_CHARS.contains(&b));
        match s.split_once('.') {
            Some((id, secret)) if ok(id, 6) && ok(secret, 16) => {
                Ok(BootstrapToken { id: id.to_string(), secret: secret.to_string() })
            }
            _ => Err(Error::pki(format!(
                "not a bootstrap token (the value is not shown): expected [a-z0-9]{{6}}.[a-z0-9]{{16}}, {} characters given",
                s.len()
            ))),
        }
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<secret>)", self.id)
    }
}

/// The key `kubeadm init --upload-certs` encrypts the control-plane certificates with (AES-256, 64 hex).
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateKey(String);

impl CertificateKey {
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; 32];
        random_bytes(&mut key)?;
        Ok(CertificateKey(hex::encode(key)))
    }

    /// The key, for the file written 0600 on the node. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl FromStr for CertificateKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CertificateKey(s.to_ascii_lowercase()))
        } else {
            Err(Error::pki(format!(
                "not a kubeadm certificate key (the value is not shown): expected 64 hex characters (32 bytes), {} given",
                s.len()
            )))
        }
    }
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertificateKey(<secret>)")
    }
}

/// A `caCertHashes` entry: `sha256:<hex of the DER SubjectPublicKeyInfo>`. Public (a pin, not a secret).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CaCertHash(Digest);

impl CaCertHash {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        CaCertHash(Digest::of_bytes(spki_der))
    }
}

impl fmt::Display for CaCertHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0) // Digest displays as sha256:<hex>
    }
}

impl FromStr for CaCertHash {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            Error::pki(format!("{s:?} is not a CA certificate hash: expected sha256:<64 hex> (kubeadm knows only sha256)"))
        })?;
        Digest::from_hex(&hex.to_ascii_lowercase())
            .map(CaCertHash)
            .map_err(|e| Error::pki_from(format!("{s:?} is not a CA certificate hash"), e))
    }
}

/// The key type of a generated CA (kubeadm `encryptionAlgorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// kubeadm's default.
    Rsa2048,
    EcdsaP256,
}

impl KeyAlgorithm {
    /// The matching `ClusterConfiguration.encryptionAlgorithm`.
    pub fn encryption_algorithm(&self) -> super::kubeadm_api::v1beta4::EncryptionAlgorithm {
        use super::kubeadm_api::v1beta4::EncryptionAlgorithm as E;
        match self {
            KeyAlgorithm::Rsa2048 => E::Rsa2048,
            KeyAlgorithm::EcdsaP256 => E::EcdsaP256,
        }
    }
}

/// The cluster CA: `ca.crt` (public) and `ca.key` (secret: Debug does not show it).
#[derive(Clone)]
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
    algorithm: KeyAlgorithm,
}

impl CertificateAuthority {
    /// A CA as kubeadm would make it, valid from 5 minutes ago for 10 years.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self> {
        Self::generate_at(algorithm, OffsetDateTime::now_utc())
    }

    /// [`Self::generate`] as of `now`.
    pub fn generate_at(algorithm: KeyAlgorithm, now: OffsetDateTime) -> Result<Self> {
        let (key_pair, key_pem) = match algorithm {
            KeyAlgorithm::Rsa2048 => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .map_err(|e| Error::pki_from("cannot generate the CA's RSA-2048 key", e))?;
                let lf = rsa::pkcs8::LineEnding::LF;
                let pkcs8 = key.to_pkcs8_pem(lf).map_err(|e| Error::pki_from("cannot encode the CA key", e))?;
                // kubeadm writes RSA keys as PKCS#1 "RSA PRIVATE KEY"
                let pkcs1 = key.to_pkcs1_pem(lf).map_err(|e| Error::pki_from("cannot encode the CA key", e))?;
                let kp = rcgen::KeyPair::from_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
                    .map_err(|e| Error::pki_from("cannot load the CA's RSA key for signing", e))?;
                (kp, pkcs1.to_string())
            }
            KeyAlgorithm::EcdsaP256 => {
                let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| Error::pki_from("cannot generate the CA's ECDSA P-256 key", e))?;
                // PKCS#8 "PRIVATE KEY": kubeadm writes SEC1 "EC PRIVATE KEY" but reads both
                // (client-go keyutil.ParsePrivateKeyPEM)
                let pem = kp.serialize_pem();
                (kp, pem)
            }
        };

        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, CA_COMMON_NAME);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![rcgen::SanType::DnsName(
            CA_COMMON_NAME.try_into().map_err(|e| Error::pki_from("bad CA name", e))?,
        )];
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        let mut serial = [0u8; 8];
        random_bytes(&mut serial)?;
        serial[0] &= 0x7f; // positive, below 2^63
        if serial == [0; 8] {
            serial[7] = 1;
        }
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let now = now.replace_nanosecond(0).unwrap_or(now);
        params.not_before = now - CA_BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key_pair).map_err(|e| Error::pki_from("cannot sign the CA certificate", e))?;
        Ok(CertificateAuthority { cert_pem: cert.pem(), key_pem, algorithm })
    }

    /// An existing CA (e.g. read back from the state dir). The key must match the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let info = parse_certificates(cert_pem)?.into_iter().next().ok_or_else(|| Error::pki("no CERTIFICATE in ca.crt"))?;
        if !info.is_ca {
            return Err(Error::pki(format!("{} is not a CA certificate (no CA basic constraint)", info.subject)));
        }
        let algorithm = match info.key_algorithm.as_str() {
            "RSA-2048" => KeyAlgorithm::Rsa2048,
            "ECDSA-P256" => KeyAlgorithm::EcdsaP256,
            other => return Err(Error::pki(format!("CA key type {other} is not supported: use RSA-2048 or ECDSA-P256"))),
        };
        let key_spki = public_key_of(key_pem, algorithm)?;
        if CaCertHash::of_spki(&key_spki) != info.spki_hash {
            return Err(Error::pki("ca.key does not belong to ca.crt (their public keys differ)"));
        }
        Ok(CertificateAuthority { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string(), algorithm })
    }

    /// `ca.crt`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// `ca.key`: write it 0600, never log it.
    pub fn expose_key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The `caCertHashes` pin of this CA.
    pub fn cert_hash(&self) -> Result<CaCertHash> {
        ca_cert_hash(&self.cert_pem)
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("algorithm", &self.algorithm)
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &format_args!("<secret>"))
            .finish()
    }
}

/// The DER SubjectPublicKeyInfo of a private key in PEM (PKCS#1, SEC1 is not read, or PKCS#8).
fn public_key_of(key_pem: &str, algorithm: KeyAlgorithm) -> Result<Vec<u8>> {
    let bad = |e: &dyn fmt::Display| Error::pki(format!("ca.key is not a readable {algorithm:?} private key: {e}"));
    let pkcs8 = match algorithm {
        KeyAlgorithm::Rsa2048 => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(key_pem)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(key_pem))
                .map_err(|e| bad(&e))?;
            key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| bad(&e))?.to_string()
        }
        KeyAlgorithm::EcdsaP256 => key_pem.to_string(),
    };
    let alg = match algorithm {
        KeyAlgorithm::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let kp = rcgen::KeyPair::from_pem_and_sign_algo(&pkcs8, alg).map_err(|e| bad(&e))?;
    use rcgen::PublicKeyData;
    Ok(kp.subject_public_key_info())
}

/// The `caCertHashes` pin of the first certificate in `pem`: `sha256:` + hex SHA-256 of its DER
/// SubjectPublicKeyInfo. Right for RSA and ECDSA CAs alike (the documented `openssl rsa -pubin` pipeline
/// hashes empty input for an ECDSA CA).
pub fn ca_cert_hash(pem: &str) -> Result<CaCertHash> {
    parse_certificates(pem)?
        .into_iter()
        .next()
        .map(|c| c.spki_hash)
        .ok_or_else(|| Error::pki("no CERTIFICATE block in the PEM: expected the cluster CA's ca.crt"))
}

/// What `airgap certs check` shows of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// RFC 4514-style, e.g. `CN=kubernetes`.
    pub subject: String,
    pub issuer: String,
    /// Hex, colon-separated.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    /// `RSA-2048`, `ECDSA-P256`, `ECDSA-P384`, `Ed25519`, or `<oid>`.
    pub key_algorithm: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Pin of the public key (what `caCertHashes` holds when this is the CA).
    pub spki_hash: CaCertHash,
    /// Subject == issuer and the signature verifies with its own key.
    pub self_signed: bool,
}

impl CertInfo {
    pub fn is_valid_at(&self, t: OffsetDateTime) -> bool {
        self.not_before <= t && t <= self.not_after
    }

    /// Time left until notAfter (negative once expired).
    pub fn remaining_at(&self, t: OffsetDateTime) -> time::Duration {
        self.not_after - t
    }
}

/// Every CERTIFICATE in a PEM file (other blocks, e.g. keys, are skipped), in order.
pub fn parse_certificates(pem: &str) -> Result<Vec<CertInfo>> {
    use x509_parser::prelude::*;
    let mut out = Vec::new();
    for (i, block) in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let block = block.map_err(|e| Error::pki_from(format!("PEM block {} is not valid PEM", i + 1), e))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let (_, cert) = X509Certificate::from_der(&block.contents)
            .map_err(|e| Error::pki_from(format!("PEM block {} is not an X.509 certificate", i + 1), e))?;
        let spki = cert.public_key();
        let key_algorithm = match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.1" => format!("RSA-{}", spki.parsed().map(|k| k.key_size()).unwrap_or(0)),
            "1.2.840.10045.2.1" => {
                match spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string()).as_deref() {
                    Some("1.2.840.10045.3.1.7") => "ECDSA-P256".into(),
                    Some("1.3.132.0.34") => "ECDSA-P384".into(),
                    Some(o) => format!("ECDSA-{o}"),
                    None => "ECDSA".into(),
                }
            }
            "1.3.101.112" => "Ed25519".into(),
            other => other.to_string(),
        };
        let (mut dns_names, mut ip_addresses) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => ip_addresses.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes"))),
                        16 => ip_addresses.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes"))),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let self_signed = cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok();
        out.push(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: cert.is_ca(),
            key_algorithm,
            dns_names,
            ip_addresses,
            spki_hash: CaCertHash::of_spki(spki.raw),
            self_signed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
