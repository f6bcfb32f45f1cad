//! runtime: the container runtime and the Kubernetes node binaries, pulling only from the site registry.
//!
//! - containerd + runc: the bundle's static releases (`install: containerd` / `install: runc` files, for the
//!   node's platform) under /usr/local with containerd's own systemd unit; a bundle without them falls back
//!   to the OS packages it carries (`containerd`|`containerd.io`, `runc`).
//! - CNI plugins (/opt/cni/bin), crictl (+ /etc/crictl.yaml), kubeadm, kubelet, kubectl: from the bundle when
//!   it carries them (the kubelet's unit comes with the kubeadm step).
//! - containerd's config, in the layout of the containerd the node gets (config `version = 3` for the
//!   bundle's containerd 2.x, `version = 2` for 1.6 / 1.7 or a version the bundle does not tell: see
//!   `config::containerd`): `SystemdCgroup`, the sandbox image from the site registry, and
//!   `/etc/containerd/certs.d/<host>/hosts.toml` sending every upstream host of the bundle (and
//!   registry.k8s.io, docker.io, ghcr.io, quay.io) to `http://<workers' VIP>:5000` only.
//! - docker, when the node has it: `insecure-registries` lists the site registry. With `runtime.docker: true`
//!   docker is installed from the bundle's OS packages (`docker.io` on Debian, `docker-ce` / `docker` on the
//!   RHEL family) and its daemon.json also gets the site registry in `registry-mirrors` (Docker Hub names by
//!   their original name) and json-file logs with the inventory's `max-size` / `max-file`.

use crate::install::config::containerd::ContainerdRelease;
use crate::install::config::{render, FileSpec, Site};
use crate::install::ssh::Transport;
use crate::install::{actions, node_cmd, registry_credentials, services, software, Action, Ctx, Step};
use crate::node::components::Component;
use crate::site::inventory::Node;
use anyhow::Result;

pub struct Runtime;

impl Step for Runtime {
    fn name(&self) -> &'static str {
        "runtime"
    }
    fn summary(&self) -> &'static str {
        "containerd + runc (+ CNI plugins, crictl, kubeadm/kubelet/kubectl) from the bundle, pulling only from the site registry"
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let site = Site::of(ctx)?;
        let mut v = Vec::new();
        let is_static = |comp| ctx.kit.is_some_and(|k| k.has_component(comp));
        let (static_containerd, static_runc) = (is_static(Component::Containerd), is_static(Component::Runc));
        let mut os_packages = Vec::new();
        if !static_containerd {
            os_packages.push("containerd|containerd.io");
        }
        if !static_runc {
            os_packages.push("runc");
        }
        if !os_packages.is_empty() {
            v.push(software::packages(&os_packages));
        }
        let docker = &ctx.inv.runtime;
        let mut components = Vec::new();
        for comp in Component::ALL {
            if let Some(a) = software::component(ctx, node, comp) {
                components.push(comp);
                v.push(a);
            }
        }
        if ctx.kit.is_some() && !components.contains(&Component::CniPlugins) {
            (ctx.warn)("the bundle carries no cni-plugins (`install: cni-plugins`): pods need /opt/cni/bin (bridge, host-local, loopback, portmap) for flannel");
        }
        let mut specs = render::runtime(&site, &ContainerdRelease::of(ctx, node))?;
        if static_containerd {
            specs.push(render::containerd_unit(Component::Containerd.destination())?);
        }
        if components.contains(&Component::Crictl) {
            specs.push(render::crictl_yaml()?);
        }
        v.extend(services::files(&specs));
        // the service restarts when its configuration or its binaries (the bundle's files) change
        let mut hashed = specs.clone();
        for a in &v {
            if let Action::Command { argv, .. } = a {
                hashed.push(FileSpec::new("<command>", 0, argv.join(" ")));
            }
        }
        v.push(services::service("containerd", &hashed, &[render::CONTAINERD_CONFIG], &["containerd", "--config", render::CONTAINERD_CONFIG, "config", "dump"], true));
        if docker.docker {
            // after containerd: docker's packages must not replace the bundle's containerd unit or config
            v.push(software::packages(&["docker.io|docker-ce|docker"]));
            v.extend(docker_settings(&site, &docker.docker_log_max_size, docker.docker_log_max_file));
            v.push(Action::Command {
                argv: vec!["systemctl".into(), "enable".into(), "--now".into(), "docker".into()],
                check: Some(vec!["systemctl".into(), "is-active".into(), "--quiet".into(), "docker".into()]),
                why: "docker enabled and running".into(),
            });
        } else if site.external.is_none() {
            v.push(Action::Command {
                argv: node_cmd(&["docker-registry", &site.registry()]),
                check: Some(node_cmd(&["docker-registry", &site.registry(), "--check"])),
                why: "docker (only if the node has it) trusts the site registry (insecure-registries)".into(),
            });
        }
        // every file holding the external registry's credentials (hosts.toml, docker's auth) is a secret file
        Ok(registry_credentials::masked(v))
    }
    // the external registry's credentials: `<secret>` in the plan, the real value only in what is written
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<Vec<String>> {
        actions::check_all(&registry_credentials::fill(ctx, self.plan(ctx, node)?)?, t)
    }
    fn apply(&self, ctx: &Ctx, node: &Node, t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
        actions::apply_all(&registry_credentials::fill(ctx, self.plan(ctx, node)?)?, t, progress)
    }
}

/// Where docker finds the site's own registry's CA (docker looks it up by the registry's `HOST[:PORT]` as
/// image names write it).
pub fn docker_ca_path(host: &str) -> String {
    format!("/etc/docker/certs.d/{host}/ca.crt")
}

/// The site registry's credentials as a docker config.json (0600, `<secret>` in the plan), merged into
/// root's `~/.docker/config.json` by `airgap node docker-auth`.
pub const DOCKER_AUTH: &str = "/etc/airgap/docker-auth.json";

/// Docker Hub's key in a docker config.json: the credentials docker sends for Docker Hub names, to its
/// mirror too.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// docker's settings for the site registry, json-file logs within the inventory's limits.
///
/// - the built-in registry (plain HTTP on the workers' VIP): in `insecure-registries`, and `http://VIP:5000`
///   in `registry-mirrors` (docker sends Docker Hub names, and only those, to its mirrors);
/// - the site's own registry (`registry.external`, TLS): never insecure; its CA in
///   `/etc/docker/certs.d/HOST[:PORT]/ca.crt`; `https://HOST[:PORT]` in `registry-mirrors` only when it has
///   no prefix (a mirror serves Docker Hub's `/v2/library/nginx/...` at its root: where `airgap push --to
///   HOST` put them, while `--to HOST/PREFIX` put them under `/v2/PREFIX/...`, which no docker mirror URL
///   reaches); its pull credentials, if any, merged into root's docker config (0600), also under Docker
///   Hub's key when it is the mirror.
fn docker_settings(site: &Site, log_max_size: &str, log_max_file: u32) -> Vec<Action> {
    let mut v = Vec::new();
    let max_file = log_max_file.to_string();
    let registry = site.registry();
    let mut args = vec!["docker-registry", &registry];
    let why = match &site.external {
        None => {
            args.push("--mirror");
            "docker pulls from the site registry (insecure-registries, registry-mirrors) and keeps json-file logs within runtime.docker_log_max_size/max_file"
        }
        Some(ext) => {
            if let Some(pem) = &ext.ca_pem {
                v.extend(services::files(&[FileSpec::new(docker_ca_path(&ext.host), 0o644, pem.clone())]));
            }
            args.push("--tls");
            if ext.prefix.is_empty() {
                args.push("--mirror");
            }
            if ext.authenticated {
                let mut keys = vec![ext.host.as_str()];
                if ext.prefix.is_empty() {
                    keys.push(DOCKER_HUB_AUTH_KEY);
                }
                let auths: serde_json::Map<String, serde_json::Value> =
                    keys.iter().map(|k| (k.to_string(), serde_json::json!({ "auth": crate::install::config::SECRET }))).collect();
                let mut text = serde_json::to_string_pretty(&serde_json::json!({ "auths": auths })).expect("JSON");
                text.push('\n');
                v.extend(services::files(&[FileSpec::new(DOCKER_AUTH, 0o600, text)]));
                v.push(Action::Command {
                    argv: node_cmd(&["docker-auth", "--from", DOCKER_AUTH]),
                    check: Some(node_cmd(&["docker-auth", "--from", DOCKER_AUTH, "--check"])),
                    why: "root's docker client has the site registry's pull credentials (~/.docker/config.json, 0600)".into(),
                });
            }
            if ext.prefix.is_empty() {
                "docker pulls from the site's own registry over TLS (its CA, registry-mirrors for Docker Hub names) and keeps json-file logs within runtime.docker_log_max_size/max_file"
            } else {
                "docker pulls from the site's own registry over TLS (its CA; no registry-mirrors: a mirror cannot have a prefix) and keeps json-file logs within runtime.docker_log_max_size/max_file"
            }
        }
    };
    args.extend(["--log-max-size", log_max_size, "--log-max-file", &max_file]);
    let mut check = node_cmd(&args);
    check.push("--check".into());
    v.push(Action::Command { argv: node_cmd(&args), check: Some(check), why: why.into() });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::format::{FileEntry, RootDoc, SCHEMA};
    use crate::install::facts::Target;
    use crate::install::kit::Kit;

    fn file(path: &str, install: Component, platform: &str, sha: char) -> FileEntry {
        FileEntry {
            path: path.into(),
            url: format!("https://example.org/{path}"),
            sha256: sha.to_string().repeat(64),
            size: 1,
            mode: 0o644,
            install: Some(install),
            platform: Some(platform.into()),
            manifest: None,
        }
    }

    fn argvs(plan: &[Action]) -> Vec<String> {
        plan.iter()
            .map(|a| match a {
                Action::Command { argv, .. } => argv[2..].join(" "),
                Action::File { path, .. } | Action::SecretFile { path, .. } => format!("file {path}"),
                Action::Copy { remote, .. } => format!("copy {remote}"),
            })
            .collect()
    }

    #[test]
    fn static_components_replace_the_os_packages_for_the_nodes_platform() {
        let inv = crate::site::inventory::Inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml"))).unwrap();
        let root = RootDoc {
            schema: SCHEMA.into(),
            name: "t".into(),
            version: "1".into(),
            base: None,
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            kubernetes: None,
            images: vec![],
            files: vec![
                file("a/amd64/containerd.tgz", Component::Containerd, "linux/amd64", 'a'),
                file("a/arm64/containerd.tgz", Component::Containerd, "linux/arm64", 'b'),
                file("a/amd64/crictl.tgz", Component::Crictl, "linux/amd64", 'c'),
                file("a/arm64/crictl.tgz", Component::Crictl, "linux/arm64", 'd'),
            ],
            packages: vec![],
            sha256sums: "0".repeat(64),
            sizes: Default::default(),
        };
        let kit = Kit::from_root(root, "/var/lib/airgap/x/kit/0".into());
        let target = |p: &str| Target { family: crate::node::OsFamily::Rhel, os_tags: vec!["el7".into()], platform: p.into(), interface: Some("eth0".into()) };
        let targets = [("master1".to_string(), target("linux/amd64")), ("master2".to_string(), target("linux/arm64"))].into();
        let warnings = std::sync::Mutex::new(Vec::new());
        let warn = |w: &str| warnings.lock().unwrap().push(w.to_string());
        let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: Some(&kit), targets: &targets, warn: &warn, secrets: None };
        let node = |n: &str| inv.nodes.iter().find(|x| x.name == n).unwrap();

        let m1 = argvs(&Runtime.plan(&ctx, node("master1")).unwrap());
        // runc is not in the bundle: it comes from the OS packages; containerd and crictl from the amd64 files
        assert_eq!(m1[0], "packages --install runc --dir /opt/airgap/packages");
        assert_eq!(m1[1], format!("component containerd --file /opt/airgap/files/a/amd64/containerd.tgz --sha256 {}", "a".repeat(64)));
        assert_eq!(m1[2], format!("component crictl --file /opt/airgap/files/a/amd64/crictl.tgz --sha256 {}", "c".repeat(64)));
        assert!(m1.contains(&"file /etc/systemd/system/containerd.service".to_string()), "{m1:#?}");
        assert!(m1.contains(&"file /etc/crictl.yaml".to_string()), "{m1:#?}");
        assert!(m1.last().unwrap().starts_with("docker-registry 10.20.0.200:5000"), "{m1:#?}");
        let m2 = argvs(&Runtime.plan(&ctx, node("master2")).unwrap());
        assert!(m2[1].contains("a/arm64/containerd.tgz") && m2[1].contains(&"b".repeat(64)), "{m2:#?}");
        // no facts for master3 (plan): a placeholder, never a wrong platform's file
        let m3 = argvs(&Runtime.plan(&ctx, node("master3")).unwrap());
        assert!(m3[1].contains("<the file for the node's platform>"), "{m3:#?}");
        // the bundle has no CNI plugins: said once per plan
        assert!(warnings.lock().unwrap().iter().any(|w| w.contains("no cni-plugins")));
        // a new containerd file (another sha256) restarts containerd: its service hash changes
        let svc = |plan: &[String]| plan.iter().find(|a| a.starts_with("service containerd")).unwrap().clone();
        assert_ne!(svc(&m1), svc(&m2));
    }
}
