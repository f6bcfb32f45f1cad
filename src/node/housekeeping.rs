//! What the `housekeeping` step's units run on a node: container log cleanup (`airgap node log-cleanup`,
//! daily timer), log cutting (`airgap node log-cut`, hourly timer), keepalived's delayed start at boot
//! (`airgap node boot-delay`), and the systemd chores around units airgap does not own (`daemon-reload`,
//! `unit-off`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// A container log file or a cut/rotated copy of one (`x.log`, `x.log.1`, `x.log.20261202T110000Z`,
/// `x.log.gz`, docker's `<id>-json.log.N`).
fn is_log_file(name: &str) -> bool {
    name.ends_with(".log") || name.contains(".log.")
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        // symlinks are never followed (/var/log/containers holds links into /var/log/pods)
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        if md.is_dir() {
            walk(&p, out);
        } else if md.is_file() && is_log_file(&e.file_name().to_string_lossy()) {
            out.push((p, md));
        }
    }
}

/// The log files under `dirs` (missing directories are skipped).
fn log_files(dirs: &[PathBuf]) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut v = Vec::new();
    for d in dirs {
        walk(d, &mut v);
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Delete the log files under `dirs` not modified for `days` days (as of `now`); returns them.
pub fn cleanup(dirs: &[PathBuf], days: u32, now: SystemTime) -> Result<Vec<PathBuf>> {
    let max_age = Duration::from_secs(u64::from(days) * 86_400);
    let mut removed = Vec::new();
    for (p, md) in log_files(dirs) {
        let age = md.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        if age > max_age {
            match std::fs::remove_file(&p) {
                Ok(()) => removed.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("failed to delete {}", p.display())),
            }
        }
    }
    Ok(removed)
}

/// Cut every live log file (`*.log`) under `dirs` bigger than `max_bytes`: copied to `<file>.<UTC stamp>`
/// (which the cleanup deletes `days` later), then truncated in place, so that the writer's open descriptor
/// stays valid (logrotate's copytruncate). Returns the copies.
pub fn cut(dirs: &[PathBuf], max_bytes: u64, now: time::OffsetDateTime) -> Result<Vec<PathBuf>> {
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut copies = Vec::new();
    for (p, md) in log_files(dirs) {
        if !p.to_string_lossy().ends_with(".log") || md.len() <= max_bytes {
            continue;
        }
        let copy = PathBuf::from(format!("{}.{stamp}", p.display()));
        std::fs::copy(&p, &copy).with_context(|| format!("failed to copy {} aside", p.display()))?;
        let f = std::fs::OpenOptions::new().write(true).open(&p).with_context(|| format!("failed to open {}", p.display()))?;
        f.set_len(0).with_context(|| format!("failed to truncate {}", p.display()))?;
        copies.push(copy);
    }
    Ok(copies)
}

/// Seconds since boot (`/proc/uptime`).
pub fn uptime() -> Result<f64> {
    let s = fs_err::read_to_string("/proc/uptime")?;
    s.split_whitespace().next().and_then(|v| v.parse().ok()).context("unreadable /proc/uptime")
}

/// Seconds since this system booted: since PID 1 started (in a container, the host booted earlier).
pub fn since_boot() -> Result<f64> {
    let up = uptime()?;
    let stat = fs_err::read_to_string("/proc/1/stat")?;
    // after the `(comm)`, the first field is the 3rd (state); starttime is the 22nd, in clock ticks
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let start: f64 = after.split_whitespace().nth(19).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    Ok(up - start / hz)
}

/// Return once the system has been up `secs` seconds (at once when it has); returns how long it waited.
pub fn boot_delay(secs: u64) -> Result<f64> {
    let up = since_boot()?;
    let left = secs as f64 - up;
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
    Ok(left.max(0.0))
}

fn systemctl(args: &[&str]) -> Result<std::process::Output> {
    Command::new("systemctl").args(args).stdin(Stdio::null()).output().with_context(|| format!("failed to run systemctl {}", args.join(" ")))
}

/// `None` when systemd has loaded the unit's current files (drop-ins included), else why not.
pub fn needs_reload(unit: &str) -> Result<Option<String>> {
    let out = systemctl(&["show", "-p", "NeedDaemonReload", "--value", unit])?;
    Ok((String::from_utf8_lossy(&out.stdout).trim() == "yes").then(|| format!("systemd has not loaded {unit}'s changed unit files")))
}

pub fn daemon_reload() -> Result<()> {
    let out = systemctl(&["daemon-reload"])?;
    if !out.status.success() {
        bail!("systemctl daemon-reload failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `None` when `unit` is neither enabled nor running (or not installed), else what it is.
pub fn unit_on(unit: &str) -> Result<Option<String>> {
    let enabled = systemctl(&["is-enabled", "--quiet", unit])?.status.success();
    let active = systemctl(&["is-active", "--quiet", unit])?.status.success();
    Ok(match (enabled, active) {
        (false, false) => None,
        (e, a) => Some(format!("{unit} is {}{}", if e { "enabled" } else { "" }, if a { if e { " and running" } else { "running" } } else { "" })),
    })
}

/// Stop and disable `unit` (a package's default instance airgap replaces).
pub fn unit_off(unit: &str) -> Result<()> {
    let out = systemctl(&["disable", "--now", "--quiet", unit])?;
    if !out.status.success() && unit_on(unit)?.is_some() {
        bail!("systemctl disable --now {unit} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_deletes_old_logs_only_and_cut_keeps_the_writer_valid() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pod = d.join("pods/ns_pod_uid/app");
        fs_err::create_dir_all(&pod).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let mk = |name: &str, age_days: u64, size: usize| {
            let p = pod.join(name);
            fs_err::write(&p, vec![b'x'; size]).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(now - day * age_days as u32).unwrap();
            p
        };
        let old = mk("0.log", 11, 10);
        let old_rotated = mk("0.log.20261101-000000", 30, 10);
        let young = mk("1.log", 9, 10);
        let not_log = mk("data.bin", 40, 10);
        // a link into the pods (as /var/log/containers has) is not followed, nor deleted
        fs_err::create_dir_all(d.join("containers")).unwrap();
        std::os::unix::fs::symlink(&young, d.join("containers/app.log")).unwrap();
        let dirs = [d.join("pods"), d.join("containers"), d.join("missing")];
        let removed = cleanup(&dirs, 10, now).unwrap();
        assert_eq!(removed, vec![old.clone(), old_rotated.clone()]);
        assert!(!old.exists() && !old_rotated.exists() && young.exists() && not_log.exists());
        assert!(d.join("containers/app.log").exists());

        // cut: the big live log is copied aside and truncated; its writer's descriptor goes on appending
        let big = mk("2.log", 0, 3000);
        let mut writer = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
        let t = time::macros::datetime!(2026-12-02 11:00:05 UTC);
        let copies = cut(&dirs, 1000, t).unwrap();
        assert_eq!(copies, vec![pod.join("2.log.20261202T110005Z")]);
        assert_eq!(fs_err::metadata(&copies[0]).unwrap().len(), 3000);
        use std::io::Write;
        writer.write_all(b"after\n").unwrap();
        assert_eq!(fs_err::read_to_string(&big).unwrap(), "after\n");
        // small files and copies are left alone
        assert!(cut(&dirs, 1000, t).unwrap().is_empty());
    }

    #[test]
    fn the_time_since_boot_is_this_systems() {
        let up = since_boot().unwrap();
        assert!(up > 0.0 && up <= uptime().unwrap(), "{up}");
        // a delay already over returns at once
        let t = std::time::Instant::now();
        assert_eq!(boot_delay(0).unwrap(), 0.0);
        assert!(t.elapsed() < Duration::from_millis(100));
    }
}
