//! redis: the site's Redis cluster on the three masters. Six `redis-server` instances (the bundle's OS
//! packages), two per master on `redis.base_port`..+5, each the `airgap-redis@PORT` systemd unit with its own
//! config (`/etc/airgap/redis/PORT.conf`) and data dir (`/var/lib/airgap-redis/PORT`), bound to the node's
//! address, cluster-enabled. The password comes from the inventory's source (`redis.password_env` /
//! `password_file`) into `/etc/airgap/redis/auth.conf` (an `Action::SecretFile`: 0600, never in argv, logs or plan), which
//! systemd hands to redis-server on its stdin. On master1, `airgap node redis-cluster` creates the cluster
//! with `redis-cli --cluster create` (primaries), puts each replica on the master after its primary's
//! (CLUSTER MEET + REPLICATE, checked after creation), and is done only when every replica is in sync.
//! A healthy cluster in its layout: nothing to do. The failover unit after a reboot comes with housekeeping.

use crate::install::config::units;
use crate::install::secret::{self, Source};
use crate::install::ssh::Transport;
use crate::install::{actions, node_cmd, services, software, Action, Ctx, Step};
use crate::node::redis::{auth_conf, check_password, AUTH_FILE};
use crate::site::inventory::{Inventory, Node, Role};
use anyhow::Result;

pub struct Redis;

/// Where the inventory says the password comes from (validation makes sure there is one).
pub fn source(inv: &Inventory) -> Source {
    match (&inv.redis.password_env, &inv.redis.password_file) {
        (Some(v), _) => Source::Env(v.clone()),
        (None, Some(f)) => Source::File(f.clone()),
        (None, None) => Source::Env("<redis.password_env>".into()),
    }
}

/// The plan's actions with the auth file's content (the password read from its source, checked).
fn with_password(inv: &Inventory, plan: Vec<Action>) -> Result<Vec<Action>> {
    secret::fill(plan, |path, _| {
        if path != AUTH_FILE {
            return Ok(None);
        }
        let field = if inv.redis.password_env.is_some() { "redis.password_env" } else { "redis.password_file" };
        let pw = source(inv).read(field)?;
        if let Err(why) = check_password(&pw) {
            anyhow::bail!("the Redis password from the {} {why}", source(inv).describe());
        }
        Ok(Some(auth_conf(crate::install::config::render::HEADER, &pw)))
    })
}

/// `airgap node redis-cluster` for the layout (`--check`: only look).
pub fn cluster_cmd(inv: &Inventory, check: bool) -> Result<Vec<String>> {
    let mut args = vec!["redis-cluster".to_string()];
    for p in units::redis_layout(inv)? {
        args.extend(["--pair".into(), p.arg()]);
    }
    if check {
        args.push("--check".into());
    } else {
        args.extend(["--wait-secs".into(), "300".into()]);
    }
    Ok(node_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>()))
}

impl Step for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn summary(&self) -> &'static str {
        "the Redis cluster: 6 instances, two per master, each replica on another master than its primary, in sync"
    }
    fn runs_on(&self, ctx: &Ctx, node: &Node) -> bool {
        ctx.inv.redis.enabled && node.role == Role::Master
    }
    fn uses_bundle(&self) -> bool {
        true
    }
    fn plan(&self, ctx: &Ctx, node: &Node) -> Result<Vec<Action>> {
        let inv = ctx.inv;
        let mut v = vec![software::packages(&["redis-server|redis"])];
        let shown = auth_conf(crate::install::config::render::HEADER, crate::install::config::SECRET);
        v.push(Action::secret_file(AUTH_FILE, 0o600, None, shown, &format!("the Redis password's {}", source(inv).describe())));
        let files = units::redis_files(inv, &node.name)?;
        v.extend(services::files(&files));
        // the package's own instance (127.0.0.1:6379, no password) is not part of the site
        v.push(Action::Command {
            argv: node_cmd(&["unit-off", "redis-server.service"]),
            check: Some(node_cmd(&["unit-off", "redis-server.service", "--check"])),
            why: "the package's default redis-server instance stopped and disabled".into(),
        });
        for (port, _, _) in units::redis_instances(inv, &node.name)? {
            let conf = format!("{}/{port}.conf", units::REDIS_CONF_DIR);
            let mine: Vec<_> = files.iter().filter(|f| f.path == conf || f.path == units::REDIS_UNIT).cloned().collect();
            v.push(services::service(&format!("airgap-redis@{port}"), &mine, &[&conf, AUTH_FILE], &[], true));
            v.push(services::answers(&format!("redis {port}"), "check-tcp", &format!("{}:{port}", node.address)));
        }
        let layout = units::redis_layout(inv)?;
        if layout[0].primary_node == node.name {
            v.push(Action::Command {
                argv: cluster_cmd(inv, false)?,
                check: Some(cluster_cmd(inv, true)?),
                why: "the Redis cluster in its layout (each replica on another master than its primary), every replica in sync".into(),
            });
        }
        Ok(v)
    }
    fn check(&self, ctx: &Ctx, node: &Node, t: &dyn Transport) -> Result<Vec<String>> {
        actions::check_all(&with_password(ctx.inv, self.plan(ctx, node)?)?, t)
    }
    fn apply(&self, ctx: &Ctx, node: &Node, t: &dyn Transport, progress: &dyn Fn(&str)) -> Result<Vec<String>> {
        actions::apply_all(&with_password(ctx.inv, self.plan(ctx, node)?)?, t, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::plan_text::action_text;

    #[test]
    fn the_plan_shows_the_layout_and_never_the_password() {
        let inv = crate::site::inventory::Inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml"))).unwrap();
        let targets = Default::default();
        let warn = |_: &str| {};
        let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: None, targets: &targets, warn: &warn, secrets: None };
        std::env::set_var("AIRGAP_REDIS_PASSWORD", "pw-never-shown-71c2");
        let node = |n: &str| inv.node(n).unwrap();
        assert!(!Redis.runs_on(&ctx, node("worker1")));
        let text: String = Redis.plan(&ctx, node("master1")).unwrap().iter().map(action_text).collect();
        assert!(!text.contains("pw-never-shown"), "{text}");
        assert!(text.contains("# file /etc/airgap/redis/auth.conf (mode 600) holds secrets from the Redis password's environment variable AIRGAP_REDIS_PASSWORD"), "{text}");
        assert!(text.contains("airgap node secret-file --path /etc/airgap/redis/auth.conf --mode 600 <<") && text.contains("requirepass \"<secret>\""), "{text}");
        // master1: primary 7000, replica 7001 of master3's primary; the cluster is made from master1
        assert!(text.contains("airgap-redis@7000") && text.contains("airgap-redis@7001") && !text.contains("@7002"), "{text}");
        assert!(text.contains("redis-cluster --pair 10.20.0.11:7000=10.20.0.12:7003 --pair 10.20.0.12:7002=10.20.0.13:7005 --pair 10.20.0.13:7004=10.20.0.11:7001 --wait-secs 300"), "{text}");
        let m2: String = Redis.plan(&ctx, node("master2")).unwrap().iter().map(action_text).collect();
        assert!(m2.contains("airgap-redis@7002") && m2.contains("airgap-redis@7003") && !m2.contains("redis-cluster"), "{m2}");
        // the instance config: bound to the node's address, cluster-enabled, no password
        let files = units::redis_files(&inv, "master2").unwrap();
        let c = &files.iter().find(|f| f.path == "/etc/airgap/redis/7003.conf").unwrap().content;
        assert!(c.contains("bind 10.20.0.12\nport 7003\n") && c.contains("cluster-enabled yes") && !c.contains("requirepass"), "{c}");
        // the auth file holds it, for redis-server only: filled in for check and apply, never in the plan
        let secrets = |inv: &Inventory| -> Result<String> {
            let filled = with_password(inv, Redis.plan(&ctx, node("master1"))?)?;
            let texts: Vec<String> = filled
                .iter()
                .filter_map(|a| match a {
                    Action::SecretFile { path, content: Some(c), .. } if path == AUTH_FILE => Some(c.expose().to_string()),
                    _ => None,
                })
                .collect();
            assert_eq!(texts.len(), 1);
            Ok(texts[0].clone())
        };
        assert!(secrets(&inv).unwrap().contains("requirepass \"pw-never-shown-71c2\"\nmasterauth \"pw-never-shown-71c2\"\n"));
        std::env::set_var("AIRGAP_REDIS_PASSWORD", "has space");
        assert!(secrets(&inv).unwrap_err().to_string().contains("environment variable AIRGAP_REDIS_PASSWORD has a character"));
        std::env::remove_var("AIRGAP_REDIS_PASSWORD");
        let e = secrets(&inv).unwrap_err();
        assert_eq!(e.to_string(), "redis.password_env names AIRGAP_REDIS_PASSWORD, which is not set");
    }
}
