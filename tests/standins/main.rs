//! `k8s-standin`: test stand-ins for `kubeadm`, `kubelet` and `kubectl` (plus `standin-apiserver`, the daemon
//! `kubeadm init`/`join` start on every control-plane node). Tests only: built by `cargo test` as an example,
//! never part of the airgap binary, never in a bundle. See tests/standins/README.md for the supported
//! surface, the enforced contract and where each rule comes from.
//!
//! Multi-call: the tool is chosen by the program name (`argv[0]`: kubeadm, kubelet, kubectl,
//! standin-apiserver), or by the first argument when the program has another name
//! (`k8s-standin kubeadm init ...`). Every call is appended to `/var/log/k8s-standin/calls.jsonl`.

mod apiserver;
mod client;
mod common;
mod crypto;
mod flags;
mod kubeadm;
mod kubectl;
mod kubelet;
mod net;
mod objects;
mod pki;
mod services;

use common::{Ctx, Fail};

const TOOLS: [&str; 4] = ["kubeadm", "kubelet", "kubectl", "standin-apiserver"];

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    // `<anything> standin-apiserver ...`: how systemd-run starts the daemon (it cannot set argv[0])
    let (tool, args): (String, Vec<String>) = if argv.get(1).map(String::as_str) == Some("standin-apiserver") {
        ("standin-apiserver".into(), argv[2..].to_vec())
    } else if TOOLS.contains(&prog.as_str()) {
        (prog, argv[1..].to_vec())
    } else if let Some(t) = argv.get(1).filter(|t| TOOLS.contains(&t.as_str())) {
        (t.clone(), argv[2..].to_vec())
    } else {
        eprintln!("usage: k8s-standin (kubeadm|kubelet|kubectl|standin-apiserver) ARGS...  (or call it by one of those names)");
        std::process::exit(2);
    };
    let ctx = Ctx::from_env();
    let result = match tool.as_str() {
        "kubeadm" => kubeadm::main(&ctx, &args),
        "kubelet" => kubelet::main(&ctx, &args),
        "kubectl" => kubectl::main(&ctx, &args),
        _ => apiserver::main(&ctx, &args),
    };
    let (code, error) = match result {
        Ok(()) => (0, None),
        Err(Fail { msg, code }) => {
            let mut m = msg;
            if !m.ends_with('\n') {
                m.push('\n');
            }
            eprint!("{m}");
            (code, Some(m))
        }
    };
    common::record_call(&ctx, &tool, &argv, Some(code), error.as_deref());
    std::process::exit(code);
}
