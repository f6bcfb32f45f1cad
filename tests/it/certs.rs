//! `airgap certs check` against the lab: kubeadm's PKI in its exact layout and validity on the three masters
//! (made with rcgen, see support::kubepki), read over real SSH, with an expired certificate, two inside the
//! warning window, a missing one and one that is not a certificate: each named, exit 1; then all fixed: exit 0.

use crate::support::kubepki::{write_control_plane, Ca};
use crate::support::lab::Lab;
use time::Duration;

fn certs(site: &std::path::Path, state: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let mut c = crate::support::airgap();
    c.args(["certs", "check", "--inventory"]).arg(site).arg("--state-dir").arg(state).args(extra);
    crate::support::bundle::run(&mut c)
}

/// The lab's masters with kubeadm's PKI (`aged`: master2's three leaves expired or near expiry).
pub fn pki_on_masters(lab: &Lab, aged: bool) -> [Ca; 3] {
    let cas = [Ca::new("kubernetes"), Ca::new("etcd-ca"), Ca::new("front-proxy-ca")];
    for (i, m) in ["master1", "master2", "master3"].iter().enumerate() {
        let aged: Vec<(&str, Duration)> = if *m == "master2" && aged {
            // expired 5 days ago; expiring in ~10 and ~20 days
            vec![("apiserver", Duration::days(370)), ("front-proxy-client", Duration::days(355)), ("controller-manager.conf", Duration::days(345))]
        } else {
            vec![]
        };
        write_control_plane(&lab.root(m), m, &cas, &aged, i == 0);
    }
    cas
}

#[test]
fn certs_check_names_expired_soon_missing_and_broken_certificates_in_the_lab() {
    let _slot = crate::support::lab_slot();
    let Some(lab) = Lab::up(5) else { return };
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site.yaml");
    lab.inventory(&site, "");
    let state = dir.path().join("state");
    pki_on_masters(&lab, true);
    // master2: etcd's peer certificate missing, scheduler.conf's client certificate not a certificate
    let m2 = lab.root("master2").join("etc/kubernetes");
    fs_err::remove_file(m2.join("pki/etcd/peer.crt")).unwrap();
    let sched = fs_err::read_to_string(m2.join("scheduler.conf")).unwrap();
    let garbage = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    let start = sched.find("client-certificate-data: ").unwrap() + "client-certificate-data: ".len();
    let end = start + sched[start..].find('\n').unwrap();
    fs_err::write(m2.join("scheduler.conf"), format!("{}{garbage}{}", &sched[..start], &sched[end..])).unwrap();
    // master3: apiserver.crt is a private key, not a certificate
    fs_err::write(lab.root("master3").join("etc/kubernetes/pki/apiserver.crt"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();

    let (code, table, err) = certs(&site, &state, &["--warn-days", "30"]);
    eprintln!("{table}{err}");
    assert_eq!(code, 1, "{table}{err}");
    let line = |node: &str, cert: &str| table.lines().find(|l| l.starts_with(node) && l.split_whitespace().nth(1) == Some(cert)).unwrap_or_else(|| panic!("no row {node} {cert}:\n{table}")).to_string();
    assert!(line("master2", "apiserver").contains("EXPIRED: expired 5 day(s) ago"), "{table}");
    assert!(line("master2", "front-proxy-client").contains("EXPIRES SOON"), "{table}");
    assert!(line("master2", "front-proxy-client").contains("front-proxy-ca"), "{table}");
    assert!(line("master2", "controller-manager.conf").contains("EXPIRES SOON"), "{table}");
    assert!(line("master2", "etcd-peer").contains("MISSING: /etc/kubernetes/pki/etcd/peer.crt does not exist"), "{table}");
    assert!(line("master2", "scheduler.conf").contains("NOT A CERTIFICATE: client-certificate-data: "), "{table}");
    assert!(line("master3", "apiserver").contains("NOT A CERTIFICATE: no CERTIFICATE block in it"), "{table}");
    assert!(line("master1", "super-admin.conf").contains(" ok"), "{table}");
    assert!(line("master3", "super-admin.conf").contains("absent (optional)"), "{table}");
    // kubeadm's validity: CAs 87600h, leaves 8760h (issued a day ago here)
    assert!(line("master1", "ca").contains(" 3649 "), "{table}");
    assert!(line("master1", "apiserver").contains(" ok") && line("master1", "apiserver").contains(" 363 "), "{table}");
    // 3 masters x 14 rows
    assert_eq!(table.lines().count(), 1 + 42, "{table}");
    assert!(err.contains("6 certificate(s) need attention"), "{err}");
    // a wider window catches more; JSON carries the same
    let (code, json, _) = certs(&site, &state, &["--json", "--warn-days", "400"]);
    assert_eq!(code, 1);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let soon = rows.iter().filter(|r| r["status"] == "expires-soon").count();
    // every valid leaf (1 year) but not the CAs (10 years): master1 11, master2 7, master3 9
    assert_eq!(soon, 27, "{json}");

    // fixed: everything valid, exit 0
    pki_on_masters(&lab, false);
    let (code, table, err) = certs(&site, &state, &[]);
    assert_eq!(code, 0, "{table}{err}");
    assert!(!table.contains("EXPIRED") && !table.contains("MISSING"), "{table}");
    lab.down();
}
