//! The `redis` and `housekeeping` files rendered for the example site: snapshots, redis-server running the
//! rendered instance config (password on stdin, as the unit does), and `systemd-analyze verify` of the units.

use super::units::*;
use crate::site::inventory::Inventory;
use std::path::Path;
use std::process::{Command, Stdio};

fn example() -> Inventory {
    Inventory::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml"))).unwrap()
}

#[test]
fn snapshots_of_the_redis_and_housekeeping_files() {
    let inv = example();
    let mut all = redis_files(&inv, "master1").unwrap();
    all.extend(redis_failover_unit(&inv, "master1").unwrap());
    all.extend(log_units(&inv).unwrap());
    all.push(keepalived_boot_dropin(&inv).unwrap());
    for f in all {
        let name = f.path.rsplit('/').next().unwrap().replace('@', "_at_");
        insta::assert_snapshot!(name, format!("# {} (mode {:o})\n{}", f.path, f.mode, f.content));
    }
}

#[test]
fn the_layout_puts_no_replica_on_its_primarys_master() {
    let inv = example();
    let l = redis_layout(&inv).unwrap();
    let ports: Vec<_> = l.iter().flat_map(|p| [p.primary.port(), p.replica.port()]).collect();
    let mut sorted = ports.clone();
    sorted.sort();
    assert_eq!(sorted, (7000..7006).collect::<Vec<_>>());
    for p in &l {
        assert_ne!(p.primary_node, p.replica_node);
    }
    for m in ["master1", "master2", "master3"] {
        let here = redis_instances(&inv, m).unwrap();
        assert_eq!(here.iter().filter(|x| x.2).count(), 1, "{m}: one primary");
        assert_eq!(here.len(), 2, "{m}: two instances");
    }
}

#[test]
fn redis_server_runs_the_rendered_config_with_the_password_on_stdin() {
    let inv = example();
    let dir = tempfile::tempdir().unwrap();
    let conf = &redis_files(&inv, "master1").unwrap()[0].content;
    let port = 17000 + (std::process::id() % 2000) as u16;
    let conf = conf.replace("bind 10.20.0.11", "bind 127.0.0.1").replace("port 7000", &format!("port {port}")).replace("/var/lib/airgap-redis/7000", dir.path().to_str().unwrap());
    fs_err::write(dir.path().join("i.conf"), conf).unwrap();
    fs_err::write(dir.path().join("auth.conf"), crate::node::redis::auth_conf("x", "pw#1")).unwrap();
    let mut child = Command::new("redis-server")
        .arg(dir.path().join("i.conf"))
        .arg("-")
        .stdin(fs_err::File::open(dir.path().join("auth.conf")).unwrap().into_parts().0)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/setup-debian.sh installs it)");
    let addr = format!("127.0.0.1:{port}");
    let t = std::time::Instant::now();
    let mut c = loop {
        match crate::node::resp::Conn::connect(&addr, std::time::Duration::from_secs(1)) {
            Ok(c) => break c,
            Err(_) if t.elapsed().as_secs() < 10 => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => panic!("{e:#}"),
        }
    };
    let no_auth = c.cmd(&["PING"]).unwrap();
    assert!(matches!(&no_auth, crate::node::resp::Reply::Error(e) if e.starts_with("NOAUTH")), "{no_auth:?}");
    assert!(c.cmd(&["AUTH", "wrong"]).unwrap().text().is_err());
    c.text(&["AUTH", "pw#1"]).unwrap();
    let info = crate::node::resp::info_map(&c.text(&["INFO", "cluster"]).unwrap());
    assert_eq!(info["cluster_enabled"], "1");
    let aof = c.cmd(&["CONFIG", "GET", "appendonly"]).unwrap();
    assert_eq!(aof, crate::node::resp::Reply::Array(Some(vec![crate::node::resp::Reply::Bulk(Some(b"appendonly".to_vec())), crate::node::resp::Reply::Bulk(Some(b"yes".to_vec()))])));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let inv = example();
    let dir = tempfile::tempdir().unwrap();
    let mut all = log_units(&inv).unwrap();
    all.extend(redis_failover_unit(&inv, "master1").unwrap());
    all.extend(redis_files(&inv, "master1").unwrap().into_iter().filter(|f| f.path.ends_with(".service")));
    let mut paths = Vec::new();
    for f in all {
        // the airgap binary is at its place on the nodes, not here
        let p = dir.path().join(f.path.rsplit('/').next().unwrap());
        fs_err::write(&p, f.content.replace(crate::node::BIN, "/bin/true")).unwrap();
        paths.push(p);
    }
    // a template is verified through an instance of it
    let template = paths.iter().position(|p| p.ends_with("airgap-redis@.service")).unwrap();
    let instance = dir.path().join("airgap-redis@7000.service");
    fs_err::copy(&paths[template], &instance).unwrap();
    paths[template] = instance;
    let out = Command::new("systemd-analyze").arg("verify").args(&paths).env("SYSTEMD_LOG_LEVEL", "notice").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
}
