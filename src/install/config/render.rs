//! Render the infrastructure config files from a [`Site`] with the minijinja templates in `templates/`,
//! embedded in the binary (it runs offline on the nodes).

use super::containerd::ContainerdRelease;
use super::{FileSpec, Peer, Site, APISERVER_PORT, CERTS_DIR, CONTAINERD_ROOT, LB_PORT, REGISTRY_PORT, REGISTRY_STORE};
use crate::node::OsFamily;
use anyhow::{Context, Result};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::sync::OnceLock;

/// First line of every rendered file.
pub const HEADER: &str = "Managed by airgap: `airgap install` overwrites local changes.";

pub const KEEPALIVED_CONF: &str = "/etc/keepalived/keepalived.conf";
pub const KEEPALIVED_NOTIFY: &str = "/etc/keepalived/airgap-notify.sh";
pub const KEEPALIVED_DROPIN: &str = "/etc/systemd/system/keepalived.service.d/airgap.conf";
pub const HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";
pub const NGINX_CONF: &str = "/etc/nginx/nginx.conf";
pub const NGINX_INGRESS: &str = "/etc/nginx/stream.d/airgap-ingress.conf";
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const CONTAINERD_UNIT: &str = "/etc/systemd/system/containerd.service";
pub const CRICTL_YAML: &str = "/etc/crictl.yaml";
pub const REGISTRY_UNIT: &str = "/etc/systemd/system/airgap-registry.service";
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";

const TEMPLATES: &[(&str, &str)] = &[
    ("keepalived-masters.conf", include_str!("../../../templates/keepalived-masters.conf.j2")),
    ("keepalived-workers.conf", include_str!("../../../templates/keepalived-workers.conf.j2")),
    ("keepalived-notify.sh", include_str!("../../../templates/keepalived-notify.sh.j2")),
    ("keepalived-dropin.conf", include_str!("../../../templates/keepalived-dropin.conf.j2")),
    ("haproxy.cfg", include_str!("../../../templates/haproxy.cfg.j2")),
    ("nginx.conf", include_str!("../../../templates/nginx.conf.j2")),
    ("nginx-ingress.conf", include_str!("../../../templates/nginx-ingress.conf.j2")),
    ("containerd-config.toml", include_str!("../../../templates/containerd-config.toml.j2")),
    ("hosts.toml", include_str!("../../../templates/hosts.toml.j2")),
    ("hosts-external.toml", include_str!("../../../templates/hosts-external.toml.j2")),
    ("containerd.service", include_str!("../../../templates/containerd.service.j2")),
    ("crictl.yaml", include_str!("../../../templates/crictl.yaml.j2")),
    ("airgap-registry.service", include_str!("../../../templates/airgap-registry.service.j2")),
    ("keepalived-nfs.conf", include_str!("../../../templates/keepalived-nfs.conf.j2")),
    ("nfs-check.sh", include_str!("../../../templates/nfs-check.sh.j2")),
    ("nfs-notify.sh", include_str!("../../../templates/nfs-notify.sh.j2")),
    ("airgap-nfs-vip.service", include_str!("../../../templates/airgap-nfs-vip.service.j2")),
    ("drbd-nfs.res", include_str!("../../../templates/drbd-nfs.res.j2")),
    ("nfs-drbd-setup.sh", include_str!("../../../templates/nfs-drbd-setup.sh.j2")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // a misspelt variable is a bug, never an empty string in a config file
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default syntax is valid");
        env.set_syntax(syntax);
        for (name, src) in TEMPLATES {
            env.add_template(name, src).expect("embedded templates are valid (checked by unit tests)");
        }
        env
    })
}

/// A template context from `key => value` pairs (any `Serialize` value, taken by reference).
macro_rules! ctx {
    ($($key:ident => $value:expr),* $(,)?) => {{
        let mut m = serde_json::Map::new();
        $( m.insert(stringify!($key).to_string(), serde_json::to_value(&$value).expect("template contexts serialize")); )*
        serde_json::Value::Object(m)
    }};
}

pub(super) fn render(name: &str, ctx: serde_json::Value) -> Result<String> {
    env()
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))))
        .with_context(|| format!("failed to render the {name} template"))
}

/// Which VIP a keepalived instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipRole {
    /// The masters' VIP in front of haproxy (:16443).
    Masters,
    /// The workers' VIP in front of the registry (:5000) and nginx.
    Workers,
}

#[derive(Serialize)]
struct Instance<'a> {
    name: &'a str,
    vip: String,
    vip_prefix: u8,
    interface: &'a str,
}

/// The node's place among the VIP's holders: its priority, initial state and peers.
fn vrrp_position<'a>(group: &'a [Peer], node: &str) -> Result<(&'a Peer, u8, &'static str, Vec<&'a Peer>)> {
    let idx = group
        .iter()
        .position(|p| p.name == node)
        .with_context(|| format!("{node} does not hold this VIP"))?;
    let priority = 150 - 10 * idx as u8;
    let state = if idx == 0 { "MASTER" } else { "BACKUP" };
    let peers = group.iter().filter(|p| p.name != node).collect();
    Ok((&group[idx], priority, state, peers))
}

/// What keepalived's workers' VIP follows on its holders (`keepalived-workers.conf`'s `follows`).
#[derive(Debug, Serialize)]
struct Follows {
    /// `registry` / `ingress`: what the VIP is for.
    what: &'static str,
    service: &'static str,
    the_service: &'static str,
    port: u16,
    check: &'static str,
    /// `airgap node ...` arguments probing the service on the node itself.
    probe: String,
}

/// The workers' VIP follows the built-in registry (:5000) where the `registry` step installs it; with the
/// site's own registry (`registry.external`) there is none, and the `nginx` step installs the VIP following
/// nginx (:80), which forwards the VIP's :80/:443 to the ingress.
fn workers_vip_follows(site: &Site) -> Follows {
    match site.external {
        None => Follows {
            what: "registry",
            service: "registry",
            the_service: "the registry",
            port: REGISTRY_PORT,
            check: "chk_registry",
            probe: format!("check-http http://127.0.0.1:{REGISTRY_PORT}/v2/"),
        },
        Some(_) => Follows {
            what: "ingress",
            service: "nginx",
            the_service: "nginx",
            port: NGINX_HTTP_PORT,
            check: "chk_nginx",
            probe: format!("check-tcp 127.0.0.1:{NGINX_HTTP_PORT}"),
        },
    }
}

/// nginx's port on the registry workers (and so on the workers' VIP), forwarded to the ingress.
pub const NGINX_HTTP_PORT: u16 = 80;

/// keepalived.conf, its notify hook and the systemd drop-in for one node holding the masters' or the workers' VIP.
/// The workers' VIP follows the registry, or nginx with `registry.external` (see [`workers_vip_follows`]).
pub fn keepalived(site: &Site, node: &str, role: VipRole) -> Result<Vec<FileSpec>> {
    let (group, vip, vrid, template, instance) = match role {
        VipRole::Masters => (&site.masters, site.masters_vip, site.masters_vrid, "keepalived-masters.conf", "airgap_masters"),
        VipRole::Workers => {
            (&site.registry_workers, site.workers_vip, site.workers_vrid, "keepalived-workers.conf", "airgap_workers")
        }
    };
    let (me, priority, state, peers) = vrrp_position(group, node)?;
    let interface = me.interface_name()?;
    let follows = workers_vip_follows(site);
    let conf = render(
        template,
        ctx! {
            header => HEADER,
            node => me,
            peers => peers,
            vip => vip.to_string(),
            vip_prefix => site.vip_prefix,
            interface => interface,
            virtual_router_id => vrid,
            priority => priority,
            state => state,
            auth_pass => Site::vrrp_pass(vip, vrid),
            airgap_bin => site.airgap_bin,
            lb_port => LB_PORT,
            registry_port => REGISTRY_PORT,
            notify_script => KEEPALIVED_NOTIFY,
            follows => follows,
        },
    )?;
    let instances = [Instance { name: instance, vip: vip.to_string(), vip_prefix: site.vip_prefix, interface: &interface }];
    let notify = render("keepalived-notify.sh", ctx! { header => HEADER, instances => instances })?;
    let dropin = render("keepalived-dropin.conf", ctx! { header => HEADER, instances => instances })?;
    Ok(vec![
        FileSpec::new(KEEPALIVED_CONF, 0o644, conf),
        FileSpec::new(KEEPALIVED_NOTIFY, 0o755, notify),
        FileSpec::new(KEEPALIVED_DROPIN, 0o644, dropin),
    ])
}

/// haproxy.cfg for a master: TCP :16443 over every master's :6443.
pub fn haproxy(site: &Site, node: &str) -> Result<Vec<FileSpec>> {
    let me = site.masters.iter().find(|p| p.name == node).with_context(|| format!("{node} is not a master"))?;
    let cfg = render(
        "haproxy.cfg",
        ctx! {
            header => HEADER, node => me, vip => site.masters_vip.to_string(), masters => site.masters,
            lb_port => LB_PORT, apiserver_port => APISERVER_PORT,
        },
    )?;
    Ok(vec![FileSpec::new(HAPROXY_CFG, 0o644, cfg)])
}

/// Paths and names that differ between nginx builds (and let the tests check a config under a temp dir).
#[derive(Debug, Clone, Serialize)]
pub struct NginxLayout {
    pub conf_dir: String,
    pub log_dir: String,
    pub pid_file: String,
    pub user: String,
    /// Files loading the dynamic modules (the stream module is one on both families).
    pub module_includes: Vec<String>,
}

impl NginxLayout {
    pub fn for_os(os: OsFamily) -> Self {
        let (user, modules) = match os {
            OsFamily::Debian => ("www-data", "/etc/nginx/modules-enabled/*.conf"),
            OsFamily::Rhel => ("nginx", "/usr/share/nginx/modules/*.conf"),
        };
        Self {
            conf_dir: "/etc/nginx".into(),
            log_dir: "/var/log/nginx".into(),
            pid_file: "/run/nginx.pid".into(),
            user: user.into(),
            module_includes: vec![modules.into()],
        }
    }
}

/// The ports nginx listens on and forwards to.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NginxPorts {
    pub listen_http: u16,
    pub listen_https: u16,
    pub ingress_http_port: u16,
    pub ingress_https_port: u16,
}

impl Default for NginxPorts {
    fn default() -> Self {
        Self { listen_http: 80, listen_https: 443, ingress_http_port: 80, ingress_https_port: 443 }
    }
}

/// nginx.conf and the stream config forwarding :80/:443 to the ingress on the masters, for a registry worker.
pub fn nginx(site: &Site, node: &str, layout: &NginxLayout, ports: NginxPorts) -> Result<Vec<FileSpec>> {
    let me = site
        .registry_workers
        .iter()
        .find(|p| p.name == node)
        .with_context(|| format!("{node} is not a registry worker"))?;
    let main = render(
        "nginx.conf",
        ctx! {
            header => HEADER, node => me, vip => site.workers_vip.to_string(),
            user => layout.user, pid_file => layout.pid_file, log_dir => layout.log_dir,
            conf_dir => layout.conf_dir, module_includes => layout.module_includes,
        },
    )?;
    let ingress = render(
        "nginx-ingress.conf",
        ctx! {
            header => HEADER, vip => site.workers_vip.to_string(), masters => site.masters, fail_timeout => "10s",
            listen_http => ports.listen_http, listen_https => ports.listen_https,
            ingress_http_port => ports.ingress_http_port, ingress_https_port => ports.ingress_https_port,
        },
    )?;
    Ok(vec![
        FileSpec::new(format!("{}/nginx.conf", layout.conf_dir), 0o644, main),
        FileSpec::new(format!("{}/stream.d/airgap-ingress.conf", layout.conf_dir), 0o644, ingress),
    ])
}

/// The systemd unit of a containerd installed from the bundle's static release (`bin_dir`/containerd).
pub fn containerd_unit(bin_dir: &str) -> Result<FileSpec> {
    let unit = render("containerd.service", ctx! { header => HEADER, bin_dir => bin_dir, config => CONTAINERD_CONFIG })?;
    Ok(FileSpec::new(CONTAINERD_UNIT, 0o644, unit))
}

/// crictl's configuration: containerd's socket.
pub fn crictl_yaml() -> Result<FileSpec> {
    Ok(FileSpec::new(CRICTL_YAML, 0o644, render("crictl.yaml", ctx! { header => HEADER })?))
}

/// containerd's config.toml (the layout `containerd` reads: see [`super::containerd`]) and one hosts.toml per
/// upstream host (plus the site registry itself, which is plain HTTP). (docker, when a node has it, is pointed
/// at the registry by `airgap node docker-registry`.)
pub fn runtime(site: &Site, containerd: &ContainerdRelease) -> Result<Vec<FileSpec>> {
    let registry = site.registry();
    let mut files = vec![FileSpec::new(
        CONTAINERD_CONFIG,
        0o644,
        render(
            "containerd-config.toml",
            ctx! {
                header => HEADER, registry => registry, sandbox_image => site.sandbox_image(), root => CONTAINERD_ROOT,
                snapshotter => site.snapshotter, certs_dir => CERTS_DIR, cni_bin_dir => CNI_BIN_DIR,
                config_version => containerd.config_version(), cni_bin_dirs => containerd.cni_bin_dirs(),
                containerd => containerd.describe(),
            },
        )?,
    )];
    let mut hosts: Vec<&str> = site.upstream_hosts.iter().map(String::as_str).collect();
    hosts.push(&registry);
    hosts.sort_unstable();
    hosts.dedup();
    if let Some(ext) = &site.external {
        // the site's own registry over HTTPS, at its prefix (`override_path`: containerd then asks for
        // /v2/PREFIX/<name>/manifests/<ref>), with its CA and credentials (in the plan as <secret>)
        let url = if ext.prefix.is_empty() { format!("https://{}", ext.host) } else { format!("https://{}/v2/{}", ext.host, ext.prefix) };
        let ca = ext.ca_pem.as_ref().map(|_| super::EXTERNAL_CA);
        if let Some(pem) = &ext.ca_pem {
            files.push(FileSpec::new(super::EXTERNAL_CA, 0o644, pem.clone()));
        }
        let mode = if ext.authenticated { 0o600 } else { 0o644 };
        for upstream in hosts {
            // the registry's own name (the sandbox image, kubeadm's imageRepository) already holds the prefix
            let (url, prefix) = if upstream == registry { (format!("https://{}", ext.host), "") } else { (url.clone(), ext.prefix.as_str()) };
            let content = render(
                "hosts-external.toml",
                ctx! { header => HEADER, upstream => upstream, registry => registry, prefix => prefix, url => url, ca => ca, authenticated => ext.authenticated, secret => super::SECRET },
            )?;
            files.push(FileSpec::new(format!("{CERTS_DIR}/{upstream}/hosts.toml"), mode, content));
        }
        return Ok(files);
    }
    for upstream in hosts {
        let content = render("hosts.toml", ctx! { header => HEADER, upstream => upstream, registry => registry })?;
        files.push(FileSpec::new(format!("{CERTS_DIR}/{upstream}/hosts.toml"), 0o644, content));
    }
    Ok(files)
}

/// The systemd unit serving the registry store on :5000 on one registry worker: listening on loopback, the
/// node's address and the workers' VIP only, as an unprivileged sandboxed service (`DynamicUser=`,
/// `ProtectSystem=strict`, no capabilities, `@system-service` system calls). `legacy_systemd`: the node runs
/// systemd 219 (el7), which knows none of that: root without capabilities, system read-only.
pub fn registry_unit(site: &Site, node: &str, legacy_systemd: bool) -> Result<FileSpec> {
    let me = site
        .registry_workers
        .iter()
        .find(|p| p.name == node)
        .with_context(|| format!("{node} is not one of the registry workers"))?;
    let unit = render(
        "airgap-registry.service",
        ctx! {
            header => HEADER, airgap_bin => site.airgap_bin, store => REGISTRY_STORE, registry_port => REGISTRY_PORT,
            node_ip => me.ip, vip => site.workers_vip, legacy_systemd => legacy_systemd,
        },
    )?;
    Ok(FileSpec::new(REGISTRY_UNIT, 0o644, unit))
}

#[cfg(test)]
#[path = "render_tests.rs"]
pub(crate) mod tests;
