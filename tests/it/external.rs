//! The inventory's `registry.external`: the site's own registry instead of the built-in one. `plan` (snapshot:
//! hosts.toml for every upstream host at that registry, with its CA and `<secret>` for the credentials, no
//! `registry` step), and a lab where the reference docker-registry (basic auth behind TLS, on the lab's host
//! leg) is the site's registry: `airgap push` fills it, preflight checks it, containerd on the nodes pulls
//! through it with ctr, and the workers' VIP (no built-in registry to follow) follows nginx.

use crate::push::authfile;
use crate::support::images::{make_image, ImageSpec};
use crate::support::lab::Lab;
use crate::support::registry::{Mode, Registry};
use crate::support::{airgap, airgap_bin, repo, require_tool};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECTION: &str = "\nregistry:\n  external: harbor.plant-a.example:8443/k8s\n  ca_file: CA\n  username: robot-pull\n  password_env: AIRGAP_TEST_REGISTRY_PASSWORD\n";
const PASSWORD: &str = "pull-Pa55word";

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn plan_points_containerd_at_the_external_registry_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    fs_err::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIBsiteCA\n-----END CERTIFICATE-----\n").unwrap();
    let inv = dir.path().join("site.yaml");
    // docker too: it gets the registry's CA and credentials, never insecure-registries
    let text = fs_err::read_to_string(repo().join("manifests/site.example.yaml")).unwrap().replace("  docker: false ", "  docker: true  ") + &SECTION.replace("CA", ca.to_str().unwrap());
    fs_err::write(&inv, text).unwrap();
    let out = airgap().args(["plan", "--only", "runtime,registry,nginx", "--inventory"]).arg(&inv).env("AIRGAP_TEST_REGISTRY_PASSWORD", PASSWORD).output().unwrap();
    let text = ok(&out);
    assert!(!text.contains(PASSWORD), "the password is in the plan");
    // no node runs the built-in registry
    let registry = text.split("## 2. registry").nth(1).unwrap().split("## 3. nginx").next().unwrap();
    assert!(!registry.contains("### "), "{registry}");
    // master1's runtime files, as a snapshot
    let master1 = text.split("### master1").nth(1).unwrap().split("### master2").next().unwrap();
    insta::assert_snapshot!(master1.lines().filter(|l| !l.starts_with("$ ") || !l.contains("packages")).collect::<Vec<_>>().join("\n"));
    // docker: the CA where docker looks it up, the credentials as <secret> in a 0600 file, TLS (never
    // insecure-registries) and no mirror (the registry has a prefix, which no docker mirror URL can carry)
    assert!(master1.contains("--path /etc/docker/certs.d/harbor.plant-a.example:8443/ca.crt --mode 644"), "{master1}");
    assert!(master1.contains("--path /etc/airgap/docker-auth.json --mode 600") && master1.contains("\"auth\": \"<secret>\""), "{master1}");
    assert!(master1.contains("node docker-registry harbor.plant-a.example:8443 --tls --log-max-size 100m --log-max-file 5"), "{master1}");
    // no registry step to install keepalived's workers' VIP: the nginx step does, following nginx
    let nginx = text.split("## 3. nginx").nth(1).unwrap();
    let worker1 = nginx.split("### worker1").nth(1).unwrap().split("### worker2").next().unwrap();
    let keepalived = worker1.split("--path /etc/keepalived/keepalived.conf").nth(1).unwrap();
    insta::assert_snapshot!("workers_vip_follows_nginx", keepalived.split("<<'AIRGAP_EOF'\n").nth(1).unwrap().split("AIRGAP_EOF").next().unwrap());
    assert!(worker1.contains("keepalived -t -f /etc/keepalived/keepalived.conf"), "{worker1}");

    // bad sections are errors naming the line
    for (section, want) in [
        ("\nregistry:\n  external: https://h/x\n", "registry.external"),
        ("\nregistry:\n  external: h.example/p\n  username: u\n", "registry.username needs"),
        ("\nregistry:\n  ca_file: /x\n", "registry.ca_file is only used with registry.external"),
    ] {
        let text = fs_err::read_to_string(repo().join("manifests/site.example.yaml")).unwrap() + section;
        fs_err::write(&inv, text).unwrap();
        let out = airgap().args(["plan", "--inventory"]).arg(&inv).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want) && err.contains("site.yaml:"), "{err}");
    }
}

/// The lab's part: a bundle with the runtime (static containerd, runc, CNI plugins) and two images, the site's
/// registry on the host leg, pushed, then `install` up to `runtime` with the inventory pointing at it.
fn external_registry_in(lab: &Lab, w: &Path) {
    let upstream = Registry::start(Mode::Plain);
    let mut refs = vec![];
    for (i, path) in ["airgap/pause:3.10", "airgap/app:v1"].iter().enumerate() {
        let made = make_image(&w.join("layout"), &format!("t{i}"), &ImageSpec::single(60 + i as u64));
        upstream.push_layout(&w.join("layout"), &format!("t{i}"), path);
        refs.push((format!("{}/{path}", upstream.addr), made.digest.to_string()));
    }
    // keepalived and nginx (the workers' VIP, following nginx) from the OS packages the lab rootfs lacks
    let closure = crate::support::run_ok(Command::new("bash").arg(repo().join("scripts/deb-closure.sh")).arg("--rootfs").arg(crate::support::lab::rootfs()).args(["keepalived", "nginx", "libnginx-mod-stream"]));
    let rel = w.join("releases");
    let files = crate::infra::static_runtime_releases(&rel);
    let server = crate::support::fileserver::FileServer::start(&rel);
    let mut manifest = String::from("name: ext-lab\nversion: 1.0.0\nimages:\n");
    for (r, _) in &refs {
        manifest.push_str(&format!("  - {r}\n"));
    }
    manifest.push_str("files:\n");
    for (name, component) in files {
        let sha = crate::support::sha256sum(&rel.join(&name));
        manifest.push_str(&format!("  - url: {}\n    sha256: {sha}\n    path: runtime/{name}\n    install: {component}\n", server.url(&name)));
    }
    manifest.push_str(&String::from_utf8_lossy(&closure.stdout));
    fs_err::write(w.join("manifest.yaml"), &manifest).unwrap();
    ok(airgap().args(["keygen", "--out-dir"]).arg(w.join("keys")).output().as_ref().unwrap());
    ok(airgap().arg("build").arg(w.join("manifest.yaml")).arg("--out").arg(w.join("out")).arg("--key").arg(w.join("keys/airgap.key")).args(["--insecure-registry", &upstream.addr, "--cache-dir"]).arg(w.join("cache")).output().as_ref().unwrap());
    let bundle = w.join("out/ext-lab-1.0.0.tar.zst");

    // the site's registry: docker-registry with basic auth behind TLS, on the host leg the nodes reach
    let site = Registry::start_on(Mode::BasicAuth { user: "robot".into(), password: PASSWORD.into() }, &format!("{}.1", lab.net));
    let ca = site.ca_cert.clone().unwrap();
    let inv = w.join("site.yaml");
    lab.inventory(&inv, &format!("\nregistry:\n  external: {}/plant\n  ca_file: {}\n  username: robot\n  password_env: AIRGAP_TEST_REGISTRY_PASSWORD\n", site.addr, ca.display()));
    let install = |only: &str| {
        let mut c = Command::new(airgap_bin());
        c.args(["install", "--only", only, "--inventory"]).arg(&inv).arg("--bundle").arg(&bundle).arg("--pubkey").arg(w.join("keys/airgap.pub"));
        c.arg("--state-dir").arg(w.join("state")).arg("--log-dir").arg(w.join("log")).env("AIRGAP_TEST_REGISTRY_PASSWORD", PASSWORD).stdin(Stdio::null());
        c.output().unwrap()
    };

    // preflight: the registry does not hold the bundle's images yet
    let out = install("preflight");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("lacks 2 of the bundle's 2 images") && err.contains("airgap push"), "{err}");
    let auth = authfile(w, &site.addr, "robot", PASSWORD);
    ok(Command::new(airgap_bin()).arg("push").arg(&bundle).arg("--pubkey").arg(w.join("keys/airgap.pub")).arg("--to").arg(format!("{}/plant", site.addr)).arg("--authfile").arg(&auth).arg("--ca-cert").arg(&ca).output().as_ref().unwrap());
    let text = ok(&install("preflight,os-prepare,distribute,runtime,registry,nginx"));
    assert!(!text.contains(PASSWORD), "the password is in the output");
    for log in std::fs::read_dir(w.join("log")).unwrap().flatten() {
        assert!(!fs_err::read_to_string(log.path()).unwrap_or_default().contains(PASSWORD), "the password is in {}", log.path().display());
    }
    let status = ok(Command::new(airgap_bin()).args(["status", "--inventory"]).arg(&inv).arg("--state-dir").arg(w.join("state")).output().as_ref().unwrap());
    assert!(!status.lines().any(|l| l.starts_with("registry ")), "the registry step runs somewhere: {status}");

    // on the nodes: no built-in registry, the credentials only in root's 0600 hosts.toml, and containerd
    // pulls both images through it (upstream is unreachable from the nodes)
    let upstream_host = upstream.addr.clone();
    for node in ["master3", "worker1"] {
        let out = lab.exec(node, &format!("systemctl is-active airgap-registry || true; stat -c %a /etc/containerd/certs.d/{upstream_host}/hosts.toml; grep -c 'Basic ' /etc/containerd/certs.d/{upstream_host}/hosts.toml"));
        assert!(out.starts_with("inactive\n600\n1\n") || out.starts_with("unknown\n600\n1\n"), "{node}: {out}");
        // nothing loads the bundle on the nodes: it is not copied there
        assert_eq!(lab.exec(node, "ls /opt/airgap/bundles 2>/dev/null | wc -l").trim(), "0", "{node} received the bundle");
        for (i, (r, digest)) in refs.iter().enumerate() {
            let cmd = format!("ctr -n x{i} images pull --hosts-dir /etc/containerd/certs.d --snapshotter native {r} >/dev/null && ctr -n x{i} images ls | awk 'NR>1 {{print $3}}'");
            let out = lab.exec(node, &cmd);
            assert!(out.contains(digest.as_str()), "{node} {r}: pulled {out}, expected {digest}");
        }
    }
    // the sandbox image is named at the site's registry itself
    let config = fs_err::read_to_string(lab.root("master1").join("etc/containerd/config.toml")).unwrap();
    assert!(config.contains(&format!("sandbox_image = \"{}/plant/airgap/pause:3.10\"", site.addr)), "{config}");
    lab.exec("master1", &format!("ctr -n sb images pull --hosts-dir /etc/containerd/certs.d --snapshotter native {}/plant/airgap/pause:3.10 >/dev/null", site.addr));

    workers_vip_follows_nginx(lab, w);
}

/// The body of `GET /` on `addr` (HTTP/1.0), if it answers within a second.
fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.starts_with("HTTP/1.0 200").then(|| buf.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string())
}

/// With `registry.external` no node runs the `registry` step, which installs keepalived's workers' VIP
/// following the built-in registry: the `nginx` step installs it instead, following nginx. The VIP is on
/// worker1, answers :80 through nginx (forwarded to a stand-in ingress on the masters), and moves to worker2
/// when nginx stops on worker1.
fn workers_vip_follows_nginx(lab: &Lab, w: &Path) {
    let vip = format!("{}.200", lab.net);
    for n in ["worker1", "worker2"] {
        let out = lab.exec(n, "keepalived -t -f /etc/keepalived/keepalived.conf && echo conf-ok; grep -c 'check-tcp 127.0.0.1:80 ' /etc/keepalived/keepalived.conf; systemctl is-active keepalived nginx");
        assert_eq!(out, "conf-ok\n1\nactive\nactive\n", "{n}");
    }
    // a stand-in ingress on each master's :80 (test fixture, in the node's network namespace): its name
    let _ingress: Vec<_> = ["master1", "master2", "master3"]
        .iter()
        .map(|m| {
            let dir = w.join(format!("ingress-{m}"));
            fs_err::create_dir_all(&dir).unwrap();
            fs_err::write(dir.join("index.html"), format!("{m}\n")).unwrap();
            let child = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}-{m}", lab.id))
                .args(["python3", "-m", "http.server", "--bind", "0.0.0.0", "--directory"])
                .arg(&dir)
                .arg("80")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            crate::support::ChildGuard(child)
        })
        .collect();
    let through = format!("{vip}:80");
    let took = crate::support::try_wait_until(Duration::from_secs(20), || lab.vip_holders(&vip) == ["worker1"] && http_get(&through).is_some_and(|b| b.starts_with("master")));
    assert!(took.is_some(), "the workers' VIP {vip} is on {:?}; GET {through}: {:?}", lab.vip_holders(&vip), http_get(&through));
    // nginx stops on worker1: keepalived's check fails there, the VIP moves to worker2, whose nginx answers
    lab.exec("worker1", "systemctl stop nginx");
    let t = Instant::now();
    let moved = crate::support::try_wait_until(Duration::from_secs(20), || lab.vip_holders(&vip) == ["worker2"]);
    assert!(moved.is_some(), "the workers' VIP did not move to worker2 after nginx stopped on worker1: {:?}", lab.vip_holders(&vip));
    crate::support::wait_until(&format!("an answer through {through} from worker2's nginx"), Duration::from_secs(20), || http_get(&through).is_some_and(|b| b.starts_with("master")));
    eprintln!("MEASURED workers' VIP (following nginx) on worker2 {:?} and answering :80 {:?} after nginx stopped on worker1", moved.unwrap(), t.elapsed());
    lab.exec("worker1", "systemctl start nginx");
    crate::support::wait_until("the workers' VIP back on worker1", Duration::from_secs(20), || lab.vip_holders(&vip) == ["worker1"]);
}

#[test]
fn nodes_pull_through_the_sites_own_registry_in_the_lab() {
    let _slot = crate::support::lab_slot();
    for t in ["docker-registry", "htpasswd", "openssl", "ctr", "containerd", "runc", "apt-get", "nsenter", "python3"] {
        require_tool(t);
    }
    let Some(lab) = Lab::up(5) else { return };
    let work = tempfile::tempdir().unwrap();
    external_registry_in(&lab, work.path());
    lab.down();
}
