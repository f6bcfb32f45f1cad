//! The disk check, per destination with the bytes that will land there: on each node `/opt/airgap` (the
//! airgap binary, the node's packages and components, the whole bundle on the registry workers: distribute's
//! copies), the registry store on the registry workers (the bundle's image blobs, which `load` adds) and
//! containerd's content store (the images it pulls). A file already there with its size does not count
//! (the node lists what it has); destinations on one file system add up; the inventory's
//! `preflight.min_free_disk_mb` stays free on `/opt/airgap`'s file system on top of what lands there.
//! (The deploy machine's own check, for the kit, is in `install::kit`.)

use super::Report;
use crate::install::actions::human_size;
use crate::install::config::{CONTAINERD_ROOT, REGISTRY_STORE};
use crate::install::steps::distribute::{loads_bundle, Distribute};
use crate::install::{Action, Ctx, Step};
use crate::node::facts::{Disk, Facts};
use crate::site::inventory::Node;
use std::collections::BTreeMap;

/// Where airgap keeps its own files on a node (binary, packages, components, bundles).
pub const AIRGAP_DIR: &str = "/opt/airgap";
/// Where containerd keeps image blobs under its root (named by digest, like the store's).
const CONTAINERD_BLOBS: &str = "io.containerd.content.v1.content/blobs";

/// Files that land under one directory of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    pub path: &'static str,
    /// The subdirectory whose files the node lists, to tell what is already there.
    pub listed: &'static str,
    /// What lands: path relative to `path` -> size.
    pub files: BTreeMap<String, u64>,
    /// What it is, for messages.
    pub what: &'static str,
}

impl Landing {
    /// The node's `facts --disk` argument for it.
    pub fn spec(&self) -> String {
        format!("{}={}", self.path, self.listed)
    }

    pub fn total(&self) -> u64 {
        self.files.values().sum()
    }

    /// The bytes that are not on the node yet (a file there with the same size counts as there).
    fn missing(&self, d: &Disk) -> u64 {
        self.files.iter().filter(|(p, size)| d.present.get(*p) != Some(size)).map(|(_, s)| s).sum()
    }
}

/// Everything that lands on `node` in this run, per destination. The images only with `--bundle`; a
/// distribute plan that cannot be made (no packages for the node's OS) adds nothing here: the `os` check
/// says why.
pub fn landings(ctx: &Ctx, node: &Node) -> Vec<Landing> {
    let mut copies = BTreeMap::new();
    for a in Distribute.plan(ctx, node).unwrap_or_default() {
        if let Action::Copy { remote, size: Some(size), .. } = a {
            if let Some(rel) = remote.strip_prefix(AIRGAP_DIR).and_then(|r| r.strip_prefix('/')) {
                copies.insert(rel.to_string(), size);
            }
        }
    }
    let mut v = vec![Landing { path: AIRGAP_DIR, listed: "", files: copies, what: "to copy" }];
    let Some(kit) = ctx.kit else { return v };
    // the image blobs, by digest: the store and containerd's content store name them the same way
    let blobs = |under: &str| -> BTreeMap<String, u64> {
        let sizes = &kit.root().sizes;
        sizes.iter().filter_map(|(p, s)| Some((format!("{under}/{}", p.strip_prefix("images/blobs/")?), *s))).collect()
    };
    if loads_bundle(ctx.inv, node) {
        v.push(Landing { path: REGISTRY_STORE, listed: "blobs", files: blobs("blobs"), what: "of images to load" });
    }
    v.push(Landing { path: CONTAINERD_ROOT, listed: CONTAINERD_BLOBS, files: blobs(CONTAINERD_BLOBS), what: "of images to pull" });
    v
}

/// `3.4 GiB (3650722201 bytes)`
fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{} ({n} bytes)", human_size(n))
    }
}

/// Report each file system of the node that lacks the space for what lands on it.
pub(super) fn check(ctx: &Ctx, node: &Node, f: &Facts, r: &mut Report) {
    let floor = ctx.inv.preflight.min_free_disk_mb.saturating_mul(1024 * 1024);
    // per file system (device): its disk facts, what it needs, and why
    let mut fs: BTreeMap<u64, (&Disk, u64, Vec<String>)> = BTreeMap::new();
    for l in landings(ctx, node) {
        let Some(d) = f.disks.iter().find(|d| d.path == l.path) else { continue };
        let e = fs.entry(d.device).or_insert((d, 0, Vec::new()));
        let missing = l.missing(d);
        let mut why = format!("{}: {} {}", l.path, human_size(missing), l.what);
        e.1 += missing;
        if l.path == AIRGAP_DIR {
            e.1 += floor;
            why.push_str(&format!(" + {} (preflight.min_free_disk_mb)", human_size(floor)));
        }
        e.2.push(why);
    }
    for (_, (d, need, why)) in fs {
        if d.free < need {
            r.add(
                &node.name,
                "disk",
                format!("{} needed on the file system of {}, {} free ({})", bytes(need), d.mount, bytes(d.free), why.join("; ")),
            );
        }
    }
}
