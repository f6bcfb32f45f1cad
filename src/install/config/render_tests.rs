//! Render every template for the example site, snapshot it, and run each daemon's own config checker on it.

use super::*;
use crate::install::config::containerd::{ContainerdRelease, ContainerdVersion};
use crate::install::config::{Interface, Peer, Site};
use crate::node::{OsFamily, BIN};
use std::path::Path;
use std::process::Command;

fn peer(name: &str, ip: &str) -> Peer {
    Peer { name: name.into(), ip: ip.parse().unwrap(), interface: Interface::Named("eth0".into()) }
}

/// The example site of the seeds' architecture: 3 masters, registry on worker1/worker2.
pub(crate) fn example_site() -> Site {
    Site {
        masters: vec![peer("master1", "10.20.0.11"), peer("master2", "10.20.0.12"), peer("master3", "10.20.0.13")],
        registry_workers: vec![peer("worker1", "10.20.0.21"), peer("worker2", "10.20.0.22")],
        masters_vip: "10.20.0.100".parse().unwrap(),
        workers_vip: "10.20.0.200".parse().unwrap(),
        vip_prefix: 24,
        masters_vrid: 51,
        workers_vrid: 52,
        upstream_hosts: vec!["registry.k8s.io".into(), "docker.io".into(), "ghcr.io".into(), "quay.io".into()],
        pause_image: "pause:3.9".into(),
        snapshotter: "overlayfs".into(),
        airgap_bin: BIN.into(),
        external: None,
    }
}

fn file<'a>(files: &'a [FileSpec], path: &str) -> &'a FileSpec {
    files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not rendered"))
}

fn run_checker(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e} (scripts/setup-debian.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} rejected the rendered config ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `keepalived -t` returns 0 for a missing file: check the file exists first, and point the scripts the
/// config runs at files that exist here (script security rejects missing or non-executable scripts).
fn keepalived_check(dir: &Path, conf: &str, notify: &str) {
    let notify_path = dir.join("notify.sh");
    fs_err::write(&notify_path, notify).unwrap();
    let check_bin = dir.join("airgap");
    fs_err::write(&check_bin, "#!/bin/sh\nexit 0\n").unwrap();
    for p in [&notify_path, &check_bin] {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let conf = conf.replace(KEEPALIVED_NOTIFY, notify_path.to_str().unwrap()).replace(BIN, check_bin.to_str().unwrap());
    let path = dir.join("keepalived.conf");
    fs_err::write(&path, conf).unwrap();
    assert!(path.is_file());
    run_checker(Command::new("keepalived").arg("-t").arg("-f").arg(&path));
    // and the checker does reject a broken file (a test that cannot fail is a defect)
    fs_err::write(&path, "vrrp_instance x {\n  state MASTER\n  virtual_router_id 400\n  bogus\n").unwrap();
    let bad = Command::new("keepalived").arg("-t").arg("-f").arg(&path).output().unwrap();
    assert!(!bad.status.success(), "keepalived -t accepted a broken config");
}

#[test]
fn keepalived_masters_renders_and_passes_keepalived_t() {
    let site = example_site();
    site.validate().unwrap();
    for node in ["master1", "master2", "master3"] {
        let files = keepalived(&site, node, VipRole::Masters).unwrap();
        let conf = &file(&files, KEEPALIVED_CONF).content;
        let tmp = tempfile::tempdir().unwrap();
        keepalived_check(tmp.path(), conf, &file(&files, KEEPALIVED_NOTIFY).content);
        insta::assert_snapshot!(format!("keepalived_masters_{node}"), conf);
    }
    let files = keepalived(&site, "master1", VipRole::Masters).unwrap();
    insta::assert_snapshot!("keepalived_notify_masters", file(&files, KEEPALIVED_NOTIFY).content);
    insta::assert_snapshot!("keepalived_dropin_masters", file(&files, KEEPALIVED_DROPIN).content);
    run_checker(Command::new("sh").arg("-n").arg({
        let p = tempfile::NamedTempFile::new().unwrap().into_temp_path().keep().unwrap();
        fs_err::write(&p, &file(&files, KEEPALIVED_NOTIFY).content).unwrap();
        p
    }));
}

#[test]
fn keepalived_workers_renders_and_passes_keepalived_t() {
    let site = example_site();
    for node in ["worker1", "worker2"] {
        let files = keepalived(&site, node, VipRole::Workers).unwrap();
        let conf = &file(&files, KEEPALIVED_CONF).content;
        let tmp = tempfile::tempdir().unwrap();
        keepalived_check(tmp.path(), conf, &file(&files, KEEPALIVED_NOTIFY).content);
        insta::assert_snapshot!(format!("keepalived_workers_{node}"), conf);
    }
    assert!(keepalived(&site, "master1", VipRole::Workers).is_err());
    // with the site's own registry there is no registry to follow: the VIP follows nginx (:80)
    let ext = Site {
        external: Some(crate::install::config::ExternalRegistry { host: "harbor.example:443".into(), prefix: "k8s".into(), ca_pem: None, authenticated: false }),
        ..example_site()
    };
    let files = keepalived(&ext, "worker1", VipRole::Workers).unwrap();
    let conf = &file(&files, KEEPALIVED_CONF).content;
    keepalived_check(tempfile::tempdir().unwrap().path(), conf, &file(&files, KEEPALIVED_NOTIFY).content);
    assert!(conf.contains("vrrp_script chk_nginx {\n    script \"/opt/airgap/bin/airgap node check-tcp 127.0.0.1:80 --timeout-ms 800\""), "{conf}");
    assert!(conf.contains("track_script {\n        chk_nginx\n") && !conf.contains("5000"), "{conf}");
}

#[test]
fn vrrp_priorities_put_the_first_node_first_and_failed_checks_fault_the_instance() {
    let site = example_site();
    for (role, group) in [(VipRole::Masters, &site.masters), (VipRole::Workers, &site.registry_workers)] {
        let mut prios = vec![];
        for p in group {
            let conf = file(&keepalived(&site, &p.name, role).unwrap(), KEEPALIVED_CONF).content.clone();
            let line = conf.lines().map(str::trim).find(|l| l.starts_with("priority ")).unwrap();
            prios.push(line.split_whitespace().nth(1).unwrap().parse::<u32>().unwrap());
            // no weight: a failing check puts the instance in FAULT, which releases the VIP at once
            assert!(!conf.lines().any(|l| l.trim().starts_with("weight")), "{conf}");
            assert_eq!(conf.contains("state MASTER"), p.name == group[0].name);
        }
        assert!(prios.windows(2).all(|w| w[0] > w[1]), "{prios:?}");
    }
}

#[test]
fn haproxy_cfg_passes_haproxy_c() {
    let site = example_site();
    let files = haproxy(&site, "master1").unwrap();
    let cfg = &file(&files, HAPROXY_CFG).content;
    for needle in ["bind *:16443", "option redispatch", "retries 3", "10.20.0.13:6443 check", "mode tcp"] {
        assert!(cfg.contains(needle), "haproxy.cfg lacks {needle:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("haproxy.cfg");
    fs_err::write(&path, cfg).unwrap();
    run_checker(Command::new("haproxy").arg("-c").arg("-f").arg(&path));
    fs_err::write(&path, cfg.replace("balance roundrobin", "balance nonsense")).unwrap();
    assert!(!Command::new("haproxy").arg("-c").arg("-f").arg(&path).output().unwrap().status.success());
    insta::assert_snapshot!("haproxy_cfg", cfg);
}

#[test]
fn nginx_conf_follows_the_rhel_layout() {
    let site = example_site();
    let rhel = nginx(&site, "worker1", &NginxLayout::for_os(OsFamily::Rhel), NginxPorts::default()).unwrap();
    let main = &file(&rhel, NGINX_CONF).content;
    assert!(main.contains("user nginx;"), "{main}");
    assert!(main.contains("include /usr/share/nginx/modules/*.conf;"), "{main}");
    assert!(!main.contains("www-data") && !main.contains("modules-enabled"), "{main}");
}

#[test]
fn nginx_conf_passes_nginx_t() {
    let site = example_site();
    let prod = nginx(&site, "worker1", &NginxLayout::for_os(OsFamily::Debian), NginxPorts::default()).unwrap();
    insta::assert_snapshot!("nginx_conf", file(&prod, NGINX_CONF).content);
    insta::assert_snapshot!("nginx_ingress_conf", file(&prod, NGINX_INGRESS).content);
    assert!(nginx(&site, "master1", &NginxLayout::for_os(OsFamily::Debian), NginxPorts::default()).is_err());

    // the same templates under a temp dir, checked by this host's nginx (with its stream module)
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap().to_string();
    let mut layout = NginxLayout::for_os(OsFamily::Debian);
    layout.conf_dir = d.clone();
    layout.log_dir = d.clone();
    layout.pid_file = format!("{d}/nginx.pid");
    let files = nginx(&site, "worker2", &layout, NginxPorts::default()).unwrap();
    for f in &files {
        let p = Path::new(&f.path);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, &f.content).unwrap();
    }
    let conf = format!("{d}/nginx.conf");
    run_checker(Command::new("nginx").args(["-t", "-c", &conf]));
    // the stream module really was needed and loaded: without the module include nginx -t fails
    let main = file(&files, &conf).content.replace("include /etc/nginx/modules-enabled/*.conf;", "");
    fs_err::write(&conf, main).unwrap();
    assert!(!Command::new("nginx").args(["-t", "-c", &conf]).output().unwrap().status.success());
}

#[test]
fn containerd_config_is_loaded_by_containerd() {
    let site = example_site();
    // the bundle's containerd 1.6 (Debian 12's package): config version 2, which this host's containerd 1.6 loads
    let debian = ContainerdRelease::Known {
        version: ContainerdVersion { major: 1, minor: 6, patch: 20 },
        from: "the bundle's packages/debian-12/containerd_1.6.20~ds1-1+deb12u3_amd64.deb".into(),
    };
    let files = runtime(&site, &debian).unwrap();
    let cfg = &file(&files, CONTAINERD_CONFIG).content;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.toml");
    fs_err::write(&path, cfg).unwrap();
    let out = Command::new("containerd").arg("--config").arg(&path).args(["config", "dump"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "SystemdCgroup = true",
        "config_path = \"/etc/containerd/certs.d\"",
        "sandbox_image = \"10.20.0.200:5000/pause:3.9\"",
        "snapshotter = \"overlayfs\"",
    ] {
        assert!(dump.contains(needle), "containerd's effective config lacks {needle:?}:\n{dump}");
    }
    insta::assert_snapshot!("containerd_config_toml", cfg);
    // a containerd the bundle does not tell: the same version-2 layout
    let unknown = runtime(&site, &ContainerdRelease::Unknown).unwrap();
    assert!(file(&unknown, CONTAINERD_CONFIG).content.contains("\nversion = 2\n"));
    // containerd 2.3 (the default bundle's static release): version 3, CNI bin_dirs (tests/it/containerd_config.rs
    // loads it in containerd 2.x)
    let v2 = ContainerdRelease::Known {
        version: ContainerdVersion { major: 2, minor: 3, patch: 6 },
        from: "the bundle's archives/linux-amd64/containerd-static-2.3.6.tar.gz".into(),
    };
    let v3 = runtime(&site, &v2).unwrap();
    insta::assert_snapshot!("containerd_config_toml_v3", file(&v3, CONTAINERD_CONFIG).content);
    assert_eq!(v3[1..], files[1..], "the hosts.toml files do not depend on containerd's version");

    // one hosts.toml per upstream host and one for the site registry (plain HTTP), all to the VIP only
    let hosts: Vec<&str> = files.iter().filter(|f| f.path.ends_with("/hosts.toml")).map(|f| f.path.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "/etc/containerd/certs.d/10.20.0.200:5000/hosts.toml",
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "/etc/containerd/certs.d/ghcr.io/hosts.toml",
            "/etc/containerd/certs.d/quay.io/hosts.toml",
            "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
        ]
    );
    for f in files.iter().filter(|f| f.path.ends_with("/hosts.toml")) {
        let urls: Vec<&str> = f.content.lines().filter(|l| l.contains("://")).collect();
        assert!(urls.iter().all(|l| l.contains("http://10.20.0.200:5000")), "{}: {urls:?}", f.path);
    }
    insta::assert_snapshot!("hosts_toml_registry_k8s_io", file(&files, "/etc/containerd/certs.d/registry.k8s.io/hosts.toml").content);
}

#[test]
fn containerd_unit_passes_systemd_analyze() {
    let unit = containerd_unit("/usr/local/bin").unwrap();
    assert_eq!(unit.path, CONTAINERD_UNIT);
    assert!(unit.content.contains("ExecStart=/usr/local/bin/containerd --config /etc/containerd/config.toml"));
    // systemd-analyze verify needs the ExecStart binary to exist: check a copy pointing at the host's containerd
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("containerd.service");
    fs_err::write(&path, unit.content.replace("/usr/local/bin/containerd", "/usr/bin/containerd")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("containerd.service:"), "systemd-analyze found problems:\n{err}");
    assert!(crictl_yaml().unwrap().content.contains("unix:///run/containerd/containerd.sock"));
}

/// `systemd-analyze verify` on a copy of a unit whose ExecStart binary is `/bin/true` (verify needs it to
/// exist): its stderr lines about the unit (none when it is clean).
fn verify_registry_unit(content: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("airgap-registry.service");
    fs_err::write(&path, content.replace(BIN, "/bin/true")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("airgap-registry.service")).collect::<Vec<_>>().join("\n");
    (tmp, path, err)
}

#[test]
fn registry_unit_is_sandboxed_and_passes_systemd_analyze() {
    let site = example_site();
    let unit = registry_unit(&site, "worker2", false).unwrap();
    assert_eq!(unit.path, REGISTRY_UNIT);
    insta::assert_snapshot!("airgap_registry_service", unit.content);
    let exec = unit.content.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.ends_with("--listen 127.0.0.1:5000 --listen 10.20.0.22:5000 --listen-vip 10.20.0.200:5000") && !exec.contains("0.0.0.0"),
        "{exec}"
    );
    for line in ["DynamicUser=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "NoNewPrivileges=yes", "SystemCallFilter=@system-service"] {
        assert!(unit.content.lines().any(|l| l == line), "{line} missing");
    }
    assert!(!unit.content.contains("ReadWritePaths"), "serve writes nothing");
    let (_tmp, path, err) = verify_registry_unit(&unit.content);
    assert!(err.is_empty(), "systemd-analyze verify found problems:\n{err}");
    // systemd's own exposure score (0 = fully locked down, 10 = unprotected; a plain unit scores 9.6).
    let out = Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for").nth(1)?.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(score <= 2.0, "exposure {score}:\n{text}");
    eprintln!("systemd-analyze security: exposure {score}");
    // el7's systemd 219: no DynamicUser/strict/groups, still no capabilities.
    let legacy = registry_unit(&site, "worker1", true).unwrap();
    let directives: Vec<&str> = legacy.content.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!directives.iter().any(|l| l.starts_with("DynamicUser") || l.starts_with("SystemCallFilter")), "{}", legacy.content);
    assert!(legacy.content.lines().any(|l| l == "CapabilityBoundingSet="));
    let (_tmp, _, err) = verify_registry_unit(&legacy.content);
    assert!(err.is_empty(), "systemd-analyze verify found problems in the el7 unit:\n{err}");
    assert!(registry_unit(&site, "master1", false).is_err());
}

#[test]
fn site_validation_names_the_problem() {
    let mut site = example_site();
    site.workers_vrid = site.masters_vrid;
    assert!(site.validate().unwrap_err().to_string().contains("virtual_router_id"));
    let mut site = example_site();
    site.workers_vip = site.masters_vip;
    assert!(site.validate().unwrap_err().to_string().contains("must differ"));
    let mut site = example_site();
    site.registry_workers[0].ip = site.workers_vip;
    assert!(site.validate().unwrap_err().to_string().contains("worker1"));
    let mut site = example_site();
    site.upstream_hosts.push("../etc".into());
    assert!(site.validate().is_err());
}
