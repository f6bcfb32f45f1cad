//! The node's system settings the cluster needs (`airgap node hostname`, `swap-off`, `modules`, `sysctl`):
//! hostname, swap off now and at boot, kernel modules available, sysctl values in effect. Inside a container
//! (the lab), keys the kernel does not namespace are reported as warnings instead of failures.

use super::files::write_file;
use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Set the hostname (kernel + /etc/hostname). Returns whether anything changed.
pub fn set_hostname(name: &str) -> Result<bool> {
    let mut changed = write_file(Path::new("/etc/hostname"), 0o644, format!("{name}\n").as_bytes(), None)?;
    let current = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    if current != name {
        nix::unistd::sethostname(name).with_context(|| format!("failed to set the hostname to {name}"))?;
        changed = true;
    }
    Ok(changed)
}

pub fn hostname_is(name: &str) -> Result<bool> {
    let current = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    let file = fs_err::read_to_string("/etc/hostname").unwrap_or_default();
    Ok(current == name && file.trim() == name)
}

/// Active swap devices (from /proc/swaps).
pub fn active_swaps() -> Result<Vec<String>> {
    let s = fs_err::read_to_string("/proc/swaps")?;
    Ok(s.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect())
}

/// `/etc/fstab` with every swap entry commented out (`None` when nothing to change).
pub fn fstab_without_swap(text: &str) -> Option<String> {
    let mut changed = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if !l.trim_start().starts_with('#') && fields.len() >= 3 && fields[2] == "swap" {
                changed = true;
                format!("# {l}  # swap off: airgap (kubelet)")
            } else {
                l.to_string()
            }
        })
        .collect();
    changed.then(|| out.join("\n") + if text.ends_with('\n') { "\n" } else { "" })
}

/// Is swap off now and at boot? Returns the reasons when not.
pub fn swap_state() -> Result<Vec<String>> {
    let mut why = Vec::new();
    let active = active_swaps()?;
    if !active.is_empty() {
        why.push(format!("swap is on ({})", active.join(", ")));
    }
    if let Ok(t) = fs_err::read_to_string("/etc/fstab") {
        if fstab_without_swap(&t).is_some() {
            why.push("/etc/fstab has swap entries".into());
        }
    }
    Ok(why)
}

/// `swapoff -a` and comment swap out of /etc/fstab (atomically, only when different).
pub fn swap_off() -> Result<()> {
    if !active_swaps()?.is_empty() {
        let st = std::process::Command::new("swapoff")
            .arg("-a")
            .status()
            .context("failed to run swapoff -a")?;
        if !st.success() {
            bail!("swapoff -a failed ({st})");
        }
    }
    let fstab = Path::new("/etc/fstab");
    if let Ok(t) = fs_err::read_to_string(fstab) {
        if let Some(new) = fstab_without_swap(&t) {
            let mode = fs_err::metadata(fstab)?.permissions().mode() & 0o7777;
            write_file(fstab, mode, new.as_bytes(), None)?;
        }
    }
    Ok(())
}

/// Is kernel module `m` available: loaded (`/sys/module/m`), built in (`modules.builtin`), loadable
/// (`modprobe -n`), or its feature present (for the modules the installer needs)?
pub fn module_available(m: &str) -> (bool, String) {
    if Path::new("/sys/module").join(m).exists() {
        return (true, "loaded".into());
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(b) = fs_err::read_to_string(format!("/lib/modules/{release}/modules.builtin")) {
        if b.lines().any(|l| l.rsplit('/').next() == Some(&format!("{m}.ko"))) {
            return (true, "built in".into());
        }
    }
    // built in without modules.builtin on disk: the feature itself is there
    let feature = match m {
        "br_netfilter" => Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists(),
        "overlay" => {
            fs_err::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.ends_with("\toverlay")))
        }
        _ => false,
    };
    if feature {
        return (true, "built in (feature present)".into());
    }
    match std::process::Command::new("modprobe").args(["-n", m]).output() {
        Ok(o) if o.status.success() => (true, "loadable".into()),
        Ok(o) => (false, String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => (false, format!("modprobe not runnable: {e}")),
    }
}

/// Load the modules that are not there yet (built-in ones need nothing).
pub fn load_modules(mods: &[String]) -> Result<()> {
    for m in mods {
        let (ok, how) = module_available(m);
        if ok && how != "loadable" {
            continue;
        }
        let out = std::process::Command::new("modprobe")
            .arg(m)
            .output()
            .with_context(|| format!("failed to run modprobe {m}"))?;
        if !out.status.success() {
            bail!(
                "failed to load kernel module {m}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// sysctl keys that the kernel does not namespace: inside a container they belong to the host.
pub fn non_namespaced(key: &str) -> bool {
    key.starts_with("net.bridge.") || key.starts_with("kernel.") || key.starts_with("vm.") || key.starts_with("fs.")
}

pub fn in_container() -> bool {
    Path::new("/run/systemd/container").exists()
        || Path::new("/.dockerenv").exists()
        || std::env::var_os("container").is_some()
        || fs_err::read_to_string("/proc/1/environ").is_ok_and(|e| e.contains("container="))
}

/// Parse a sysctl.d file: `key = value` lines.
pub fn parse_sysctl(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().trim_start_matches('-').to_string(), v.trim().to_string()))
        })
        .collect()
}

fn sysctl_path(key: &str) -> std::path::PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// One key's state: `Ok(None)` when it has the value; `Ok(Some(warning))` when it differs but the kernel refuses
/// the key in this container (not namespaced); `Err` when it differs (or could not be set with `apply`).
pub fn sysctl_key(key: &str, want: &str, apply: bool) -> Result<Option<String>> {
    let p = sysctl_path(key);
    let have = fs_err::read_to_string(&p).map(|s| s.trim().to_string());
    let have = match have {
        Ok(h) => h,
        Err(e) => bail!("{key}: cannot read {}: {e}", p.display()),
    };
    if have.split_whitespace().eq(want.split_whitespace()) {
        return Ok(None);
    }
    let refused_here = || in_container() && non_namespaced(key);
    if !apply {
        if refused_here() && nix::unistd::access(&p, nix::unistd::AccessFlags::W_OK).is_err() {
            return Ok(Some(format!("{key} is {have}, want {want}: not settable in this container (the key is not namespaced): set it on the host")));
        }
        bail!("{key} is {have}, want {want}");
    }
    match fs_err::write(&p, want) {
        Ok(()) => Ok(None),
        Err(e) if refused_here() => Ok(Some(format!(
            "{key} is {have}, want {want}: the kernel refused the write inside a container ({}) because the key is not namespaced: set it on the host",
            e.kind()
        ))),
        Err(e) => Err(anyhow::anyhow!("failed to set {key} = {want} (it is {have}): {e}")),
    }
}

/// Apply (or check) every key of a sysctl.d file; returns warnings, fails on keys that differ.
pub fn sysctl_file(file: &Path, apply: bool) -> Result<Vec<String>> {
    let text = fs_err::read_to_string(file)?;
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for (k, v) in parse_sysctl(&text) {
        match sysctl_key(&k, &v, apply) {
            Ok(None) => {}
            Ok(Some(w)) => warnings.push(w),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_swap_commented() {
        let t = "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# /old none swap sw 0 0\n";
        let n = fstab_without_swap(t).unwrap();
        assert!(n.contains("# /swapfile none swap sw 0 0"));
        assert!(fstab_without_swap(&n).is_none());
    }
}
