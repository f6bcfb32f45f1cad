//! The host services of the `redis` and `housekeeping` steps, rendered from the inventory with the templates
//! in `templates/`: the Redis cluster's layout, its instances' configs and units, its failover unit, the
//! container log timers and keepalived's delayed start at boot. Snapshots and `systemd-analyze verify` in
//! `units_tests.rs`.

use super::render::HEADER;
use super::FileSpec;
use crate::node::redis::AUTH_FILE;
use crate::site::inventory::Inventory;
use anyhow::{bail, Context, Result};
use minijinja::{Environment, UndefinedBehavior};
use std::net::SocketAddrV4;
use std::sync::OnceLock;

pub const REDIS_CONF_DIR: &str = "/etc/airgap/redis";
pub const REDIS_DATA_DIR: &str = "/var/lib/airgap-redis";
pub const REDIS_UNIT: &str = "/etc/systemd/system/airgap-redis@.service";
pub const REDIS_FAILOVER_UNIT: &str = "/etc/systemd/system/airgap-redis-failover.service";
pub const LOG_CLEANUP_SERVICE: &str = "/etc/systemd/system/airgap-log-cleanup.service";
pub const LOG_CLEANUP_TIMER: &str = "/etc/systemd/system/airgap-log-cleanup.timer";
pub const LOG_CUT_SERVICE: &str = "/etc/systemd/system/airgap-log-cut.service";
pub const LOG_CUT_TIMER: &str = "/etc/systemd/system/airgap-log-cut.timer";
pub const KEEPALIVED_BOOT_DROPIN: &str = "/etc/systemd/system/keepalived.service.d/airgap-boot.conf";

const TEMPLATES: &[(&str, &str)] = &[
    ("redis-instance.conf", include_str!("../../../templates/redis-instance.conf.j2")),
    ("airgap-redis@.service", include_str!("../../../templates/airgap-redis@.service.j2")),
    ("airgap-redis-failover.service", include_str!("../../../templates/airgap-redis-failover.service.j2")),
    ("airgap-log-cleanup.service", include_str!("../../../templates/airgap-log-cleanup.service.j2")),
    ("airgap-log-cleanup.timer", include_str!("../../../templates/airgap-log-cleanup.timer.j2")),
    ("airgap-log-cut.service", include_str!("../../../templates/airgap-log-cut.service.j2")),
    ("airgap-log-cut.timer", include_str!("../../../templates/airgap-log-cut.timer.j2")),
    ("keepalived-boot.conf", include_str!("../../../templates/keepalived-boot.conf.j2")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build().expect("the default syntax is valid");
        env.set_syntax(syntax);
        for (name, src) in TEMPLATES {
            env.add_template(name, src).expect("embedded templates are valid (checked by unit tests)");
        }
        env
    })
}

fn render(name: &str, ctx: serde_json::Value) -> Result<String> {
    env()
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))))
        .with_context(|| format!("failed to render the {name} template"))
}

/// A primary and the replica that follows it, on the next master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisPair {
    pub primary_node: String,
    pub primary: SocketAddrV4,
    pub replica_node: String,
    pub replica: SocketAddrV4,
}

impl RedisPair {
    /// As `airgap node redis-cluster --pair` takes it.
    pub fn arg(&self) -> String {
        format!("{}={}", self.primary, self.replica)
    }
}

/// The cluster's layout: master i holds the primary on `base_port + 2i` and, on `base_port + 2i + 1`, the
/// replica of master i-1's primary, so that no replica is on its primary's master and each master holds one
/// primary and one replica.
pub fn redis_layout(inv: &Inventory) -> Result<Vec<RedisPair>> {
    let masters: Vec<_> = inv.masters().collect();
    if masters.len() != 3 {
        bail!("the Redis cluster needs exactly 3 masters (two instances each); the inventory has {}", masters.len());
    }
    let base = inv.redis.base_port;
    Ok((0..3)
        .map(|i| {
            let next = (i + 1) % 3;
            RedisPair {
                primary_node: masters[i].name.clone(),
                primary: SocketAddrV4::new(masters[i].address, base + 2 * i as u16),
                replica_node: masters[next].name.clone(),
                replica: SocketAddrV4::new(masters[next].address, base + 2 * next as u16 + 1),
            }
        })
        .collect())
}

/// The instances on `node`: (port, the pair whose primary (true) or replica (false) it is).
pub fn redis_instances(inv: &Inventory, node: &str) -> Result<Vec<(u16, RedisPair, bool)>> {
    let mut v = Vec::new();
    for p in redis_layout(inv)? {
        if p.primary_node == node {
            v.push((p.primary.port(), p.clone(), true));
        }
        if p.replica_node == node {
            v.push((p.replica.port(), p, false));
        }
    }
    v.sort_by_key(|x| x.0);
    Ok(v)
}

/// The instance configs (no secret in them) and the template unit, on a master.
pub fn redis_files(inv: &Inventory, node: &str) -> Result<Vec<FileSpec>> {
    let Some(n) = inv.node(node) else { bail!("no node {node}") };
    let mut v = Vec::new();
    for (port, _, _) in redis_instances(inv, node)? {
        let content = render(
            "redis-instance.conf",
            serde_json::json!({
                "header": HEADER, "node": node, "address": n.address.to_string(), "port": port, "auth_file": AUTH_FILE,
                "data_dir": format!("{REDIS_DATA_DIR}/{port}"), "node_timeout_ms": inv.redis.node_timeout_ms,
            }),
        )?;
        v.push(FileSpec::new(format!("{REDIS_CONF_DIR}/{port}.conf"), 0o644, content));
    }
    let unit = render("airgap-redis@.service", serde_json::json!({"header": HEADER, "auth_file": AUTH_FILE, "conf_dir": REDIS_CONF_DIR}))?;
    v.push(FileSpec::new(REDIS_UNIT, 0o644, unit));
    Ok(v)
}

/// The failover unit of a master (its designated primary takes its place back after a reboot).
pub fn redis_failover_unit(inv: &Inventory, node: &str) -> Result<Option<FileSpec>> {
    let Some(p) = redis_layout(inv)?.into_iter().find(|p| p.primary_node == node) else { return Ok(None) };
    let replica_port = redis_instances(inv, node)?.iter().find(|(_, _, primary)| !primary).map_or(0, |x| x.0);
    let content = render(
        "airgap-redis-failover.service",
        serde_json::json!({
            "header": HEADER, "node": node, "primary": p.primary.to_string(), "replica": p.replica.to_string(),
            "primary_port": p.primary.port(), "replica_port": replica_port, "airgap": crate::node::BIN,
        }),
    )?;
    Ok(Some(FileSpec::new(REDIS_FAILOVER_UNIT, 0o644, content)))
}

/// The log cleanup and log cutting services and their timers (every node).
pub fn log_units(inv: &Inventory) -> Result<Vec<FileSpec>> {
    let h = &inv.housekeeping;
    let ctx = serde_json::json!({"header": HEADER, "airgap": crate::node::BIN, "days": h.log_days, "cut_mb": h.cut_mb, "dirs": h.log_dirs});
    [
        (LOG_CLEANUP_SERVICE, "airgap-log-cleanup.service"),
        (LOG_CLEANUP_TIMER, "airgap-log-cleanup.timer"),
        (LOG_CUT_SERVICE, "airgap-log-cut.service"),
        (LOG_CUT_TIMER, "airgap-log-cut.timer"),
    ]
    .into_iter()
    .map(|(path, t)| Ok(FileSpec::new(path, 0o644, render(t, ctx.clone())?)))
    .collect()
}

/// keepalived's drop-in for its delayed start at boot.
pub fn keepalived_boot_dropin(inv: &Inventory) -> Result<FileSpec> {
    let ctx = serde_json::json!({"header": HEADER, "airgap": crate::node::BIN, "delay": inv.housekeeping.keepalived_boot_delay_secs});
    Ok(FileSpec::new(KEEPALIVED_BOOT_DROPIN, 0o644, render("keepalived-boot.conf", ctx)?))
}
