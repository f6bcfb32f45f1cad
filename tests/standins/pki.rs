//! Certificates and kubeconfigs: the cluster CA read back from `ca.crt`/`ca.key`, leaf certificates it
//! signs (ECDSA P-256; kubeadm would follow `encryptionAlgorithm`, the stand-in does not need to), the
//! identity a client certificate carries (CN = user, O = groups, as the apiserver reads it), rustls
//! configurations, and kubeconfig files in kubeadm's layout.

use crate::common::{fail, Context, Ctx, R};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA that can sign: its certificate and an rcgen issuer built from it and its key.
pub struct Ca {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A private key in PEM (PKCS#8, PKCS#1 RSA) as an rcgen key pair.
fn key_pair(key_pem: &str) -> R<rcgen::KeyPair> {
    if key_pem.contains("BEGIN RSA PRIVATE KEY") {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::EncodePrivateKey;
        let k = rsa::RsaPrivateKey::from_pkcs1_pem(key_pem).ctx("cannot read the RSA key")?;
        let pkcs8 = k.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).ctx("cannot convert the RSA key")?;
        return rcgen::KeyPair::from_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).ctx("cannot load the RSA key");
    }
    if key_pem.contains("BEGIN RSA") || key_pem.contains("BEGIN PRIVATE KEY") {
        if let Ok(k) = rcgen::KeyPair::from_pem(key_pem) {
            return Ok(k);
        }
        return rcgen::KeyPair::from_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256).ctx("cannot load the key");
    }
    Err(fail("unsupported private key format (the stand-in reads PKCS#8 and PKCS#1 RSA keys)"))
}

impl Ca {
    pub fn load(cert_pem: &str, key_pem: &str) -> R<Ca> {
        airgap::kube::pki::CertificateAuthority::from_pem(cert_pem, key_pem).ctx("invalid CA")?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(cert_pem, key_pair(key_pem)?).ctx("cannot read the CA certificate")?;
        Ok(Ca { cert_pem: cert_pem.to_string(), issuer })
    }

    pub fn from_files(ctx: &Ctx, crt: &str, key: &str) -> R<Ca> {
        let c = ctx.read(crt).ctx(format!("failure loading {crt}"))?;
        let k = ctx.read(key).ctx(format!("failure loading {key}"))?;
        Ca::load(&c, &k)
    }

    /// A new CA (ECDSA P-256) named `cn`: `(cert_pem, key_pem)`.
    pub fn generate(cn: &str) -> R<(String, String)> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).ctx("keygen")?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn(cn, &[]);
        p.subject_alt_names = vec![rcgen::SanType::DnsName(cn.try_into().ctx("bad name")?)];
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        validity(&mut p, 3650);
        let cert = p.self_signed(&key).ctx("cannot sign the CA")?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A leaf certificate: `(cert_pem, key_pem)`.
    pub fn sign(&self, cn: &str, orgs: &[&str], dns: &[String], ips: &[IpAddr], server: bool, client: bool) -> R<(String, String)> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).ctx("keygen")?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn(cn, orgs);
        for d in dns {
            p.subject_alt_names.push(rcgen::SanType::DnsName(d.as_str().try_into().ctx(format!("bad DNS name {d}"))?));
        }
        p.subject_alt_names.extend(ips.iter().map(|i| rcgen::SanType::IpAddress(*i)));
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
        if server {
            p.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client {
            p.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        }
        validity(&mut p, 365);
        let cert = p.signed_by(&key, &self.issuer).ctx("cannot sign the certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn dn(cn: &str, orgs: &[&str]) -> rcgen::DistinguishedName {
    let mut d = rcgen::DistinguishedName::new();
    for o in orgs {
        d.push(rcgen::DnType::OrganizationName, *o);
    }
    d.push(rcgen::DnType::CommonName, cn);
    d
}

fn validity(p: &mut rcgen::CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(days);
    let mut serial = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial);
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
}

/// `sha256:<hex>` of the first certificate's SubjectPublicKeyInfo (kubeadm's pubkeypin.Hash).
pub fn spki_pin(cert_pem: &str) -> R<String> {
    Ok(airgap::kube::pki::ca_cert_hash(cert_pem).ctx("cannot read the CA certificate")?.to_string())
}

/// (CN, O...) of a DER certificate: the user and groups the apiserver sees.
pub fn identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    let orgs = cert.subject().iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some((cn, orgs))
}

pub fn certs(pem: &str) -> R<Vec<CertificateDer<'static>>> {
    let v: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().ctx("bad certificate PEM")?;
    if v.is_empty() {
        return Err(fail("no certificate in PEM data"));
    }
    Ok(v)
}

pub fn private_key(pem: &str) -> R<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).ctx("bad private key PEM")
}

fn roots(ca_pem: &str) -> R<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem)? {
        roots.add(c).ctx("bad CA certificate")?;
    }
    Ok(roots)
}

/// TLS for a server: its certificate, and client certificates verified against `client_ca` when given
/// (clients without one are still let in: anonymous or bearer-token requests).
pub fn server_tls(cert_pem: &str, key_pem: &str, client_ca: Option<&str>) -> R<Arc<rustls::ServerConfig>> {
    let b = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().ctx("tls")?;
    let b = match client_ca {
        Some(ca) => {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .allow_unauthenticated()
                .build()
                .ctx("client verifier")?;
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(b.with_single_cert(certs(cert_pem)?, private_key(key_pem)?).ctx("bad serving certificate")?))
}

/// TLS for a client: the server verified against `ca` (`None`: not verified at all, as kubeadm's first
/// discovery request), an optional client certificate.
pub fn client_tls(ca: Option<&str>, identity: Option<(&str, &str)>) -> R<Arc<rustls::ClientConfig>> {
    let b = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().ctx("tls")?;
    let b = match ca {
        Some(ca) => b.with_root_certificates(roots(ca)?),
        None => b.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider()))),
    };
    let cfg = match identity {
        Some((c, k)) => b.with_client_auth_cert(certs(c)?, private_key(k)?).ctx("bad client certificate")?,
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Accepts any server certificate (kubeadm's insecure first cluster-info request), still checking that
/// the server holds the key of the certificate it sent.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a kubeconfig user authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Client certificate and key (PEM).
    Cert(String, String),
    Token(String),
    None,
}

/// The parts of a kubeconfig file the tools use: the current context's server, CA and credentials.
#[derive(Clone, Debug)]
pub struct KubeConfig {
    pub server: String,
    pub ca_pem: Option<String>,
    pub auth: Auth,
    pub cluster_name: String,
    pub namespace: Option<String>,
}

fn data_or_file(ctx: &Ctx, m: &Value, data: &str, file: &str) -> R<Option<String>> {
    if let Some(d) = m.get(data).and_then(Value::as_str) {
        let bytes = B64.decode(d.trim()).ctx(format!("illegal base64 data in {data}"))?;
        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
    }
    if let Some(f) = m.get(file).and_then(Value::as_str) {
        return Ok(Some(ctx.read(f).ctx(format!("unable to read {file} {f}"))?));
    }
    Ok(None)
}

impl KubeConfig {
    /// Parse a kubeconfig file (YAML), resolving `*-data` fields and file references under the node root.
    pub fn parse(ctx: &Ctx, text: &str) -> R<KubeConfig> {
        let v: Value = serde_yaml_ng::from_str(text).ctx("error loading config file")?;
        let named = |list: &str, name: &str, field: &str| -> Option<Value> {
            v.get(list)?.as_array()?.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(name))?.get(field).cloned()
        };
        let current = v.get("current-context").and_then(Value::as_str).unwrap_or("");
        let context = named("contexts", current, "context").ok_or_else(|| {
            fail(if current.is_empty() { "current-context is not set".into() } else { format!("context was not found for specified context: {current}") })
        })?;
        let cluster_name = context.get("cluster").and_then(Value::as_str).unwrap_or("").to_string();
        let user_name = context.get("user").and_then(Value::as_str).unwrap_or("");
        let cluster = named("clusters", &cluster_name, "cluster").ok_or_else(|| fail(format!("cluster \"{cluster_name}\" not found")))?;
        let user = named("users", user_name, "user").unwrap_or(Value::Null);
        let server = cluster.get("server").and_then(Value::as_str).ok_or_else(|| fail("no server found for cluster"))?.to_string();
        let ca_pem = data_or_file(ctx, &cluster, "certificate-authority-data", "certificate-authority")?;
        let auth = if let Some(t) = user.get("token").and_then(Value::as_str) {
            Auth::Token(t.to_string())
        } else {
            match (data_or_file(ctx, &user, "client-certificate-data", "client-certificate")?, data_or_file(ctx, &user, "client-key-data", "client-key")?) {
                (Some(c), Some(k)) => Auth::Cert(c, k),
                _ => Auth::None,
            }
        };
        let namespace = context.get("namespace").and_then(Value::as_str).map(str::to_string);
        Ok(KubeConfig { server, ca_pem, auth, cluster_name, namespace })
    }

    pub fn load(ctx: &Ctx, path: &str) -> R<KubeConfig> {
        let text = ctx.read_config(path).map_err(|e| fail(format!("stat {path}: {}", crate::kubeadm::go_err(&e))))?;
        KubeConfig::parse(ctx, &text)
    }
}

/// A kubeconfig file as kubeadm writes them (`kubernetes-admin@kubernetes`, embedded data).
pub fn kubeconfig_yaml(cluster: &str, server: &str, ca_pem: &str, user: &str, auth: &Auth) -> String {
    let user_body = match auth {
        Auth::Cert(c, k) => json!({"client-certificate-data": B64.encode(c), "client-key-data": B64.encode(k)}),
        Auth::Token(t) => json!({"token": t}),
        Auth::None => json!({}),
    };
    kubeconfig_with(cluster, server, ca_pem, user, user_body)
}

/// A kubeconfig with any `user` body (e.g. `client-certificate: FILE`, as the kubelet writes its own).
pub fn kubeconfig_with(cluster: &str, server: &str, ca_pem: &str, user: &str, user_body: Value) -> String {
    let ctx_name = format!("{user}@{cluster}");
    let v = json!({
        "apiVersion": "v1",
        "clusters": [{"cluster": {"certificate-authority-data": B64.encode(ca_pem), "server": server}, "name": cluster}],
        "contexts": [{"context": {"cluster": cluster, "user": user}, "name": ctx_name}],
        "current-context": ctx_name,
        "kind": "Config",
        "users": [{"name": user, "user": user_body}],
    });
    serde_yaml_ng::to_string(&v).expect("yaml")
}
