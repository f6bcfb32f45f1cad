//! `airgap certs check`: the certificates kubeadm manages on a control-plane node (the 14 that
//! `kubeadm certs check-expiration` lists: 10 leaf certificates, 4 of them embedded in kubeconfigs, and the 3
//! CAs), each read from the node, parsed in Rust ([`super::pki::parse_certificates`]) and judged against a
//! warning window. Reading the files is the caller's (over SSH): this module only judges bytes.

use super::pki::{parse_certificates, CertInfo};
use serde::Serialize;
use time::OffsetDateTime;

/// How a certificate is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A PEM certificate file.
    Pem,
    /// The client certificate embedded in a kubeconfig (`client-certificate-data`, or the file
    /// `client-certificate` names).
    Kubeconfig,
}

/// One certificate kubeadm manages.
#[derive(Debug, Clone, Copy)]
pub struct Managed {
    /// As `kubeadm certs check-expiration` names it.
    pub name: &'static str,
    pub path: &'static str,
    pub store: Store,
    /// The CA that signs it (`None`: it is a CA).
    pub ca: Option<&'static str>,
    /// Only some masters have it (`super-admin.conf`: the node that ran `kubeadm init`, since 1.29).
    pub optional: bool,
}

const fn leaf(name: &'static str, path: &'static str, store: Store, ca: &'static str, optional: bool) -> Managed {
    Managed { name, path, store, ca: Some(ca), optional }
}

const fn ca(name: &'static str, path: &'static str) -> Managed {
    Managed { name, path, store: Store::Pem, ca: None, optional: false }
}

/// kubeadm's certificates on a control-plane node (kubeadm's `certsphase` and `kubeconfigphase` file names).
pub const MANAGED: [Managed; 14] = [
    leaf("admin.conf", "/etc/kubernetes/admin.conf", Store::Kubeconfig, "ca", false),
    leaf("apiserver", "/etc/kubernetes/pki/apiserver.crt", Store::Pem, "ca", false),
    leaf("apiserver-etcd-client", "/etc/kubernetes/pki/apiserver-etcd-client.crt", Store::Pem, "etcd-ca", false),
    leaf("apiserver-kubelet-client", "/etc/kubernetes/pki/apiserver-kubelet-client.crt", Store::Pem, "ca", false),
    leaf("controller-manager.conf", "/etc/kubernetes/controller-manager.conf", Store::Kubeconfig, "ca", false),
    leaf("etcd-healthcheck-client", "/etc/kubernetes/pki/etcd/healthcheck-client.crt", Store::Pem, "etcd-ca", false),
    leaf("etcd-peer", "/etc/kubernetes/pki/etcd/peer.crt", Store::Pem, "etcd-ca", false),
    leaf("etcd-server", "/etc/kubernetes/pki/etcd/server.crt", Store::Pem, "etcd-ca", false),
    leaf("front-proxy-client", "/etc/kubernetes/pki/front-proxy-client.crt", Store::Pem, "front-proxy-ca", false),
    leaf("scheduler.conf", "/etc/kubernetes/scheduler.conf", Store::Kubeconfig, "ca", false),
    leaf("super-admin.conf", "/etc/kubernetes/super-admin.conf", Store::Kubeconfig, "ca", true),
    ca("ca", "/etc/kubernetes/pki/ca.crt"),
    ca("etcd-ca", "/etc/kubernetes/pki/etcd/ca.crt"),
    ca("front-proxy-ca", "/etc/kubernetes/pki/front-proxy-ca.crt"),
];

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// Expires inside the warning window.
    ExpiresSoon,
    Expired,
    NotYetValid,
    Missing,
    /// An optional one this node does not have.
    Absent,
    /// Not a certificate (or a kubeconfig without a client certificate).
    Invalid,
    /// Not issued by the CA it should be (the CA's subject differs from the issuer).
    WrongCa,
    /// The node could not be read.
    Unreadable,
}

impl Status {
    /// Does this row make `certs check` fail?
    pub fn fails(&self) -> bool {
        !matches!(self, Status::Ok | Status::Absent)
    }
    pub fn label(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::ExpiresSoon => "EXPIRES SOON",
            Status::Expired => "EXPIRED",
            Status::NotYetValid => "NOT YET VALID",
            Status::Missing => "MISSING",
            Status::Absent => "absent (optional)",
            Status::Invalid => "NOT A CERTIFICATE",
            Status::WrongCa => "WRONG CA",
            Status::Unreadable => "UNREADABLE",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub node: String,
    pub certificate: String,
    pub path: String,
    #[serde(skip)]
    pub expires: Option<OffsetDateTime>,
    /// notAfter as `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: Option<String>,
    /// Whole days until notAfter (negative once expired).
    pub days_left: Option<i64>,
    /// The signing CA's name, `-` for a CA.
    pub ca: String,
    pub status: Status,
    /// Why, when not ok.
    pub detail: String,
}

/// What reading a file on the node gave: its bytes, `None` when missing, or why it could not be read.
pub type Read = Result<Option<Vec<u8>>, String>;

/// The client certificate (PEM) of a kubeconfig, or where it is (`Err(path)`: `client-certificate`).
fn kubeconfig_client_cert(text: &str) -> Result<Result<String, String>, String> {
    use base64::Engine;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let users = doc.get("users").and_then(|u| u.as_sequence()).ok_or("not a kubeconfig: no users")?;
    for u in users {
        let Some(user) = u.get("user") else { continue };
        if let Some(data) = user.get("client-certificate-data").and_then(|d| d.as_str()) {
            let pem = base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| format!("client-certificate-data is not base64: {e}"))?;
            return Ok(Ok(String::from_utf8_lossy(&pem).into_owned()));
        }
        if let Some(path) = user.get("client-certificate").and_then(|d| d.as_str()) {
            return Ok(Err(path.to_string()));
        }
    }
    Err("the kubeconfig has no client certificate".into())
}

/// The first certificate of `pem`, or why not.
fn first_cert(pem: &[u8]) -> Result<CertInfo, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (binary content)".to_string())?;
    match parse_certificates(text) {
        Ok(v) if !v.is_empty() => Ok(v.into_iter().next().expect("not empty")),
        Ok(_) => Err("no CERTIFICATE block in it".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A certificate parsed, or why not.
type Judged = Result<CertInfo, (Status, String)>;

/// Judge every managed certificate of `node`; `read` fetches a file from it.
pub fn check_node(node: &str, read: &mut dyn FnMut(&str) -> Read, now: OffsetDateTime, warn_days: i64) -> Vec<Row> {
    let mut found: Vec<(Managed, Judged, String)> = Vec::new();
    for m in MANAGED {
        let mut path = m.path.to_string();
        let got = match read(m.path) {
            Err(e) => Err((Status::Unreadable, e)),
            Ok(None) if m.optional => Err((Status::Absent, "not on this node".into())),
            Ok(None) => Err((Status::Missing, format!("{} does not exist", m.path))),
            Ok(Some(bytes)) => match m.store {
                Store::Pem => first_cert(&bytes).map_err(|e| (Status::Invalid, e)),
                Store::Kubeconfig => match kubeconfig_client_cert(&String::from_utf8_lossy(&bytes)) {
                    Err(e) => Err((Status::Invalid, e)),
                    Ok(Ok(pem)) => first_cert(pem.as_bytes()).map_err(|e| (Status::Invalid, format!("client-certificate-data: {e}"))),
                    Ok(Err(file)) => {
                        path = file.clone();
                        match read(&file) {
                            Err(e) => Err((Status::Unreadable, e)),
                            Ok(None) => Err((Status::Missing, format!("{file} (its client-certificate) does not exist"))),
                            Ok(Some(b)) => first_cert(&b).map_err(|e| (Status::Invalid, format!("{file}: {e}"))),
                        }
                    }
                },
            },
        };
        found.push((m, got, path));
    }
    let ca_subject = |name: &str| {
        found.iter().find(|(m, _, _)| m.name == name).and_then(|(_, c, _)| c.as_ref().ok()).map(|c| c.subject.clone())
    };
    found
        .iter()
        .map(|(m, got, path)| {
            let mut row = Row {
                node: node.into(),
                certificate: m.name.into(),
                path: path.clone(),
                expires: None,
                not_after: None,
                days_left: None,
                ca: m.ca.unwrap_or("-").into(),
                status: Status::Ok,
                detail: String::new(),
            };
            match got {
                Err((status, why)) => {
                    row.status = status.clone();
                    row.detail = why.clone();
                }
                Ok(c) => {
                    let days = (c.not_after - now).whole_seconds().div_euclid(86_400);
                    row.expires = Some(c.not_after);
                    row.not_after = Some(utc(c.not_after));
                    row.days_left = Some(days);
                    (row.status, row.detail) = if c.not_after <= now {
                        (Status::Expired, format!("expired {} day(s) ago", (now - c.not_after).whole_days()))
                    } else if c.not_before > now {
                        (Status::NotYetValid, format!("valid from {}", c.not_before))
                    } else if days < warn_days {
                        (Status::ExpiresSoon, format!("inside the {warn_days}-day warning window"))
                    } else {
                        (Status::Ok, String::new())
                    };
                    if let Some(ca) = m.ca.and_then(ca_subject) {
                        if ca != c.issuer && !row.status.fails() {
                            (row.status, row.detail) = (Status::WrongCa, format!("issued by {}, not by {} ({ca})", c.issuer, m.ca.unwrap_or_default()));
                        }
                    }
                }
            }
            row
        })
        .collect()
}

/// A node that could not be reached: one row saying so.
pub fn unreachable(node: &str, why: &str) -> Row {
    Row {
        node: node.into(),
        certificate: "*".into(),
        path: "-".into(),
        expires: None,
        not_after: None,
        days_left: None,
        ca: "-".into(),
        status: Status::Unreadable,
        detail: why.into(),
    }
}

fn utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// The report as a table.
pub fn table(rows: &[Row]) -> String {
    let w_node = rows.iter().map(|r| r.node.len()).max().unwrap_or(4).max(4);
    let mut s = format!("{:<w_node$}  {:<24}  {:<20}  {:>9}  {:<14}  STATUS\n", "NODE", "CERTIFICATE", "EXPIRES", "DAYS LEFT", "CA");
    for r in rows {
        let expires = r.expires.map_or("-".to_string(), |e| {
            format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", e.year(), u8::from(e.month()), e.day(), e.hour(), e.minute())
        });
        let days = r.days_left.map_or("-".to_string(), |d| d.to_string());
        let status = if r.detail.is_empty() { r.status.label().to_string() } else { format!("{}: {}", r.status.label(), r.detail) };
        s.push_str(&format!("{:<w_node$}  {:<24}  {:<20}  {:>9}  {:<14}  {status}\n", r.node, r.certificate, expires, days, r.ca));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::pki::{CertificateAuthority, KeyAlgorithm};

    #[test]
    fn each_file_is_judged_and_named() {
        let ca = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ca_pem = ca.cert_pem().to_string();
        let kubeconfig = |pem: &str| {
            use base64::Engine;
            format!("users:\n- name: x\n  user:\n    client-certificate-data: {}\n", base64::engine::general_purpose::STANDARD.encode(pem))
        };
        let mut read = |p: &str| -> Read {
            Ok(match p {
                "/etc/kubernetes/pki/ca.crt" => Some(ca_pem.clone().into_bytes()),
                "/etc/kubernetes/pki/apiserver.crt" => Some(b"hello".to_vec()),
                "/etc/kubernetes/admin.conf" => Some(kubeconfig(&ca_pem).into_bytes()),
                "/etc/kubernetes/scheduler.conf" => Some(b"users: []\n".to_vec()),
                "/etc/kubernetes/controller-manager.conf" => Some(b"users:\n- user:\n    client-certificate: /var/x.pem\n".to_vec()),
                _ => None,
            })
        };
        let now = OffsetDateTime::now_utc();
        let rows = check_node("m1", &mut read, now, 30);
        let get = |n: &str| rows.iter().find(|r| r.certificate == n).unwrap().clone();
        assert_eq!(rows.len(), 14);
        assert_eq!(get("ca").status, Status::Ok);
        assert_eq!(get("ca").days_left, Some(3649));
        assert_eq!((get("apiserver").status, get("apiserver").detail), (Status::Invalid, "no CERTIFICATE block in it".to_string()));
        // a self-signed CA as admin.conf's client certificate: its issuer is the CA's subject
        assert_eq!(get("admin.conf").status, Status::Ok);
        assert_eq!(get("scheduler.conf").status, Status::Invalid);
        assert_eq!((get("controller-manager.conf").status, get("controller-manager.conf").path), (Status::Missing, "/var/x.pem".to_string()));
        assert_eq!(get("super-admin.conf").status, Status::Absent);
        assert!(!Status::Absent.fails() && Status::Missing.fails());
        assert_eq!(get("etcd-peer").detail, "/etc/kubernetes/pki/etcd/peer.crt does not exist");
        let t = table(&rows);
        assert!(t.starts_with("NODE  CERTIFICATE") && t.contains("NOT A CERTIFICATE: no CERTIFICATE block in it"), "{t}");
        // after notAfter: expired; inside the window: soon
        let later = now + time::Duration::days(3660);
        assert_eq!(check_node("m1", &mut read, later, 30).iter().find(|r| r.certificate == "ca").unwrap().status, Status::Expired);
        let soon = now + time::Duration::days(3640);
        assert_eq!(check_node("m1", &mut read, soon, 30).iter().find(|r| r.certificate == "ca").unwrap().status, Status::ExpiresSoon);
    }
}
