//! Starting and stopping the node's services as kubeadm does. On a real node (root `/`): systemd —
//! `systemctl daemon-reload` + `systemctl restart kubelet` (kubeadm's kubelet-start phase), and
//! `systemd-run --unit=standin-apiserver` for the stand-in apiserver (a real control plane's kubelet would
//! run the kube-apiserver static pod instead). Under a sandbox root (several nodes on one machine, no
//! systemd for them): plain processes with pid files in `<root>/run/k8s-standin/`, the kubelet's command
//! line built from the unit files under the root exactly as systemd would build it (`Environment=`,
//! `EnvironmentFile=[-]`, the drop-ins' `ExecStart=` reset, `$VAR` split into words, `${VAR}` as one word).

use crate::common::{fail, Ctx, R};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

pub const APISERVER_UNIT: &str = "standin-apiserver";
const UNIT_DIRS: [&str; 3] = ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn pid_file(_ctx: &Ctx, unit: &str) -> String {
    format!("/run/k8s-standin/{unit}.pid")
}

fn pid_of(ctx: &Ctx, unit: &str) -> Option<nix::unistd::Pid> {
    let pid: i32 = ctx.read(&pid_file(ctx, unit)).ok()?.trim().parse().ok()?;
    let p = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(p, None).ok().map(|_| p)
}

/// Whether the unit runs.
pub fn active(ctx: &Ctx, unit: &str) -> bool {
    if ctx.sandboxed() {
        pid_of(ctx, unit).is_some()
    } else {
        run("systemctl", &["is-active", "--quiet", unit]).is_ok()
    }
}

pub fn stop(ctx: &Ctx, unit: &str) {
    if !ctx.sandboxed() {
        let _ = run("systemctl", &["stop", unit]);
        let _ = run("systemctl", &["reset-failed", unit]);
        return;
    }
    if let Some(p) = pid_of(ctx, unit) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(p, Signal::SIGTERM);
        let gone = crate::common::poll(std::time::Duration::from_secs(3), std::time::Duration::from_millis(20), || kill(p, None).is_err().then_some(()));
        if gone.is_none() {
            let _ = kill(p, Signal::SIGKILL);
        }
    }
    ctx.remove(&pid_file(ctx, unit));
}

fn spawn(ctx: &Ctx, unit: &str, program: &std::path::Path, arg0: &str, args: &[String]) -> R<()> {
    let log_path = format!("/var/log/k8s-standin/{unit}.log");
    ctx.write(&log_path, "", 0o644)?;
    let log = std::fs::OpenOptions::new().append(true).open(ctx.path(&log_path)).map_err(|e| fail(format!("{unit}: {e}")))?;
    let mut cmd = Command::new(program);
    cmd.arg0(arg0).args(args).stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| fail(e.to_string()))?).stderr(log);
    // its own session: it outlives kubeadm, as a service would
    unsafe {
        cmd.pre_exec(|| {
            let _ = nix::unistd::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| fail(format!("{unit}: cannot start {}: {e}", program.display())))?;
    ctx.write(&pid_file(ctx, unit), child.id().to_string(), 0o644)
}

/// Start the stand-in apiserver with `args` (replacing a running one).
pub fn start_apiserver(ctx: &Ctx, args: &[String]) -> R<()> {
    stop(ctx, APISERVER_UNIT);
    let exe = std::env::current_exe().map_err(|e| fail(format!("cannot find my own executable: {e}")))?;
    if ctx.sandboxed() {
        let mut a = vec!["standin-apiserver".to_string()];
        a.extend(args.iter().cloned());
        return spawn(ctx, APISERVER_UNIT, &exe, "k8s-standin", &a);
    }
    let mut a: Vec<String> = vec![
        format!("--unit={APISERVER_UNIT}"),
        "--description=kube-apiserver (k8s-standin)".into(),
        "--property=Restart=always".into(),
        "--property=RestartSec=2".into(),
    ];
    if let Ok(v) = std::env::var("K8S_STANDIN_VERSION") {
        a.push(format!("--setenv=K8S_STANDIN_VERSION={v}"));
    }
    a.push(exe.display().to_string());
    a.push("standin-apiserver".into());
    a.extend(args.iter().cloned());
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    run("systemd-run", &refs).map_err(fail)
}

/// `systemctl daemon-reload && systemctl restart kubelet`.
pub fn restart_kubelet(ctx: &Ctx) -> Result<(), String> {
    if !ctx.sandboxed() {
        run("systemctl", &["daemon-reload"])?;
        return run("systemctl", &["restart", "kubelet"]);
    }
    stop(ctx, "kubelet");
    let argv = kubelet_command_line(ctx)?;
    let program = ctx.path(&argv[0]);
    if !program.exists() {
        return Err(format!("kubelet.service: Failed to locate executable {}: No such file or directory", argv[0]));
    }
    spawn(ctx, "kubelet", &program, &argv[0], &argv[1..]).map_err(|f| f.msg)
}

/// Whether `systemctl enable kubelet` was done.
pub fn kubelet_enabled(ctx: &Ctx) -> bool {
    if ctx.sandboxed() {
        std::fs::symlink_metadata(ctx.path("/etc/systemd/system/multi-user.target.wants/kubelet.service")).is_ok()
    } else {
        run("systemctl", &["is-enabled", "--quiet", "kubelet"]).is_ok()
    }
}

/// Words of a systemd value: whitespace-separated, double or single quotes group.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The kubelet's argv as systemd would run it from kubelet.service and its drop-ins under the root.
pub fn kubelet_command_line(ctx: &Ctx) -> Result<Vec<String>, String> {
    let unit = UNIT_DIRS.iter().map(|d| format!("{d}/kubelet.service")).find(|p| ctx.exists(p)).ok_or("Unit kubelet.service not found.")?;
    let mut files = vec![unit];
    let mut dropins: BTreeMap<String, String> = BTreeMap::new();
    for d in UNIT_DIRS.iter().rev() {
        let dir = format!("{d}/kubelet.service.d");
        if let Ok(rd) = std::fs::read_dir(ctx.path(&dir)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".conf") {
                    dropins.insert(n.clone(), format!("{dir}/{n}")); // /etc wins over /usr/lib for the same name
                }
            }
        }
    }
    files.extend(dropins.into_values());
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut exec: Option<String> = None;
    for f in files {
        let text = ctx.read(&f).map_err(|e| format!("{f}: {e}"))?;
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            match k.trim() {
                "Environment" => {
                    for w in words(v) {
                        if let Some((a, b)) = w.split_once('=') {
                            env.insert(a.to_string(), b.to_string());
                        }
                    }
                }
                "EnvironmentFile" => {
                    let (optional, path) = match v.trim().strip_prefix('-') {
                        Some(p) => (true, p.to_string()),
                        None => (false, v.trim().to_string()),
                    };
                    match ctx.read(&path) {
                        Ok(t) => {
                            for l in t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                                if let Some((a, b)) = l.split_once('=') {
                                    let b = b.trim();
                                    let b = b.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(b);
                                    env.insert(a.trim().to_string(), b.to_string());
                                }
                            }
                        }
                        Err(_) if optional => {}
                        Err(e) => return Err(format!("kubelet.service: Failed to load environment files: {path}: {e}")),
                    }
                }
                "ExecStart" => exec = if v.trim().is_empty() { None } else { Some(v.trim().to_string()) },
                _ => {}
            }
        }
    }
    let exec = exec.ok_or("kubelet.service: Service has no ExecStart=, refusing.")?;
    let mut argv = Vec::new();
    for w in words(&exec) {
        if let Some(name) = w.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            argv.extend(env.get(name).map(|v| words(v)).unwrap_or_default());
        } else {
            let mut s = w.clone();
            for (k, v) in &env {
                s = s.replace(&format!("${{{k}}}"), v);
            }
            argv.push(s);
        }
    }
    if argv.is_empty() {
        return Err("kubelet.service: empty ExecStart=".into());
    }
    Ok(argv)
}
