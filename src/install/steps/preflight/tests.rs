//! preflight's central evaluation on made-up facts: what counts as a problem, and how it is told.

use super::*;
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
