use super::*;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

// Test vectors made with OpenSSL 3.0 (`openssl req -x509 -newkey ...`); the expected pins are the output of
// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum` on them.
const FIXTURE_EC: &str = include_str!("testdata/fixture-ec.crt");
const FIXTURE_RSA: &str = include_str!("testdata/fixture-rsa.crt");
const FIXTURE_EC_PIN: &str = "sha256:1d0c68d4e85fa8aa463b193d708a599dbfaf5abcab4d561b6706d9f1ffceb212";
const FIXTURE_RSA_PIN: &str = "sha256:5d2718f51dc86e7f7f93d909952ad3ad35e32558ab0725c1137e721ce7d707c2";
/// sha256 of nothing: what `openssl rsa -pubin -outform der | sha256sum` gives for an ECDSA CA.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn rsa_ca() -> &'static CertificateAuthority {
    static CA: OnceLock<CertificateAuthority> = OnceLock::new();
    CA.get_or_init(|| CertificateAuthority::generate(KeyAlgorithm::Rsa2048).unwrap())
}

fn ec_ca() -> &'static CertificateAuthority {
    static CA: OnceLock<CertificateAuthority> = OnceLock::new();
    CA.get_or_init(|| CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap())
}

#[test]
fn bootstrap_tokens_have_kubeadm_format_and_stay_secret() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let t = BootstrapToken::generate().unwrap();
        let s = t.expose_secret();
        let (id, secret) = s.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16), "{s}");
        assert!(s.bytes().all(|b| b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase()), "{s}");
        assert_eq!(t.id(), id);
        assert_eq!(s.parse::<BootstrapToken>().unwrap(), t);
        assert_eq!(format!("{t:?}"), format!("BootstrapToken({id}.<secret>)"));
        assert!(seen.insert(s));
    }
}

#[test]
fn token_characters_are_spread_over_the_whole_alphabet() {
    let mut counts = [0usize; 36];
    for _ in 0..100 {
        for b in BootstrapToken::generate().unwrap().expose_secret().bytes().filter(|&b| b != b'.') {
            counts[TOKEN_CHARS.iter().position(|&c| c == b).unwrap()] += 1;
        }
    }
    // 2200 draws, 61 expected per character: a missing or doubled character would show.
    assert!(counts.iter().all(|&n| (20..130).contains(&n)), "{counts:?}");
}

#[test]
fn bad_tokens_are_refused_without_echoing_them() {
    for s in ["abcdef0123456789abcdef", "ABCDEF.0123456789abcdef", "abcde.0123456789abcdefg", "abcdef.0123456789abcde_", ""] {
        let e = s.parse::<BootstrapToken>().unwrap_err().to_string();
        assert!(e.contains("[a-z0-9]{6}.[a-z0-9]{16}"), "{e}");
        assert!(s.is_empty() || !e.contains(s), "{e}");
    }
}

#[test]
fn certificate_keys_are_32_random_bytes_in_hex() {
    let a = CertificateKey::generate().unwrap();
    let b = CertificateKey::generate().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.expose_secret().len(), 64);
    assert!(a.expose_secret().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    assert_eq!(format!("{a:?}"), "CertificateKey(<secret>)");
    assert_eq!(a.expose_secret().parse::<CertificateKey>().unwrap(), a);
    assert_eq!("AB".repeat(32).parse::<CertificateKey>().unwrap().expose_secret(), "ab".repeat(32));
    let e = "xyz".parse::<CertificateKey>().unwrap_err().to_string();
    assert!(e.contains("64 hex") && !e.contains("xyz"), "{e}");
}

#[test]
fn pins_of_openssl_made_certificates() {
    assert_eq!(ca_cert_hash(FIXTURE_EC).unwrap().to_string(), FIXTURE_EC_PIN);
    assert_eq!(ca_cert_hash(FIXTURE_RSA).unwrap().to_string(), FIXTURE_RSA_PIN);
    assert_ne!(FIXTURE_EC_PIN, format!("sha256:{EMPTY_SHA256}"));
}

#[test]
fn pins_parse_and_print() {
    let h: CaCertHash = FIXTURE_EC_PIN.parse().unwrap();
    assert_eq!(h.to_string(), FIXTURE_EC_PIN);
    assert_eq!(FIXTURE_EC_PIN.to_uppercase().replace("SHA256", "sha256").parse::<CaCertHash>().unwrap(), h);
    assert!("sha1:00".parse::<CaCertHash>().unwrap_err().to_string().contains("only sha256"));
    assert!("sha256:00".parse::<CaCertHash>().is_err());
}

#[test]
fn certificate_details() {
    let all = format!("{FIXTURE_RSA}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{FIXTURE_EC}");
    let certs = parse_certificates(&all).unwrap();
    assert_eq!(certs.len(), 2, "the key block is skipped");
    let (rsa, ec) = (&certs[0], &certs[1]);
    assert_eq!(rsa.subject, "O=airgap, CN=fixture-rsa");
    assert_eq!(rsa.key_algorithm, "RSA-2048");
    assert_eq!(rsa.serial, "71:f7:74:90:aa:55:a2:48:c1:f0:d1:6f:82:24:81:f1:7f:a8:73:8a");
    assert_eq!(rsa.not_before, time::macros::datetime!(2026-12-02 08:14:01 UTC));
    assert_eq!(rsa.not_after, time::macros::datetime!(2036-11-29 08:14:01 UTC));
    assert!(rsa.self_signed && rsa.is_ca);
    assert_eq!(ec.subject, "CN=fixture-ec");
    assert_eq!(ec.key_algorithm, "ECDSA-P256");
    assert_eq!(ec.dns_names, ["fixture"]);
    assert_eq!(ec.ip_addresses, ["10.0.0.100".parse::<IpAddr>().unwrap()]);
    assert!(ec.is_valid_at(time::macros::datetime!(2030-01-01 0:00 UTC)));
    assert!(!ec.is_valid_at(time::macros::datetime!(2037-01-01 0:00 UTC)));
    assert!(ec.remaining_at(time::macros::datetime!(2037-01-01 0:00 UTC)).is_negative());
    assert!(parse_certificates("").unwrap().is_empty());
    let e = ca_cert_hash("no pem here").unwrap_err().to_string();
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = parse_certificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err();
    assert!(e.to_string().contains("not an X.509 certificate"), "{e}");
}

#[test]
fn generated_cas_look_like_kubeadms() {
    let now = OffsetDateTime::now_utc();
    for (ca, alg) in [(rsa_ca(), "RSA-2048"), (ec_ca(), "ECDSA-P256")] {
        let info = &parse_certificates(ca.cert_pem()).unwrap()[0];
        assert_eq!(info.subject, "CN=kubernetes");
        assert_eq!(info.issuer, "CN=kubernetes");
        assert!(info.is_ca && info.self_signed, "{info:?}");
        assert_eq!(info.key_algorithm, alg);
        assert_eq!(info.dns_names, ["kubernetes"]);
        let backdate = now - info.not_before;
        assert!(backdate >= time::Duration::minutes(4) && backdate <= time::Duration::minutes(6), "{backdate}");
        assert_eq!(info.not_after - info.not_before, CA_VALIDITY + CA_BACKDATE);
        let serial = hex::decode(info.serial.replace(':', "")).unwrap();
        assert!(serial.len() <= 8 && serial[0] & 0x80 == 0, "positive, below 2^63: {}", info.serial);
        assert_eq!(ca.cert_hash().unwrap(), info.spki_hash);
        assert!(!format!("{ca:?}").contains("PRIVATE"), "{ca:?}");
    }
    assert!(rsa_ca().expose_key_pem().starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    assert!(ec_ca().expose_key_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
}

#[test]
fn existing_cas_are_read_back_and_checked() {
    for ca in [rsa_ca(), ec_ca()] {
        let again = CertificateAuthority::from_pem(ca.cert_pem(), ca.expose_key_pem()).unwrap();
        assert_eq!(again.algorithm(), ca.algorithm());
        assert_eq!(again.cert_hash().unwrap(), ca.cert_hash().unwrap());
    }
    let other = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let e = CertificateAuthority::from_pem(ec_ca().cert_pem(), other.expose_key_pem()).unwrap_err();
    assert!(e.to_string().contains("does not belong to ca.crt"), "{e}");
    let e = CertificateAuthority::from_pem(rsa_ca().cert_pem(), ec_ca().expose_key_pem()).unwrap_err();
    assert!(e.to_string().contains("not a readable"), "{e}");
    let e = CertificateAuthority::from_pem("", rsa_ca().expose_key_pem()).unwrap_err();
    assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
}

/// Runs `sh -c script` with `dir` as working directory; None when openssl is not installed.
fn sh(dir: &std::path::Path, script: &str) -> Option<std::process::Output> {
    if Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_err() {
        eprintln!("openssl not installed: cross-check skipped");
        return None;
    }
    Some(Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap())
}

#[test]
fn pins_agree_with_openssl_for_rsa_and_ecdsa() {
    for (ca, name) in [(rsa_ca(), "rsa"), (ec_ca(), "ec")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), ca.expose_key_pem()).unwrap();
        let Some(out) = sh(
            dir.path(),
            "set -e; openssl x509 -in ca.crt -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1; \
             openssl pkey -in ca.key -pubout -outform der | sha256sum | cut -d' ' -f1; \
             openssl verify -CAfile ca.crt ca.crt; \
             openssl x509 -in ca.crt -noout -ext basicConstraints,keyUsage,subjectAltName",
        ) else {
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        let pin = ca.cert_hash().unwrap().to_string();
        assert_eq!(format!("sha256:{}", lines[0]), pin, "{name}: certificate's public key");
        assert_eq!(format!("sha256:{}", lines[1]), pin, "{name}: the key belongs to the certificate");
        assert_eq!(lines[2], "ca.crt: OK", "{name}");
        assert!(stdout.contains("critical\n    CA:TRUE"), "{name}: {stdout}");
        assert!(stdout.contains("Digital Signature, Key Encipherment, Certificate Sign"), "{name}: {stdout}");
        assert!(stdout.contains("DNS:kubernetes"), "{name}: {stdout}");
    }
}

#[test]
fn the_documented_rsa_pipeline_hashes_nothing_for_an_ecdsa_ca() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), ec_ca().cert_pem()).unwrap();
    let script = "openssl x509 -pubkey -in ca.crt | openssl rsa -pubin -outform der 2>/dev/null | sha256sum | cut -d' ' -f1";
    let Some(out) = sh(dir.path(), script) else { return };
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), EMPTY_SHA256);
    assert_ne!(ec_ca().cert_hash().unwrap().to_string(), format!("sha256:{EMPTY_SHA256}"));
}
