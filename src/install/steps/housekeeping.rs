//! housekeeping: what the site's runbook ran by hand or from cron, as systemd units on the nodes (timers, not
//! cron: journald keeps their output, `Persistent=` catches up a run missed while the node was off, and
//! `systemctl list-timers` shows the next run):
//! - every node: `airgap-log-cleanup.timer` (daily) deletes container log files not written for
//!   `housekeeping.log_days` days (default 10); `airgap-log-cut.timer` (hourly) cuts container logs bigger than
//!   `housekeeping.cut_mb` (copy aside + truncate in place, so the writer's descriptor stays valid);
//! - keepalived's nodes: a drop-in delaying keepalived at boot until after the NFS/DRBD units and
//!   `keepalived_boot_delay_secs` after boot (restarts later are not delayed);
//! - masters with Redis: `airgap-redis-failover.service`, which after a reboot makes the master's designated
//!   primary (back as a replica) the primary again.
//!
//! Every unit passes `systemd-analyze verify` on the node before it is (re)started.

use crate::install::config::units;
use crate::install::{node_cmd, services, Action, Ctx, Step};
use crate::site::inventory::{Node, Role};
use anyhow::Result;

pub struct Housekeeping;

fn verify(paths: &[&str]) -> Vec<String> {
    let mut v = vec!["systemd-analyze".to_string(), "verify".to_string()];
    v.extend(paths.iter().map(|p| p.to_string()));
    v
}

impl Step for Housekeeping {
    fn name(&self) -> &'static str {
        "housekeeping"
    }
    fn summary(&self) -> &'static str {
        "container log cleanup and cutting (systemd timers), keepalived's delayed start at boot, the Redis failover unit"
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let inv = ctx.inv;
        let logs = units::log_units(inv)?;
        let mut v = services::files(&logs);
        for (service, timer, name) in [
            (units::LOG_CLEANUP_SERVICE, units::LOG_CLEANUP_TIMER, "airgap-log-cleanup.timer"),
            (units::LOG_CUT_SERVICE, units::LOG_CUT_TIMER, "airgap-log-cut.timer"),
        ] {
            let specs: Vec<_> = logs.iter().filter(|f| f.path == service || f.path == timer).cloned().collect();
            let check = verify(&[service, timer]);
            v.push(services::service(name, &specs, &[service, timer], &check.iter().map(String::as_str).collect::<Vec<_>>(), true));
        }
        let keepalived = node.role == Role::Master || super::distribute::needs_bundle(inv, node);
        if keepalived {
            v.extend(services::files(&[units::keepalived_boot_dropin(inv)?]));
            v.push(Action::Command {
                argv: node_cmd(&["daemon-reload", "--unit", "keepalived.service"]),
                check: Some(node_cmd(&["daemon-reload", "--unit", "keepalived.service", "--check"])),
                why: "systemd knows keepalived's delayed start (daemon-reload)".into(),
            });
        }
        if inv.redis.enabled && node.role == Role::Master {
            if let Some(unit) = units::redis_failover_unit(inv, &node.name)? {
                let check = verify(&[units::REDIS_FAILOVER_UNIT]);
                v.extend(services::files(std::slice::from_ref(&unit)));
                v.push(services::service("airgap-redis-failover", &[unit], &[], &check.iter().map(String::as_str).collect::<Vec<_>>(), true));
            }
        }
        Ok(v)
    }
}
