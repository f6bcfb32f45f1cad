//! Inventory validation: every error names the file, the line and the field (insta snapshots).

use airgap::site::inventory::Inventory;

const BASE: &str = "\
cluster:
  name: plant-a
  kubernetes_version: 1.36.3
ssh:
  user: root
  key_file: /root/.ssh/id_ed25519
nodes:
  - name: master1
    address: 10.20.0.11
    role: master
  - name: master2
    address: 10.20.0.12
    role: master
  - name: master3
    address: 10.20.0.13
    role: master
  - name: worker1
    address: 10.20.0.21
    role: worker
  - name: worker2
    address: 10.20.0.22
    role: worker
vips:
  masters: 10.20.0.100
  workers: 10.20.0.200
network:
  node_subnet: 10.20.0.0/24
";

/// The error message for an inventory text (must be invalid).
fn error(text: &str) -> String {
    match Inventory::parse(text, "site.yaml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn base_and_example_are_valid() {
    let inv = Inventory::parse(BASE, "site.yaml").unwrap();
    assert_eq!(inv.network.pod_subnet.to_string(), "10.244.0.0/16");
    assert_eq!(inv.network.service_subnet.to_string(), "10.96.0.0/12");
    assert_eq!(inv.nfs.path, "/opt/mnt/volumes");
    assert_eq!(inv.redis.base_port, 7000);
    assert_eq!(inv.preflight.master_min_memory_mb, 1700);
    let example = super::support::repo().join("manifests/site.example.yaml");
    let inv = Inventory::load(&example).unwrap();
    assert_eq!((inv.masters().count(), inv.workers().count()), (3, 2));
}

#[test]
fn unknown_field_names_line_and_column() {
    insta::assert_snapshot!(error(
        &BASE.replace("    address: 10.20.0.13", "    adress: 10.20.0.13")
    ));
    insta::assert_snapshot!(error(&BASE.replace(
        "  node_subnet: 10.20.0.0/24",
        "  node_subnet: 10.20.0.0/24\n  pod_subnt: 10.244.0.0/16"
    )));
}

#[test]
fn duplicate_names_and_addresses() {
    let text = BASE.replace(
        "  - name: master3\n    address: 10.20.0.13",
        "  - name: master2\n    address: 10.20.0.11",
    );
    insta::assert_snapshot!(error(&text));
}

#[test]
fn vip_on_a_node_or_outside_the_subnet() {
    insta::assert_snapshot!(error(&BASE.replace("masters: 10.20.0.100", "masters: 10.20.0.12")));
    insta::assert_snapshot!(error(&BASE.replace("workers: 10.20.0.200", "workers: 10.30.0.200")));
}

#[test]
fn vrrp_router_ids_differ() {
    let text = BASE.replace("workers: 10.20.0.200", "workers: 10.20.0.200\n  masters_router_id: 60\n  workers_router_id: 60");
    insta::assert_snapshot!(error(&text));
    let ok = BASE.replace("workers: 10.20.0.200", "workers: 10.20.0.200\n  masters_router_id: 61\n  workers_router_id: 62");
    let inv = airgap::site::inventory::Inventory::parse(&ok, "site.yaml").unwrap();
    assert_eq!((inv.vips.masters_router_id, inv.vips.workers_router_id), (61, 62));
}

#[test]
fn ha_layout_needs_3_masters_and_2_workers() {
    let two_masters = BASE.replace(
        "    address: 10.20.0.13\n    role: master",
        "    address: 10.20.0.13\n    role: worker",
    );
    insta::assert_snapshot!(error(&two_masters));
    let one_worker = BASE.replace(
        "    address: 10.20.0.22\n    role: worker",
        "    address: 10.20.0.22\n    role: master",
    );
    insta::assert_snapshot!(error(&one_worker));
    // a single-master layout, allowed explicitly
    let single = "cluster:\n  name: lab\n  kubernetes_version: 1.36.3\n  allow_single_master: true\nnodes:\n  - name: m1\n    address: 10.20.0.11\n    role: master\nvips:\n  masters: 10.20.0.100\n  workers: 10.20.0.200\nnetwork:\n  node_subnet: 10.20.0.0/24\n";
    Inventory::parse(single, "site.yaml").unwrap();
}

#[test]
fn overlapping_subnets() {
    let text = BASE.replace(
        "  node_subnet: 10.20.0.0/24",
        "  node_subnet: 10.20.0.0/24\n  pod_subnet: 10.0.0.0/8\n  service_subnet: 10.96.0.0/12",
    );
    insta::assert_snapshot!(error(&text));
}

#[test]
fn every_problem_reported_together() {
    let text = BASE
        .replace("name: plant-a", "name: Plant_A")
        .replace("address: 10.20.0.22", "address: 10.20.0.21")
        .replace("workers: 10.20.0.200", "workers: 10.20.0.100");
    insta::assert_snapshot!(error(&text));
}

#[test]
fn cli_prints_error_and_hint() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("site.yaml"),
        BASE.replace("masters: 10.20.0.100", "masters: 10.20.0.21"),
    )
    .unwrap();
    let out = super::support::airgap()
        .current_dir(d.path())
        .args(["plan", "--inventory", "site.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_redis_cluster_without_a_password_source_is_refused_with_its_line() {
    // no `redis:` section: no Redis cluster, nothing to ask
    assert!(!Inventory::parse(BASE, "site.yaml").unwrap().redis.enabled);
    let text = format!("{BASE}redis:\n  base_port: 7000\n");
    let line = text.lines().position(|l| l == "redis:").unwrap() + 1;
    assert_eq!(
        error(&text),
        format!("invalid inventory site.yaml (1 problem):\n  site.yaml:{line}: redis: the Redis cluster needs a password source: set redis.password_env (an environment variable) or redis.password_file (a file on this machine), or redis.enabled: false")
    );
    let both = format!("{BASE}redis:\n  password_env: PW\n  password_file: /root/pw\n");
    assert!(error(&both).contains(&format!("site.yaml:{}: redis: give either password_env or password_file", line + 2)), "{}", error(&both));
    let bad_env = format!("{BASE}redis:\n  password_env: \"PW; rm -rf /\"\n");
    assert!(error(&bad_env).contains(&format!("site.yaml:{}: redis.password_env \"PW; rm -rf /\" is not an environment variable name", line + 1)));
    let ok = Inventory::parse(&format!("{BASE}redis:\n  password_file: /root/redis.pw\n"), "site.yaml").unwrap();
    assert!(ok.redis.enabled);
    let off = Inventory::parse(&format!("{BASE}redis:\n  enabled: false\n"), "site.yaml").unwrap();
    assert!(!off.redis.enabled);
    let hk = format!("{BASE}housekeeping:\n  log_days: 0\n  log_dirs: [/var/log/pods, \"relative\"]\n");
    let e = error(&hk);
    assert!(e.contains("housekeeping.log_days must be at least 1") && e.contains("housekeeping.log_dirs[1] \"relative\" must be an absolute directory"), "{e}");
}

/// The NFS VIP and its router id are checked like the other two; the NFS path, the DRBD disk and docker's
/// log settings name their lines.
#[test]
fn nfs_vip_path_drbd_disk_and_docker_logs_name_their_lines() {
    let with = |vips: &str, rest: &str| BASE.replace("workers: 10.20.0.200\n", &format!("workers: 10.20.0.200\n{vips}")) + rest;
    let ok = with("  nfs: 10.20.0.150\n", "nfs:\n  path: /srv/nfs/volumes\n  drbd_disk: /dev/sdb\nruntime:\n  docker: true\n  docker_log_max_size: 50m\n  docker_log_max_file: 3\n");
    let inv = Inventory::parse(&ok, "site.yaml").unwrap();
    assert_eq!((inv.vips.nfs, inv.vips.nfs_router_id), (Some("10.20.0.150".parse().unwrap()), 53));
    assert_eq!((inv.runtime.docker, inv.runtime.docker_log_max_size.as_str(), inv.runtime.docker_log_max_file), (true, "50m", 3));
    // defaults: no NFS VIP, no docker
    let inv = Inventory::parse(BASE, "site.yaml").unwrap();
    assert_eq!((inv.vips.nfs, inv.runtime.docker, inv.runtime.docker_log_max_size.as_str(), inv.runtime.docker_log_max_file), (None, false, "100m", 5));

    // the NFS VIP: on a node, outside the subnet, equal to another VIP; its router id equal to another's
    insta::assert_snapshot!("nfs_vip_problems", error(&with("  nfs: 10.20.0.12\n  nfs_router_id: 52\n", "")));
    insta::assert_snapshot!("nfs_vip_outside", error(&with("  nfs: 10.30.0.150\n", "")));
    insta::assert_snapshot!("nfs_vip_equal", error(&with("  nfs: 10.20.0.200\n  nfs_router_id: 0\n", "")));
    // a relative path, '..', a DRBD disk outside /dev, docker log sizes docker would refuse
    insta::assert_snapshot!("nfs_path_drbd_docker", error(&with(
        "  nfs: 10.20.0.150\n",
        "nfs:\n  path: opt/mnt/volumes\n  drbd_disk: sdb\nruntime:\n  docker: true\n  docker_log_max_size: 100mb\n  docker_log_max_file: 0\n",
    )));
    let dots = error(&with("  nfs: 10.20.0.150\n", "nfs:\n  path: /opt/../etc\n"));
    assert!(dots.contains("site.yaml:30: nfs.path \"/opt/../etc\" must be a normal path"), "{dots}");
    // DRBD serves NFS on its VIP: a disk without the VIP is a mistake
    let no_vip = error(&(BASE.to_string() + "nfs:\n  drbd_disk: /dev/sdb\n"));
    assert!(no_vip.contains("site.yaml:29: nfs.drbd_disk is set but vips.nfs is not"), "{no_vip}");
}
