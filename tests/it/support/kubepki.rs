//! kubeadm's PKI in its exact layout, made with rcgen: the three CAs (10 years: `CACertificateValidityPeriod`
//! 87600h), the leaf certificates (1 year: `CertificateValidityPeriod` 8760h), notBefore backdated 5 minutes
//! (`CertificateBackdate`), the subjects kubeadm gives them, and the kubeconfigs with embedded client
//! certificates. A leaf's validity can be shifted to make it expired or near expiry.

use base64::Engine as _;
use std::path::Path;
use time::{Duration, OffsetDateTime};

pub struct Ca {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn dn(cn: &str, orgs: &[&str]) -> rcgen::DistinguishedName {
    let mut d = rcgen::DistinguishedName::new();
    for o in orgs {
        d.push(rcgen::DnType::OrganizationName, *o);
    }
    d.push(rcgen::DnType::CommonName, cn);
    d
}

fn serial(p: &mut rcgen::CertificateParams) {
    let mut s = [0u8; 8];
    s.copy_from_slice(&airgap::digest::Digest::of_bytes(format!("{:?}", std::time::Instant::now()).as_bytes()).hex().as_bytes()[..8]);
    s[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&s));
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn(cn, &[]);
        p.subject_alt_names = vec![rcgen::SanType::DnsName(cn.try_into().unwrap())];
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment, rcgen::KeyUsagePurpose::KeyCertSign];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::minutes(5);
        p.not_after = now + Duration::hours(87600);
        serial(&mut p);
        let cert = p.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { issuer: rcgen::Issuer::from_ca_cert_pem(&pem, key).unwrap(), cert_pem: pem }
    }

    /// A leaf issued `age` ago with kubeadm's one-year validity (a negative `age` is not possible: use
    /// `age` > 365 days for an expired one, ~355 days for one that expires in 10).
    pub fn leaf(&self, cn: &str, orgs: &[&str], age: Duration) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn(cn, orgs);
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
        let issued = OffsetDateTime::now_utc() - age;
        p.not_before = issued - Duration::minutes(5);
        p.not_after = issued + Duration::hours(8760);
        serial(&mut p);
        p.signed_by(&key, &self.issuer).unwrap().pem()
    }
}

/// A kubeconfig as kubeadm writes it, with the client certificate embedded.
pub fn kubeconfig(ca: &Ca, user: &str, cert_pem: &str, server: &str) -> String {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://{server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(&ca.cert_pem),
        b(cert_pem),
        b("-----BEGIN EC PRIVATE KEY-----\nnot used\n-----END EC PRIVATE KEY-----\n")
    )
}

/// Write a control-plane node's PKI under `root` (its `/`): every leaf `age` old except those in `aged`.
pub fn write_control_plane(root: &Path, node: &str, cas: &[Ca; 3], aged: &[(&str, Duration)], super_admin: bool) {
    let [ca, etcd, fp] = cas;
    let age = |name: &str| aged.iter().find(|(n, _)| *n == name).map_or(Duration::days(1), |x| x.1);
    let k = root.join("etc/kubernetes");
    fs_err::create_dir_all(k.join("pki/etcd")).unwrap();
    let w = |rel: &str, s: &str| fs_err::write(k.join(rel), s).unwrap();
    w("pki/ca.crt", &ca.cert_pem);
    w("pki/etcd/ca.crt", &etcd.cert_pem);
    w("pki/front-proxy-ca.crt", &fp.cert_pem);
    w("pki/apiserver.crt", &ca.leaf("kube-apiserver", &[], age("apiserver")));
    w("pki/apiserver-kubelet-client.crt", &ca.leaf("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"], age("apiserver-kubelet-client")));
    w("pki/apiserver-etcd-client.crt", &etcd.leaf("kube-apiserver-etcd-client", &[], age("apiserver-etcd-client")));
    w("pki/front-proxy-client.crt", &fp.leaf("front-proxy-client", &[], age("front-proxy-client")));
    w("pki/etcd/server.crt", &etcd.leaf(node, &[], age("etcd-server")));
    w("pki/etcd/peer.crt", &etcd.leaf(node, &[], age("etcd-peer")));
    w("pki/etcd/healthcheck-client.crt", &etcd.leaf("kube-etcd-healthcheck-client", &[], age("etcd-healthcheck-client")));
    let mut confs = vec![
        ("admin.conf", "kubernetes-admin", vec!["kubeadm:cluster-admins"]),
        ("controller-manager.conf", "system:kube-controller-manager", vec![]),
        ("scheduler.conf", "system:kube-scheduler", vec![]),
    ];
    if super_admin {
        confs.push(("super-admin.conf", "kubernetes-super-admin", vec!["system:masters"]));
    }
    for (file, user, orgs) in confs {
        let cert = ca.leaf(user, &orgs, age(file));
        w(file, &kubeconfig(ca, user, &cert, "10.0.0.100:16443"));
    }
}
