//! What the infrastructure steps (runtime, registry, apiserver-lb, nginx) share: the [`Site`] built from the
//! inventory and the bundle, the bundle + public key on the node, offline package installation, config
//! files, and systemd services restarted only when their configuration changed.

use super::kit::REMOTE_FILES_DIR;
use crate::node::packages::PACKAGES_DIR;
use super::{node_cmd, Action, Ctx, REMOTE_BUNDLE_DIR};
use crate::node::components::Component;
use crate::digest::Digest;
use crate::error::HintExt;
use crate::install::config::{FileSpec, Peer, Site};
use crate::site::inventory::Node;
use anyhow::{anyhow, Context, Result};


/// Where the bundle signers' public key goes on the nodes.
pub const REMOTE_PUBKEY: &str = "/opt/airgap/bundle.pub";

fn peer(ctx: &Ctx, n: &Node) -> Peer {
    let interface = n.interface.clone().unwrap_or_else(|| {
        (ctx.warn)(&format!("{} has no `interface:` in the inventory: keepalived will use eth0 (set it if the node's NIC has another name)", n.name));
        "eth0".to_string()
    });
    Peer { name: n.name.clone(), ip: n.address, interface }
}

/// The upstream host of an image reference, as containerd names its hosts.toml directory.
pub fn reference_host(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or("");
    if reference.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        first.to_string()
    } else {
        "docker.io".to_string()
    }
}

/// The sandbox image of the bundle (`.../pause:TAG`) as a path in the site registry: `pause:TAG`.
fn pause_image(references: &[String]) -> Option<String> {
    references.iter().find_map(|r| {
        let no_digest = r.split('@').next().unwrap_or(r);
        let path = if reference_host(r) == "docker.io" && !r.starts_with("docker.io/") {
            no_digest.to_string()
        } else {
            no_digest.split_once('/').map(|(_, p)| p.to_string()).unwrap_or_default()
        };
        let (repo, _tag) = path.rsplit_once(':')?;
        (repo == "pause" || repo.ends_with("/pause")).then_some(path)
    })
}

/// The site as the infrastructure templates see it.
pub fn site(ctx: &Ctx) -> Result<Site> {
    let masters = ctx.inv.masters().map(|n| peer(ctx, n)).collect();
    let registry_workers = ctx.inv.workers().take(2).map(|n| peer(ctx, n)).collect();
    // without --bundle (plan, status), the default upstream hosts and sandbox image stand in
    // (the kit holds the root document read once per run; a --bundle that is no bundle fails here)
    let references: Vec<String> = match (ctx.kit, ctx.bundle) {
        (Some(kit), _) => kit.root.images.iter().map(|i| i.reference.clone()).collect(),
        (None, Some(_)) => bundle_root(ctx)?.images.iter().map(|i| i.reference.clone()).collect(),
        (None, None) => vec![],
    };
    let mut upstream_hosts: Vec<String> = references.iter().map(|r| reference_host(r)).collect();
    upstream_hosts.extend(["registry.k8s.io", "docker.io", "ghcr.io", "quay.io"].map(String::from));
    upstream_hosts.sort();
    upstream_hosts.dedup();
    let site = Site {
        masters,
        registry_workers,
        masters_vip: ctx.inv.vips.masters,
        workers_vip: ctx.inv.vips.workers,
        vip_prefix: ctx.inv.network.node_subnet.prefix_len(),
        masters_vrid: ctx.inv.vips.masters_router_id,
        workers_vrid: ctx.inv.vips.workers_router_id,
        upstream_hosts,
        pause_image: pause_image(&references).unwrap_or_else(|| "pause:3.10".into()),
        snapshotter: "overlayfs".into(),
        airgap_bin: crate::node::BIN.into(),
    };
    site.validate()?;
    Ok(site)
}

/// The bundle's root document (the first entry; trusted only after the nodes' verified reads).
pub fn bundle_root(ctx: &Ctx) -> Result<crate::bundle::format::RootDoc> {
    let files = ctx
        .bundle
        .ok_or_else(|| anyhow!("this step needs the bundle"))
        .hint("pass --bundle PATH and --pubkey KEY.pub")?;
    let first = files.first().context("the bundle has no file")?;
    let source = crate::bundle::source::BundleSource::open(&first.path)?;
    crate::bundle::read::read_root(&source)
}

/// The bundle (all its files) and the public key on the node; returns the node's bundle path.
pub fn bundle_on_node(ctx: &Ctx, actions: &mut Vec<Action>) -> Result<String> {
    actions.extend(bundle_copies(ctx));
    let Some(first) = ctx.bundle.and_then(|f| f.first()) else {
        return Ok(format!("{REMOTE_BUNDLE_DIR}/<bundle>"));
    };
    actions.push(pubkey_copy(ctx).unwrap_or_else(|| Action::Copy {
        local: "<--pubkey KEY.pub>".into(),
        remote: REMOTE_PUBKEY.into(),
        mode: 0o644,
        sha256: None,
        size: None,
    }));
    Ok(format!("{REMOTE_BUNDLE_DIR}/{}", first.file_name()))
}

/// The bundle's files (archive or parts + signatures) copied to the node; without --bundle (plan, status), a
/// placeholder that check and apply refuse with a hint.
pub fn bundle_copies(ctx: &Ctx) -> Vec<Action> {
    match ctx.bundle.filter(|f| !f.is_empty()) {
        Some(files) => files
            .iter()
            .map(|f| Action::Copy {
                local: f.path.display().to_string(),
                remote: format!("{REMOTE_BUNDLE_DIR}/{}", f.file_name()),
                mode: 0o644,
                sha256: Some(f.sha256.clone()),
                size: Some(f.size),
            })
            .collect(),
        None => vec![Action::Copy {
            local: "<--bundle: the .tar.zst or every part, and their signatures>".into(),
            remote: format!("{REMOTE_BUNDLE_DIR}/"),
            mode: 0o644,
            sha256: None,
            size: None,
        }],
    }
}

/// The bundle signers' public key copied to the node (the registry workers verify the bundle before loading it).
pub fn pubkey_copy(ctx: &Ctx) -> Option<Action> {
    ctx.pubkey.map(|pubkey| Action::Copy {
        local: pubkey.path.display().to_string(),
        remote: REMOTE_PUBKEY.into(),
        mode: 0o644,
        sha256: Some(pubkey.sha256.clone()),
        size: Some(pubkey.size),
    })
}

/// Install OS packages offline from the packages distribute copied (`a|b`: the first the node's OS has).
pub fn packages(wanted: &[&str]) -> Action {
    let list = wanted.join(",");
    Action::Command {
        argv: node_cmd(&["packages", "--install", &list, "--dir", PACKAGES_DIR]),
        check: Some(node_cmd(&["packages", "--install", &list, "--check"])),
        why: format!("install {} from the bundle's OS packages (offline)", wanted.join(", ")),
    }
}

/// Where distribute puts a bundle file on the nodes.
pub fn remote_file(path: &str) -> String {
    format!("{REMOTE_FILES_DIR}/{path}")
}

/// Install component `c` on the node from the file distribute copied for its platform. `None` when the
/// bundle has no such component. Without the node's facts (`plan`), a placeholder names the choice.
pub fn component(ctx: &Ctx, node: &Node, c: Component) -> Option<Action> {
    let kit = ctx.kit?;
    if !kit.has_component(c) {
        return None;
    }
    let why = format!("install {c} from the bundle into {}", c.destination());
    let Some(target) = ctx.targets.get(&node.name) else {
        return Some(Action::Command {
            argv: node_cmd(&["component", c.name(), "--file", &remote_file("<the file for the node's platform>"), "--sha256", "<its sha256>"]),
            check: None,
            why,
        });
    };
    match kit.component_for(c, &target.platform) {
        Some(f) => Some(Action::Command {
            argv: node_cmd(&["component", c.name(), "--file", &remote_file(&f.path), "--sha256", &f.sha256]),
            check: Some(node_cmd(&["component", c.name(), "--file", &remote_file(&f.path), "--sha256", &f.sha256, "--check"])),
            why,
        }),
        // preflight names a platform the bundle lacks; a component missing for one platform is refused at build
        None => Some(Action::Command {
            argv: vec!["false".into()],
            check: None,
            why: format!("the bundle has no {c} for {} ({}): build it with this platform", target.platform, node.name),
        }),
    }
}

pub fn files(specs: &[FileSpec]) -> Vec<Action> {
    specs
        .iter()
        .map(|f| Action::File { path: f.path.clone(), mode: f.mode, content: f.content.clone(), block: None })
        .collect()
}

/// Hash of a service's configuration: changes exactly when one of its files changes.
pub fn config_hash(specs: &[FileSpec]) -> String {
    let mut s = String::new();
    for f in specs {
        s.push_str(&format!("{}\0{:o}\0{}\0", f.path, f.mode, f.content));
    }
    Digest::of_bytes(s.as_bytes()).hex().to_string()
}

/// The service enabled and running with this configuration (validated by `validate` before a restart).
pub fn service(name: &str, specs: &[FileSpec], require: &[&str], validate: &[&str], restart: bool) -> Action {
    let hash = config_hash(specs);
    let mut argv = node_cmd(&["service", name, "--hash", &hash]);
    if restart {
        argv.push("--restart".into());
    }
    for r in require {
        argv.extend(["--require".to_string(), r.to_string()]);
    }
    if !validate.is_empty() {
        argv.push("--".into());
        argv.extend(validate.iter().map(|s| s.to_string()));
    }
    Action::Command {
        argv,
        check: Some(node_cmd(&["service", name, "--hash", &hash, "--check"])),
        why: format!("{name} enabled and running with its current configuration"),
    }
}

/// The daemon answers (the step is done only then).
pub fn answers(what: &str, kind: &str, target: &str) -> Action {
    Action::Command {
        argv: node_cmd(&[kind, target, "--wait-secs", "20"]),
        check: Some(node_cmd(&[kind, target])),
        why: format!("{what} answers on {target}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_pause_come_from_references() {
        assert_eq!(reference_host("registry.k8s.io/pause:3.10"), "registry.k8s.io");
        assert_eq!(reference_host("nginx:1.25"), "docker.io");
        assert_eq!(reference_host("library/nginx:1.25"), "docker.io");
        assert_eq!(reference_host("127.0.0.1:5001/test/app:v1"), "127.0.0.1:5001");
        let refs = ["docker.io/library/nginx:1".to_string(), "registry.k8s.io/pause:3.10".into()];
        assert_eq!(pause_image(&refs).unwrap(), "pause:3.10");
        assert_eq!(pause_image(&["127.0.0.1:5001/airgap/pause:3.9".to_string()]).unwrap(), "airgap/pause:3.9");
        assert_eq!(pause_image(&["nginx:1".to_string()]), None);
    }
}
