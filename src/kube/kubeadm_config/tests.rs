use super::*;
use crate::kube::{images, kubeadm_api};

const TOKEN: &str = "abcdef.0123456789abcdef";
const CERT_KEY: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";
const CA_PIN: &str = "sha256:1d0c68d4e85fa8aa463b193d708a599dbfaf5abcab4d561b6706d9f1ffceb212";

fn node(name: &str, address: &str) -> NodeInput {
    NodeInput { name: name.into(), address: address.parse().unwrap() }
}

/// The example site: 3 masters behind the VIP 10.0.0.100, the registry on the workers' VIP 10.0.0.200.
fn example(version: &str) -> ClusterInput {
    ClusterInput::new(
        version.parse().unwrap(),
        "plant-a",
        "10.0.0.100".parse().unwrap(),
        vec![node("master1", "10.0.0.11"), node("master2", "10.0.0.12"), node("master3", "10.0.0.13")],
        "10.0.0.200".parse().unwrap(),
        "10.244.0.0/16".parse().unwrap(),
        "10.96.0.0/12".parse().unwrap(),
    )
}

fn secrets() -> JoinSecrets {
    JoinSecrets { token: TOKEN.parse().unwrap(), certificate_key: CERT_KEY.parse().unwrap(), ca_cert_hash: CA_PIN.parse().unwrap() }
}

fn worker1() -> NodeInput {
    node("worker1", "10.0.0.21")
}

#[test]
fn init_snapshot() {
    let c = example("v1.36.3");
    insta::assert_snapshot!("init_real", render_init(&c, &secrets(), Secrets::Real).unwrap());
    insta::assert_snapshot!("init_redacted", render_init(&c, &secrets(), Secrets::Redacted).unwrap());
}

#[test]
fn join_snapshots() {
    let c = example("v1.36.3");
    let m2 = c.masters[1].clone();
    insta::assert_snapshot!("join_master2_real", render_join(&c, &m2, JoinRole::ControlPlane, &secrets(), Secrets::Real).unwrap());
    insta::assert_snapshot!(
        "join_master2_redacted",
        render_join(&c, &m2, JoinRole::ControlPlane, &secrets(), Secrets::Redacted).unwrap()
    );
    insta::assert_snapshot!("join_worker1_redacted", render_join(&c, &worker1(), JoinRole::Worker, &secrets(), Secrets::Redacted).unwrap());
}

#[test]
fn renders_round_trip_through_the_typed_parser_for_each_supported_release() {
    for v in ["v1.35.0", "v1.35.7", "v1.36.0", "v1.36.3"] {
        let c = example(v);
        let k8s = c.kubernetes_version;
        let init = render_init(&c, &secrets(), Secrets::Real).unwrap();
        assert_eq!(kubeadm_api::parse_documents_for(&init, &k8s).unwrap(), init_documents(&c, &secrets()).unwrap(), "{v}");
        for (n, role) in [(&c.masters[1], JoinRole::ControlPlane), (&c.masters[2], JoinRole::ControlPlane), (&worker1(), JoinRole::Worker)] {
            let y = render_join(&c, n, role, &secrets(), Secrets::Real).unwrap();
            assert_eq!(kubeadm_api::parse_documents_for(&y, &k8s).unwrap(), join_documents(&c, n, role, &secrets()).unwrap());
            // the masked rendering is a structurally valid configuration too
            kubeadm_api::parse_documents_for(&render_join(&c, n, role, &secrets(), Secrets::Redacted).unwrap(), &k8s).unwrap();
        }
        kubeadm_api::parse_documents_for(&render_init(&c, &secrets(), Secrets::Redacted).unwrap(), &k8s).unwrap();
    }
}

#[test]
fn secrets_appear_only_in_the_real_rendering() {
    let c = example("v1.36.3");
    let m2 = c.masters[1].clone();
    let all = [
        (render_init(&c, &secrets(), Secrets::Real).unwrap(), render_init(&c, &secrets(), Secrets::Redacted).unwrap()),
        (
            render_join(&c, &m2, JoinRole::ControlPlane, &secrets(), Secrets::Real).unwrap(),
            render_join(&c, &m2, JoinRole::ControlPlane, &secrets(), Secrets::Redacted).unwrap(),
        ),
        (
            render_join(&c, &worker1(), JoinRole::Worker, &secrets(), Secrets::Real).unwrap(),
            render_join(&c, &worker1(), JoinRole::Worker, &secrets(), Secrets::Redacted).unwrap(),
        ),
    ];
    for (real, masked) in &all {
        assert!(real.contains(TOKEN), "{real}");
        for secret in [TOKEN, "0123456789abcdef", CERT_KEY] {
            assert!(!masked.contains(secret), "{masked}");
        }
        assert!(masked.contains(kubeadm_api::REDACTED));
        assert_eq!(real.contains(CA_PIN), masked.contains(CA_PIN), "the CA pin is public");
        assert_eq!(real.lines().count(), masked.lines().count());
    }
    assert!(all[0].0.contains(CERT_KEY) && all[1].0.contains(CERT_KEY) && !all[2].0.contains(CERT_KEY));
}

#[test]
fn what_the_site_needs_is_where_kubeadm_reads_it() {
    let c = example("v1.36.3");
    let docs = init_documents(&c, &secrets()).unwrap();
    let Document::Cluster(cc) = &docs[1] else { panic!() };
    assert_eq!(cc.control_plane_endpoint.as_deref(), Some("10.0.0.100:16443"));
    assert_eq!(cc.image_repository.as_deref(), Some("10.0.0.200:5000"));
    assert_eq!(
        cc.api_server.as_ref().unwrap().cert_sans.as_deref().unwrap(),
        ["10.0.0.100", "10.0.0.11", "master1", "10.0.0.12", "master2", "10.0.0.13", "master3"]
    );
    // every image kubeadm will pull then comes from the site registry, under its upstream path
    let set = images::images_for(&c.kubernetes_version).unwrap();
    let pulled = set.pulled_with(cc);
    assert_eq!(pulled, set.at_site("10.0.0.200:5000"));
    for (r, up) in pulled.iter().zip(set.upstream()) {
        assert_eq!(r.strip_prefix("10.0.0.200:5000/"), up.strip_prefix("registry.k8s.io/"), "{r}");
    }
    assert!(pulled.contains(&"10.0.0.200:5000/coredns/coredns:v1.14.2".to_string()));
    let Document::Init(init) = &docs[0] else { panic!() };
    let reg = init.node_registration.as_ref().unwrap();
    assert_eq!(reg.kubelet_extra_args.as_deref().unwrap(), [Arg::new("node-ip", "10.0.0.11")]);
    assert_eq!(reg.taints, None, "the default control-plane taint stays");
    assert_eq!(init.local_api_endpoint.as_ref().unwrap().bind_port, Some(6443));
}

#[test]
fn cgroup_v1_sites_get_the_upstream_escape_hatch() {
    let mut c = example("v1.35.7");
    c.allow_cgroup_v1 = true;
    let y = render_init(&c, &secrets(), Secrets::Redacted).unwrap();
    assert!(y.contains("failCgroupV1: false"), "{y}");
    assert!(y.contains("ignorePreflightErrors:\n  - SystemVerification"), "{y}");
    let j = render_join(&c, &worker1(), JoinRole::Worker, &secrets(), Secrets::Redacted).unwrap();
    assert!(j.contains("- SystemVerification"), "{j}");
    assert!(!render_init(&example("v1.35.7"), &secrets(), Secrets::Real).unwrap().contains("Cgroup"));
}

#[test]
fn ipv6_and_options() {
    let mut c = example("v1.36.3");
    c.control_plane_endpoint = "[fd00::100]:16443".parse().unwrap();
    c.dns_domain = Some("plant.local".into());
    c.extra_cert_sans = vec!["api.plant.local".into(), "10.0.0.11".into()];
    c.key_algorithm = KeyAlgorithm::EcdsaP256;
    c.token_ttl = Duration::from_hours(48);
    let y = render_init(&c, &secrets(), Secrets::Real).unwrap();
    assert!(y.contains("controlPlaneEndpoint: '[fd00::100]:16443'"), "{y}");
    assert!(y.contains("dnsDomain: plant.local") && y.contains("encryptionAlgorithm: ECDSA-P256"), "{y}");
    assert!(y.contains("ttl: 48h0m0s"), "{y}");
    assert_eq!(c.cert_sans().iter().filter(|s| *s == "10.0.0.11").count(), 1);
    assert!(c.cert_sans().ends_with(&["api.plant.local".to_string()]));
    kubeadm_api::parse_documents_for(&y, &c.kubernetes_version).unwrap();
}

#[test]
fn refuses_what_kubeadm_would_trip_over() {
    let s = secrets();
    let e = render_init(&example("v1.30.14"), &s, Secrets::Real).unwrap_err().to_string();
    assert!(e.contains("v1.30.14") && e.contains("v1.31.0 up to v1.36.x"), "{e}");
    let c = example("v1.36.3");
    let e = render_join(&c, &c.masters[0], JoinRole::ControlPlane, &s, Secrets::Real).unwrap_err().to_string();
    assert!(e.contains("master1 is the first master"), "{e}");
    let e = render_join(&c, &c.masters[1], JoinRole::Worker, &s, Secrets::Real).unwrap_err().to_string();
    assert!(e.contains("master2 is a master"), "{e}");
    let e = render_join(&c, &worker1(), JoinRole::ControlPlane, &s, Secrets::Real).unwrap_err().to_string();
    assert!(e.contains("worker1 (10.0.0.21) is not one of the cluster's masters"), "{e}");
    let mut bad = example("v1.36.3");
    bad.service_subnet = "10.244.128.0/20".parse().unwrap();
    assert!(render_init(&bad, &s, Secrets::Real).unwrap_err().to_string().contains("overlap"));
    let mut bad = example("v1.36.3");
    bad.image_repository = "http://10.0.0.200:5000".into();
    assert!(render_init(&bad, &s, Secrets::Real).unwrap_err().to_string().contains("no scheme"));
    let mut bad = example("v1.36.3");
    bad.masters.clear();
    assert!(render_init(&bad, &s, Secrets::Real).unwrap_err().to_string().contains("no master"));
    let mut bad = example("v1.36.3");
    bad.token_ttl = Duration::from_secs(0);
    assert!(render_init(&bad, &s, Secrets::Real).unwrap_err().to_string().contains("TTL"));
}
