//! `kubeadm`: the subset airgap's install runs (k8s-design.md), with kubeadm's flags, its refusals and their
//! wording. Sources (kubernetes/kubernetes): cmd/kubeadm/app/cmd/{init,join,token,reset,config}.go for the
//! flag sets, app/apis/kubeadm/validation/validation.go @ 00d24de6 for `ValidateMixedArguments` and the
//! field validation, app/util/error.go for the exit codes (1 default, 2 preflight, 3 validation) and the
//! "To see the stack trace" suffix, app/preflight/checks.go for the check names.

mod config;
mod controlplane;
mod images;
mod init;
mod join;
mod misc;
mod preflight;

pub use controlplane::APISERVER_ARGS;

use crate::common::{fail_code, Ctx, Fail, R};
use crate::flags::{self, flag, short, Kind, Parsed, Spec};

const GLOBAL: &[Spec] = &[
    short("v", 'v', Kind::Int),
    flag("rootfs", Kind::Str),
    flag("log-file", Kind::Str),
    flag("log-file-max-size", Kind::Int),
    flag("add-dir-header", Kind::Bool),
    flag("skip-headers", Kind::Bool),
    flag("skip-log-headers", Kind::Bool),
    flag("one-output", Kind::Bool),
];

pub const INIT: &[Spec] = &[
    flag("config", Kind::Str),
    flag("ignore-preflight-errors", Kind::List),
    flag("skip-token-print", Kind::Bool),
    flag("dry-run", Kind::Bool),
    flag("upload-certs", Kind::Bool),
    flag("skip-certificate-key-print", Kind::Bool),
    flag("patches", Kind::Str),
    flag("apiserver-advertise-address", Kind::Str),
    flag("apiserver-bind-port", Kind::Int),
    flag("node-name", Kind::Str),
    flag("certificate-key", Kind::Str),
    flag("cri-socket", Kind::Str),
    flag("service-cidr", Kind::Str),
    flag("pod-network-cidr", Kind::Str),
    flag("service-dns-domain", Kind::Str),
    flag("control-plane-endpoint", Kind::Str),
    flag("kubernetes-version", Kind::Str),
    flag("cert-dir", Kind::Str),
    flag("apiserver-cert-extra-sans", Kind::List),
    flag("feature-gates", Kind::Str),
    flag("token", Kind::Str),
    flag("token-ttl", Kind::Str),
    flag("image-repository", Kind::Str),
    flag("skip-phases", Kind::List),
];

/// `kubeadm init phase upload-certs` (cmd/kubeadm/app/cmd/phases/init/uploadcerts.go).
pub const UPLOAD_CERTS: &[Spec] = &[
    flag("config", Kind::Str),
    flag("upload-certs", Kind::Bool),
    flag("certificate-key", Kind::Str),
    flag("skip-certificate-key-print", Kind::Bool),
    flag("dry-run", Kind::Bool),
    flag("kubeconfig", Kind::Str),
];

pub const JOIN: &[Spec] = &[
    flag("config", Kind::Str),
    flag("ignore-preflight-errors", Kind::List),
    flag("token", Kind::Str),
    flag("control-plane", Kind::Bool),
    flag("dry-run", Kind::Bool),
    flag("patches", Kind::Str),
    flag("node-name", Kind::Str),
    flag("certificate-key", Kind::Str),
    flag("apiserver-advertise-address", Kind::Str),
    flag("apiserver-bind-port", Kind::Int),
    flag("discovery-token", Kind::Str),
    flag("discovery-token-ca-cert-hash", Kind::List),
    flag("discovery-token-unsafe-skip-ca-verification", Kind::Bool),
    flag("discovery-file", Kind::Str),
    flag("tls-bootstrap-token", Kind::Str),
    flag("cri-socket", Kind::Str),
    flag("skip-phases", Kind::List),
];

/// The flags `ValidateMixedArguments` lets through next to `--config` (validation.go `isAllowedFlag`):
/// config, ignore-preflight-errors, dry-run, kubeconfig, node-name, kubeconfig-dir, upload-certs,
/// print-join-command, rootfs, v, log-file, yes, and every `skip-*`.
const MIXABLE: &[&str] = &[
    "config",
    "ignore-preflight-errors",
    "dry-run",
    "kubeconfig",
    "node-name",
    "kubeconfig-dir",
    "upload-certs",
    "print-join-command",
    "rootfs",
    "v",
    "log-file",
    "yes",
];

/// A kubeadm error as `kubeadmutil.CheckErr` prints it.
pub fn kerr(code: i32, msg: impl std::fmt::Display) -> Fail {
    fail_code(code, format!("{msg}\nTo see the stack trace of this error execute with --v=5 or higher"))
}

/// An error of a workflow phase.
pub fn phase_err(phase: &str, msg: impl std::fmt::Display) -> Fail {
    kerr(1, format!("error execution phase {phase}: {msg}"))
}

/// An io::Error as Go words it (`open F: no such file or directory`).
pub fn go_err(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `ValidateMixedArguments`: `--config` with a flag whose value the file carries is refused.
pub fn validate_mixed(p: &Parsed) -> R<()> {
    if !p.has("config") {
        return Ok(());
    }
    let bad: Vec<&str> = p.names().into_iter().filter(|n| !MIXABLE.contains(n) && !n.starts_with("skip-")).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(kerr(1, format!("can not mix '--config' with arguments [{}]", bad.join(" "))))
    }
}

fn parse(args: &[String], specs: &[Spec], cmd: &str) -> R<Parsed> {
    let all: Vec<Spec> = specs.iter().chain(GLOBAL.iter()).copied().collect();
    let p = flags::parse(args, &all).map_err(|e| kerr(1, format!("{e}\nSee '{cmd} -h' for help and examples")))?;
    if p.has("rootfs") {
        return Err(kerr(1, "--rootfs is not supported by the k8s-standin kubeadm"));
    }
    Ok(p)
}

pub fn main(ctx: &Ctx, args: &[String]) -> R<()> {
    let words: Vec<&str> = args.iter().map(String::as_str).take_while(|a| !a.starts_with('-')).collect();
    let rest = |n: usize| -> Vec<String> {
        // drop the first n subcommand words, keep everything else in order
        let mut seen = 0;
        args.iter()
            .filter(|a| {
                if seen < n && !a.starts_with('-') {
                    seen += 1;
                    false
                } else {
                    true
                }
            })
            .cloned()
            .collect()
    };
    match words.as_slice() {
        ["init", "phase", "upload-certs", ..] => {
            let p = parse(&rest(3), UPLOAD_CERTS, "kubeadm init phase upload-certs")?;
            init::phase_upload_certs(ctx, &p)
        }
        ["init", "phase", ph, ..] => Err(kerr(1, format!("the k8s-standin kubeadm runs only the upload-certs phase on its own, not {ph:?}"))),
        ["init", ..] => {
            let p = parse(&rest(1), INIT, "kubeadm init")?;
            init::run(ctx, &p)
        }
        ["join", ..] => {
            let p = parse(&rest(1), JOIN, "kubeadm join")?;
            join::run(ctx, &p)
        }
        ["token", sub @ ..] => misc::token(ctx, sub.first().copied(), &rest(2)),
        ["reset", ..] => misc::reset(ctx, &rest(1)),
        ["version", ..] => misc::version(ctx, &rest(1)),
        ["config", "images", "list", ..] => misc::images_list(ctx, &rest(3)),
        ["config", "validate", ..] => misc::config_validate(ctx, &rest(2)),
        [] => Err(kerr(1, "kubeadm: easily bootstrap a secure Kubernetes cluster (k8s-standin): a subcommand is required")),
        [cmd, ..] => Err(fail_code(1, format!("unknown command \"{cmd}\" for \"kubeadm\"\nRun 'kubeadm --help' for usage."))),
    }
}

