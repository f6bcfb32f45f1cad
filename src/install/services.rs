//! Configuration files and the systemd services that use them, as actions: the files written only when they
//! differ, the service (re)started only when its configuration hash changed (`airgap node service`), and the
//! daemon answering before the step counts as done (`airgap node check-tcp` / `check-http`).

use super::config::FileSpec;
use super::{node_cmd, Action};
use crate::digest::Digest;

/// The files as actions (each written atomically, only when different).
pub fn files(specs: &[FileSpec]) -> Vec<Action> {
    specs
        .iter()
        .map(|f| Action::File { path: f.path.clone(), mode: f.mode, content: f.content.clone(), block: None })
        .collect()
}

/// Hash of a service's configuration: changes exactly when one of its files changes.
pub fn config_hash(specs: &[FileSpec]) -> String {
    let mut s = String::new();
    for f in specs {
        s.push_str(&format!("{}\0{:o}\0{}\0", f.path, f.mode, f.content));
    }
    Digest::of_bytes(s.as_bytes()).hex().to_string()
}

/// The service enabled and running with this configuration (validated by `validate` before a restart).
pub fn service(name: &str, specs: &[FileSpec], require: &[&str], validate: &[&str], restart: bool) -> Action {
    let hash = config_hash(specs);
    let mut argv = node_cmd(&["service", name, "--hash", &hash]);
    if restart {
        argv.push("--restart".into());
    }
    for r in require {
        argv.extend(["--require".to_string(), r.to_string()]);
    }
    if !validate.is_empty() {
        argv.push("--".into());
        argv.extend(validate.iter().map(|s| s.to_string()));
    }
    Action::Command {
        argv,
        check: Some(node_cmd(&["service", name, "--hash", &hash, "--check"])),
        why: format!("{name} enabled and running with its current configuration"),
    }
}

/// The daemon answers (the step is done only then).
pub fn answers(what: &str, kind: &str, target: &str) -> Action {
    Action::Command {
        argv: node_cmd(&[kind, target, "--wait-secs", "20"]),
        check: Some(node_cmd(&[kind, target])),
        why: format!("{what} answers on {target}"),
    }
}
