//! preflight's central evaluation on made-up facts: what counts as a problem, and how it is told.

use super::*;
use crate::node::facts::{Holder, Listener};
use crate::site::inventory::Inventory;

pub(super) fn example_inventory() -> Inventory {
    Inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml"))).unwrap()
}

/// Healthy facts for every node of `inv`, each holding its address on its inventory `interface:` or `ens3`.
pub(super) fn healthy(inv: &Inventory) -> BTreeMap<String, (Facts, i64)> {
    let facts = |n: &Node| Facts::example(&n.name, n.address, n.interface.as_deref().unwrap_or("ens3"));
    inv.nodes.iter().map(|n| (n.name.clone(), (facts(n), 0))).collect()
}

/// The problems (node, message) preflight reports for these facts.
pub(super) fn problems(inv: &Inventory, facts: &BTreeMap<String, (Facts, i64)>) -> Vec<(String, String)> {
    let warn = |_: &str| {};
    let ctx = Ctx { inv, bundle: None, binary: None, pubkey: None, kit: None, targets: &Default::default(), warn: &warn };
    let mut r = Report::new(&inv.preflight.ignore);
    evaluate(&ctx, facts, &mut r);
    r.problems
}

#[test]
fn healthy_nodes_pass() {
    let inv = example_inventory();
    assert_eq!(problems(&inv, &healthy(&inv)), vec![]);
}

#[test]
fn a_node_whose_address_is_on_no_interface_is_named_with_the_address() {
    let inv = example_inventory();
    let mut facts = healthy(&inv);
    // master2's inventory address is not on the node (a typo, or an address behind NAT)
    let f = &mut facts.get_mut("master2").unwrap().0;
    f.addresses[0].address = "10.20.0.99".parse().unwrap();
    // worker1's inventory says `interface: ens192`, which the node does not have
    let f = &mut facts.get_mut("worker1").unwrap().0;
    f.addresses[0].interface = "ens3".into();
    f.macs[0].0 = "ens3".into();
    let p = problems(&inv, &facts);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].0, "master2");
    assert_eq!(
        p[0].1,
        "its inventory address 10.20.0.12 is on none of its interfaces (ens3 10.20.0.99/24): the VIPs and the cluster use that address"
    );
    assert_eq!((p[1].0.as_str(), p[1].1.as_str()), ("worker1", "it has no interface \"ens192\" (the inventory's `interface:`); it has ens3"));
}

fn listener(port: u16, holders: &[(u32, &str, Option<&str>)]) -> Listener {
    let holders = holders.iter().map(|(pid, comm, unit)| Holder { pid: *pid, comm: comm.to_string(), unit: unit.map(String::from) }).collect();
    Listener { port, holders }
}

#[test]
fn airgaps_own_services_on_their_ports_are_no_conflict_on_a_re_run() {
    let inv = example_inventory();
    let mut facts = healthy(&inv);
    // what registry, apiserver-lb and nginx leave running (nginx: a master and its workers)
    for w in ["worker1", "worker2"] {
        facts.get_mut(w).unwrap().0.listening = vec![
            listener(80, &[(900, "nginx", Some("nginx.service")), (901, "nginx", Some("nginx.service"))]),
            listener(443, &[(900, "nginx", Some("nginx.service")), (901, "nginx", Some("nginx.service"))]),
            listener(5000, &[(812, "airgap", Some("airgap-registry.service"))]),
            listener(22, &[(300, "sshd", Some("ssh.service"))]),
        ];
    }
    for m in ["master1", "master2", "master3"] {
        facts.get_mut(m).unwrap().0.listening = vec![listener(16443, &[(700, "haproxy", Some("haproxy.service")), (701, "haproxy", Some("haproxy.service"))])];
    }
    assert_eq!(problems(&inv, &facts), vec![]);
}

#[test]
fn a_foreign_process_on_a_needed_port_is_named() {
    let inv = example_inventory();
    let mut facts = healthy(&inv);
    // someone's registry on :5000, in a login session; an apache on :80 and :443
    facts.get_mut("worker1").unwrap().0.listening = vec![
        listener(80, &[(950, "apache2", Some("apache2.service")), (951, "apache2", Some("apache2.service"))]),
        listener(443, &[(950, "apache2", Some("apache2.service"))]),
        listener(5000, &[(4242, "python3", None)]),
    ];
    // haproxy, but on the registry's port; airgap's registry on a master's apiserver port; nothing to tell
    facts.get_mut("worker2").unwrap().0.listening = vec![listener(5000, &[(700, "haproxy", Some("haproxy.service"))])];
    facts.get_mut("master1").unwrap().0.listening = vec![
        listener(6443, &[(812, "airgap", Some("airgap-registry.service"))]),
        listener(16443, &[]),
    ];
    // haproxy sharing :16443 with another process: the port is not airgap's alone
    facts.get_mut("master2").unwrap().0.listening = vec![listener(16443, &[(700, "haproxy", Some("haproxy.service")), (4243, "socat", None)])];
    let p = problems(&inv, &facts);
    let got: Vec<String> = p.iter().map(|(n, m)| format!("{n}: {m}")).collect();
    assert_eq!(
        got,
        [
            "master1: TCP ports already in use: 6443 by `airgap` (pid 812, airgap-registry.service); 16443 by a process the node could not tell (find it with `ss -ltnp`)",
            "master2: TCP port already in use: 16443 by `haproxy` (pid 700, haproxy.service) and `socat` (pid 4243)",
            "worker1: TCP ports already in use: 80 by `apache2` (pids 950, 951, apache2.service); 443 by `apache2` (pid 950, apache2.service); 5000 by `python3` (pid 4242)",
            "worker2: TCP port already in use: 5000 by `haproxy` (pid 700, haproxy.service)",
        ]
    );
}
