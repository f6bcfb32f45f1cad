//! Node-local systemd service management for the infrastructure steps (`airgap node service NAME ...`):
//! enabled, active, and restarted (or reloaded) only when its configuration changed since the last apply,
//! after the daemon's own config check passed.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the hash of the configuration each service last started with is kept.
pub const STATE_DIR: &str = "/var/lib/airgap/services";

fn hash_file(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{name}.sha256"))
}

fn systemctl(args: &[&str]) -> Result<std::process::Output> {
    Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run systemctl {}", args.join(" ")))
}

fn systemctl_ok(args: &[&str]) -> Result<()> {
    let out = systemctl(args)?;
    if !out.status.success() {
        bail!("systemctl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn is(state: &str, name: &str) -> bool {
    systemctl(&[state, "--quiet", name]).is_ok_and(|o| o.status.success())
}

/// What differs from "enabled, active, running the configuration with this hash" (empty: in place).
pub fn check(name: &str, hash: &str) -> Vec<String> {
    let mut why = Vec::new();
    if !is("is-enabled", name) {
        why.push(format!("{name} is not enabled"));
    }
    if !is("is-active", name) {
        why.push(format!("{name} is not running"));
    }
    let applied = fs_err::read_to_string(hash_file(name)).unwrap_or_default();
    if applied.trim() != hash {
        why.push(format!("{name} has not (re)started with its current configuration"));
    }
    why
}

/// Validate the configuration (`validate` argv; `require` files must exist, as `keepalived -t` passes a
/// missing file), then enable the service and start it, or reload/restart it when its configuration changed.
/// Returns what was done.
pub fn apply(name: &str, hash: &str, require: &[PathBuf], validate: &[String], restart: bool) -> Result<String> {
    for f in require {
        if !f.is_file() {
            bail!("{} is missing: {name} would start without its configuration", f.display());
        }
    }
    if let Some((prog, args)) = validate.split_first() {
        let out = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {prog} to check {name}'s configuration"))?;
        if !out.status.success() {
            bail!(
                "{name}'s configuration is rejected by `{}`:\n{}{}",
                validate.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    systemctl_ok(&["daemon-reload"])?;
    systemctl_ok(&["enable", "--quiet", name])?;
    let applied = fs_err::read_to_string(hash_file(name)).unwrap_or_default();
    let active = is("is-active", name);
    let what = if active && applied.trim() == hash {
        "already running with this configuration"
    } else if active && !restart && !applied.trim().is_empty() {
        // a reload keeps connections (and keepalived's VRRP state); the first configuration under airgap
        // replaces the package's default one with a restart, whose failure systemd reports
        systemctl_ok(&["reload-or-restart", name])?;
        "reloaded with the new configuration"
    } else {
        systemctl_ok(&["restart", name])?;
        "(re)started"
    };
    if !is("is-active", name) {
        let status = systemctl(&["status", "--no-pager", "--lines=15", name]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        bail!("{name} is not running after start:\n{}", status.unwrap_or_default());
    }
    crate::fsutil::atomic_write(&hash_file(name), format!("{hash}\n").as_bytes(), crate::fsutil::Mode::Set(0o644))?;
    Ok(format!("{name}: {what}"))
}
