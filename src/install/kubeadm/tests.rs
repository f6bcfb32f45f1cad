//! No secret reaches the plan text, the plan JSON, the journal's inputs, the log or a command line: the
//! Kubernetes steps applied on a fake node that records every command, through the engine's logging
//! transport.

use crate::install::journal::{Journal, Status};
use crate::install::plan_text::{action_text, plan_json, plan_text};
use crate::install::progress::{Logged, Progress};
use crate::install::secrets::ClusterSecrets;
use crate::install::ssh::{CmdOutput, Stdin, Transport};
use crate::install::steps::{kubeadm_init::KubeadmInit, kubeadm_join::KubeadmJoin, kubelet::Kubelet};
use crate::install::{Ctx, Step};
use crate::site::inventory::Inventory;
use anyhow::Result;
use std::sync::Mutex;

fn inventory() -> Inventory {
    Inventory::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/site.example.yaml"))).unwrap()
}

/// A node that answers like one where nothing of Kubernetes is there yet and every command works.
struct FakeNode {
    name: String,
    vip: String,
    calls: Mutex<Vec<(Vec<String>, Vec<u8>)>>,
}

impl Transport for FakeNode {
    fn node(&self) -> &str {
        &self.name
    }
    fn run(&self, argv: &[String], stdin: Stdin<'_>) -> Result<CmdOutput> {
        let input = match stdin {
            Stdin::Bytes(b) => b.to_vec(),
            _ => Vec::new(),
        };
        self.calls.lock().unwrap().push((argv.to_vec(), input));
        let joined = argv.join(" ");
        let (code, stdout) = if joined.contains("kubectl") || argv[0] == "test" {
            (1, String::new())
        } else if joined.contains("write-file") {
            (0, "written\n".to_string())
        } else if joined.contains("cat \"$1\"") {
            (0, format!("apiVersion: v1\nclusters:\n- cluster:\n    server: https://{}:16443\n", self.vip))
        } else {
            (0, String::new())
        };
        Ok(CmdOutput { code, stdout: stdout.into_bytes(), stderr: String::new() })
    }
}

#[test]
fn no_secret_in_plan_journal_log_or_argv() {
    let inv = inventory();
    let state = tempfile::tempdir().unwrap();
    let secrets = ClusterSecrets::load_or_create(state.path()).unwrap();
    let values = secrets.values();
    let warn = |_: &str| {};
    let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: None, targets: &Default::default(), warn: &warn, secrets: Some(&secrets) };
    let steps: Vec<Box<dyn Step>> = vec![Box::new(Kubelet), Box::new(KubeadmInit), Box::new(KubeadmJoin)];
    let leaks = |what: &str, text: &str| {
        for v in &values {
            assert!(!text.contains(v.as_str()), "{what} holds a secret value:\n{text}");
        }
    };

    // plan text and JSON: <secret>, the CA pin (public) and the files' sha256
    let text = plan_text(&ctx, &steps).unwrap();
    leaks("the plan", &text);
    assert!(text.contains("token: <secret>") && text.contains("certificateKey: <secret>"), "{text}");
    assert!(text.contains(&secrets.ca.cert_hash().unwrap().to_string()), "the CA pin is shown:\n{text}");
    assert!(text.contains(&format!("bootstrap-token-{} -o name", secrets.token.id())), "{text}");
    let json = serde_json::to_string(&plan_json(&ctx, &steps).unwrap()).unwrap();
    leaks("the plan JSON", &json);

    // the journal keeps the hash of the inputs; new secrets are new inputs
    let master1 = &inv.nodes[0];
    let journal = Journal::open(state.path(), "plant-a").unwrap();
    let hash = KubeadmInit.inputs_hash(&ctx, master1).unwrap();
    journal.record("kubeadm-init", "master1", Status::Done, &hash, "done").unwrap();
    leaks("the journal", &fs_err::read_to_string(journal.path()).unwrap());
    let other_state = tempfile::tempdir().unwrap();
    let other = ClusterSecrets::load_or_create(other_state.path()).unwrap();
    let ctx2 = Ctx { secrets: Some(&other), ..ctx };
    assert_ne!(KubeadmInit.inputs_hash(&ctx2, master1).unwrap(), hash, "the secrets are part of the inputs");

    // apply init on master1 and a join on master2 through the logging transport: argv and log clean, the
    // secrets on stdin only, admin.conf back 0600
    let log = state.path().join("install.log");
    let out = crate::output::Output::new(true, crate::output::ColorChoice::Never);
    let nodes: Vec<&crate::site::inventory::Node> = inv.nodes.iter().collect();
    let progress = Progress::new(&out, &nodes, Some(&log)).unwrap();
    let vip = inv.vips.masters.to_string();
    let fake = |name: &str| FakeNode { name: name.into(), vip: vip.clone(), calls: Mutex::new(Vec::new()) };
    let (m1, m2) = (fake("master1"), fake("master2"));
    let t1 = Logged { inner: &m1, progress: &progress };
    let changed = KubeadmInit.apply(&ctx, master1, &t1, &|_| {}).unwrap();
    assert!(changed.contains(&"ran kubeadm init".to_string()), "{changed:?}");
    let t2 = Logged { inner: &m2, progress: &progress };
    KubeadmJoin.apply(&ctx, &inv.nodes[1], &t2, &|_| {}).unwrap();
    for (_, actions) in KubeadmJoin.cluster_actions(&ctx, Some(&[&inv.nodes[1]])).unwrap() {
        crate::install::actions::apply_all(&actions, &t1, &|_| {}).unwrap();
    }
    progress.finish();
    leaks("the log", &fs_err::read_to_string(&log).unwrap());
    let mut stdin = String::new();
    for (argv, input) in m1.calls.lock().unwrap().iter().chain(m2.calls.lock().unwrap().iter()) {
        leaks("a command line", &argv.join(" "));
        stdin.push_str(&String::from_utf8_lossy(input));
    }
    for v in &values {
        assert!(stdin.contains(v.as_str()), "the secrets reach the nodes over stdin");
    }
    let argvs: Vec<String> = m1.calls.lock().unwrap().iter().map(|(a, _)| a.join(" ")).collect();
    let pos = |s: &str| argvs.iter().position(|a| a.contains(s)).unwrap_or_else(|| panic!("no {s} in {argvs:#?}"));
    assert!(pos("check-images") < pos("--path /etc/kubernetes/pki/ca.key"), "images are checked before anything is written");
    // the files holding secrets go through `secret-file` (content on stdin), and not even their hash is on a
    // command line
    assert!(argvs.iter().any(|a| a.ends_with("node secret-file --path /etc/kubernetes/pki/ca.key --mode 600")), "{argvs:#?}");
    for a in KubeadmInit.plan(&ctx, master1).unwrap() {
        if let crate::install::Action::SecretFile { content: Some(c), path, .. } = a {
            let hash = crate::digest::Digest::of_bytes(c.expose().as_bytes());
            assert!(!argvs.iter().any(|a| a.contains(hash.hex())), "the hash of {path} is on a command line");
        }
    }
    assert!(pos("--path /etc/kubernetes/airgap/kubeadm-init.yaml") < pos("kubeadm init --config"));
    assert!(argvs.iter().any(|a| a.ends_with("kubeadm init --config /etc/kubernetes/airgap/kubeadm-init.yaml --upload-certs --skip-token-print --skip-certificate-key-print")));
    assert!(pos("token create --config") < pos("upload-certs --upload-certs --config"));
    use std::os::unix::fs::PermissionsExt;
    let admin = secrets.admin_conf();
    assert_eq!(fs_err::metadata(&admin).unwrap().permissions().mode() & 0o777, 0o600);
    for a in action_text_all(&ctx, &steps) {
        leaks("an action", &a);
    }
}

fn action_text_all(ctx: &Ctx, steps: &[Box<dyn Step>]) -> Vec<String> {
    let mut v = Vec::new();
    for s in steps {
        for n in ctx.inv.nodes.iter().filter(|n| s.runs_on(ctx, n)) {
            v.extend(s.plan(ctx, n).unwrap().iter().map(action_text));
        }
    }
    v
}

#[test]
fn init_runs_on_the_first_master_and_joins_order_masters_one_at_a_time() {
    let inv = inventory();
    let warn = |_: &str| {};
    let ctx = Ctx { inv: &inv, bundle: None, binary: None, pubkey: None, kit: None, targets: &Default::default(), warn: &warn, secrets: None };
    let on = |s: &dyn Step| inv.nodes.iter().filter(|n| s.runs_on(&ctx, n)).map(|n| n.name.as_str()).collect::<Vec<_>>();
    assert_eq!(on(&KubeadmInit), ["master1"]);
    assert_eq!(on(&KubeadmJoin), ["master2", "master3", "worker1", "worker2"]);
    let orders: Vec<_> = inv.nodes[1..].iter().map(|n| KubeadmJoin.apply_order(&ctx, n)).collect();
    use crate::install::ApplyOrder::*;
    assert_eq!(orders, [OneAtATime, OneAtATime, Parallel, Parallel]);
    // workers only pending: no upload of the certificates
    let only_workers = KubeadmJoin.cluster_actions(&ctx, Some(&[&inv.nodes[3]])).unwrap();
    assert_eq!(only_workers[0].1.len(), 1, "{only_workers:?}");
}
